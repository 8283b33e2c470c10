"""The bundled default backbone: a tiny timm ViT pretrained offline by ``scripts/pretrain_tiny_vit.py``.

It is registered with timm (``timm.create_model("petl_vit_tiny")`` works once ``petl_analysis`` is imported), so the
bundled model is just another timm name. 16x16 grayscale input with patch 4 gives 16 tokens: the measured sweet spot
for training speed on 2 CPU cores (see the model card, ``MODEL_CARD.md``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

BUNDLED_MODEL = "petl_vit_tiny"
BUNDLED_WEIGHTS_FILE = "petl_vit_tiny.safetensors"

#: Architecture of the bundled model. Changing it invalidates the committed weights.
BUNDLED_ARCH: dict[str, Any] = dict(
    img_size=16,
    patch_size=4,
    in_chans=1,
    embed_dim=64,
    depth=4,
    num_heads=4,
    mlp_ratio=4.0,
    class_token=False,
    global_pool="avg",
    num_classes=10,
)

_CFG = {
    "input_size": (1, 16, 16),
    "mean": (0.5,),
    "std": (0.5,),
    "num_classes": 10,
    "interpolation": "bilinear",
    "crop_pct": 1.0,
    "first_conv": "patch_embed.proj",
    "classifier": "head",
}


@register_model
def petl_vit_tiny(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """64-wide, 4-block ViT on 16x16 grayscale images (patch 4, average pooling, no class token)."""
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    if pretrained:
        raise ValueError("petl_vit_tiny has no hub weights; its bundled weights load through petl_analysis")
    model = VisionTransformer(**{**BUNDLED_ARCH, **kwargs})
    model.pretrained_cfg = {**_CFG, "input_size": (model.patch_embed.proj.in_channels, *model.patch_embed.img_size)}
    model.default_cfg = model.pretrained_cfg
    return model


def bundled_weights_path() -> Path | None:
    """Path of the committed pretrained weights, or ``None`` before they exist (the model is then random)."""
    path = Path(str(resources.files("petl_analysis.models") / "_weights" / BUNDLED_WEIGHTS_FILE))
    return path if path.is_file() else None
