"""Pure tensor maths (no module state, no I/O): transforms, factorisations, projections' building blocks."""

from .fastfood import Fastfood, Workspace, fastfood, fastfood_indices, fastfood_transpose
from .hadamard import FWHT, fwht, fwht_destructive, hadamard_matrix, is_power_of_two

__all__ = [
    "FWHT",
    "Fastfood",
    "Workspace",
    "fastfood",
    "fastfood_indices",
    "fastfood_transpose",
    "fwht",
    "fwht_destructive",
    "hadamard_matrix",
    "is_power_of_two",
]
