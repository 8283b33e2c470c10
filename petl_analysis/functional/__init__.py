"""Pure tensor maths (no module state, no I/O): transforms, factorisations, projections' building blocks.

Bad arguments raise ``ValueError``, as any numerical library does; the modules that call these functions check
user input first and raise the one-line :class:`~petl_analysis.errors.PetlError` themselves.
"""

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
