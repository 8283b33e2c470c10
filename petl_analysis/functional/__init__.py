"""Pure tensor maths (no module state, no I/O): transforms, factorisations, projections' building blocks."""

from .hadamard import FWHT, fwht, fwht_destructive, hadamard_matrix, is_power_of_two

__all__ = ["FWHT", "fwht", "fwht_destructive", "hadamard_matrix", "is_power_of_two"]
