"""Injection of LoRA deltas (weight parametrisations) into the targeted units."""

from __future__ import annotations

from torch import nn

from ...errors import PetlError
from ...models.catalogue import Unit
from ..base import PLANNED, Added, Method, register_method
from ..deltas import attach_delta
from .config import LoraConfig
from .layer import LoraDelta


@register_method(display_name="LoRA", marker="D", sizing=PLANNED, peft_type="LORA")
class Lora(Method):
    """LoRA as a weight parametrisation: works on fused-qkv slices and on BEiT/EVA (which read ``qkv.weight``)."""

    config_class = LoraConfig
    config: LoraConfig

    def _check(self, model: nn.Module, units: list[Unit]) -> None:
        for u in units:
            if not u.is_linear:
                raise PetlError(f"lora targets linear weights; {u.name} is a {u.kind} (norm) unit")

    def _inject(self, model: nn.Module, units: list[Unit]) -> None:
        cfg = self.config
        for u in units:
            delta = LoraDelta(u.out_features, u.in_features, cfg.rank, cfg.scaling, cfg.dropout)
            attach_delta(model, u.weight.param, f"lora_{u.kind.replace('.', '_')}", delta, [u.weight.rows])

    def _added(self, model: nn.Module, units: list[Unit]) -> Added:
        return Added(adapter=sum(self.config.rank * (u.out_features + u.in_features) for u in units))
