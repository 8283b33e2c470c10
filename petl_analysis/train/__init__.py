"""Train stage: one adaptation method or plan over seeds, as a RunResult."""

from .run import (
    MethodCount,
    RunResult,
    SeedRun,
    count_method,
    default_train_recipe,
    run_method,
    summarise,
    train_one_seed,
)

__all__ = [
    "MethodCount",
    "RunResult",
    "SeedRun",
    "count_method",
    "default_train_recipe",
    "run_method",
    "summarise",
    "train_one_seed",
]
