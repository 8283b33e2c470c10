"""Validate stage: does a ranking predict what adapting each target set achieves (oracle, agreement, regret)?"""

from .agreement import Correlation, bootstrap_correlation, oracle_order, random_null, rank_correlation, top_k_overlap
from .result import Agreement, OracleEntry, PlanOutcome, SelectorRegret, ValidationResult
from .planted import PlantedTask, PlantedUnit, plant_unit, write_image_folder
from .run import (DEFAULT_METHODS, DEFAULT_SELECTORS, agreement_verdict, default_budgets, default_judge_recipe,
                  matched_budget, run_validate)

__all__ = [
    "Agreement",
    "Correlation",
    "DEFAULT_METHODS",
    "DEFAULT_SELECTORS",
    "OracleEntry",
    "PlanOutcome",
    "PlantedTask",
    "PlantedUnit",
    "SelectorRegret",
    "ValidationResult",
    "agreement_verdict",
    "bootstrap_correlation",
    "default_budgets",
    "default_judge_recipe",
    "matched_budget",
    "oracle_order",
    "plant_unit",
    "random_null",
    "rank_correlation",
    "run_validate",
    "top_k_overlap",
    "write_image_folder",
]
