"""Model layer: timm ViT creation and weights, the bundled default, and the submodule catalogue."""

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
from .factory import ModelSpec, create_model, load_weights, model_input_config, save_weights

__all__ = [
    "BUNDLED_ARCH",
    "BUNDLED_MODEL",
    "DEFAULT_PROBE_TARGETS",
    "GROUPS",
    "LEAF_KINDS",
    "UNIT_KINDS",
    "ModelSpec",
    "TensorSlice",
    "Unit",
    "bundled_weights_path",
    "catalogue",
    "create_model",
    "describe_targets",
    "load_weights",
    "model_input_config",
    "resolve_targets",
    "save_weights",
]
