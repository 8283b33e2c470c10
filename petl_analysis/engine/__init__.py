"""The training engine shared by every stage."""

from .recipe import Recipe
from .train import EpochLog, FitResult, TrainingDiverged, evaluate, fit, loss_still_falling, seed_everything

__all__ = ["EpochLog", "FitResult", "Recipe", "TrainingDiverged", "evaluate", "fit", "loss_still_falling",
           "seed_everything"]
