"""Random-subspace reparametrisation of a set of model tensors: theta_S = theta0_S + P theta_d.

:class:`SubspaceModel` wraps a model without touching it: the base model stays a registered submodule (so
``.to()``, ``state_dict()`` and ``parameters()`` remain honest) and the forward pass substitutes the offset tensors
through :func:`torch.func.functional_call`. Row slices of a fused ``qkv`` get an offset only in their rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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
    scale_index: int  # which SAID scale multiplies this segment


def subspace_size(units: Sequence[Unit | TensorSlice]) -> int:
    """D: the number of parameters the units span (weights and biases, slices counted by their rows)."""
    return sum(t.numel for t in _unique_slices(units))


def _unique_slices(units: Sequence[Unit | TensorSlice]) -> list[TensorSlice]:
    seen: dict[tuple[str, tuple[int, int] | None], TensorSlice] = {}
    for u in units:
        for t in (u.tensors if isinstance(u, Unit) else (u,)):
            seen.setdefault((t.param, t.rows), t)
    return list(seen.values())


def all_parameters(model: nn.Module) -> list[TensorSlice]:
    """Every parameter of ``model`` as a slice: the *global* intrinsic dimension of Li et al. (2018)."""
    return [TensorSlice(name, None, tuple(p.shape)) for name, p in model.named_parameters()]


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
        segments, start = [], 0
        for i, t in enumerate(slices):
            segments.append(_Segment(t.param, t.rows, t.shape, start, start + t.numel, i))
            start += t.numel
            params[t.param].requires_grad_(False)
        self._segments = segments
        # Every name a substituted tensor is reachable under (tied weights share one Parameter), so the forward can
        # call functional_call with tie_weights=False: its own tie search walks the whole module tree on every
        # call, ~0.5 ms per step on the bundled ViT (3% of the step).
        names_of: dict[int, list[str]] = {}
        for name, p in model.named_parameters(remove_duplicate=False):
            names_of.setdefault(id(p), []).append(name)
        self._aliases = {seg.param: tuple(names_of[id(params[seg.param])]) for seg in segments}
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

    def offset(self) -> torch.Tensor:
        """The flat offset ``P theta_d`` of length D."""
        return self.projection(self.theta_d)

    def substituted_parameters(self) -> dict[str, torch.Tensor]:
        """Name -> ``theta0 + offset`` for every parameter touched by the subspace (differentiable in theta_d)."""
        flat = self.offset()
        base = {seg.param: self.model.get_parameter(seg.param) for seg in self._segments}
        deltas: dict[str, torch.Tensor] = {}
        # One split, not a slice per segment: split's backward is a single cat into the flat gradient, where each
        # slice's backward zero-fills a D-sized buffer (24 of them for ViT-Tiny's attn: 170 MB per step).
        pieces = torch.split(flat, [seg.stop - seg.start for seg in self._segments])
        for seg, piece in zip(self._segments, pieces):
            piece = piece.view(seg.shape)
            if self.said_scales is not None:
                piece = piece * (1.0 + self.said_scales[seg.scale_index])
            if seg.rows is None:
                delta = piece
            else:
                full = base[seg.param]
                pad_before = seg.rows[0]
                pad_after = full.shape[0] - seg.rows[1]
                # Zero rows around the slice; F.pad keeps it differentiable and allocation-light.
                pad = [0, 0] * (full.dim() - 1) + [pad_before, pad_after]
                delta = nn.functional.pad(piece, pad)
            deltas[seg.param] = deltas[seg.param] + delta if seg.param in deltas else delta
        return {name: base[name] + delta for name, delta in deltas.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        substituted = {alias: value for name, value in self.substituted_parameters().items()
                       for alias in self._aliases[name]}
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
