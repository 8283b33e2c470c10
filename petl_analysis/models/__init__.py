"""Model layer: timm ViT creation and weights, the bundled default, and the submodule catalogue."""

from . import dinov2  # noqa: F401  registers the "dinov2-s14" weights (imports no onnx)
from .bundled import BUNDLED_ARCH, BUNDLED_MODEL, bundled_weights_path
from .catalogue import (
    DEFAULT_PROBE_TARGETS,
    GROUPS,
    LEAF_KINDS,
    UNIT_KINDS,
    TensorSlice,
    Unit,
    catalogue,
    describe_targets,
    resolve_targets,
)
from .factory import (
    WEIGHTS_SOURCES,
    ModelSpec,
    WeightsLoad,
    build_model,
    checkpoint_filter,
    create_model,
    load_weights,
    model_input_config,
    save_weights,
    spec_with_load,
)
from .sources import WEIGHT_SOURCES, WeightSource, register_weight_source

__all__ = [
    "BUNDLED_ARCH",
    "BUNDLED_MODEL",
    "DEFAULT_PROBE_TARGETS",
    "GROUPS",
    "LEAF_KINDS",
    "UNIT_KINDS",
    "WEIGHTS_SOURCES",
    "WEIGHT_SOURCES",
    "ModelSpec",
    "TensorSlice",
    "Unit",
    "WeightSource",
    "WeightsLoad",
    "build_model",
    "bundled_weights_path",
    "catalogue",
    "checkpoint_filter",
    "create_model",
    "describe_targets",
    "load_weights",
    "model_input_config",
    "register_weight_source",
    "resolve_targets",
    "save_weights",
    "spec_with_load",
]
