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

from .adapter import Adapter, AdapterConfig
from .base import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
    METHODS,
    Method,
    MethodConfig,
    apply_method,
    config_from_dict,
    get_method,
    load_adapter,
    save_adapter,
)
from .bitfit import BitFit, BitFitConfig
from .compacter import Compacter, CompacterConfig
from .kadaptation import KAdaptation, KAdaptationConfig
from .layernorm import LayerNormConfig, LayerNormTuning
from .linear import Full, FullConfig, Linear, LinearConfig
from .lora import Lora, LoraConfig
from .vpt import Vpt, VptConfig

__all__ = [
    "ADAPTER_CONFIG_FILE",
    "ADAPTER_WEIGHTS_FILE",
    "METHODS",
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
    "config_from_dict",
    "get_method",
    "load_adapter",
    "save_adapter",
]
