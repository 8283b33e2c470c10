"""Configuration of LoRA (Hu et al., 2022): ``ΔW = (alpha / r) · B A``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..base import MethodConfig


@dataclass
class LoraConfig(MethodConfig):
    """LoRA on any linear catalogue target, including q/k/v row slices of a fused ``qkv``.

    Attributes:
        r: rank.
        alpha: the delta is scaled by ``alpha / r`` (default ``alpha = r``: scale 1; PEViT's baseline: r=4, alpha=128).
        dropout: dropout probability on ``ΔW`` in training mode. peft drops the *input* per sample; a weight
            parametrisation cannot, so this is DropConnect on the delta (one mask per step, shared by the batch).
    """

    method: str = "lora"
    targets: list[str] = field(default_factory=lambda: ["attn.q", "attn.v"])
    r: int = 4
    alpha: float = 4.0
    dropout: float = 0.0

    def validate(self) -> None:
        self._check_int("r", 1)
        self._check_float("alpha")
        self._check_float("dropout", 0.0, 1.0, open_high=True)

    @property
    def scaling(self) -> float:
        return self.alpha / self.r
