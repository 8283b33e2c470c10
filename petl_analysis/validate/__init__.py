"""Validate stage: does a ranking predict what adapting each target set achieves (oracle, agreement, regret)?"""

from .agreement import (
    Correlation,
    PermutationTest,
    agreement_stats,
    holm,
    image_bootstrap,
    oracle_order,
    permutation_test,
    random_null,
    rank_correlation,
    seed_span,
    top_k_overlap,
)
from .planted import PlantedRecord, PlantedTask, PlantedUnit, PlantedUnitStudy, plant_unit, write_image_folder
from .result import Agreement, Cost, OracleEntry, PlanOutcome, SelectorRegret, ValidationResult
from .run import (
    DEFAULT_METHODS,
    DEFAULT_SELECTORS,
    agreement_verdict,
    default_budgets,
    default_judge_recipe,
    matched_budget,
    run_validate,
)

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_SELECTORS",
    "Agreement",
    "Correlation",
    "Cost",
    "OracleEntry",
    "PermutationTest",
    "PlanOutcome",
    "PlantedRecord",
    "PlantedTask",
    "PlantedUnit",
    "PlantedUnitStudy",
    "SelectorRegret",
    "ValidationResult",
    "agreement_stats",
    "agreement_verdict",
    "default_budgets",
    "default_judge_recipe",
    "holm",
    "image_bootstrap",
    "matched_budget",
    "oracle_order",
    "permutation_test",
    "plant_unit",
    "random_null",
    "rank_correlation",
    "run_validate",
    "seed_span",
    "top_k_overlap",
    "write_image_folder",
]
