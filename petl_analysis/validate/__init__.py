"""Validate stage: does a ranking predict what adapting each target set achieves (oracle, agreement, regret)?"""

from .agreement import (Correlation, PermutationTest, agreement_stats, holm, image_bootstrap, oracle_order,
                        permutation_test, random_null, rank_correlation, seed_span, top_k_overlap)
from .result import Agreement, Cost, OracleEntry, PlanOutcome, SelectorRegret, ValidationResult
from .planted import PlantedTask, PlantedUnit, plant_unit, write_image_folder
from .run import (DEFAULT_METHODS, DEFAULT_SELECTORS, agreement_verdict, default_budgets, default_judge_recipe,
                  matched_budget, run_validate)

__all__ = [
    "Agreement",
    "Correlation",
    "Cost",
    "DEFAULT_METHODS",
    "DEFAULT_SELECTORS",
    "OracleEntry",
    "PlanOutcome",
    "PlantedTask",
    "PlantedUnit",
    "SelectorRegret",
    "ValidationResult",
    "agreement_verdict",
    "agreement_stats",
    "holm",
    "image_bootstrap",
    "permutation_test",
    "PermutationTest",
    "seed_span",
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
