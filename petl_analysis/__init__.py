"""petl-analysis: which parts of a pretrained Vision Transformer to adapt, and how, under a parameter budget.

Pipeline: ``probe -> select -> plan -> train -> report``; each stage passes a versioned JSON artefact to the next.

The names in ``__all__`` are the public, stable API (see the docs page "API stability"); everything else, including
the subpackages' own ``__all__``, may change between minor releases. They are imported lazily (PEP 562), so
``import petl_analysis`` stays cheap: torch and timm load on first use of a name that needs them.
"""

from __future__ import annotations

from ._version import __version__
from .errors import PetlError

# Not typing.TYPE_CHECKING: importing typing would double the cost of this import. Type checkers and griffe treat
# the name as true, so they see the imports below; a test keeps them equal to _EXPORTS.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .accounting import count_parameters
    from .data import SplitSpec, open_dataset
    from .engine import Recipe
    from .models import ModelSpec, create_model
    from .pipeline import PipelineConfig, PipelineResult, run_pipeline
    from .plan import Plan, export_peft, plan_for_budget, plan_study, read_plans, validate_plan, write_plans
    from .probe import ProbeConfig, ProbeResult, default_probe_recipe, run_probe
    from .report import write_report
    from .select import Ranking, run_select
    from .sweep import SweepResult, run_sweep, sweep_plans
    from .task import DataSpec, prepare_model
    from .train import RunResult, default_train_recipe, run_method
    from .tuners import (
        AdapterConfig,
        BitFitConfig,
        CompacterConfig,
        FullConfig,
        KAdaptationConfig,
        LayerNormConfig,
        LinearConfig,
        LoraConfig,
        Method,
        MethodConfig,
        VptConfig,
        apply_method,
        config_from_dict,
        get_method,
        load_adapter,
        save_adapter,
    )
    from .validate import ValidationResult, run_validate

# Public name -> the module that defines it, in the order the API reference shows them (grouped by module).
_EXPORTS: dict[str, str] = {
    # Stages, in pipeline order
    "run_probe": "probe",
    "run_select": "select",
    "plan_for_budget": "plan",
    "plan_study": "plan",
    "run_method": "train",
    "run_sweep": "sweep",
    "sweep_plans": "sweep",
    "run_validate": "validate",
    "write_report": "report",
    "run_pipeline": "pipeline",
    # Inputs: what to run on and how
    "ModelSpec": "models",
    "create_model": "models",
    "DataSpec": "task",
    "prepare_model": "task",
    "SplitSpec": "data",
    "open_dataset": "data",
    "Recipe": "engine",
    "ProbeConfig": "probe",
    "default_probe_recipe": "probe",
    "default_train_recipe": "train",
    "PipelineConfig": "pipeline",
    # Artefacts (versioned JSON files)
    "ProbeResult": "probe",
    "Ranking": "select",
    "Plan": "plan",
    "read_plans": "plan",
    "write_plans": "plan",
    "validate_plan": "plan",
    "export_peft": "plan",
    "RunResult": "train",
    "SweepResult": "sweep",
    "ValidationResult": "validate",
    "PipelineResult": "pipeline",
    # Adaptation methods
    "apply_method": "tuners",
    "save_adapter": "tuners",
    "load_adapter": "tuners",
    "get_method": "tuners",
    "config_from_dict": "tuners",
    "Method": "tuners",
    "MethodConfig": "tuners",
    "KAdaptationConfig": "tuners",
    "LoraConfig": "tuners",
    "BitFitConfig": "tuners",
    "LayerNormConfig": "tuners",
    "AdapterConfig": "tuners",
    "CompacterConfig": "tuners",
    "VptConfig": "tuners",
    "LinearConfig": "tuners",
    "FullConfig": "tuners",
    "count_parameters": "accounting",
}

# Static (not derived from _EXPORTS) so linters and type checkers read it; a test keeps the two equal.
__all__ = [
    "AdapterConfig",
    "BitFitConfig",
    "CompacterConfig",
    "DataSpec",
    "FullConfig",
    "KAdaptationConfig",
    "LayerNormConfig",
    "LinearConfig",
    "LoraConfig",
    "Method",
    "MethodConfig",
    "ModelSpec",
    "PetlError",
    "PipelineConfig",
    "PipelineResult",
    "Plan",
    "ProbeConfig",
    "ProbeResult",
    "Ranking",
    "Recipe",
    "RunResult",
    "SplitSpec",
    "SweepResult",
    "ValidationResult",
    "VptConfig",
    "__version__",
    "apply_method",
    "config_from_dict",
    "count_parameters",
    "create_model",
    "default_probe_recipe",
    "default_train_recipe",
    "export_peft",
    "get_method",
    "load_adapter",
    "open_dataset",
    "plan_for_budget",
    "plan_study",
    "prepare_model",
    "read_plans",
    "run_method",
    "run_pipeline",
    "run_probe",
    "run_select",
    "run_sweep",
    "run_validate",
    "save_adapter",
    "sweep_plans",
    "validate_plan",
    "write_plans",
    "write_report",
]


def __getattr__(name: str) -> object:
    """Import a public name on first use (PEP 562) and cache it in the module."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
