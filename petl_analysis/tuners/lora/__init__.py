"""LoRA: ``ΔW = (alpha / r) · B A`` on linear weights or row slices."""

from .config import LoraConfig
from .layer import LoraDelta
from .model import Lora

__all__ = ["Lora", "LoraConfig", "LoraDelta"]
