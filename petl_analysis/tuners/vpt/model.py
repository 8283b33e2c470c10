"""Injection of visual prompts with hooks on timm modules (no patched forwards)."""

from __future__ import annotations

import functools
import math

from torch import nn

from ...errors import PetlError
from ...models.catalogue import Unit
from ..base import METHODS, Added, Knob, Method, register_method
from ..modules import embed_dim
from .config import VptConfig
from .layer import VisualPrompts

PROMPTS_CHILD = "petl_prompts"


def token_free_methods() -> list[str]:
    """Offered when a model cannot take prompts: the registered methods that adapt targets and add no tokens."""
    return [
        name
        for name in METHODS.registered()
        if not METHODS.get(name).adds_tokens and METHODS.get(name).config_class.uses_targets
    ]


@register_method(
    display_name="VPT", marker="v", sizing=Knob("num_prompts", (1, 2, 4, 8, 16, 32, 64, 128)), adds_tokens=True
)
class Vpt(Method):
    """VPT: prompts enter through a forward hook on ``norm_pre`` (after patch + position embedding and patch
    dropout), deep prompts through forward pre-hooks on the blocks, and ``model.num_prefix_tokens`` grows by ``p``
    so timm's pooling (average or class token) and ``forward_intermediates`` ignore them."""

    config_class = VptConfig
    config: VptConfig
    mergeable = False

    def _check(self, model: nn.Module, units: list[Unit]) -> None:
        name = type(model).__name__
        instead = (
            f"use a ViT or DeiT with absolute position embeddings (e.g. vit_tiny_patch16_224), or a method "
            f"that adds no tokens ({', '.join(token_free_methods())})"
        )
        relative = any(hasattr(m, "relative_position_bias_table") for m in model.modules())
        if getattr(model, "rope", None) is not None or relative:
            tables = "relative position bias tables are" if relative else "rotary position embeddings are"
            raise PetlError(
                f"vpt cannot adapt {name}: its {tables} sized for a fixed number of tokens, and prompts "
                f"add tokens; {instead}"
            )
        missing = [a for a in ("norm_pre", "num_prefix_tokens", "blocks") if not hasattr(model, a)]
        if missing:
            raise PetlError(
                f"vpt cannot adapt {name}: prompts enter after the patch and position embedding of a timm "
                f"VisionTransformer (its {', '.join(missing)}), which {name} lacks; {instead}"
            )
        if getattr(model, "dynamic_img_size", False):
            raise PetlError(
                "vpt does not support dynamic_img_size=True (timm then resamples position embeddings "
                "using num_prefix_tokens, which the prompts change); build the model without it, or "
                f"use a method that adds no tokens ({', '.join(token_free_methods())})"
            )

    def _inject(self, model: nn.Module, units: list[Unit]) -> None:
        cfg = self.config
        width = embed_dim(model)
        sets = len(model.blocks) if cfg.mode == "deep" else 1
        prompts = VisualPrompts(
            sets, cfg.num_prompts, width, int(model.num_prefix_tokens), _init_bound(model, width), cfg.dropout
        )
        model.add_module(PROMPTS_CHILD, prompts)
        model.norm_pre.register_forward_hook(prompts.insert)
        for i in range(1, sets):
            model.blocks[i].register_forward_pre_hook(functools.partial(prompts.replace, i))
        model.num_prefix_tokens += cfg.num_prompts

    def _added(self, model: nn.Module, units: list[Unit]) -> Added:
        sets = len(model.blocks) if self.config.mode == "deep" else 1
        return Added(adapter=sets * self.config.num_prompts * embed_dim(model))


def _init_bound(model: nn.Module, width: int) -> float:
    """VPT's uniform bound ``sqrt(6 / (patch_numel + D))``, ``patch_numel = in_chans · patch_h · patch_w``."""
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    patch_numel = proj.weight[0].numel() if isinstance(proj, nn.Conv2d) else width
    return math.sqrt(6.0 / (patch_numel + width))
