"""probe -> [validate] -> select -> plan -> sweep -> report in one call, each stage's artefact saved and reused if
present.

Layout of ``out_dir``::

    probe.json (+ probe.json.trials.jsonl)   the ProbeResult (resumable trial log beside it)
    ranking.json                              the Ranking (d90, with proxy correlations)
    plans/plan_<budget>_<method>-<variant>.json, plans/plan_<method>.json
                                              every Plan the sweep trains (plan.points), one file each
    sweep.json (+ sweep.json.trials.jsonl)    the SweepResult
    sweep.json.adapters/<plan file stem>/     each point's adapter (best seed by validation; load_adapter reads it)
    validation.json (optional)                the validate stage (``PipelineConfig.validation``) or ``petl-analyze
                                              validate``; the report shows it when present
    report/                                   report.md, report.html, PNGs, CSVs

Rerunning the same call after an interruption skips every finished stage and every finished trial. Plan files
already in ``plans/`` are kept, and the sweep trains what the files say: an edited plan is what gets trained.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .constraints import ListOf, Satisfies, Unset, validate_fields
from .engine import Recipe
from .io import ensure_writable_dir
from .models import ModelSpec
from .plan import DEFAULT_METHODS, Plan
from .plan.budgets import Budget, BudgetLike, BudgetSpec
from .probe import ProbeConfig, ProbeResult
from .select import Ranking
from .study import Study
from .sweep import SweepResult
from .sweep.sweep import SEEDS_CONSTRAINTS, SEEDS_MEANING, check_method_lr
from .task import DataSpec
from .trials import TrialRecord
from .validate.run import ValidateConfig

if TYPE_CHECKING:
    from .validate import ValidationResult


@dataclass
class PipelineConfig:
    """Everything ``run`` needs beyond the model and data (recorded in the report).

    ``budgets``: counts or text (``8k``, ``0.05%``: see :mod:`~petl_analysis.plan.budgets`); None or empty: the
    model's defaults (:func:`~petl_analysis.plan.budgets.default_budgets`: 2k, 8k, 32k for the bundled model).
    ``validation``: when set, the validate stage runs after the probe with this
    :class:`~petl_analysis.validate.ValidateConfig`: the selectors judged against the oracle on split B, so
    ``probe_data`` must be split A (``SplitSpec(part="A")``)."""

    budgets: list[BudgetLike] | None = None
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    proxies: list[str] = field(default_factory=lambda: ["rgn", "fisher", "kappa", "random"])
    seeds: int = 3
    recipe: Recipe | None = None
    head_in_budget: bool = False
    probe_data: DataSpec | None = None  # probe on another split (e.g. full data) than the sweep's few-shot one
    all_seed_adapters: bool = False  # keep every seed's adapter, not only the best one by validation
    validation: ValidateConfig | None = None
    #: Methods the sweep trains at their own learning rate (``{"full": 1e-5}``), the others at ``recipe``'s.
    method_lr: dict[str, float] = field(default_factory=dict)

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "budgets": [ListOf([int, str, BudgetSpec, Budget], what="budgets"), str, Unset("the model's defaults")],
        "methods": [ListOf(str, what="method names")],
        "probe": [ProbeConfig],
        "proxies": [ListOf(str, what="selector names")],
        **SEEDS_CONSTRAINTS,
        "recipe": [Recipe, Unset("each stage's default recipe")],
        "head_in_budget": ["boolean"],
        "probe_data": [DataSpec, Unset("the sweep's data")],
        "all_seed_adapters": ["boolean"],
        "validation": [ValidateConfig, Unset("no validate stage")],
        "method_lr": [Satisfies(lambda v: isinstance(v, dict), "a dict of method name to learning rate")],
    }
    _field_meanings: ClassVar[dict[str, str]] = SEEDS_MEANING

    def __post_init__(self) -> None:
        validate_fields(self)  # the seeds before the probe, not after it
        check_method_lr(self.method_lr, self.methods, "PipelineConfig.method_lr")


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` returns: each stage's artefact (also written under ``out_dir``) and its wall time."""

    out_dir: Path
    probe: ProbeResult
    ranking: Ranking
    plans: list[Plan]
    sweep: SweepResult
    report_html: Path | None
    stage_times: dict[str, float]
    validation: ValidationResult | None = None


def run_pipeline(
    model: ModelSpec,
    data: DataSpec,
    config: PipelineConfig,
    out_dir: str | Path,
    *,
    device: str = "cpu",
    n_jobs: int = 1,
    backend: str = "loky",
    scheduler: str | None = None,
    compile: bool = False,
    grad_checkpointing: bool = False,
    log_to: str | None = None,
    on_stage: Callable[[str, bool], None] | None = None,
    on_trial: Callable[[TrialRecord, bool], None] | None = None,
    commands: Sequence[str] = (),
) -> PipelineResult:
    """Run (or resume) the whole pipeline; ``on_stage(name, cached)`` is called as each stage starts."""
    study = Study(
        model,
        data,
        ensure_writable_dir(out_dir),
        device=device,
        n_jobs=n_jobs,
        backend=backend,
        scheduler=scheduler,
        compile=compile,
        grad_checkpointing=grad_checkpointing,
        log_to=log_to,
        on_trial=on_trial,
        on_stage=on_stage,
    )
    return run_study(study, config, commands)


def run_study(study: Study, config: PipelineConfig, commands: Sequence[str] = ()) -> PipelineResult:
    """Every stage of ``study`` into its ``out_dir``; a stage whose artefact is there is read, not rerun."""
    times: dict[str, float] = {}

    def timed(name: str, stage: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        value = stage()
        times[name] = time.perf_counter() - t
        return value

    probe = timed("probe", lambda: _probe(study, config))
    validation = timed("validate", lambda: _validate(study, config, probe)) if config.validation is not None else None
    ranking = timed("select", lambda: _select(study, config, probe))
    plans, skipped, budgets = timed("plan", lambda: _plan(study, config, ranking))
    sweep = timed("sweep", lambda: _sweep(study, config, plans, skipped, budgets, commands))
    files = timed("report", lambda: _report(study, sweep, probe, ranking, commands))
    html = getattr(files, "html", None)
    return PipelineResult(study.out_dir, probe, ranking, plans, sweep, html, times, validation)


def _cached(study: Study, name: str, path: Path) -> bool:
    """Whether stage ``name``'s artefact is already at ``path`` (told to ``on_stage``)."""
    cached = path.exists()
    if study.on_stage:
        study.on_stage(name, cached)
    return cached


def _probe(study: Study, config: PipelineConfig) -> ProbeResult:
    path = study.path("probe.json")
    if _cached(study, "probe", path):
        return ProbeResult.load(path)
    probe_study = study.with_data(config.probe_data) if config.probe_data else study
    return probe_study.probe(config.probe, out=path)


def _validate(study: Study, config: PipelineConfig, probe: ProbeResult) -> ValidationResult:
    """The selectors judged on split B against the oracle (the probe's model; the judge's data is the probe's other
    half, chosen by :func:`~petl_analysis.validate.run.validate_probe`)."""
    path = study.path("validation.json")
    if _cached(study, "validate", path):
        from .validate import ValidationResult

        return ValidationResult.load(path)
    source = str(study.path("probe.json"))
    return study.with_data(probe.data, probe.model).validate(
        probe, out=path, config=config.validation, probe_source=source
    )


def _select(study: Study, config: PipelineConfig, probe: ProbeResult) -> Ranking:
    path = study.path("ranking.json")
    if _cached(study, "select", path):
        return Ranking.load(path)
    return study.with_data(probe.data, probe.model).select(
        probe, config.proxies, source=str(study.path("probe.json")), out=path
    )


def _plan(study: Study, config: PipelineConfig, ranking: Ranking) -> tuple[list[Plan], list[str], list[int]]:
    if study.on_stage:
        study.on_stage("plan", False)
    plans, skipped, budgets = study.plan(
        config.budgets,
        config.methods,
        ranking,
        head_in_budget=config.head_in_budget,
        ranking_source=str(study.path("ranking.json")),
        plans_dir=study.path("plans"),
    )
    if study.on_stage:
        for note in skipped:
            study.on_stage(f"plan skipped: {note}", False)
    return plans, skipped, budgets


def _sweep(
    study: Study,
    config: PipelineConfig,
    plans: list[Plan],
    skipped: list[str],
    budgets: list[int],
    commands: Sequence[str],
) -> SweepResult:
    path = study.path("sweep.json")
    if _cached(study, "sweep", path):
        return SweepResult.load(path)
    return study.sweep(
        plans,
        out=path,
        budgets=budgets,
        methods=config.methods,
        skipped=skipped,
        seeds=config.seeds,
        recipe=config.recipe,
        head_in_budget=config.head_in_budget,
        ranking_source=str(study.path("ranking.json")),
        plans_source=str(study.path("plans")),
        command=" && ".join(commands),
        all_seeds=config.all_seed_adapters,
        method_lr=config.method_lr,
    )


def _report(study: Study, sweep: SweepResult, probe: ProbeResult, ranking: Ranking, commands: Sequence[str]) -> Any:
    """The report; a validation study of this run (``petl-analyze validate --probe probe.json``) joins it when
    present."""
    if study.on_stage:
        study.on_stage("report", False)
    validation_path = study.path("validation.json")
    validation = None
    if validation_path.exists():
        from .validate import ValidationResult

        validation = ValidationResult.load(validation_path)
        commands = [*commands, validation.command] if validation.command else commands
    return study.report(sweep, probe, ranking=ranking, validation=validation, commands=list(commands))
