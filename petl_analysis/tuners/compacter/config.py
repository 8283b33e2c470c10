"""Configuration of Compacter (Karimi Mahabadi et al., 2021): a PHM bottleneck adapter after each MLP."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...constraints import Options
from ..base import POSITIVE_INT, MethodConfig, method_name
from ..modules import ACTIVATIONS


@dataclass
class CompacterConfig(MethodConfig):
    """``mlp(x) -> h + Up(act(Down(LN(h))))`` where ``Down`` and ``Up`` are PHM layers with weight
    ``W = Σ_{i=1..n} S_i ⊗ (u_i v_iᵀ)`` (``S``: ``n×n×n`` rule tensor; ``u_i v_iᵀ`` of rank ``rank``).

    Attributes:
        n: number of Kronecker terms; must divide the token width and ``bottleneck``.
        rank: rank of each ``u_i v_iᵀ`` (Compacter and PEViT: 1).
        bottleneck: width ``m`` of ``Down`` (PEViT: 64).
        shared_rule: one rule tensor ``S`` for every PHM layer of the model (Compacter, PEViT); otherwise one per
            PHM layer (two per block).
        train_rule: train ``S``. PEViT keeps it frozen at its random ``U(-1, 1)`` init (not counted); trained, it
            adds ``n³`` (shared, counted once) or ``n³`` per PHM layer.
        layernorm: the LayerNorm inside the adapter, as PEViT.
        activation: PEViT uses gelu_tanh.

    Per block (rule frozen): ``2D·layernorm + 2·rank·(D + m) + m + D``; PEViT (D=768, m=64, n=4, rank 1): 4,032.
    Init: factors glorot-uniform (gain √2, as PEViT), biases zero, and ``v`` of ``Up`` zero so the model is unchanged
    at init (PEViT did not zero it).
    """

    method: str = "compacter"
    targets: list[str] = field(default_factory=lambda: ["mlp"])
    n: int = 4
    rank: int = 1
    bottleneck: int = 8
    shared_rule: bool = True
    train_rule: bool = False
    layernorm: bool = True
    activation: str = "gelu_tanh"

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MethodConfig._parameter_constraints,
        "method": method_name("compacter"),
        "n": [POSITIVE_INT],
        "rank": [POSITIVE_INT],
        "bottleneck": [POSITIVE_INT],
        "shared_rule": ["boolean"],
        "train_rule": ["boolean"],
        "layernorm": ["boolean"],
        "activation": [Options(str, ACTIVATIONS)],
    }
