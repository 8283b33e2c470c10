"""Plan stage: from a ranking and a parameter budget to an adaptation plan file."""

from .plan import Plan, PlannedTarget, export_peft, validate_plan
from .planner import PLANNABLE, fixed_plan, plan_for_budget, reverse_ranking

__all__ = ["PLANNABLE", "Plan", "PlannedTarget", "export_peft", "fixed_plan", "plan_for_budget", "reverse_ranking",
           "validate_plan"]
