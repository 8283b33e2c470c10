"""Plan stage: from a ranking and a parameter budget to adaptation plan files; every plan a study trains."""

from .peft import export_peft, write_peft_adapter
from .plan import FIXED_SIZE, PLANNED_VARIANTS, SIZED, VARIANTS, Plan, PlannedTarget, validate_plan
from .planner import PLANNABLE, fixed_plan, plan_for_budget, reverse_ranking, smallest_plan_cost
from .points import (
    DEFAULT_METHODS,
    FIXED_SIZE_METHODS,
    KNOBS,
    PAPER_TARGETS,
    config_plan,
    plan_file_name,
    plan_files,
    plan_study,
    plans_dataset,
    read_plans,
    size_to_budget,
    study_order,
    write_plans,
)

__all__ = [
    "DEFAULT_METHODS",
    "FIXED_SIZE",
    "FIXED_SIZE_METHODS",
    "KNOBS",
    "PAPER_TARGETS",
    "PLANNABLE",
    "PLANNED_VARIANTS",
    "SIZED",
    "VARIANTS",
    "Plan",
    "PlannedTarget",
    "config_plan",
    "export_peft",
    "fixed_plan",
    "plan_file_name",
    "plan_files",
    "plan_for_budget",
    "plan_study",
    "plans_dataset",
    "read_plans",
    "reverse_ranking",
    "size_to_budget",
    "smallest_plan_cost",
    "study_order",
    "validate_plan",
    "write_peft_adapter",
    "write_plans",
]
