"""Sweep stage: accuracy versus trainable parameters over budgets and methods."""

from .sweep import DEFAULT_METHODS, SweepPoint, SweepResult, plan_sweep, run_sweep, sweep_trial

__all__ = ["DEFAULT_METHODS", "SweepPoint", "SweepResult", "plan_sweep", "run_sweep", "sweep_trial"]
