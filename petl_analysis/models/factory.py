"""Create timm Vision Transformers by name and load their weights, offline by default.

Weights come from exactly one of: a local file (``.safetensors``; ``.pth``/``.pt`` read with ``weights_only=True``),
timm's hub (``pretrained=True``; needs network), the bundled default (for the bundled model), or nothing (random).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import timm
import torch
from torch import nn

from ..accounting import classifier
from ..errors import PetlError
from .bundled import BUNDLED_MODEL, bundled_weights_path
from .sources import find_weight_source, load_from_source

WEIGHTS_DEFAULT = "default"  # bundled weights for the bundled model, random otherwise
WEIGHTS_RANDOM = "random"
#: Named when a model is refused: architectures the catalogue and every method support.
SUPPORTED_EXAMPLES = (
    "vit_tiny_patch16_224", "deit_small_patch16_224", "beit_base_patch16_224", "eva02_tiny_patch14_224",
)
#: Channel counts a model may take: images are converted to grayscale (1) or RGB (3).
IMAGE_CHANNELS = (1, 3)


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model in another process: a name, size overrides and a weights source.

    Stored in every artefact so a probe, plan or run can be reproduced and checked against the model it targets.
    ``weights`` is ``"default"``, ``"random"``, ``"hub"``, a path to a local checkpoint, or a named source
    (:mod:`.sources`, e.g. ``"dinov2-s14"``). ``weights_info`` is derived, not set: how a named source's weights
    are applied (e.g. the position-embedding resampling), so every artefact records it.
    """

    KEY_OMIT_IF_DEFAULT: ClassVar[tuple[str, ...]] = ("weights_info",)

    name: str = BUNDLED_MODEL
    weights: str = WEIGHTS_DEFAULT
    img_size: int | None = None
    in_chans: int | None = None
    patch_size: int | None = None
    num_classes: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights_info: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        found = find_weight_source(self.weights) if isinstance(self.weights, str) else None
        self.weights_info = dict(found[0].record) if found else {}
        for key in ("img_size", "in_chans", "patch_size", "num_classes"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise PetlError(f"model {key} must be a positive integer; got {value!r}")
        if self.in_chans is not None and self.in_chans not in IMAGE_CHANNELS:
            raise PetlError(f"model in_chans must be 1 (grayscale) or 3 (RGB), the channel counts images convert to; "
                            f"got {self.in_chans}")
        if self.img_size is not None and self.patch_size is not None:
            _check_patch_grid(self.name, self.img_size, self.patch_size)

    def model_id(self) -> str:
        """A short human-readable identity (name + weights + overrides)."""
        parts = [self.name, f"weights={self.weights}"]
        for k in ("img_size", "in_chans", "patch_size"):
            v = getattr(self, k)
            if v is not None:
                parts.append(f"{k}={v}")
        return ",".join(parts)


def _check_patch_grid(name: str, img_size: int, patch_size: int) -> None:
    if img_size % patch_size:
        lower = img_size - img_size % patch_size
        near = f"{lower} or {lower + patch_size}" if lower else f"{patch_size}"
        raise PetlError(f"model {name!r}: img_size {img_size} is not a multiple of patch_size {patch_size}; "
                        f"use img_size {near}, or another patch_size")


def _check_name(name: str) -> None:
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8] if name else []
        hint = f"; similar: {', '.join(close)}" if close else "; see `timm.list_models('vit*')`"
        raise PetlError(f"unknown model {name!r}: not a timm model name{hint}")


def _has_transformer_blocks(model: nn.Module) -> bool:
    blocks = getattr(model, "blocks", None)
    return isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) > 0 and any(
        hasattr(b, "attn") and hasattr(b, "mlp") for b in blocks
    )


def create_model(spec: ModelSpec | str = BUNDLED_MODEL, **overrides: Any) -> nn.Module:
    """Build a timm ViT-family model and load its weights.

    Args:
        spec: a :class:`ModelSpec` or a timm model name. Keyword ``overrides`` replace spec fields
            (``weights``, ``img_size``, ``in_chans``, ``patch_size``, ``num_classes``).

    Returns:
        The model in eval mode, on CPU, float32. Its ``pretrained_cfg`` carries mean/std/input size.

    Raises:
        PetlError: unknown name, a model without transformer blocks, or a checkpoint of the wrong shape.
    """
    if isinstance(spec, str):
        spec = ModelSpec(name=spec)
    if overrides:
        spec = ModelSpec(**{**spec.__dict__, **overrides})
    _check_name(spec.name)
    kwargs: dict[str, Any] = dict(spec.kwargs)
    for key in ("img_size", "in_chans", "patch_size", "num_classes"):
        value = getattr(spec, key)
        if value is not None:
            kwargs[key] = value
    hub = spec.weights == "hub"
    try:
        model = timm.create_model(spec.name, pretrained=hub, **kwargs)
    except TypeError as e:
        raise PetlError(f"model {spec.name!r} does not accept these options {sorted(kwargs)}: {e}") from None
    except (AssertionError, ValueError) as e:  # timm's own checks of sizes and shapes
        reason = str(e).strip() or type(e).__name__
        raise PetlError(f"model {spec.name!r} cannot be built with {kwargs}: {reason}") from None
    except (OSError, RuntimeError) as e:
        if hub:
            raise PetlError(f"could not fetch timm hub weights for {spec.name!r} (network needed): {e}") from None
        raise
    pe = getattr(model, "patch_embed", None)
    img, patch = getattr(pe, "img_size", None), getattr(pe, "patch_size", None)
    if isinstance(img, (tuple, list)) and isinstance(patch, (tuple, list)):
        for i, p in zip(img, patch):
            _check_patch_grid(spec.name, int(i), int(p))
    if not _has_transformer_blocks(model):
        kind = "a hierarchical (windowed, multi-stage) model" if hasattr(model, "layers") else "not a ViT-family model"
        raise PetlError(
            f"model {spec.name!r} is not supported: it has no flat list of attention+MLP transformer blocks "
            f"(`blocks`; it is {kind}); choose a plain ViT-family model such as {', '.join(SUPPORTED_EXAMPLES)}"
        )
    if find_weight_source(spec.weights) is not None:
        load_from_source(model, spec.name, spec.weights)
    elif spec.weights == WEIGHTS_DEFAULT and spec.name == BUNDLED_MODEL:
        path = bundled_weights_path()
        if path is not None:
            load_weights(model, path, ignore_head=spec.num_classes is not None)
    elif spec.weights not in (WEIGHTS_DEFAULT, WEIGHTS_RANDOM, "hub"):
        load_weights(model, spec.weights, ignore_head=False)
    return model.eval()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise PetlError(f"checkpoint {str(path)!r} is not a readable safetensors file: {e}") from None
    if suffix in (".pth", ".pt", ".bin", ".ckpt"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PetlError(
                f"checkpoint {str(path)!r} cannot be loaded safely with weights_only=True "
                f"(it needs arbitrary objects or is corrupt): {first}"
            ) from None
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise PetlError(f"checkpoint {str(path)!r} does not hold a state dict of tensors")
        return obj
    raise PetlError(f"checkpoint {str(path)!r}: unsupported file type {suffix!r}; expected .safetensors, .pth or .pt")


def load_weights(model: nn.Module, path: str | os.PathLike, *, ignore_head: bool = False) -> nn.Module:
    """Load a local checkpoint into ``model`` strictly, naming the first mismatch in a one-line error.

    ``ignore_head`` skips the classifier (a new task has another number of classes).
    """
    p = Path(path)
    if not p.is_file():
        raise PetlError(f"checkpoint {str(p)!r} does not exist")
    state = _read_state_dict(p)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    head_prefixes = _head_prefixes(model)
    if ignore_head:
        state = {k: v for k, v in state.items() if not k.startswith(head_prefixes)}
    missing = [k for k in own if k not in state and not (ignore_head and k.startswith(head_prefixes))]
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise PetlError(
            f"checkpoint {str(p)!r} has {len(unexpected)} tensor(s) the model does not, e.g. {unexpected[0]!r}: "
            "wrong architecture?"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise PetlError(
                f"checkpoint {str(p)!r}: tensor {k!r} has shape {tuple(v.shape)}, the model expects "
                f"{tuple(own[k].shape)} (check img_size/patch_size/in_chans/num_classes)"
            )
    if missing:
        raise PetlError(f"checkpoint {str(p)!r} lacks {len(missing)} tensor(s) of the model, e.g. {missing[0]!r}")
    model.load_state_dict(state, strict=not ignore_head)
    return model


def _head_prefixes(model: nn.Module) -> tuple[str, ...]:
    head = classifier(model)
    names = [n for n, m in model.named_modules() if m is head] if head is not None else []
    return tuple(f"{n}." for n in names if n) or ("head.",)


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """Save the model's state dict as safetensors (atomically)."""
    from safetensors.torch import save

    from ..io import atomic_write_bytes

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return atomic_write_bytes(path, save(state))


def model_input_config(model: nn.Module) -> dict[str, Any]:
    """Input size, channels, mean and std the model expects (from timm's pretrained_cfg / patch embed)."""
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    pe = getattr(model, "patch_embed", None)
    img_size = getattr(pe, "img_size", None)
    img = int(img_size[0]) if isinstance(img_size, (tuple, list)) else int(img_size or cfg.get("input_size", (3, 224))[1])
    proj = getattr(pe, "proj", None)
    in_chans = int(proj.in_channels) if isinstance(proj, nn.Conv2d) else int(cfg.get("input_size", (3,))[0])
    mean = tuple(cfg.get("mean", (0.5,) * in_chans))
    std = tuple(cfg.get("std", (0.5,) * in_chans))
    if len(mean) != in_chans:
        mean, std = (float(sum(mean) / len(mean)),) * in_chans, (float(sum(std) / len(std)),) * in_chans
    return {"img_size": img, "in_chans": in_chans, "mean": mean, "std": std}
