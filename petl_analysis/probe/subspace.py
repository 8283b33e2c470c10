"""Random-subspace reparametrisation of a set of model tensors: theta_S = theta0_S + P theta_d.

:class:`SubspaceModel` wraps a model without touching it: the base model stays a registered submodule (so
``.to()``, ``state_dict()`` and ``parameters()`` remain honest) and the forward pass substitutes the offset tensors
through :func:`torch.func.functional_call`. Row slices of a fused ``qkv`` get an offset only in their rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from ..accounting import AdapterModule
from ..errors import PetlError
from ..models.catalogue import TensorSlice, Unit
from .projections import make_projection


@dataclass(frozen=True)
class _Segment:
    """Where one tensor slice reads its offset from in the D-vector."""

    param: str
    rows: tuple[int, int] | None
    shape: tuple[int, ...]
    start: int
    stop: int


def subspace_size(units: Sequence[Unit | TensorSlice]) -> int:
    """D: the number of parameters the units span (weights and biases, slices counted by their rows)."""
    return sum(t.numel for t in _unique_slices(units))


def _unique_slices(units: Sequence[Unit | TensorSlice]) -> list[TensorSlice]:
    seen: dict[tuple[str, tuple[int, int] | None], TensorSlice] = {}
    for u in units:
        for t in u.tensors if isinstance(u, Unit) else (u,):
            seen.setdefault((t.param, t.rows), t)
    return list(seen.values())


def all_parameters(model: nn.Module) -> list[TensorSlice]:
    """Every parameter of ``model`` as a slice: the *global* intrinsic dimension of Li et al. (2018)."""
    return [TensorSlice(name, None, tuple(p.shape)) for name, p in model.named_parameters()]


class _Substitute(torch.autograd.Function):
    """``(flat offset, base tensors) -> base + offset`` for every touched tensor, as one autograd node.

    ``layout`` maps each base tensor (in order) to its segments of the flat vector, ``segments`` lists them all in
    flat order; a segment with ``rows`` adds only to those rows (a q, k or v slice of a fused qkv). Backward
    gathers the tensors' gradients back into the flat vector with one ``cat``. Written out per tensor with
    ``split``, ``view``, ``pad`` and ``+`` this was two to four autograd nodes per tensor, each slice's backward
    zero-filling a D-length buffer (figures: ``benchmarks/bench_subspace.py``).
    """

    @staticmethod
    def forward(
        ctx,
        flat: torch.Tensor,
        layout: dict[str, tuple[_Segment, ...]],
        segments: list[_Segment],
        *bases: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        ctx.layout, ctx.segments = layout, segments
        out = []
        for base, segs in zip(bases, layout.values()):
            if len(segs) == 1 and segs[0].rows is None:
                out.append(torch.add(base, flat[segs[0].start : segs[0].stop].view(base.shape)))
                continue
            full = base.clone()
            for seg in segs:
                part = full if seg.rows is None else full[seg.rows[0] : seg.rows[1]]
                part += flat[seg.start : seg.stop].view(part.shape)
            out.append(full)
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        grad_of = dict(zip(ctx.layout, grads))
        pieces = []
        for seg in ctx.segments:  # flat order
            grad = grad_of[seg.param]
            pieces.append((grad if seg.rows is None else grad[seg.rows[0] : seg.rows[1]]).reshape(-1))
        grad_flat = torch.cat(pieces)
        return (grad_flat, None, None, *(g if need else None for g, need in zip(grads, ctx.needs_input_grad[3:])))


class SubspaceModel(AdapterModule):
    """``model`` with the tensors of ``units`` replaced by ``theta0 + P theta_d``.

    Args:
        model: a timm ViT (or any module). Its parameters are not modified; those in ``units`` are frozen here,
            every other parameter keeps its ``requires_grad`` (the caller decides whether the head trains).
        units: catalogue units, or raw :class:`TensorSlice` s (e.g. :func:`all_parameters` for a whole network),
            spanning the subspace (D = their total size).
        d: subspace dimension, including the SAID scales when ``said`` is set.
        projection: a registered projection kind (``dense``, ``fastfood``, ``sparse``).
        seed: seed of the random projection.
        said: structure-aware variant (Aghajanyan et al.): one learned scale per tensor multiplies its offset;
            the scales are part of ``d`` (so ``theta_d`` has ``d - n_tensors`` entries).

    The only new trainable tensors are ``theta_d`` (zeros at init, so the wrapped output equals the base model's)
    and, with SAID, ``said_scales``.
    """

    def __init__(
        self,
        model: nn.Module,
        units: Sequence[Unit | TensorSlice],
        d: int,
        projection: str = "fastfood",
        seed: int = 0,
        said: bool = False,
        **projection_kwargs,
    ) -> None:
        super().__init__()
        if not units:
            raise PetlError("subspace training needs at least one target unit")
        self.model = model
        self.unit_names = [u.name if isinstance(u, Unit) else u.param for u in units]
        slices = _unique_slices(units)
        params = dict(model.named_parameters(remove_duplicate=False))
        names_of: dict[int, list[str]] = {}  # Parameter -> every name it is reachable under
        for name, p in params.items():
            names_of.setdefault(id(p), []).append(name)
        segments, start = [], 0
        for t in slices:
            segments.append(_Segment(t.param, t.rows, t.shape, start, start + t.numel))
            start += t.numel
            params[t.param].requires_grad_(False)
        self._segments = segments
        # Every name a substituted tensor is reachable under (tied weights share one Parameter), so the forward can
        # call functional_call with tie_weights=False: its own tie search walks the whole module tree on every
        # call (figures: benchmarks/bench_subspace.py).
        self._aliases = {seg.param: tuple(names_of[id(params[seg.param])]) for seg in segments}
        self._layout: dict[str, tuple[_Segment, ...]] = {}
        for seg in segments:
            self._layout[seg.param] = (*self._layout.get(seg.param, ()), seg)
        # (owning module, attribute) per touched tensor: the tensor is read afresh each call (so theta0 follows
        # .to() and load_state_dict) without get_parameter's attribute walk on every step. A submodule replaced
        # after wrapping is not followed.
        self._owners = []
        for name in self._layout:
            owner, _, leaf = name.rpartition(".")
            self._owners.append((model.get_submodule(owner), leaf))
        self.D = start
        self.said = said
        n_scales = len(slices) if said else 0
        if said and d <= n_scales:
            raise PetlError(f"SAID needs d > {n_scales} (one scale per tensor is part of d); got d={d}")
        if d > self.D:
            raise PetlError(f"d={d} exceeds D={self.D}, the size of the targets {', '.join(self.unit_names[:4])}...")
        self.d = d
        device = next(model.parameters()).device
        self.projection = make_projection(projection, self.D, d - n_scales, seed, device=device, **projection_kwargs)
        self.theta_d = nn.Parameter(torch.zeros(d - n_scales, device=device))
        # SAID scales act as (1 + lambda) so lambda = 0 starts from the plain subspace and every input gets gradient.
        self.said_scales = nn.Parameter(torch.zeros(n_scales, device=device)) if said else None
        if said:  # how many offset entries each scale multiplies
            sizes = torch.tensor([seg.stop - seg.start for seg in segments], device=device)
            self.register_buffer("_said_sizes", sizes, persistent=False)

    def offset(self) -> torch.Tensor:
        """The flat offset ``P theta_d`` of length D."""
        return self.projection(self.theta_d)

    def substituted_parameters(self) -> dict[str, torch.Tensor]:
        """Name -> ``theta0 + offset`` for every parameter touched by the subspace (differentiable in theta_d)."""
        flat = self.offset()
        if self.said_scales is not None:
            flat = flat * torch.repeat_interleave(1.0 + self.said_scales, self._said_sizes, output_size=self.D)
        bases = [owner._parameters[leaf] for owner, leaf in self._owners]
        return dict(zip(self._layout, _Substitute.apply(flat, self._layout, self._segments, *bases)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        substituted = {
            alias: value for name, value in self.substituted_parameters().items() for alias in self._aliases[name]
        }
        return functional_call(self.model, substituted, (x,), strict=False, tie_weights=False)

    def get_classifier(self) -> nn.Module | None:
        get = getattr(self.model, "get_classifier", None)
        return get() if callable(get) else None

    @torch.no_grad()
    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """The base model's state dict with the trained offset folded in (a plain timm checkpoint)."""
        state = {k: v.clone() for k, v in self.model.state_dict().items()}
        for name, value in self.substituted_parameters().items():
            state[name] = value.detach().clone()
        return state
