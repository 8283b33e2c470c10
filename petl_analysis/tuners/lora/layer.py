"""The LoRA delta module."""

from __future__ import annotations

import math

import torch
from torch import nn

from ...accounting import AdapterModule
from ..deltas import DeltaMixin


class LoraDelta(DeltaMixin, AdapterModule):
    """``ΔW = scaling · lora_B @ lora_A``; ``lora_A`` ``(r, d_in)`` kaiming-uniform (as peft), ``lora_B``
    ``(d_out, r)`` zero, so ``ΔW = 0`` at init and ``lora_B`` gets gradient from the first step."""

    def __init__(self, out_features: int, in_features: int, r: int, scaling: float, dropout: float) -> None:
        super().__init__()
        self.scaling, self.dropout = scaling, dropout
        self.lora_A = nn.Parameter(torch.empty(r, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def delta(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling

    def extra_repr(self) -> str:
        return (
            f"out={self.lora_B.shape[0]}, in={self.lora_A.shape[1]}, r={self.lora_A.shape[0]}, scaling={self.scaling}"
        )
