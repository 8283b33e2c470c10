"""Sweep stage: the plans of a study trained over seeds (accuracy versus trainable parameters)."""

from ..plan import DEFAULT_METHODS
from .sweep import (
    SweepPoint,
    SweepResult,
    check_seeds,
    method_recipe,
    parse_method_lr,
    run_sweep,
    sweep_plans,
    sweep_trial,
)

__all__ = [
    "DEFAULT_METHODS",
    "SweepPoint",
    "SweepResult",
    "check_seeds",
    "method_recipe",
    "parse_method_lr",
    "run_sweep",
    "sweep_plans",
    "sweep_trial",
]
