"""Visual prompt tuning (shallow and deep)."""

from .config import VptConfig
from .layer import VisualPrompts
from .model import Vpt

__all__ = ["VisualPrompts", "Vpt", "VptConfig"]
