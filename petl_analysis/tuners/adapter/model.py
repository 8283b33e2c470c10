"""Injection of bottleneck adapters after the targeted blocks' MLPs."""

from __future__ import annotations

from torch import nn

from ...models.catalogue import Unit
from ..base import Added, Knob, Method, register_method
from ..modules import embed_dim, mlp_blocks
from .config import AdapterConfig
from .layer import BottleneckAdapter


@register_method(
    display_name="Adapter",
    marker="s",
    sizing=Knob("bottleneck", (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)),
)
class Adapter(Method):
    """Houlsby-style adapter after each targeted MLP. Adds non-linear modules, so it cannot be merged."""

    config_class = AdapterConfig
    config: AdapterConfig
    mergeable = False

    def _check(self, model: nn.Module, units: list[Unit]) -> None:
        mlp_blocks(units, self.name)
        embed_dim(model)

    def _inject(self, model: nn.Module, units: list[Unit]) -> None:
        cfg, width = self.config, embed_dim(model)
        for i in mlp_blocks(units, self.name):
            BottleneckAdapter(width, cfg.bottleneck, cfg.layernorm, cfg.activation).attach(model.blocks[i].mlp)

    def _added(self, model: nn.Module, units: list[Unit]) -> Added:
        d, m = embed_dim(model), self.config.bottleneck
        per_block = 2 * d * self.config.layernorm + d * m + m + m * d + d
        return Added(adapter=per_block * len(mlp_blocks(units, self.name)))
