"""Configuration of the Houlsby-style bottleneck adapter after each MLP (PEViT's placement)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...constraints import Options
from ..base import POSITIVE_INT, MethodConfig, method_name
from ..modules import ACTIVATIONS


@dataclass
class AdapterConfig(MethodConfig):
    """``mlp(x) -> h + Up(act(Down(LN(h))))``, one adapter per targeted block (``targets``: MLP units, e.g. ``mlp``
    or ``blocks[0-3].mlp``).

    Attributes:
        bottleneck: width ``m`` of ``Down`` (PEViT: 64).
        layernorm: the LayerNorm inside the adapter, as PEViT (counts ``2·D`` per adapter).
        activation: one of relu (PEViT), gelu, gelu_tanh, silu, identity.

    ``Up`` is zero-initialised (weight and bias) so the model is unchanged at init; PEViT used N(0, 0.02) for both.
    Per adapter: ``2D·layernorm + D·m + m + m·D + D`` parameters (PEViT, D=768, m=64: 100,672).
    """

    method: str = "adapter"
    targets: list[str] = field(default_factory=lambda: ["mlp"])
    bottleneck: int = 8
    layernorm: bool = True
    activation: str = "relu"

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MethodConfig._parameter_constraints,
        "method": method_name("adapter"),
        "bottleneck": [POSITIVE_INT],
        "layernorm": ["boolean"],
        "activation": [Options(str, ACTIVATIONS)],
    }
