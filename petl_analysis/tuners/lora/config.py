"""Configuration of LoRA (Hu et al., 2022): ``ΔW = (alpha / rank) · B A``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..base import MethodConfig


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

    def validate(self) -> None:
        self._check_int("rank", 1)
        self._check_float("alpha")
        self._check_float("dropout", 0.0, 1.0, open_high=True)

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank
