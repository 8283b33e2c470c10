"""PHM layers and the Compacter adapter."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ...accounting import AdapterModule
from ...functional.kron import kron_sum, low_rank
from ..modules import PostMlpAdapter, make_activation


class PhmRule(AdapterModule):
    """The rule tensor ``S`` (``n×n×n``), ``U(-1, 1)`` as PEViT; frozen unless ``trainable``."""

    def __init__(self, n: int, trainable: bool) -> None:
        super().__init__()
        self.S = nn.Parameter(torch.empty(n, n, n).uniform_(-1.0, 1.0), requires_grad=trainable)


class PhmLinear(AdapterModule):
    """``y = x Wᵀ + bias`` with ``W = Σ_i S_i ⊗ (u_i v_iᵀ)`` (``out × in``).

    Attributes:
        rule: the (possibly shared) :class:`PhmRule`.
        u: ``(n, out/n, r)``; v: ``(n, in/n, r)``; bias: ``(out,)``.
    """

    def __init__(self, rule: PhmRule, in_features: int, out_features: int, rank: int, zero_init: bool) -> None:
        super().__init__()
        n = rule.S.shape[0]
        self.rule = rule
        self.u = nn.Parameter(_glorot(n, out_features // n, rank))
        self.v = nn.Parameter(
            torch.zeros(n, in_features // n, rank) if zero_init else _glorot(n, in_features // n, rank)
        )
        self.bias = nn.Parameter(torch.zeros(out_features))

    def phm_weight(self) -> torch.Tensor:
        """``(out, in)``."""
        return kron_sum(self.rule.S, low_rank(self.u, self.v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.phm_weight(), self.bias)


def _glorot(n: int, rows: int, cols: int) -> torch.Tensor:
    bound = math.sqrt(2.0) * math.sqrt(6.0 / (rows + cols))
    return torch.empty(n, rows, cols).uniform_(-bound, bound)


class CompacterAdapter(PostMlpAdapter, AdapterModule):
    """``h -> Up(act(Down(LN(h))))`` with PHM ``Down``/``Up``; the hook adds the residual ``h``."""

    def __init__(
        self,
        features: int,
        bottleneck: int,
        rank: int,
        down_rule: PhmRule,
        up_rule: PhmRule,
        layernorm: bool,
        activation: str,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(features) if layernorm else nn.Identity()
        self.down = PhmLinear(down_rule, features, bottleneck, rank, zero_init=False)
        self.act = make_activation(activation)
        self.up = PhmLinear(up_rule, bottleneck, features, rank, zero_init=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(self.norm(h))))
