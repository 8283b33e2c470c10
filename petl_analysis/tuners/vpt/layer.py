"""The prompt module and its hooks."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...accounting import AdapterModule


class VisualPrompts(AdapterModule):
    """Prompt tokens ``(sets, p, D)`` for one model; set 0 is inserted, sets 1.. replace it before blocks 1...

    Attributes:
        prompts: ``(1, p, D)`` (shallow) or ``(depth, p, D)`` (deep).
        start: token index where prompts go (the model's original ``num_prefix_tokens``).
    """

    def __init__(self, sets: int, num_prompts: int, features: int, start: int, init_bound: float, dropout: float):
        super().__init__()
        self.prompts = nn.Parameter(torch.empty(sets, num_prompts, features).uniform_(-init_bound, init_bound))
        self.start, self.dropout = start, dropout

    def _tokens(self, i: int, x: torch.Tensor) -> torch.Tensor:
        p = self.prompts[i]
        if self.dropout > 0 and self.training:
            p = F.dropout(p, self.dropout, training=True)
        return p.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)

    def insert(self, module: nn.Module, args: tuple, x: torch.Tensor) -> torch.Tensor:
        """Forward hook on ``norm_pre``: ``[prefix, patches] -> [prefix, prompts, patches]``."""
        s = self.start
        return torch.cat((x[:, :s], self._tokens(0, x), x[:, s:]), dim=1)

    def replace(self, i: int, module: nn.Module, args: tuple) -> tuple:
        """Forward pre-hook on block ``i`` (deep mode): swap in prompt set ``i``."""
        x, rest = args[0], args[1:]
        s, p = self.start, self.prompts.shape[1]
        return (torch.cat((x[:, :s], self._tokens(i, x), x[:, s + p :]), dim=1), *rest)
