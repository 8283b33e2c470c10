"""Configuration of KAdaptation (He et al., AAAI 2023): ``ΔW = s · Σ_{i=1..n} A_i ⊗ B_i``."""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Real
from typing import Any, ClassVar

from ...constraints import Interval, Options
from ..base import DROPOUT, POSITIVE_INT, MethodConfig, method_name

SHARING_MODES = ("type", "global", "none")
INITS = ("default", "pevit")


@dataclass
class KAdaptationConfig(MethodConfig):
    """KAdaptation: a sum of ``n`` Kronecker products added to each targeted weight (or q/k/v row slice).

    For a targeted ``W`` (``d_out × d_in``): ``ΔW = scale · Σ_i A_i ⊗ B_i`` (``torch.kron`` order, A outer), with
    ``A_i ∈ R^{n×n}`` the *rule* matrices (slow weights, shared across layers) and ``B_i = u_i v_iᵀ ∈
    R^{(d_out/n)×(d_in/n)}`` of rank ``rank`` (fast weights, one set per unit).

    Attributes:
        n: number of Kronecker terms and size of each ``A_i``; must divide ``d_out`` and ``d_in`` of every target.
        rank: rank ``r`` of each ``B_i``.
        scale: ``s``. With the default init, ``scale=1`` gives updates of the size LoRA gives with ``alpha = r``
            (see ``layer.py``). PEViT's 160 multiplies a delta added *after* q's ``1/sqrt(head_dim)`` scaling and uses
            another init, so it is not comparable.
        sharing: who shares a set of ``A_i``: ``"type"`` one set per unit kind (one for ``attn.q``, one for ``attn.v``:
            the paper), ``"global"`` one set for all targets, ``"none"`` one set per unit.
        a_factorised: ``A_i = a_i b_iᵀ`` (rank 1, ``2n²`` numbers per set, as PEViT) instead of full (``n³``).
        bias: add PEViT's per-layer bias ``b``: one trainable vector per block and output width, added to the output
            of *every* targeted unit of that block with that width (so q and v of a layer share one 768-vector, as
            in PEViT). Needs every target to own a bias of its output width (fused-qkv row slices, BEiT ``q_bias``).
        dropout: dropout probability on ``ΔW`` in training mode (PEViT: 0.5, never active in their loops).
        init: ``"default"``: ``A`` random, ``u`` random, ``v = 0``: ``ΔW = 0`` at step 0 and every factor learns
            from step 1. ``"pevit"``: the official code's init (``A ~ U(±0.01)``, ``u = v = 0``), under which ``A``,
            ``u`` and ``v`` get exactly zero gradient forever: only ``b`` and the head train.
    """

    method: str = "kadaptation"
    targets: list[str] = field(default_factory=lambda: ["attn.q", "attn.v"])
    n: int = 4
    rank: int = 1
    scale: float = 1.0
    sharing: str = "type"
    a_factorised: bool = True
    bias: bool = False
    dropout: float = 0.0
    init: str = "default"

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MethodConfig._parameter_constraints,
        "method": method_name("kadaptation"),
        "n": [POSITIVE_INT],
        "rank": [POSITIVE_INT],
        "scale": [Interval(Real, None, None)],
        "sharing": [Options(str, SHARING_MODES)],
        "a_factorised": ["boolean"],
        "bias": ["boolean"],
        "dropout": [DROPOUT],
        "init": [Options(str, INITS)],
    }
