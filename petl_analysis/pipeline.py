"""probe -> select -> plan -> sweep -> report in one call, each stage's artefact saved and reused if present.

Layout of ``out_dir``::

    probe.json (+ probe.json.trials.jsonl)   the ProbeResult (resumable trial log beside it)
    ranking.json                              the Ranking (d90, with proxy correlations)
    plans/plan_<budget>_<method>-<variant>.json, plans/plan_<method>.json
                                              every Plan the sweep trains (plan.points), one file each
    sweep.json (+ sweep.json.trials.jsonl)    the SweepResult
    sweep.json.adapters/<plan file stem>/     each point's adapter (best seed by validation; load_adapter reads it)
    validation.json (optional)                from ``petl-analyze validate``; the report shows it when present
    report/                                   report.md, report.html, PNGs, CSVs

Rerunning the same call after an interruption skips every finished stage and every finished trial. Plan files
already in ``plans/`` are kept, and the sweep trains what the files say: an edited plan is what gets trained.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .data import open_dataset
from .engine import Recipe
from .io import ensure_writable_dir
from .models import ModelSpec
from .plan import DEFAULT_METHODS, Plan, plan_study, read_plans, write_plans
from .plan.budgets import BudgetLike, resolve_budgets
from .probe import ProbeConfig, ProbeResult, run_probe
from .select import Ranking, run_select
from .sweep import SweepResult, check_seeds, sweep_plans
from .task import DataSpec, prepare_model
from .trials import TrialRecord


@dataclass
class PipelineConfig:
    """Everything ``run`` needs beyond the model and data (recorded in the report).

    ``budgets``: counts or text (``8k``, ``0.05%``: see :mod:`~petl_analysis.plan.budgets`); None or empty: the
    model's defaults (:func:`~petl_analysis.plan.budgets.default_budgets`: 2k, 8k, 32k for the bundled model)."""

    budgets: list[BudgetLike] | None = None
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    proxies: list[str] = field(default_factory=lambda: ["rgn", "fisher", "kappa", "random"])
    seeds: int = 3
    recipe: Recipe | None = None
    head_in_budget: bool = False
    probe_data: DataSpec | None = None  # probe on another split (e.g. full data) than the sweep's few-shot one
    all_seed_adapters: bool = False  # keep every seed's adapter, not only the best one by validation

    def __post_init__(self) -> None:
        check_seeds(self.seeds)  # before the probe, not after it


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
    on_stage: Callable[[str, bool], None] | None = None,
    on_trial: Callable[[TrialRecord, bool], None] | None = None,
    commands: Sequence[str] = (),
) -> PipelineResult:
    """Run (or resume) the whole pipeline; ``on_stage(name, cached)`` is called as each stage starts."""
    out = ensure_writable_dir(out_dir)
    times: dict[str, float] = {}

    def stage(name: str, path: Path) -> bool:
        cached = path.exists()
        if on_stage:
            on_stage(name, cached)
        return cached

    t = time.perf_counter()
    probe_path = out / "probe.json"
    if stage("probe", probe_path):
        probe = ProbeResult.load(probe_path)
    else:
        probe = run_probe(model, config.probe_data or data, config.probe, out=probe_path, device=device, n_jobs=n_jobs,
                          backend=backend, scheduler=scheduler, on_trial=on_trial)
    times["probe"] = time.perf_counter() - t

    t = time.perf_counter()
    ranking_path = out / "ranking.json"
    if stage("select", ranking_path):
        ranking = Ranking.load(ranking_path)
    else:
        ranking = run_select(probe, config.proxies, device=device, source=str(probe_path))
        ranking.save(ranking_path)
    times["select"] = time.perf_counter() - t

    t = time.perf_counter()
    plans_dir = out / "plans"
    if on_stage:
        on_stage("plan", False)
    net = prepare_model(model, open_dataset(data.dataset, skip_bad_images=data.skip_bad_images).num_classes)
    budgets = resolve_budgets(config.budgets, net, methods=config.methods, head_in_budget=config.head_in_budget)
    planned, skipped = plan_study(model, net, budgets, config.methods, ranking,
                                  head_in_budget=config.head_in_budget, ranking_source=str(ranking_path))
    if on_stage:
        for note in skipped:
            on_stage(f"plan skipped: {note}", False)
    plans = read_plans(write_plans(planned, plans_dir, dataset=data.dataset))
    times["plan"] = time.perf_counter() - t

    t = time.perf_counter()
    sweep_path = out / "sweep.json"
    if stage("sweep", sweep_path):
        sweep = SweepResult.load(sweep_path)
    else:
        sweep = sweep_plans(plans, data, model=model, budgets=[b.params for b in budgets], methods=config.methods,
                            skipped=skipped, seeds=config.seeds, recipe=config.recipe,
                            head_in_budget=config.head_in_budget, out=sweep_path, device=device, n_jobs=n_jobs,
                            backend=backend, scheduler=scheduler, on_trial=on_trial, ranking_source=str(ranking_path),
                            plans_source=str(plans_dir), command=" && ".join(commands),
                            all_seeds=config.all_seed_adapters)
    times["sweep"] = time.perf_counter() - t

    t = time.perf_counter()
    if on_stage:
        on_stage("report", False)
    from .report import write_report

    # A validation study of this run (petl-analyze validate --probe probe.json) joins the report when present.
    validation_path = out / "validation.json"
    validation = None
    if validation_path.exists():
        from .validate import ValidationResult

        validation = ValidationResult.load(validation_path)
        commands = [*commands, validation.command] if validation.command else commands
    files = write_report(sweep, probe, out / "report", ranking=ranking, validation=validation,
                         commands=list(commands))
    times["report"] = time.perf_counter() - t
    return PipelineResult(out, probe, ranking, plans, sweep, getattr(files, "html", None), times)
