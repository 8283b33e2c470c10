"""The submodule catalogue: canonical names for the adaptable units of a timm Vision Transformer.

Per block ``i`` the units are::

    blocks.i.attn.q   blocks.i.attn.k   blocks.i.attn.v     row slices of a fused ``attn.qkv`` (or separate Linears)
    blocks.i.attn.qkv                                       the fused projection as one unit (fused models only)
    blocks.i.attn.proj  blocks.i.mlp.fc1  blocks.i.mlp.fc2  Linear layers
    blocks.i.mlp.fc1_g  blocks.i.mlp.fc1_x                  gate and value input projections of a gated (GLU) MLP
    blocks.i.norm1      blocks.i.norm2                      LayerNorms

Gated MLPs come in two timm layouts. ``SwiGLU`` (EVA-02 B/L, ``scale_mlp=True``) holds separate ``fc1_g`` and
``fc1_x`` Linears: they are the units ``mlp.fc1_g`` / ``mlp.fc1_x`` and ``mlp.fc1`` means the two of them (as
``attn.qkv`` means q, k, v on separate Linears). ``GluMlp`` (EVA-02 Ti/S: SwiGLU without the MLP norm) packs gate and
value into one ``fc1`` of twice the width: ``mlp.fc1`` is that whole Linear, and ``mlp.fc1_g`` / ``mlp.fc1_x`` are its
row halves (which half is the gate follows timm's ``gate_last``), as q, k, v are row slices of a fused ``qkv``.

Groups: ``attn`` = q, k, v, proj (written as ``attn.qkv`` + ``attn.proj`` on fused models), ``mlp`` = fc1 + fc2,
``norm`` = norm1 + norm2. A *target spec* selects units by kind across blocks (``attn.v``), by block
(``blocks[0-5].attn.v``, ``blocks[0,2].mlp``, ``blocks.3.mlp.fc1``, ``blocks[3]``), or by a concrete timm module name
(``blocks.0.attn.q_proj`` on EVA). The same names resolve on fused-qkv ViT/DeiT, on BEiT/EVA with q/v biases held
apart from the fused weight, and on EVA with ``qkv_fused=False``.

A :class:`Unit` only *describes* tensors (parameter names and row ranges); it never holds them, so it is cheap,
hashable and serialisable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import nn

from ..errors import PetlError

LEAF_KINDS: tuple[str, ...] = ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2", "norm1", "norm2")
#: The gate and value halves of a gated MLP's input projection (see the module docstring).
GLU_KINDS: tuple[str, ...] = ("mlp.fc1_g", "mlp.fc1_x")
UNIT_KINDS: tuple[str, ...] = LEAF_KINDS[:3] + ("attn.qkv", "attn.proj") + GLU_KINDS + LEAF_KINDS[4:]
GROUPS: dict[str, tuple[str, ...]] = {
    "attn": ("attn.qkv", "attn.proj"),
    "mlp": ("mlp.fc1", "mlp.fc2"),
    "norm": ("norm1", "norm2"),
}
#: The default probe targets: each leaf type, and the paper's attention-vs-MLP comparison.
DEFAULT_PROBE_TARGETS: tuple[str, ...] = (
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.proj",
    "mlp.fc1",
    "mlp.fc2",
    "attn",
    "mlp",
)
_QKV = ("q", "k", "v")


@dataclass(frozen=True)
class TensorSlice:
    """A parameter of the model, or a contiguous range of its rows (dim 0).

    Attributes:
        param: name in ``model.named_parameters()``, e.g. ``"blocks.0.attn.qkv.weight"``.
        rows: ``(start, stop)`` along dim 0, or ``None`` for the whole tensor.
        shape: shape of the selected part.
    """

    param: str
    rows: tuple[int, int] | None
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class Unit:
    """One adaptable unit of one block.

    Attributes:
        name: canonical name, ``blocks.{block}.{kind}``.
        kind: one of :data:`UNIT_KINDS`.
        block: block index.
        module: the ``nn.Module`` path that owns the weight (``blocks.0.attn.qkv`` for a q slice).
        weight: the weight (or its row slice), shape ``(out_features, in_features)`` for Linear units.
        biases: the bias tensors this unit owns (none, one, or q and v biases for a BEiT fused ``qkv``).
    """

    name: str
    kind: str
    block: int
    module: str
    weight: TensorSlice
    biases: tuple[TensorSlice, ...] = ()

    @property
    def group(self) -> str:
        return "norm" if self.kind.startswith("norm") else self.kind.split(".")[0]

    @property
    def is_linear(self) -> bool:
        return not self.kind.startswith("norm")

    @property
    def rows(self) -> tuple[int, int] | None:
        return self.weight.rows

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def in_features(self) -> int:
        return self.weight.shape[-1]

    @property
    def tensors(self) -> tuple[TensorSlice, ...]:
        return (self.weight, *self.biases)

    @property
    def numel(self) -> int:
        """Number of parameters in the unit (weight + biases): its D in subspace training."""
        return sum(t.numel for t in self.tensors)


def _slice(name: str, param: nn.Parameter, rows: tuple[int, int] | None = None) -> TensorSlice:
    shape = tuple(param.shape)
    if rows is not None:
        shape = (rows[1] - rows[0], *shape[1:])
    return TensorSlice(param=name, rows=rows, shape=shape)


def _linear_unit(kind: str, block: int, path: str, lin: nn.Linear, rows=None, biases=None) -> Unit:
    weight = _slice(f"{path}.weight", lin.weight, rows)
    if biases is None:
        biases = (_slice(f"{path}.bias", lin.bias, rows),) if lin.bias is not None else ()
    return Unit(f"blocks.{block}.{kind}", kind, block, path, weight, tuple(biases))


def _attn_units(block: int, prefix: str, attn: nn.Module) -> list[Unit]:
    units: list[Unit] = []
    qkv = getattr(attn, "qkv", None)
    if isinstance(qkv, nn.Linear):
        if qkv.out_features % 3:
            raise PetlError(f"{prefix}.qkv has {qkv.out_features} outputs, not divisible into q, k, v")
        width = qkv.out_features // 3
        path = f"{prefix}.qkv"
        held_apart = qkv.bias is None and isinstance(getattr(attn, "q_bias", None), nn.Parameter)
        all_biases: list[TensorSlice] = []
        for j, letter in enumerate(_QKV):
            rows = (j * width, (j + 1) * width)
            if held_apart:  # BEiT / EVA: q and v biases are separate parameters; k has none (a zero buffer)
                b = getattr(attn, f"{letter}_bias", None)
                biases = (_slice(f"{prefix}.{letter}_bias", b),) if isinstance(b, nn.Parameter) else ()
            else:
                biases = None
            unit = _linear_unit(f"attn.{letter}", block, path, qkv, rows, biases)
            all_biases.extend(unit.biases)
            units.append(unit)
        fused_biases = all_biases if held_apart else None
        units.append(_linear_unit("attn.qkv", block, path, qkv, None, fused_biases))
    else:
        for letter in _QKV:
            for attr in (f"{letter}_proj", letter):
                lin = getattr(attn, attr, None)
                if isinstance(lin, nn.Linear):
                    units.append(_linear_unit(f"attn.{letter}", block, f"{prefix}.{attr}", lin))
                    break
    proj = getattr(attn, "proj", None)
    if isinstance(proj, nn.Linear):
        units.append(_linear_unit("attn.proj", block, f"{prefix}.proj", proj))
    return units


def _mlp_units(block: int, prefix: str, mlp: nn.Module | None) -> list[Unit]:
    units: list[Unit] = []
    fc1 = getattr(mlp, "fc1", None)
    if isinstance(fc1, nn.Linear):
        units.append(_linear_unit("mlp.fc1", block, f"{prefix}.fc1", fc1))
        fc2 = getattr(mlp, "fc2", None)
        gate_last = getattr(mlp, "gate_last", None)
        packed = isinstance(gate_last, bool) and isinstance(fc2, nn.Linear) and fc1.out_features == 2 * fc2.in_features
        if packed:  # timm GluMlp: fc1 rows are [value, gate] when gate_last, else [gate, value]
            half = fc2.in_features
            first, second = ((0, half), (half, 2 * half))
            gate_rows, value_rows = (second, first) if gate_last else (first, second)
            units.append(_linear_unit("mlp.fc1_g", block, f"{prefix}.fc1", fc1, gate_rows))
            units.append(_linear_unit("mlp.fc1_x", block, f"{prefix}.fc1", fc1, value_rows))
    else:  # timm SwiGLU: separate gate and value Linears
        for kind in GLU_KINDS:
            attr = kind.split(".")[1]
            lin = getattr(mlp, attr, None)
            if isinstance(lin, nn.Linear):
                units.append(_linear_unit(kind, block, f"{prefix}.{attr}", lin))
    fc2 = getattr(mlp, "fc2", None)
    if isinstance(fc2, nn.Linear):
        units.append(_linear_unit("mlp.fc2", block, f"{prefix}.fc2", fc2))
    return units


def catalogue(model: nn.Module) -> list[Unit]:
    """All units of ``model`` in block order, then in :data:`UNIT_KINDS` order.

    Raises:
        PetlError: the model has no ``blocks`` of attention + MLP.
    """
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0:
        raise PetlError(f"{type(model).__name__} has no transformer `blocks`; expected a timm ViT-family model")
    units: list[Unit] = []
    for i, blk in enumerate(blocks):
        block_units: list[Unit] = []
        attn = getattr(blk, "attn", None)
        if attn is not None:
            block_units += _attn_units(i, f"blocks.{i}.attn", attn)
        block_units += _mlp_units(i, f"blocks.{i}.mlp", getattr(blk, "mlp", None))
        for norm in ("norm1", "norm2"):
            mod = getattr(blk, norm, None)
            weight = getattr(mod, "weight", None)
            if isinstance(weight, nn.Parameter):
                bias = getattr(mod, "bias", None)
                biases = (_slice(f"blocks.{i}.{norm}.bias", bias),) if isinstance(bias, nn.Parameter) else ()
                block_units.append(
                    Unit(
                        f"blocks.{i}.{norm}",
                        norm,
                        i,
                        f"blocks.{i}.{norm}",
                        _slice(f"blocks.{i}.{norm}.weight", weight),
                        biases,
                    )
                )
        order = {k: j for j, k in enumerate(UNIT_KINDS)}
        units += sorted(block_units, key=lambda u: order[u.kind])
    if not any(u.kind == "attn.proj" for u in units):
        raise PetlError(f"{type(model).__name__}: found no attention projections in `blocks`; not a ViT-family model")
    return units


_BLOCK_SEL = re.compile(r"^blocks(?:\[(?P<sel>[0-9,\-\s]+)\]|\.(?P<idx>\d+))(?:\.(?P<rest>.+))?$")


def _parse_block_selection(sel: str, depth: int, spec: str) -> list[int]:
    out: list[int] = []
    for part in sel.replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            if not a.isdigit() or not b.isdigit() or int(a) > int(b):
                raise PetlError(f"target {spec!r}: bad block range {part!r}; expected e.g. blocks[0-5]")
            out += range(int(a), int(b) + 1)
        else:
            out.append(int(part))
    bad = [b for b in out if b >= depth]
    if bad:
        raise PetlError(f"target {spec!r}: block {bad[0]} does not exist; the model has blocks 0..{depth - 1}")
    return sorted(set(out))


def _expand_kind(kind: str, spec: str) -> tuple[str, ...] | None:
    if kind in GROUPS:
        return GROUPS[kind]
    if kind in UNIT_KINDS:
        return (kind,)
    return None


#: A fused kind that, on models holding its parts as separate Linears, stands for those parts.
_MEANS_ITS_PARTS: dict[str, tuple[str, ...]] = {"attn.qkv": ("attn.q", "attn.k", "attn.v"), "mlp.fc1": GLU_KINDS}


def _select(units: list[Unit], blocks: Iterable[int] | None, kinds: tuple[str, ...], spec: str) -> list[Unit]:
    block_set = set(blocks) if blocks is not None else None
    chosen: list[Unit] = []
    for kind in kinds:
        hits = [u for u in units if u.kind == kind and (block_set is None or u.block in block_set)]
        if not hits and kind in _MEANS_ITS_PARTS:  # separate Linears: qkv means q, k, v; a SwiGLU fc1 means g and x
            parts = _MEANS_ITS_PARTS[kind]
            hits = [u for u in units if u.kind in parts and (block_set is None or u.block in block_set)]
        if not hits:
            raise PetlError(f"target {spec!r}: this model has no {kind!r} units")
        chosen += hits
    return chosen


def resolve_targets(model_or_units: nn.Module | Sequence[Unit], specs: str | Sequence[str]) -> list[Unit]:
    """Resolve target specs (comma-separated string or list) to units, in catalogue order, without duplicates.

    Raises:
        PetlError: an unknown name, a block out of range, or overlapping units (e.g. ``attn.qkv`` with ``attn.v``).
    """
    units = list(model_or_units) if not isinstance(model_or_units, nn.Module) else catalogue(model_or_units)
    if isinstance(specs, str):
        specs = [s for s in specs.split(",")]
    specs = [s.strip() for s in specs if s and s.strip()]
    if not specs:
        raise PetlError("no targets given; expected e.g. attn.v, mlp.fc1, blocks[0-3].attn or blocks.0.norm1")
    depth = max(u.block for u in units) + 1
    by_name = {u.name: u for u in units}
    by_module = {u.module: u for u in units if u.rows is None and u.kind != "attn.qkv"}
    selected: dict[str, Unit] = {}
    for spec in specs:
        if spec in by_name:
            hits = [by_name[spec]]
        elif spec in by_module:
            hits = [by_module[spec]]
        elif (m := _BLOCK_SEL.match(spec)) is not None:
            blocks = _parse_block_selection(m["sel"], depth, spec) if m["sel"] is not None else None
            if m["idx"] is not None:
                blocks = _parse_block_selection(m["idx"], depth, spec)
            rest = m["rest"]
            if rest is None:
                kinds: tuple[str, ...] | None = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "norm1", "norm2")
            else:
                kinds = _expand_kind(rest, spec)
            if kinds is None:
                raise _unknown(spec)
            hits = _select(units, blocks, kinds, spec)
        else:
            kinds = _expand_kind(spec, spec)
            if kinds is None:
                raise _unknown(spec)
            hits = _select(units, None, kinds, spec)
        for u in hits:
            selected[u.name] = u
    order = {u.name: i for i, u in enumerate(units)}
    result = sorted(selected.values(), key=lambda u: order[u.name])
    _check_disjoint(result)
    return result


def _unknown(spec: str) -> PetlError:
    kinds = ", ".join(list(UNIT_KINDS) + list(GROUPS))
    return PetlError(
        f"unknown target {spec!r}; expected a unit kind or group ({kinds}), optionally with a block selection "
        "(blocks[0-5].attn.v, blocks.3.mlp.fc1, blocks[2]), or a module name from the catalogue"
    )


def _check_disjoint(units: Sequence[Unit]) -> None:
    seen: dict[str, list[tuple[tuple[int, int] | None, str]]] = {}
    for u in units:
        for t in u.tensors:
            for rows, owner in seen.get(t.param, []):
                if rows is None or t.rows is None or (rows[0] < t.rows[1] and t.rows[0] < rows[1]):
                    raise PetlError(f"targets {owner!r} and {u.name!r} overlap (both cover {t.param!r}); pick one")
            seen.setdefault(t.param, []).append((t.rows, u.name))


def describe_targets(units: Sequence[Unit]) -> list[dict[str, object]]:
    """A plain table (list of rows) of units: name, module, rows, shape, parameters."""
    return [
        {
            "unit": u.name,
            "module": u.module,
            "rows": f"{u.rows[0]}:{u.rows[1]}" if u.rows else "all",
            "shape": "x".join(map(str, u.weight.shape)),
            "params": u.numel,
        }
        for u in units
    ]
