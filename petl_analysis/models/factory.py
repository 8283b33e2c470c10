"""Create timm Vision Transformers by name and load their weights, offline by default.

Weights come from exactly one source, named by ``ModelSpec.weights`` and dispatched through
:data:`WEIGHTS_SOURCES` (a name there) or read from a local file (anything else):

- ``default``: the bundled weights for the bundled model; for any other model timm's pretrained weights
  (``pretrained=True``: the local Hugging Face cache, or the network). When they cannot be had, a one-line error says
  so and what to pass instead: a silent random backbone would turn every later measurement into one of a random net.
- ``hub``: timm's pretrained weights, the same as ``default`` for a model that is not the bundled one.
- ``random``: timm's random initialisation (seeded by the caller).
- a path: a local checkpoint (``.safetensors``; ``.pth``/``.pt``/``.bin`` read with ``weights_only=True``), loaded the
  way timm loads pretrained weights: the model family's ``checkpoint_filter_fn`` converts other layouts (DINOv2, CLIP)
  and resamples the position embedding to the model's grid, a head of another class count (or none) is dropped, a
  3-channel stem is summed for 1-channel input.

What loading did is a :class:`WeightsLoad` on the model (``model.petl_weights``); :func:`spec_with_load` copies it into
the spec that artefacts store. Model names may be timm names or ``hf-hub:org/name`` (timm fetches the config and
weights from the Hugging Face hub, or reads its local cache offline).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any, ClassVar

import timm
import torch
from torch import nn

from ..accounting import classifier
from ..constraints import Interval, Options, Unset, validate_fields
from ..errors import PetlError
from .bundled import BUNDLED_MODEL, bundled_weights_path
from .sources import find_weight_source, load_from_source

logger = logging.getLogger(__name__)

WEIGHTS_DEFAULT = "default"  # bundled weights for the bundled model, timm's pretrained weights otherwise
WEIGHTS_RANDOM = "random"
WEIGHTS_HUB = "hub"
HF_HUB_PREFIX = "hf-hub:"
#: Named when a model is refused: architectures the catalogue and every method support.
SUPPORTED_EXAMPLES = (
    "vit_tiny_patch16_224",
    "deit_small_patch16_224",
    "beit_base_patch16_224",
    "eva02_tiny_patch14_224",
)
#: Channel counts a model may take: images are converted to grayscale (1) or RGB (3).
IMAGE_CHANNELS = (1, 3)
_SIZE = Interval(Integral, 1, None, closed="left")
#: Attribute of a created model holding its :class:`WeightsLoad`.
LOAD_ATTR = "petl_weights"
StateDict = dict[str, torch.Tensor]


@dataclass
class WeightsLoad:
    """What loading a model's weights did; recorded in every artefact's model spec (``model.load``).

    Attributes:
        source: ``bundled``, ``random``, ``timm-pretrained`` or ``file`` (or a named source, e.g. ``dinov2-s14``).
        location: where the weights came from: a file path, a Hugging Face hub id or a URL ("" when none).
        head: ``loaded`` (the checkpoint's classifier fits and was loaded), ``dropped`` (it has another class count:
            the model's head is freshly initialised), ``absent`` (the checkpoint has none) or ``new`` (random weights,
            or a head left out on purpose).
        checkpoint_classes: class count of the checkpoint's head (None without one, or not known).
        pos_embed_from, pos_embed_to: the position-embedding grid ``[h, w]`` of the checkpoint and the model's, when
            it was resampled (None otherwise; ``pos_embed_from`` None with ``pos_embed_to`` set: the source grid was
            not square).
        in_chans_from: input channels of the checkpoint's stem when it was adapted to the model's (None otherwise).
        pos_embed_method: how the position embedding was resampled, where a source fixes it (e.g. ``dinov2-s14``:
            bicubic without antialias, as its ONNX graph does); None where timm's loader chose.
        notes: anything else worth knowing (e.g. timm's own load messages).
    """

    source: str
    location: str = ""
    head: str = "new"
    checkpoint_classes: int | None = None
    pos_embed_from: list[int] | None = None
    pos_embed_to: list[int] | None = None
    in_chans_from: int | None = None
    pos_embed_method: str | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line, e.g. ``file w.pth; head dropped (1000 classes); position embedding resampled 14x14 -> 2x2``."""
        parts = [f"{self.source} {self.location}".strip()]
        if self.head == "dropped":
            parts.append(f"checkpoint head ({self.checkpoint_classes} classes) dropped, a new head is trained")
        elif self.head == "absent":
            parts.append("checkpoint has no head, a new head is trained")
        if self.pos_embed_to is not None:
            old = "x".join(map(str, self.pos_embed_from)) if self.pos_embed_from else "?"
            how = f" ({self.pos_embed_method})" if self.pos_embed_method else ""
            parts.append(f"position embedding resampled {old} -> {'x'.join(map(str, self.pos_embed_to))}{how}")
        if self.in_chans_from is not None:
            parts.append(f"stem adapted from {self.in_chans_from} input channels")
        return "; ".join(parts)


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model in another process: a name, size overrides and a weights source.

    Stored in every artefact so a probe, plan or run can be reproduced and checked against the model it targets.
    ``weights`` is ``"default"``, ``"random"``, ``"hub"``, another name of :data:`WEIGHTS_SOURCES` or a path to a
    local checkpoint. ``load`` is what loading did (a :class:`WeightsLoad`, filled by :func:`spec_with_load` for
    artefacts; None in a spec not yet built, and in artefacts written before it was recorded). It is a record, not an
    input: building ignores it and trial keys leave it out.
    """

    #: Left out of trial keys (:func:`~petl_analysis.artefacts.key_json`): a record of the load, not what to build.
    KEY_OMIT: ClassVar[tuple[str, ...]] = ("load",)

    name: str = BUNDLED_MODEL
    weights: str = WEIGHTS_DEFAULT
    img_size: int | None = None
    in_chans: int | None = None
    patch_size: int | None = None
    num_classes: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    load: WeightsLoad | None = None

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "name": [str],
        "weights": [str, os.PathLike],
        "img_size": [_SIZE, Unset("the model's default")],
        "in_chans": [Options(int, set(IMAGE_CHANNELS)), Unset("the model's default")],
        "patch_size": [_SIZE, Unset("the model's default")],
        "num_classes": [_SIZE, Unset("the model's default")],
        "kwargs": [dict],
        "load": [WeightsLoad, Unset("not recorded")],
    }

    def __post_init__(self) -> None:
        validate_fields(self)
        if isinstance(self.weights, str):
            find_weight_source(self.weights)  # a malformed named source ("dinov2-s14:") fails here, in one line
        if self.img_size is not None and self.patch_size is not None:
            _check_patch_grid(self.name, self.img_size, self.patch_size)


def spec_with_load(spec: ModelSpec, model: nn.Module) -> ModelSpec:
    """``spec`` with the record of what loading ``model``'s weights did: the form artefacts store."""
    return dataclasses.replace(spec, load=getattr(model, LOAD_ATTR, None))


def _check_patch_grid(name: str, img_size: int, patch_size: int) -> None:
    if img_size % patch_size:
        lower = img_size - img_size % patch_size
        near = f"{lower} or {lower + patch_size}" if lower else f"{patch_size}"
        raise PetlError(
            f"model {name!r}: img_size {img_size} is not a multiple of patch_size {patch_size}; "
            f"use img_size {near}, or another patch_size"
        )


def _check_name(name: str) -> None:
    if name.startswith(HF_HUB_PREFIX):
        if not re.fullmatch(r"[\w.-]+/[\w.-]+(@[\w./-]+)?", name[len(HF_HUB_PREFIX) :]):
            raise PetlError(
                f"model {name!r}: expected hf-hub:org/name (a Hugging Face hub repository of a timm model)"
            )
        return
    if not timm.is_model(name):
        # Closeness of the whole name (vit_tinyy_patch16_224 -> vit_tiny_patch16_224), not a shared prefix.
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6) if name else []
        hint = f"; similar: {', '.join(close)}" if close else "; see `timm.list_models('vit*')`"
        raise PetlError(f"unknown model {name!r}: not a timm model name (or hf-hub:org/name){hint}")


def _has_transformer_blocks(model: nn.Module) -> bool:
    blocks = getattr(model, "blocks", None)
    return (
        isinstance(blocks, (nn.Sequential, nn.ModuleList))
        and len(blocks) > 0
        and any(hasattr(b, "attn") and hasattr(b, "mlp") for b in blocks)
    )


def _timm_kwargs(spec: ModelSpec) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(spec.kwargs)
    for key in ("img_size", "in_chans", "patch_size", "num_classes"):
        value = getattr(spec, key)
        if value is not None:
            kwargs[key] = value
    return kwargs


def build_model(spec: ModelSpec, *, pretrained: bool = False) -> nn.Module:
    """The timm model of ``spec`` (``pretrained``: with timm's pretrained weights), checked to be a plain ViT.

    Weights sources call this; a bad name, size or architecture fails here, in one line, before any weights load."""
    kwargs = _timm_kwargs(spec)
    if pretrained:  # refuse a bad architecture before fetching weights for it
        _checked(spec, _timm_create(spec, kwargs, pretrained=False, device="meta"))
    return _checked(spec, _timm_create(spec, kwargs, pretrained=pretrained))


def _timm_create(spec: ModelSpec, kwargs: dict[str, Any], *, pretrained: bool, device: str | None = None) -> nn.Module:
    try:
        if device is None:
            return timm.create_model(spec.name, pretrained=pretrained, **kwargs)
        with torch.device(device):
            return timm.create_model(spec.name, pretrained=pretrained, **kwargs)
    except TypeError as e:
        raise PetlError(f"model {spec.name!r} does not accept these options {sorted(kwargs)}: {e}") from None
    except (AssertionError, ValueError) as e:  # timm's own checks of sizes and shapes
        reason = str(e).strip() or type(e).__name__
        raise PetlError(f"model {spec.name!r} cannot be built with {kwargs}: {_first_line(reason)}") from None
    except (OSError, RuntimeError) as e:
        if spec.name.startswith(HF_HUB_PREFIX) or pretrained:
            raise PetlError(_unavailable(spec, e)) from None
        raise


def _checked(spec: ModelSpec, model: nn.Module) -> nn.Module:
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
    return model


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _offline() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return False


def _unavailable(spec: ModelSpec, error: BaseException) -> str:
    """The one line saying pretrained weights (or an hf-hub config) cannot be had, and what to pass instead."""
    what = f"{type(error).__name__}: {_first_line(str(error))}".rstrip(": ")
    if "No pretrained weights exist" in str(error):
        why = "timm has none for it"
    elif _offline():
        why = "they are not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    else:
        why = f"they could not be fetched ({what})"
    hub = spec.name.startswith(HF_HUB_PREFIX)
    subject = "its config and weights" if hub else "pretrained weights"
    instead = (
        "run once with network to fill the Hugging Face cache, or use a timm model name with --weights random"
        if hub
        else "pass --weights random for random init, a local checkpoint path, or --weights hub with network"
    )
    if spec.name == "vit_small_patch14_dinov2":
        instead += ", or --weights dinov2-s14 (converted offline)"
    return f"model {spec.name!r}: {subject} unavailable: {why}; {instead}"


# -- weights sources ---------------------------------------------------------------------------------------------


def _random(spec: ModelSpec) -> nn.Module:
    model = build_model(spec)
    setattr(model, LOAD_ATTR, WeightsLoad(WEIGHTS_RANDOM))
    return model


def _default(spec: ModelSpec) -> nn.Module:
    if spec.name != BUNDLED_MODEL:
        return _timm_pretrained(spec)
    model = build_model(spec)
    path = bundled_weights_path()
    if path is None:  # only while the bundled weights are being made (scripts/pretrain_tiny_vit.py)
        setattr(model, LOAD_ATTR, WeightsLoad(WEIGHTS_RANDOM, notes=["bundled weights not found"]))
        return model
    load_weights(model, path, ignore_head=spec.num_classes is not None)
    setattr(model, LOAD_ATTR, dataclasses.replace(getattr(model, LOAD_ATTR), source="bundled", location=path.name))
    return model


def _timm_pretrained(spec: ModelSpec) -> nn.Module:
    """timm's pretrained weights (``pretrained=True``): its Hugging Face cache offline, else the network."""
    with _timm_messages() as messages:
        model = build_model(spec, pretrained=True)
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    location = cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file") or ""
    record = WeightsLoad("timm-pretrained", location=str(location), notes=messages)
    head = classifier(model)
    classes = cfg.get("num_classes")
    record.checkpoint_classes = int(classes) if isinstance(classes, int) and classes > 0 else None
    if head is not None and record.checkpoint_classes is not None:
        # timm's rule (load_pretrained): a head of another class count is discarded, the model's kept fresh.
        record.head = "loaded" if getattr(head, "out_features", None) == record.checkpoint_classes else "dropped"
    elif head is not None:
        record.head = "absent"
    for text in messages:
        grids = re.findall(r"(\d+), (\d+)", text)
        if text.startswith("Resized position embedding") and len(grids) == 2:
            record.pos_embed_from, record.pos_embed_to = [list(map(int, g)) for g in grids]
        channels = re.search(r"from (\d+) to (\d+) channel", text)
        if channels:
            record.in_chans_from = int(channels.group(1))
    setattr(model, LOAD_ATTR, record)
    return model


@contextmanager
def _timm_messages() -> Iterator[list[str]]:
    """timm's log lines while it loads pretrained weights (how it resampled and adapted them)."""
    lines: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger, handler = logging.getLogger("timm"), _Collect(logging.INFO)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _file(spec: ModelSpec) -> nn.Module:
    return load_weights(build_model(spec), spec.weights)


def _named_source(spec: ModelSpec) -> nn.Module:
    """A registered named source (:mod:`.sources`, e.g. ``dinov2-s14``): its loader fills the backbone."""
    model = build_model(spec)
    info = load_from_source(model, spec.name, spec.weights)
    record = WeightsLoad(
        info["source"],
        location=str(info.get("file", "")),
        head="absent",
        pos_embed_from=info.get("pos_embed_from"),
        pos_embed_to=info.get("pos_embed_to"),
        pos_embed_method=info.get("pos_embed_method"),
        notes=[f"{k}: {info[k]}" for k in ("sha256", "cache") if k in info],
    )
    setattr(model, LOAD_ATTR, record)
    return model


#: ``--weights NAME``: a function building the model of a spec with that source's weights (and its
#: :class:`WeightsLoad` on ``model.petl_weights``). A weights string not named here is a local checkpoint path.
WEIGHTS_SOURCES: dict[str, Callable[[ModelSpec], nn.Module]] = {
    WEIGHTS_DEFAULT: _default,
    WEIGHTS_RANDOM: _random,
    WEIGHTS_HUB: _timm_pretrained,
}


def create_model(spec: ModelSpec | str = BUNDLED_MODEL, **overrides: Any) -> nn.Module:
    """Build a timm ViT-family model and load its weights (see the module docstring for the sources).

    Args:
        spec: a :class:`ModelSpec` or a timm model name. Keyword ``overrides`` replace spec fields
            (``weights``, ``img_size``, ``in_chans``, ``patch_size``, ``num_classes``).

    Returns:
        The model in eval mode, on CPU, float32. Its ``pretrained_cfg`` carries mean/std/input size, its
        ``petl_weights`` what loading did (:class:`WeightsLoad`).

    Raises:
        PetlError: unknown name, a model without transformer blocks, pretrained weights that cannot be had, or a
            checkpoint of another architecture.
    """
    if isinstance(spec, str):
        spec = ModelSpec(name=spec)
    if overrides:
        spec = ModelSpec(**{**spec.__dict__, **overrides})
    _check_name(spec.name)
    build = _named_source if find_weight_source(spec.weights) else WEIGHTS_SOURCES.get(spec.weights, _file)
    model = build(spec)
    record = getattr(model, LOAD_ATTR, None)
    if record is not None and (
        record.head == "dropped"
        or record.pos_embed_to
        or record.in_chans_from
        or record.source not in (WEIGHTS_DEFAULT, WEIGHTS_RANDOM, "bundled")
    ):
        logger.info("model %r weights: %s", spec.name, record.describe())
    return model.eval()


# -- local checkpoints -------------------------------------------------------------------------------------------


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
        except Exception as e:
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


def checkpoint_filter(model: nn.Module) -> Callable[[StateDict, nn.Module], StateDict] | None:
    """timm's ``checkpoint_filter_fn`` of the model's family (the module defining its class or a base class): what
    ``timm.create_model(..., pretrained=True)`` applies to a checkpoint (layout conversion, position-embedding and
    patch-embedding resampling). None for a family without one."""
    for cls in type(model).__mro__:
        fn = getattr(sys.modules.get(cls.__module__), "checkpoint_filter_fn", None)
        if callable(fn):
            return fn
    return None


def _grid(model: nn.Module, tokens: int) -> list[int] | None:
    """The square patch grid of a position embedding with ``tokens`` rows (None when it is not square)."""
    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 0))
    side = math.isqrt(max(tokens - prefix, 0))
    return [side, side] if side * side == tokens - prefix and side else None


def load_weights(model: nn.Module, path: str | os.PathLike, *, ignore_head: bool = False) -> nn.Module:
    """Load a local checkpoint into ``model`` as timm loads pretrained weights; ``model.petl_weights`` says what was
    done (:class:`WeightsLoad`).

    The model family's :func:`checkpoint_filter` converts the layout (DINOv2, OpenAI/OpenCLIP) and resamples the
    position embedding to the model's grid; a 3-channel stem is adapted to a 1-channel model (timm's
    ``adapt_input_conv``); the checkpoint's head is loaded when it fits the model's, else (another class count, or
    ``ignore_head``) dropped, leaving the model's freshly initialised head. Every other tensor must match: a
    checkpoint of another architecture is a one-line error naming the first mismatch.
    """
    p = Path(path)
    if not p.is_file():
        raise PetlError(f"checkpoint {str(p)!r} does not exist")
    state = {k.removeprefix("module."): v for k, v in _read_state_dict(p).items()}
    record = WeightsLoad("file", location=str(p))
    own = model.state_dict()
    source_pos = state.get("pos_embed")
    if (fn := checkpoint_filter(model)) is not None:
        try:
            state = fn(state, model)
        except Exception as e:
            raise PetlError(
                f"checkpoint {str(p)!r} cannot be converted for model {type(model).__name__}: "
                f"{type(e).__name__}: {_first_line(str(e))}; wrong architecture?"
            ) from None
    target_pos = own.get("pos_embed")
    if (
        source_pos is not None
        and target_pos is not None
        and source_pos.ndim == 3
        and source_pos.shape[-1] == target_pos.shape[-1]
        and source_pos.shape[1] != target_pos.shape[1]
    ):
        record.pos_embed_from = _grid(model, source_pos.shape[1])
        record.pos_embed_to = list(getattr(model.patch_embed, "grid_size", None) or _grid(model, target_pos.shape[1]))
    _adapt_stem(model, state, record)
    head_prefixes = _head_prefixes(model)
    in_head = [k for k in state if k.startswith(head_prefixes)]
    head = classifier(model)
    weight = next((state[k] for k in in_head if k.endswith("weight") and state[k].ndim == 2), None)
    record.checkpoint_classes = int(weight.shape[0]) if weight is not None else None
    if not in_head:
        record.head = "absent" if head is not None else "new"
    elif ignore_head or any(k not in own or tuple(state[k].shape) != tuple(own[k].shape) for k in in_head):
        record.head = "new" if ignore_head else "dropped"
        state = {k: v for k, v in state.items() if k not in in_head}
    else:
        record.head = "loaded"
    missing = [k for k in own if k not in state and not k.startswith(head_prefixes)]
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
                f"{tuple(own[k].shape)} (check img_size/patch_size/in_chans and the architecture)"
            )
    if missing:
        raise PetlError(f"checkpoint {str(p)!r} lacks {len(missing)} tensor(s) of the model, e.g. {missing[0]!r}")
    model.load_state_dict(state, strict=record.head == "loaded")
    setattr(model, LOAD_ATTR, record)
    return model


def _adapt_stem(model: nn.Module, state: dict[str, torch.Tensor], record: WeightsLoad) -> None:
    """A checkpoint stem of another channel count (RGB weights, grayscale model) adapted as timm does."""
    from timm.models import adapt_input_conv

    key = "patch_embed.proj.weight"
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    if key not in state or not isinstance(proj, nn.Conv2d) or state[key].ndim != 4:
        return
    source, target = int(state[key].shape[1]), int(proj.in_channels)
    if source != target and source in IMAGE_CHANNELS and target in IMAGE_CHANNELS:
        state[key] = adapt_input_conv(target, state[key])
        record.in_chans_from = source


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
    img = (
        int(img_size[0])
        if isinstance(img_size, (tuple, list))
        else int(img_size or cfg.get("input_size", (3, 224))[1])
    )
    proj = getattr(pe, "proj", None)
    in_chans = int(proj.in_channels) if isinstance(proj, nn.Conv2d) else int(cfg.get("input_size", (3,))[0])
    mean = tuple(cfg.get("mean", (0.5,) * in_chans))
    std = tuple(cfg.get("std", (0.5,) * in_chans))
    if len(mean) != in_chans:
        mean, std = (float(sum(mean) / len(mean)),) * in_chans, (float(sum(std) / len(std)),) * in_chans
    return {"img_size": img, "in_chans": in_chans, "mean": mean, "std": std}
