"""The bottleneck adapter module."""

from __future__ import annotations

import torch
from torch import nn

from ...accounting import AdapterModule
from ..modules import PostMlpAdapter, make_activation


class BottleneckAdapter(PostMlpAdapter, AdapterModule):
    """``h -> Up(act(Down(LN(h))))`` (the residual ``+ h`` is added by the hook); ``Up`` starts at zero."""

    def __init__(self, features: int, bottleneck: int, layernorm: bool, activation: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(features) if layernorm else nn.Identity()
        self.down = nn.Linear(features, bottleneck)
        self.act = make_activation(activation)
        self.up = nn.Linear(bottleneck, features)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(self.norm(h))))
