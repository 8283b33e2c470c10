"""Adaptation methods (peft-like): one config dataclass + one :class:`Method` per method, in :data:`METHODS`.

=============== ============================================================ =============
name            what is trained                                               mergeable
=============== ============================================================ =============
``linear``      the head only                                                 (nothing)
``full``        every parameter                                               (nothing)
``bitfit``      biases of the targets (row slices of fused biases too)        yes
``layernorm``   weights and biases of the targeted norms                      (nothing)
``lora``        ``ΔW = (alpha/r) B A``                                        yes
``kadaptation`` ``ΔW = s Σ A_i ⊗ (u_i v_iᵀ)``, ``A_i`` shared across layers   yes
``adapter``     bottleneck adapter after the MLP                              no
``compacter``   PHM adapter after the MLP, shared rule tensor                 no
``vpt``         prompt tokens (shallow or deep)                               no
=============== ============================================================ =============

Weight-delta methods are ``torch.nn.utils.parametrize`` parametrisations on the weight tensors (see
:mod:`.deltas`), which is what makes them work on BEiT/EVA, whose attention reads ``qkv.weight`` directly.
"""

from .base import (
    FIXED,
    METHODS,
    PLANNED,
    Knob,
    Method,
    MethodConfig,
    apply_method,
    config_from_dict,
    config_from_settings,
    get_method,
    methods_sized,
    options_from_settings,
)
from .saving import (
    ADAPTER_FILE,
    ADAPTER_RECORD_FILE,
    base_fingerprint,
    load_adapter,
    read_adapter_record,
    save_adapter,
)

# The order of these imports is the order methods register, which is the order reports and help list them.
# isort: off
from .kadaptation import KAdaptation, KAdaptationConfig
from .lora import Lora, LoraConfig
from .adapter import Adapter, AdapterConfig
from .compacter import Compacter, CompacterConfig
from .vpt import Vpt, VptConfig
from .bitfit import BitFit, BitFitConfig
from .layernorm import LayerNormConfig, LayerNormTuning
from .linear import Full, FullConfig, Linear, LinearConfig
# isort: on

__all__ = [
    "ADAPTER_FILE",
    "ADAPTER_RECORD_FILE",
    "FIXED",
    "METHODS",
    "PLANNED",
    "Adapter",
    "AdapterConfig",
    "BitFit",
    "BitFitConfig",
    "Compacter",
    "CompacterConfig",
    "Full",
    "FullConfig",
    "KAdaptation",
    "KAdaptationConfig",
    "Knob",
    "LayerNormConfig",
    "LayerNormTuning",
    "Linear",
    "LinearConfig",
    "Lora",
    "LoraConfig",
    "Method",
    "MethodConfig",
    "Vpt",
    "VptConfig",
    "apply_method",
    "base_fingerprint",
    "config_from_dict",
    "config_from_settings",
    "get_method",
    "load_adapter",
    "methods_sized",
    "options_from_settings",
    "read_adapter_record",
    "save_adapter",
]
