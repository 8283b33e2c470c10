"""Train stage: one adaptation method or plan over seeds, as a RunResult."""

from .run import RunResult, SeedRun, default_train_recipe, run_method, summarise, train_one_seed

__all__ = ["RunResult", "SeedRun", "default_train_recipe", "run_method", "summarise", "train_one_seed"]
