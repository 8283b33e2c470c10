"""Configuration of LoRA (Hu et al., 2022): ``ΔW = (alpha / rank) · B A``."""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Real
from typing import Any, ClassVar

from ...constraints import Interval
from ..base import DROPOUT, POSITIVE_INT, MethodConfig, method_name


@dataclass
class LoraConfig(MethodConfig):
    """LoRA on any linear catalogue target, including q/k/v row slices of a fused ``qkv``.

    Attributes:
        rank: the rank of ``B A`` (peft's ``r``; a config that says ``r`` is read as ``rank``).
        alpha: the delta is scaled by ``alpha / rank`` (default ``alpha = rank``: scale 1; PEViT's baseline: rank 4,
            alpha 128).
        dropout: dropout probability on ``ΔW`` in training mode. peft drops the *input* per sample; a weight
            parametrisation cannot, so this is DropConnect on the delta (one mask per step, shared by the batch).
    """

    method: str = "lora"
    targets: list[str] = field(default_factory=lambda: ["attn.q", "attn.v"])
    rank: int = 4
    alpha: float = 4.0
    dropout: float = 0.0

    #: Option names of earlier versions, read as their new names (plans, sweeps and adapters saved before).
    RENAMED: ClassVar[dict[str, str]] = {"r": "rank"}
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MethodConfig._parameter_constraints,
        "method": method_name("lora"),
        "rank": [POSITIVE_INT],
        "alpha": [Interval(Real, None, None)],
        "dropout": [DROPOUT],
    }

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank
