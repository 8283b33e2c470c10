"""Compacter: PHM bottleneck adapter with a shared Kronecker rule tensor."""

from .config import CompacterConfig
from .layer import CompacterAdapter, PhmLinear, PhmRule
from .model import Compacter

__all__ = ["Compacter", "CompacterAdapter", "CompacterConfig", "PhmLinear", "PhmRule"]
