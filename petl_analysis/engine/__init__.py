"""The training engine shared by every stage."""

from .batches import Examples, is_in_memory, iter_batches, labels_of, num_examples, take
from .recipe import Recipe
from .train import EpochLog, FitResult, TrainingDiverged, evaluate, fit, loss_still_falling, seed_everything

__all__ = [
    "EpochLog",
    "Examples",
    "FitResult",
    "Recipe",
    "TrainingDiverged",
    "evaluate",
    "fit",
    "is_in_memory",
    "iter_batches",
    "labels_of",
    "loss_still_falling",
    "num_examples",
    "seed_everything",
    "take",
]
