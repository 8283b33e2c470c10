"""Injection of Compacter adapters after the targeted blocks' MLPs."""

from __future__ import annotations

from torch import nn

from ...errors import PetlError
from ...functional.kron import common_divisors
from ...models.catalogue import Unit
from ..base import Added, Knob, Method, register_method
from ..modules import embed_dim, mlp_blocks
from .config import CompacterConfig
from .layer import CompacterAdapter, PhmRule


@register_method(
    display_name="Compacter", marker="p", sizing=Knob("bottleneck", (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256))
)
class Compacter(Method):
    """Compacter after each targeted MLP. Adds non-linear modules, so it cannot be merged."""

    config_class = CompacterConfig
    config: CompacterConfig
    mergeable = False

    def _check(self, model: nn.Module, units: list[Unit]) -> None:
        mlp_blocks(units, self.name)
        d, m, n = embed_dim(model), self.config.bottleneck, self.config.n
        if d % n or m % n:
            valid = ", ".join(map(str, common_divisors(d, m)))
            raise PetlError(f"compacter n={n} must divide the width {d} and the bottleneck {m}; valid n: {valid}")

    def _inject(self, model: nn.Module, units: list[Unit]) -> None:
        cfg, width = self.config, embed_dim(model)
        shared = PhmRule(cfg.n, cfg.train_rule) if cfg.shared_rule else None
        for i in mlp_blocks(units, self.name):
            down_rule = shared or PhmRule(cfg.n, cfg.train_rule)
            up_rule = shared or PhmRule(cfg.n, cfg.train_rule)
            adapter = CompacterAdapter(
                width, cfg.bottleneck, cfg.rank, down_rule, up_rule, cfg.layernorm, cfg.activation
            )
            adapter.attach(model.blocks[i].mlp)

    def _added(self, model: nn.Module, units: list[Unit]) -> Added:
        cfg = self.config
        d, m, r = embed_dim(model), cfg.bottleneck, cfg.rank
        blocks = len(mlp_blocks(units, self.name))
        added = Added(adapter=blocks * (2 * d * cfg.layernorm + 2 * r * (d + m) + m + d))
        rule, rules = cfg.n**3, (1 if cfg.shared_rule else 2 * blocks)
        if not cfg.train_rule:
            added.frozen = rule * rules
        elif cfg.shared_rule and 2 * blocks > 1:
            added.shared = rule
        else:
            added.adapter += rule * rules
        return added
