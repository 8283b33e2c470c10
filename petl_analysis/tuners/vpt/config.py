"""Configuration of visual prompt tuning (Jia et al., 2022)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..base import MethodConfig

MODES = ("shallow", "deep")


@dataclass
class VptConfig(MethodConfig):
    """Learned prompt tokens inserted after the prefix (class/register) tokens and removed before pooling.

    Attributes:
        num_prompts: ``p`` tokens.
        mode: ``"shallow"``: inserted once, after the patch + position embedding (``p·D`` parameters);
            ``"deep"``: a fresh set replaces the prompt tokens before every block (``depth·p·D``).
        dropout: dropout on the prompt tokens in training mode (VPT: 0.1; one mask shared by the batch).

    ``targets`` is ignored. VPT changes attention from the first step, so it is not a no-op at init, and it cannot
    be merged. Supported: timm ``VisionTransformer``-like models with absolute position embeddings (not BEiT's
    relative position bias or EVA's rotary embeddings, whose tables fix the sequence length).
    """

    method: str = "vpt"
    targets: list[str] = field(default_factory=list)
    num_prompts: int = 8
    mode: str = "shallow"
    dropout: float = 0.0
    uses_targets: ClassVar[bool] = False

    def validate(self) -> None:
        self._check_int("num_prompts", 1)
        self._check_choice("mode", MODES)
        self._check_float("dropout", 0.0, 1.0, open_high=True)
