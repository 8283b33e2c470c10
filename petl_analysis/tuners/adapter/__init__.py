"""Houlsby-style bottleneck adapter after the MLP."""

from .config import AdapterConfig
from .layer import BottleneckAdapter
from .model import Adapter

__all__ = ["Adapter", "AdapterConfig", "BottleneckAdapter"]
