"""Weight deltas through ``torch.nn.utils.parametrize``: ``W_eff = W0 + Σ_k ΔW_k`` on one tensor.

Why parametrisations and not module replacement: timm's BEiT and EVA attention call
``F.linear(x, weight=self.qkv.weight, bias=qkv_bias)``, reading the weight directly; a wrapped or replaced Linear
would silently be bypassed there. A parametrisation sits on the *tensor*, so every read of ``qkv.weight`` (or of
``q_bias``) sees ``W0 + ΔW``, whatever the forward does with it. It also makes every sample's output independent of
the rest of its batch by construction, and makes merging exact (``W0 += ΔW``).

Layout: one :class:`TensorDeltas` parametrisation per adapted tensor (``blocks.0.attn.qkv.weight``) holds every delta
that touches it, keyed ``{method}_{unit}`` (``lora_attn_q``, ``lora_attn_v``), each with the row ranges it covers. So
the q and v slices of a fused qkv compose in one parametrisation (one allocation of the effective weight per read),
and methods stack. A delta module is any ``nn.Module`` with :class:`DeltaMixin` (``delta()`` deterministic,
``forward()`` with dropout in training mode).

A delta may act on several tensors (KAdaptation's per-layer bias ``b`` shifts the q and v biases of BEiT, two
parameters). It is *registered* (owned) by the first tensor's container and *borrowed* (held by reference, not
registered) by the others, so its tensor has one name and is counted once, as a per-layer (not shared) parameter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize


class DeltaMixin:
    """A module producing a tensor delta. Subclasses implement :meth:`delta`.

    ``merged`` is True while the delta lives inside the base tensor (after :func:`merge_deltas`); the container then
    skips it.
    """

    merged: bool = False
    dropout: float = 0.0

    def delta(self) -> torch.Tensor:  # pragma: no cover - abstract
        """The delta without dropout, shaped like the rows it covers."""
        raise NotImplementedError

    def forward(self) -> torch.Tensor:
        d = self.delta()
        if self.dropout > 0 and self.training:  # type: ignore[attr-defined]
            d = nn.functional.dropout(d, self.dropout, training=True)
        return d


class TensorDeltas(nn.Module):
    """Parametrisation adding the deltas of one or more units to one tensor.

    Not an :class:`~petl_analysis.accounting.AdapterModule` itself: each delta decides its own accounting category
    (adapter deltas derive from ``AdapterModule``; BitFit's bias-row deltas do not, and count as biases).
    """

    def __init__(self) -> None:
        super().__init__()
        self.deltas = nn.ModuleDict()
        self._rows: dict[str, tuple] = {}
        self._borrowed: dict[str, nn.Module] = {}

    def add(self, key: str, delta: nn.Module, rows: Sequence, *, borrowed: bool = False) -> None:
        """Attach ``delta`` under ``key``, adding it to each row range in ``rows`` (``None``: the whole tensor)."""
        if key in self._rows:
            raise KeyError(f"delta {key!r} is attached twice to the same tensor")
        if borrowed:
            self._borrowed[key] = delta
        else:
            self.deltas[key] = delta
        self._rows[key] = tuple(rows)

    def entries(self) -> Iterator[tuple[str, nn.Module, tuple]]:
        for key, rows in self._rows.items():
            yield key, (self._borrowed[key] if key in self._borrowed else self.deltas[key]), rows

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        active = [(m, rows) for _, m, rows in self.entries() if not m.merged]
        if not active:
            return X
        if len(active) == 1 and active[0][1] == (None,):
            return X + active[0][0]()
        out = X.clone()
        for module, rows in active:
            d = module()
            for r in rows:
                if r is None:
                    out = out + d
                else:
                    out[r[0] : r[1]] += d
        return out


def _add_rows(out: torch.Tensor, d: torch.Tensor, rows: tuple) -> None:
    for r in rows:
        if r is None:
            out += d
        else:
            out[r[0] : r[1]] += d


def attach_delta(
    model: nn.Module, param: str, key: str, delta: nn.Module, rows: Sequence, *, borrowed: bool = False
) -> TensorDeltas:
    """Add ``delta`` to parameter ``param`` (a name from the catalogue, e.g. ``blocks.0.attn.qkv.weight``).

    Creates the tensor's :class:`TensorDeltas` parametrisation on first use.
    """
    owner_path, _, tensor_name = param.rpartition(".")
    owner = model.get_submodule(owner_path) if owner_path else model
    container = find_container(owner, tensor_name)
    if container is None:
        container = TensorDeltas()
        parametrize.register_parametrization(owner, tensor_name, container)
    container.add(key, delta, rows, borrowed=borrowed)
    return container


def find_container(owner: nn.Module, tensor_name: str) -> TensorDeltas | None:
    if not parametrize.is_parametrized(owner, tensor_name):
        return None
    for p in owner.parametrizations[tensor_name]:
        if isinstance(p, TensorDeltas):
            return p
    return None


def delta_containers(model: nn.Module) -> Iterator[tuple[str, nn.Parameter, TensorDeltas]]:
    """``(param name, original tensor, container)`` for every :class:`TensorDeltas` in ``model``."""
    for path, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor_name, plist in module.parametrizations.items():
            for p in plist:
                if isinstance(p, TensorDeltas):
                    yield (f"{path}.{tensor_name}" if path else tensor_name), plist.original, p


@torch.no_grad()
def merge_deltas(model: nn.Module, prefix: str) -> int:
    """Add every unmerged delta whose key starts with ``prefix`` into its base tensor(s); returns how many."""
    done: list[nn.Module] = []
    for _, original, container in delta_containers(model):
        for key, module, rows in container.entries():
            if key.startswith(prefix) and not module.merged:
                _add_rows(original, module.delta().to(original.dtype), rows)
                done.append(module)
    for module in done:
        module.merged = True
    return len(done)


@torch.no_grad()
def unmerge_deltas(model: nn.Module, prefix: str) -> int:
    """Subtract every merged delta whose key starts with ``prefix`` from its base tensor(s); returns how many."""
    done: list[nn.Module] = []
    for _, original, container in delta_containers(model):
        for key, module, rows in container.entries():
            if key.startswith(prefix) and module.merged:
                _add_rows(original, -module.delta().to(original.dtype), rows)
                done.append(module)
    for module in done:
        module.merged = False
    return len(done)


def unload_deltas(model: nn.Module, prefix: str) -> int:
    """Merge the deltas whose key starts with ``prefix`` and remove every parametrisation left holding only such
    deltas, restoring plain parameters (original names, merged values). Returns how many tensors were restored."""
    merge_deltas(model, prefix)
    done = 0
    for name, _, container in list(delta_containers(model)):
        if all(key.startswith(prefix) for key, _, _ in container.entries()):
            owner_path, _, tensor_name = name.rpartition(".")
            owner = model.get_submodule(owner_path) if owner_path else model
            _own_class(owner)
            parametrize.remove_parametrizations(owner, tensor_name, leave_parametrized=False)
            done += 1
    return done


def _own_class(module: nn.Module) -> None:
    """Give ``module`` a private copy of its parametrised class.

    ``parametrize`` stores each tensor's property on a per-module class, but ``copy.deepcopy`` shares that class
    between the copy and the original; removing a parametrisation deletes the property from the class, which would
    silently break the other module.
    """
    cls = type(module)
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))


def has_deltas(model: nn.Module) -> bool:
    return any(True for _ in delta_containers(model))
