"""Budget sweeps: a list of plans trained over seeds, resumable and parallel.

What a study trains is planned by :mod:`petl_analysis.plan.points` (selected, fixed and worst-ranked targets of the
planned methods, knob-sized and fixed-size baselines), one :class:`~petl_analysis.plan.Plan` each, and written to a
plans folder; :func:`sweep_plans` trains the plans it is given (``petl-analyze sweep --plans DIR``: every file of the
folder) and each :class:`SweepPoint` keeps its plan.

Each (plan, seed) is one trial in the JSON-lines log beside the output, so a killed sweep resumes where it stopped.
Each point's adapter (its best seed by validation) is saved beside the output (:mod:`.adapters`), so the best
configuration of a study can be used without retraining it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..artefacts import Artefact, from_jsonable, to_jsonable
from ..constraints import Interval, validate_params
from ..device import use_worker_device
from ..engine import Recipe
from ..errors import PetlError
from ..models import ModelSpec, spec_with_load
from ..plan import DEFAULT_METHODS, Plan, plan_file_name, plans_dataset, validate_plan
from ..plan.budgets import BudgetLike
from ..select import Ranking
from ..task import DataSpec, InputConversion
from ..train.run import RunResult, SeedRun, default_train_recipe, summarise, train_one_seed
from ..trials import Trial, TrialRecord, key_json
from ..tuners import config_from_dict
from .adapters import adapter_options, place_adapters

if TYPE_CHECKING:
    from ..study import Study


@dataclass
class SweepPoint:
    """One trained configuration: its :class:`~petl_analysis.plan.Plan` and the run over seeds.

    ``same_as`` names an earlier point (``label@budget``) with exactly this configuration (same units, same
    hyper-parameters): it was trained once, and the two are one result, not two that happen to be level.
    """

    plan: Plan
    run: RunResult
    same_as: str | None = None
    #: The folder of the best seed's adapter (by validation), relative to the sweep's file; None: none was saved.
    adapter: str | None = None

    @property
    def label(self) -> str:
        return self.plan.label

    @property
    def method(self) -> str:
        return self.plan.method

    @property
    def variant(self) -> str:
        """``selected``, ``fixed``, ``worst`` (planned methods), ``sized`` (knob-sized baselines) or ``fixed-size``."""
        return self.plan.variant

    @property
    def budget(self) -> int | None:
        """None for a fixed-size baseline."""
        return self.plan.budget


@dataclass
class SweepResult(Artefact):
    """Output of ``petl-analyze sweep`` (``sweep.json``): every point's RunResult."""

    SCHEMA = "sweep_result"
    VERSION = 2

    model: ModelSpec
    data: DataSpec
    recipe: Recipe
    seeds: list[int]
    budgets: list[int]
    methods: list[str]
    head_in_budget: bool
    points: list[SweepPoint]
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ranking_source: str = ""
    wall_time_s: float = 0.0
    command: str = ""
    #: How the dataset's images were converted for the model (channels, size).
    input_conversion: InputConversion | None = None
    #: The plans folder the points were read from.
    plans_source: str = ""
    #: Learning rates of the methods that train at their own (``--method-lr full=1e-5``); the others at ``recipe``'s.
    method_lr: dict[str, float] = field(default_factory=dict)

    def recipe_of(self, method: str) -> Recipe:
        """The recipe ``method``'s points trained with."""
        return method_recipe(self.recipe, self.method_lr, method)

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for p in sorted(self.points, key=lambda p: (p.run.trainable["total_incl_head"], p.label)):
            s = p.run.summary()
            rows.append(
                {
                    "label": p.label,
                    "budget": p.budget,
                    "trainable": s["trainable"],
                    "excl. head": s["trainable_excl_head"],
                    "test acc": s["test_acc"],
                    "± std": s["test_std"],
                    "last-epoch acc": s["last_test_acc"],
                    "seeds": s["seeds"],
                }
            )
        return rows


@dataclass
class RunTrial:
    """What one sweep trial trains: a configuration (a plan's ``config``) on one seed's data."""

    model: ModelSpec
    recipe: Recipe
    head_init: str
    device: str
    threads: int
    data: DataSpec
    config: dict[str, Any]
    seed: int
    also_val: DataSpec | None = None  # also score the kept model on this data's val split (None: left out of keys)


def sweep_trial(trial: Trial) -> dict[str, Any]:
    """Worker: train one (configuration, seed); with the ``adapter_dir`` option, save its adapter there under the
    trial's key."""
    import torch

    t = trial.spec(RunTrial)
    torch.set_num_threads(max(1, t.threads))
    device = str(use_worker_device(t.device))  # "cuda": this worker's GPU among those visible
    where = trial.options.get("adapter_dir")
    fit_options = {k: bool(trial.options[k]) for k in ("compile", "grad_checkpointing") if trial.options.get(k)}
    run, trainable = train_one_seed(
        t.model,
        t.data,
        config_from_dict(t.config),
        t.recipe,
        t.seed,
        head_init=t.head_init,
        device=device,
        adapter_dir=Path(where) / trial.key if where else None,
        adapter_record={"trial": trial.key},
        also_val=t.also_val,
        **fit_options,
    )
    out = {
        "seed_run": to_jsonable(run),
        "trainable": trainable,
        "device": device,
        "threads": torch.get_num_threads(),
        **fit_options,  # compiled, checkpointed: how it ran, not what it trained
    }
    if t.also_val is not None:
        out["also_val_acc"] = run.also_val_acc
    if run.val_correct is not None:
        out["val_correct"] = run.val_correct
    return out


#: The number of seeds each configuration trains (sweep, run, validate's oracle), as a message names it.
SEEDS_MEANING = {"seeds": "the number of seeds"}
#: What a number of seeds accepts: a sweep of no seed trains nothing and would still write a result.
SEEDS_CONSTRAINTS = {"seeds": [Interval(Integral, 1, None, closed="left")]}


def check_seeds(seeds: int) -> None:
    """Refuse a number of seeds before any work (``the number of seeds (seeds) must be an integer >= 1``)."""
    validate_params("sweep", {"seeds": seeds}, SEEDS_CONSTRAINTS, SEEDS_MEANING)


def method_recipe(recipe: Recipe, method_lr: dict[str, float], method: str) -> Recipe:
    """``recipe`` at ``method``'s own learning rate when ``method_lr`` names it (e.g. full fine-tuning of a
    pretrained backbone at 1e-5, where the adapters' 3e-3 diverges); the head keeps the recipe's rate."""
    if method not in method_lr:
        return recipe
    return dataclasses.replace(recipe, lr=float(method_lr[method]), head_lr=recipe.head_lr or recipe.lr)


def parse_method_lr(value: str | None, what: str = "--method-lr") -> dict[str, float]:
    """``"full=1e-5,bitfit=1e-3"`` as ``{"full": 1e-5, "bitfit": 1e-3}`` (None or empty: no method at its own
    rate); a malformed item, an unknown method or a rate that is not a positive number is refused in one line."""
    from ..tuners import METHODS

    out: dict[str, float] = {}
    for item in [v.strip() for v in (value or "").split(",") if v.strip()]:
        name, sep, rate = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise PetlError(f"{what}: {item!r} is not METHOD=LR; expected e.g. full=1e-5,bitfit=1e-3")
        if name not in METHODS.registered():
            raise PetlError(f"{what}: {name!r} is not a method; methods: {', '.join(METHODS.registered())}")
        try:
            lr = float(rate)
        except ValueError:
            raise PetlError(f"{what}: {name}={rate.strip()!r} is not a number; expected e.g. {name}=1e-5") from None
        if not lr > 0 or lr == float("inf"):
            raise PetlError(f"{what}: {name}={rate.strip()} must be a positive learning rate")
        out[name] = lr
    return out


def check_method_lr(method_lr: dict[str, float], methods: Sequence[str], what: str = "method_lr") -> None:
    """Refuse, in one line, a per-method learning rate for a method the sweep does not train, or one that is not a
    positive number."""
    for name, lr in method_lr.items():
        if name not in methods:
            raise PetlError(
                f"{what} names {name!r}, which this sweep does not train (its methods: {', '.join(methods)})"
            )
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise PetlError(f"{what}[{name!r}] must be a positive learning rate, got {lr!r}")


def check_plans(plans: Sequence[Plan], seeds: int) -> None:
    """Refused before any work: no plan, or no seed."""
    if not plans:
        raise PetlError("no plans to train")
    check_seeds(seeds)


def run_sweep(
    model: ModelSpec,
    data: DataSpec,
    budgets: str | Sequence[BudgetLike] | None,
    methods: Sequence[str] = DEFAULT_METHODS,
    ranking: Ranking | None = None,
    *,
    head_in_budget: bool = False,
    method_options: dict[str, dict[str, Any]] | None = None,
    plans_dir: str | Path | None = None,
    ranking_source: str = "",
    **train: Any,
) -> SweepResult:
    """Plan a study and train it (:meth:`Study.plan_and_sweep <petl_analysis.study.Study.plan_and_sweep>`).

    With ``plans_dir`` the plans are written there first (files already there are kept) and the files are what is
    trained. ``budgets``: any form :func:`~petl_analysis.plan.budgets.resolve_budgets` reads (``"8k,0.05%"``; None:
    the model's defaults). ``train``: the keyword arguments of :func:`sweep_plans`. A ranking made on another model
    (network, weights or input size) than ``model`` is refused: its order says nothing about ``model``."""
    check_seeds(train.get("seeds", 3))
    study, train = _study(model, data, train)
    return study.plan_and_sweep(
        budgets,
        methods,
        ranking,
        head_in_budget=head_in_budget,
        method_options=method_options,
        plans_dir=plans_dir,
        ranking_source=ranking_source,
        **train,
    )


_EXECUTION = ("device", "n_jobs", "backend", "scheduler", "compile", "grad_checkpointing", "log_to", "on_trial")


def _study(model: ModelSpec, data: DataSpec, options: dict[str, Any]) -> tuple[Study, dict[str, Any]]:
    """A study from the execution keywords among ``options``, and the other keywords."""
    from ..study import Study

    execution = {k: options[k] for k in _EXECUTION if k in options}
    return Study(model, data, **execution), {k: v for k, v in options.items() if k not in _EXECUTION}


def _common_model(plans: Sequence[Plan]) -> ModelSpec:
    models = {key_json(p.model) for p in plans}  # what to build: the load records may differ in age
    if len(models) > 1:
        raise PetlError(f"the plans are for {len(models)} different models; a sweep trains one model")
    return plans[0].model


def sweep_plans(
    plans: Sequence[Plan],
    data: DataSpec,
    *,
    model: ModelSpec | None = None,
    out: str | Path | None = None,
    trials_log: str | Path | None = None,
    **options: Any,
) -> SweepResult:
    """Train every plan over ``seeds``; save ``out`` atomically (trials logged beside it, or in ``trials_log``: a
    study that trains several lists of plans keeps one resumable log).

    ``model`` defaults to the plans' own (they must agree). ``options``: how trials run (``device``, ``n_jobs``,
    ``backend``, ``scheduler``, ``on_trial``: the :class:`~petl_analysis.study.Study`'s) and the keywords of
    :meth:`Study.sweep <petl_analysis.study.Study.sweep>` and :func:`train_plans`.

    With ``out`` and ``save_adapters``, each point's adapter is saved in ``<out>.adapters/<plan file stem>/``: the
    best seed by validation, or every seed with ``all_seeds`` (:mod:`.adapters`)."""
    check_plans(plans, options.get("seeds", 3))
    study, options = _study(model or _common_model(plans), data, options)
    return study.sweep(plans, out=out, trials_log=trials_log, **options)


def train_plans(
    study: Study,
    plans: Sequence[Plan],
    *,
    log: Path | None = None,
    seeds: int = 3,
    recipe: Recipe | None = None,
    head_init: str = "lp",
    head_in_budget: bool | None = None,
    budgets: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    skipped: Sequence[str] = (),
    ranking_source: str = "",
    plans_source: str = "",
    command: str = "",
    adapters: Path | None = None,
    all_seeds: bool = False,
    first_seed: int = 0,
    also_val: DataSpec | None = None,
    method_lr: dict[str, float] | None = None,
) -> SweepResult:
    """The sweep stage: train every plan over ``seeds`` (trials in the log at ``log``) and return the result.

    Each plan is checked against the study's model and the dataset's head
    (:func:`~petl_analysis.plan.validate_plan`) before anything trains, and plans that record their dataset must
    be for the study's (:func:`~petl_analysis.plan.plans_dataset`). ``budgets``/``methods`` record what the
    study asked for (default: those of the plans); ``skipped``, what its planning left out. With ``adapters`` (a
    folder), each point's best seed's adapter (every seed's with ``all_seeds``) is placed there. ``first_seed``:
    the seeds are ``first_seed .. first_seed + seeds - 1`` (validate's judge trains on seeds apart from the
    probe's). ``also_val``: each kept model is also scored on that data's validation split
    (``SeedRun.also_val_acc``, in memory). ``method_lr``: learning rates of methods that train at their own
    (:func:`method_recipe`); the other methods' trials, and their keys, are as without it."""
    start = time.perf_counter()
    counted = _check_sweep(study, plans, seeds, head_in_budget, plans_source)
    method_lr = {k: float(v) for k, v in (method_lr or {}).items()}
    check_method_lr(method_lr, list(dict.fromkeys(p.method for p in plans)))
    data, model, recipe = study.data, study.model, recipe or default_train_recipe()
    conversion = study.conversion
    trial = _trial_maker(study, recipe, method_lr, head_init, also_val, adapters)
    seed_list = list(range(first_seed, first_seed + seeds))
    records = study.run_trials([trial(p.config, s) for p in plans for s in seed_list], sweep_trial, log)
    runs = {(id(p), s): records[trial(p.config, s).key] for p in plans for s in seed_list}
    summary = _summariser(model, data, recipe, method_lr, head_init, conversion)
    result_points, failed, placing = _points(plans, seed_list, runs, summary)
    if adapters is not None:
        _place(adapters, result_points, placing, all_seeds)
    return SweepResult(
        model=spec_with_load(model, study.template),
        data=study.data_record,
        recipe=recipe,
        seeds=seed_list,
        **_asked(plans, budgets, methods, head_in_budget, counted),
        points=result_points,
        failed=failed,
        skipped=list(skipped),
        ranking_source=ranking_source,
        wall_time_s=time.perf_counter() - start,
        command=command,
        input_conversion=conversion,
        plans_source=plans_source,
        method_lr=method_lr,
    )


def _trial_maker(
    study: Study,
    recipe: Recipe,
    method_lr: dict[str, float],
    head_init: str,
    also_val: DataSpec | None,
    adapters: Path | None,
) -> Callable[[dict[str, Any], int], Trial]:
    """The trial of one (configuration, seed) of ``study``'s sweep: its key is what it trains; with ``adapters``,
    the trial's option says where its adapter goes."""
    data, model = study.data, study.model
    threads, options = study.threads_per_job(), adapter_options(adapters)

    def trial(config: dict[str, Any], seed: int) -> Trial:
        return Trial.of(
            "run",
            RunTrial(
                model=model,
                recipe=method_recipe(recipe, method_lr, config["method"]),
                head_init=head_init,
                device=study.device,
                threads=threads,
                data=data.for_seed(seed),
                config=config,
                seed=seed,
                also_val=also_val,
            ),
            **options,
        )

    return trial


def _summariser(
    model: ModelSpec,
    data: DataSpec,
    recipe: Recipe,
    method_lr: dict[str, float],
    head_init: str,
    conversion: InputConversion,
) -> Callable[[Plan, list[TrialRecord]], RunResult]:
    """One point's :class:`~petl_analysis.train.RunResult` from its plan and its finished seeds' records."""

    def summary(plan: Plan, ok: list[TrialRecord]) -> RunResult:
        seed_runs = [
            dataclasses.replace(
                from_jsonable(SeedRun, r.result["seed_run"]),
                also_val_acc=r.result.get("also_val_acc"),
                val_correct=r.result.get("val_correct"),
            )
            for r in ok
        ]
        return summarise(
            plan.method,
            plan.config,
            model,
            data,
            method_recipe(recipe, method_lr, plan.method),
            head_init,
            ok[0].result["trainable"],
            seed_runs,
            sum(r.wall_time_s for r in seed_runs),
            label=plan.label,
            input_conversion=conversion,
        )

    return summary


def _asked(
    plans: Sequence[Plan],
    budgets: Sequence[int] | None,
    methods: Sequence[str] | None,
    head_in_budget: bool | None,
    counted: set[bool],
) -> dict[str, Any]:
    """What the study asked for, as the result records it: the budgets and methods given (default: the plans'),
    and whether the head counts in the budget (default: as the plans counted it)."""
    planned_budgets = sorted({p.budget for p in plans if p.budget is not None})
    return dict(
        budgets=sorted(budgets) if budgets is not None else planned_budgets,
        methods=list(methods) if methods is not None else list(dict.fromkeys(p.method for p in plans)),
        head_in_budget=head_in_budget if head_in_budget is not None else counted.pop(),
    )


def _check_sweep(
    study: Study, plans: Sequence[Plan], seeds: int, head_in_budget: bool | None, plans_source: str
) -> set[bool]:
    """Refuse plans for another dataset, plans that disagree on the head, and plans that do not fit the study's
    model; returns the plans' ``head_in_budget`` values."""
    check_plans(plans, seeds)
    plans_dataset(plans, study.data.dataset, source=f"the plans of {plans_source!r}" if plans_source else "the plans")
    counted = {p.head_in_budget for p in plans}
    if head_in_budget is None and len(counted) > 1:
        raise PetlError("the plans disagree on whether the head counts against the budget (head_in_budget)")
    for p in plans:
        validate_plan(p, study.template, study.model, source=plan_file_name(p))
    return counted


def _place(
    adapters: Path, points: list[SweepPoint], placing: list[tuple[str, list[TrialRecord]]], all_seeds: bool
) -> None:
    """Place each point's adapter in ``adapters`` and record where (relative to the sweep's file)."""
    where = place_adapters(adapters, placing, all_seeds=all_seeds)
    for point, (name, _) in zip(points, placing):
        point.adapter = os.path.relpath(where[name], adapters.parent) if where[name] else None


def _points(
    plans: Sequence[Plan],
    seed_list: list[int],
    records: dict[tuple[int, int], TrialRecord],
    summary: Callable[[Plan, list[TrialRecord]], RunResult],
) -> tuple[list[SweepPoint], list[dict[str, Any]], list[tuple[str, list[TrialRecord]]]]:
    """One point per plan with a finished seed (a configuration trained before is marked ``same_as``), every
    failed (plan, seed), and each point's (plan file stem, finished records) for its adapter."""
    points, failed, placing = [], [], []
    first_of: dict[str, str] = {}
    for plan in plans:
        me = f"{plan.label}@{plan.budget}"
        first = first_of.setdefault(json.dumps(plan.config, sort_keys=True), me)
        recs = [records[(id(plan), s)] for s in seed_list]
        ok = [r for r in recs if r.ok]
        failed += [
            {"label": plan.label, "budget": plan.budget, "seed": r.payload["seed"], "error": r.error}
            for r in recs
            if not r.ok
        ]
        if ok:
            points.append(SweepPoint(plan, summary(plan, ok), same_as=first if first != me else None))
            placing.append((Path(plan_file_name(plan)).stem, ok))
    return points, failed, placing
