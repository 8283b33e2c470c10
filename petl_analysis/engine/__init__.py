"""The training engine shared by every stage."""

from .batches import Examples, is_in_memory, iter_batches, labels_of, num_examples, take
from .recipe import Recipe
from .train import (
    EpochLog,
    FitResult,
    TrainingDiverged,
    epoch_listener,
    evaluate,
    evaluate_images,
    fit,
    loss_still_falling,
    pack_correct,
    seed_everything,
    unpack_correct,
)

__all__ = [
    "EpochLog",
    "Examples",
    "FitResult",
    "Recipe",
    "TrainingDiverged",
    "epoch_listener",
    "evaluate",
    "evaluate_images",
    "fit",
    "is_in_memory",
    "iter_batches",
    "labels_of",
    "loss_still_falling",
    "num_examples",
    "pack_correct",
    "seed_everything",
    "take",
    "unpack_correct",
]
