"""KAdaptation: ``ΔW = s · Σ_i A_i ⊗ (u_i v_iᵀ)`` with rule matrices ``A_i`` shared across layers."""

from .config import KAdaptationConfig
from .layer import BiasShift, KronDelta, KronRules
from .model import KAdaptation, planned_ns, valid_ns

__all__ = ["BiasShift", "KAdaptation", "KAdaptationConfig", "KronDelta", "KronRules", "planned_ns", "valid_ns"]
