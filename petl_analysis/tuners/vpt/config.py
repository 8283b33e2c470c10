"""Configuration of visual prompt tuning (Jia et al., 2022)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...constraints import Options
from ..base import DROPOUT, IGNORED_TARGETS, POSITIVE_INT, MethodConfig, method_name

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
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MethodConfig._parameter_constraints,
        "method": method_name("vpt"),
        "targets": [IGNORED_TARGETS],
        "num_prompts": [POSITIVE_INT],
        "mode": [Options(str, MODES)],
        "dropout": [DROPOUT],
    }
