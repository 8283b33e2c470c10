"""Sweep stage: the plans of a study trained over seeds (accuracy versus trainable parameters)."""

from ..plan import DEFAULT_METHODS
from .sweep import SweepPoint, SweepResult, check_seeds, run_sweep, sweep_plans, sweep_trial

__all__ = ["DEFAULT_METHODS", "SweepPoint", "SweepResult", "check_seeds", "run_sweep", "sweep_plans", "sweep_trial"]
