"""One study context that every stage driver takes: the model, the data, the output folder and how trials run.

A :class:`Study` is to the stages what peft's ``BaseTuner`` is to injection (one object that every step is a method
of) and what timm's ``build_model_with_cfg`` is to models (one funnel): it opens the dataset and builds the template
model with its head once, announces the input conversion once, names every trial log and runs the trials.

    study = Study(ModelSpec(), DataSpec("digits"), out_dir="runs/x")
    probe = study.probe(ProbeConfig())            # probe.json (+ trial log) under out_dir
    ranking = study.select(probe, ["rgn"])        # ranking.json
    plans, skipped, budgets = study.plan("8k", ["kadaptation"], ranking)
    sweep = study.sweep(plans)                    # sweep.json
    study.report(sweep, probe, ranking=ranking)   # report/

Stage functions (``probe_study``, ``rank_targets``, ``train_plans``, ``validate_probe``) take a study and return
their artefact; the study's methods save it (``out``, default: the stage's file under ``out_dir``). The older
functions (``run_probe``, ``run_select``, ``run_sweep``, ``sweep_plans``, ``run_validate``, ``run_pipeline``) build
a study and call these.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from .data import ImageDataset, ImageFiles, open_dataset
from .data.sources import DatasetItems, is_python_dataset
from .epoch_log import parse_log_target, prepare_epoch_log, with_epoch_log
from .errors import PetlError
from .models import ModelSpec
from .task import (
    DataSpec,
    InputConversion,
    announce,
    announce_removed,
    announce_split,
    data_record,
    dataset_identity,
    input_conversion,
    prepare_model,
)
from .trials import JsonlLog, MemoryLog, Trial, TrialRecord, open_trial_log, run_trials, trial_log_path

if TYPE_CHECKING:
    from .plan import Plan
    from .plan.budgets import BudgetLike
    from .probe import ProbeConfig, ProbeResult
    from .report.render import ReportFiles
    from .select import Ranking
    from .sweep import SweepResult
    from .validate import ValidationResult

PathLike = str | os.PathLike

#: What a study caches; :meth:`Study.with_data` hands it on when the dataset (and for the model, the model) is the
#: same.
_CACHED = ("dataset", "template", "conversion")


@dataclass
class Study:
    """The context of a study (see the module docstring).

    Attributes:
        model, data: what is studied; ``data``'s dataset is opened once, ``model`` built once with its head.
        out_dir: where the stages write their artefacts (``probe.json``, ``ranking.json``, ``plans/``,
            ``sweep.json``, ``validation.json``, ``report/``); None: nothing is written unless a stage is given
            ``out``.
        device, n_jobs, backend, scheduler: how trials run (:func:`~petl_analysis.trials.run_trials`); with
            ``device="cuda"`` the workers spread over the visible GPUs (:func:`~petl_analysis.device.worker_device`).
        compile, grad_checkpointing: how each training runs (:func:`~petl_analysis.engine.fit`'s options): handed to
            the workers outside the trial keys (they do not change what is trained), recorded in each result.
        log_to: where every trial's epochs are logged (``csv:PATH``, ``tensorboard:DIR``, ``mlflow[:EXPERIMENT]``;
            :mod:`~petl_analysis.epoch_log`), from the driver or the worker process that trains it.
        on_trial: called per finished or cached trial; ``on_stage(name, cached)`` as a pipeline stage starts.
    """

    model: ModelSpec
    data: DataSpec
    out_dir: Path | None = None
    device: str = "cpu"
    n_jobs: int = 1
    backend: str = "loky"
    scheduler: str | None = None
    compile: bool = False
    grad_checkpointing: bool = False
    log_to: str | None = None
    on_trial: Callable[[TrialRecord, bool], None] | None = None
    on_stage: Callable[[str, bool], None] | None = None

    def __post_init__(self) -> None:
        if self.out_dir is not None:
            self.out_dir = Path(self.out_dir)
        if is_python_dataset(self.data.dataset) and (self.n_jobs != 1 or self.backend != "loky"):
            # Trials in other processes open the data by name, and Python objects are registered in this one only.
            raise PetlError(
                f"dataset {self.data.dataset!r} holds Python dataset objects, which trials in worker processes "
                f"cannot open; run it with n_jobs=1 and the loky backend (in this process), not n_jobs={self.n_jobs} "
                f"and backend {self.backend!r}"
            )
        if self.log_to:
            parse_log_target(self.log_to)  # a malformed target, or a logger not installed: before any work

    # ------------------------------------------------------------------------------------------- the funnel

    @functools.cached_property
    def dataset(self) -> ImageDataset | ImageFiles | DatasetItems:
        """The opened dataset (once per study)."""
        return open_dataset(self.data.dataset, skip_bad_images=self.data.skip_bad_images, data_dir=self.data.data_dir)

    @functools.cached_property
    def template(self) -> nn.Module:
        """The model with a fresh head for the dataset's classes (seed 0), built once: stages read it, never train
        it (a stage that trains takes :meth:`build_model`)."""
        return self.build_model(seed=0)

    def build_model(self, seed: int = 0) -> nn.Module:
        """A new model with a fresh ``seed``-ed head for the dataset (the one way a stage builds one)."""
        return prepare_model(self.model, self.dataset.num_classes, seed=seed)

    @functools.cached_property
    def conversion(self) -> InputConversion:
        """How the dataset's images become the model's input; announced (a lossy one) the first time it is read."""
        conversion = input_conversion(self.dataset, self.template)
        announce(conversion, self.data.dataset)
        return conversion

    @functools.cached_property
    def data_record(self) -> DataSpec:
        """``data`` as artefacts record it: with what deduplication removed and the split in use
        (:func:`~petl_analysis.task.data_record`); a removal and a predefined split are announced the first time it is
        read."""
        record = data_record(self.data, self.dataset)
        announce_split(record)
        announce_removed(record)
        return record

    def with_data(self, data: DataSpec, model: ModelSpec | None = None) -> Study:
        """The same study on other data (e.g. the probe's full split) or another record of the model (a probe's, with
        its load record); the opened dataset and the template carry over when they are the same."""
        from .task import same_model

        other = dataclasses.replace(self, data=data, model=model or self.model)
        same_data = (dataset_identity(data.dataset), data.skip_bad_images, data.data_dir) == (
            dataset_identity(self.data.dataset),
            self.data.skip_bad_images,
            self.data.data_dir,
        )
        carried = _CACHED if same_data and same_model(other.model, self.model) else ("dataset",) if same_data else ()
        other.__dict__.update({k: v for k, v in self.__dict__.items() if k in carried})
        return other

    # -------------------------------------------------------------------------------------------------- trials

    def path(self, name: str) -> Path | None:
        """``out_dir / name`` (None without an output folder)."""
        return self.out_dir / name if self.out_dir is not None else None

    def trial_log(self, out: PathLike | None, log_path: PathLike | None = None) -> Path | None:
        """The trial log of a stage writing ``out`` (:func:`~petl_analysis.trials.trial_log_path`)."""
        return trial_log_path(out, log_path)

    def threads_per_job(self) -> int:
        """Torch threads each parallel trial gets: this process's share."""
        import torch

        return max(1, torch.get_num_threads() // max(1, self.n_jobs))

    def run_trials(
        self,
        trials: Sequence[Trial],
        worker: Callable[[Trial], dict[str, Any]],
        log: Path | JsonlLog | MemoryLog | None,
    ) -> dict[str, TrialRecord]:
        """Run the trials not yet in ``log`` (a path, an opened log, or None: in memory) with this study's
        execution options."""
        opened = log if isinstance(log, (JsonlLog, MemoryLog)) else open_trial_log(log)
        fit_options = self.fit_options()
        if fit_options:  # outside the keys: a study resumed with them keeps its finished trials
            trials = [dataclasses.replace(t, options={**t.options, **fit_options}) for t in trials]
        if self.log_to:  # the worker, wherever it runs, logs its trial's epochs
            prepare_epoch_log(self.log_to)
            worker = functools.partial(with_epoch_log, worker, self.log_to)
        return run_trials(
            trials,
            worker,
            opened,
            n_jobs=self.n_jobs,
            on_record=self.on_trial,
            backend=self.backend,
            scheduler=self.scheduler,
        )

    def fit_options(self) -> dict[str, bool]:
        """The keywords of :func:`~petl_analysis.engine.fit` this study sets (``compile``, ``grad_checkpointing``;
        those left at False are left out)."""
        return {k: True for k in ("compile", "grad_checkpointing") if getattr(self, k)}

    # -------------------------------------------------------------------------------------------------- stages

    def _out(self, out: PathLike | None, default: str) -> Path | None:
        return Path(out) if out else self.path(default)

    def probe(
        self,
        config: ProbeConfig,
        *,
        out: PathLike | None = None,
        log_path: PathLike | None = None,
        threads_per_job: int | None = None,
        on_round: Callable[[int, int], None] | None = None,
    ) -> ProbeResult:
        """The probe stage (:func:`~petl_analysis.probe.search.probe_study`), saved to ``out`` (or
        ``out_dir/probe.json``)."""
        from .probe.search import probe_study

        out = self._out(out, "probe.json")
        result = probe_study(
            self, config, log=self.trial_log(out, log_path), threads_per_job=threads_per_job, on_round=on_round
        )
        if out:
            result.save(out)
        return result

    def select(
        self, probe: ProbeResult | None, proxies: Sequence[str] = (), *, out: PathLike | None = None, **options: Any
    ) -> Ranking:
        """The select stage (:func:`~petl_analysis.select.run.rank_targets`); saved to ``out`` when given."""
        from .select.run import rank_targets

        ranking = rank_targets(self, probe, proxies, **options)
        if out:
            ranking.save(out)
        return ranking

    def plan(
        self,
        budgets: str | Sequence[BudgetLike] | None,
        methods: Sequence[str],
        ranking: Ranking | None = None,
        *,
        head_in_budget: bool = False,
        method_options: dict[str, dict[str, Any]] | None = None,
        ranking_source: str = "",
        plans_dir: PathLike | None = None,
    ) -> tuple[list[Plan], list[str], list[int]]:
        """The plan stage: every plan of the study, what planning skipped, and the resolved budgets.

        With ``plans_dir`` the plans are written there (files already there are kept) and the files are returned:
        an edited plan is what gets trained. A ranking made on another model is refused."""
        from .plan import plan_study, read_plans, write_plans
        from .plan.budgets import resolve_budgets
        from .task import require_same_model

        if ranking is not None:
            require_same_model(
                ranking.model,
                self.model,
                f"ranking {ranking_source!r}" if ranking_source else "the ranking",
                "sweep the ranking's model, or probe and select on this model first",
            )
        resolved = resolve_budgets(budgets, self.template, methods=methods, head_in_budget=head_in_budget)
        plans, skipped = plan_study(
            self.model,
            self.template,
            resolved,
            methods,
            ranking,
            head_in_budget=head_in_budget,
            method_options=method_options,
            ranking_source=ranking_source,
        )
        if plans_dir is not None:
            plans = read_plans(write_plans(plans, plans_dir, dataset=self.data.dataset))
        return plans, skipped, [b.params for b in resolved]

    def sweep(
        self,
        plans: Sequence[Plan],
        *,
        out: PathLike | None = None,
        trials_log: PathLike | None = None,
        seeds: int = 3,
        save_adapters: bool = True,
        **options: Any,
    ) -> SweepResult:
        """The sweep stage (:func:`~petl_analysis.sweep.sweep.train_plans`), saved to ``out`` when given; trials
        logged beside it or in ``trials_log``; with ``out`` and ``save_adapters``, each point's adapter in
        ``<out>.adapters/``."""
        from .io import check_output_path
        from .sweep.adapters import adapters_folder
        from .sweep.sweep import check_plans, train_plans

        check_plans(plans, seeds)
        if out:
            check_output_path(out)
        adapters = adapters_folder(out) if out and save_adapters else None
        result = train_plans(
            self, plans, log=self.trial_log(out, trials_log), seeds=seeds, adapters=adapters, **options
        )
        if out:
            result.save(out)
        return result

    def plan_and_sweep(
        self,
        budgets: str | Sequence[BudgetLike] | None,
        methods: Sequence[str],
        ranking: Ranking | None = None,
        *,
        head_in_budget: bool = False,
        method_options: dict[str, dict[str, Any]] | None = None,
        plans_dir: PathLike | None = None,
        ranking_source: str = "",
        **train: Any,
    ) -> SweepResult:
        """:meth:`plan` the study, then :meth:`sweep` its plans (``train``: :meth:`sweep`'s keywords); the result
        records the budgets, the methods and what planning skipped. With ``plans_dir`` the plan files written there
        are what is trained."""
        from .sweep.sweep import check_seeds

        check_seeds(train.get("seeds", 3))  # before planning, which builds the model
        plans, skipped, resolved = self.plan(
            budgets,
            methods,
            ranking,
            head_in_budget=head_in_budget,
            method_options=method_options,
            ranking_source=ranking_source,
            plans_dir=plans_dir,
        )
        return self.sweep(
            plans,
            budgets=resolved,
            methods=methods,
            skipped=skipped,
            ranking_source=ranking_source,
            plans_source=str(plans_dir) if plans_dir is not None else "",
            head_in_budget=head_in_budget,
            **train,
        )

    def validate(self, probe: ProbeResult, *, out: PathLike | None = None, **options: Any) -> ValidationResult:
        """The validate stage (:func:`~petl_analysis.validate.run.validate_probe`), saved to ``out`` when given."""
        from .validate.run import validate_probe

        result = validate_probe(self, probe, log=self.trial_log(out), **options)
        if out:
            result.save(out)
        return result

    def report(
        self, sweep: SweepResult | None, probe: ProbeResult | None, out: PathLike | None = None, **options: Any
    ) -> ReportFiles:
        """The report stage (:func:`~petl_analysis.report.write_report`) into ``out`` (or ``out_dir/report``)."""
        from .report import write_report

        return write_report(sweep, probe, self._out(out, "report"), **options)
