"""LayerNorm tuning: train the weights and biases of the targeted norms (default: ``norm1``/``norm2`` of every
block; the final norm is outside the catalogue and stays frozen)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from ..errors import PetlError
from ..models.catalogue import Unit
from .base import FIXED, Added, Method, MethodConfig, method_name, register_method


@dataclass
class LayerNormConfig(MethodConfig):
    """Train the weights and biases of the LayerNorms in ``targets`` (default: ``norm1``/``norm2`` of every block)."""

    method: str = "layernorm"
    targets: list[str] = field(default_factory=lambda: ["norm"])
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MethodConfig._parameter_constraints,
        "method": method_name("layernorm"),
    }


@register_method(display_name="LayerNorm", marker="<", sizing=FIXED)
class LayerNormTuning(Method):
    config_class = LayerNormConfig

    def _check(self, model: nn.Module, units: list[Unit]) -> None:
        bad = [u for u in units if u.is_linear]
        if bad:
            raise PetlError(f"layernorm targets norm units (norm, norm1, norm2); {bad[0].name} is a {bad[0].kind}")

    def _inject(self, model: nn.Module, units: list[Unit]) -> None:
        for u in units:
            for t in u.tensors:
                model.get_parameter(t.param).requires_grad_(True)

    def _added(self, model: nn.Module, units: list[Unit]) -> Added:
        return Added(trainable_base={t.param for u in units for t in u.tensors})
