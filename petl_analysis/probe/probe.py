"""Local intrinsic dimension of ViT submodules: the probe stage.

For each target set S (a catalogue spec such as ``attn.v`` or ``blocks[3].mlp``) and dimension d, a short training
run of ``theta_S = theta0_S + P theta_d`` gives an accuracy; d90 is the smallest d reaching the threshold, found by a
coarse log grid refined between the bracketing points, with a monotone fit over seed-averaged accuracy and a
bootstrap CI over seeds. Baselines (linear probe and full fine-tuning, same recipe) are recorded with every result.

Every trial goes through :mod:`petl_analysis.trials`, so a probe is resumable and parallel.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..artefacts import Artefact, from_jsonable, key_json, to_jsonable
from ..data import open_dataset
from ..engine import Recipe, fit
from ..errors import PetlError
from ..io import JsonlLog, MemoryLog
from ..models import DEFAULT_PROBE_TARGETS, ModelSpec, resolve_targets
from ..task import DataSpec, Task, build_task, fit_linear_probe, prepare_model
from ..train.run import seed_data
from ..trials import STATUS_OK, Trial, run_trials
from . import d90 as d90_lib
from .subspace import SubspaceModel, subspace_size

HEAD_MODES = ("train", "frozen")
METRICS = ("test", "val")


def default_probe_recipe() -> Recipe:
    """Short trainings: every (target, d, seed) costs one of these."""
    return Recipe(epochs=10, batch_size=64, lr=1e-2, head_lr=1e-2, weight_decay=0.0, warmup_epochs=1.0)


@dataclass
class ProbeConfig:
    """What to probe and how (recorded in the result).

    Attributes:
        targets: catalogue specs, each probed as one subspace set S.
        per_block: expand each target into one set per block (``attn.v`` -> ``blocks.0.attn.v``, ...).
        dims: explicit d grid; ``None`` runs the adaptive search (coarse log grid, then refinement).
        projection: registered projection kind (``fastfood``, ``dense``, ``sparse``).
        threshold: fraction in (0, 1] defining d90 (0.9).
        seeds: seeds 0..seeds-1; each seed draws its own k-shot sample, training order and projection.
        head: ``train`` (initialised from the linear probe, trained jointly) or ``frozen`` (the linear-probe head).
        said: structure-aware intrinsic dimension (one learned scale per tensor, counted in d).
        metric: which split's accuracy defines the curve (``test`` at the best-validation epoch, or ``val``).
        d_min: smallest d of the coarse grid.
        points_per_decade: density of the coarse grid.
        max_d: largest d the adaptive search may try (default: D of each set); a set whose curve stays below the
            threshold up to it is reported as "not reached within max d".
        max_refinements: refinement rounds after the coarse grid.
        ft_lr: learning rate of the backbone in the full fine-tuning baseline (``None``: the recipe's ``lr``). Every
            other setting of that baseline is the recipe's; raw weights need a smaller step than the subspace
            coordinates theta_d (unit-norm projection columns), as in Li et al. (2018).
        recipe: training recipe of every trial, baselines included.
    """

    targets: list[str] = field(default_factory=lambda: list(DEFAULT_PROBE_TARGETS))
    per_block: bool = False
    dims: list[int] | None = None
    projection: str = "fastfood"
    threshold: float = 0.9
    seeds: int = 2
    head: str = "train"
    said: bool = False
    metric: str = "test"
    d_min: int = 4
    points_per_decade: int = 2
    max_d: int | None = None
    ft_lr: float | None = 1e-3
    max_refinements: int = 2
    recipe: Recipe = field(default_factory=default_probe_recipe)

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise PetlError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.seeds < 1:
            raise PetlError(f"seeds must be >= 1, got {self.seeds}")
        if self.head not in HEAD_MODES:
            raise PetlError(f"unknown head mode {self.head!r}; expected one of: {', '.join(HEAD_MODES)}")
        if self.metric not in METRICS:
            raise PetlError(f"unknown metric {self.metric!r}; expected one of: {', '.join(METRICS)}")
        if self.max_d is not None and self.max_d < 1:
            raise PetlError(f"max_d must be a positive integer, got {self.max_d}")
        if self.dims is not None and (not self.dims or min(self.dims) < 1):
            raise PetlError(f"dims must be positive integers, got {self.dims}")


@dataclass
class D90:
    """A d90 estimate: ``value`` is None when the threshold was not reached within the largest d tried."""

    threshold_acc: float
    value: float | None
    ci_low: float | None
    ci_high: float | None
    reached: bool
    below_min: bool
    reached_fraction: float


@dataclass
class Baseline:
    """Accuracy of a baseline per seed, with mean and standard deviation."""

    per_seed: list[float]
    mean: float
    std: float
    trainable: int


@dataclass
class TargetResult:
    """The local-intrinsic-dimension curve and d90 of one target set S."""

    target: str
    units: list[str]
    D: int
    dims: list[int]
    acc_mean: list[float]
    acc_std: list[float]
    acc_per_seed: list[list[float]]
    fitted: list[float]
    d90: D90  # gain-normalised (the ranking default)
    d90_classic: D90
    trials: int
    failed_trials: int
    wall_time_s: float


@dataclass
class ProbeResult(Artefact):
    """Output of the probe stage (``probe.json``)."""

    SCHEMA = "probe_result"
    VERSION = 1

    model: ModelSpec
    data: DataSpec
    config: ProbeConfig
    baselines: dict[str, Baseline]
    targets: list[TargetResult]
    trials_total: int
    failed_trials: int
    wall_time_s: float
    trials_log: str = ""
    #: One entry per failed subspace trial: target, d, seed and error (each was retried once before).
    failed: list[dict[str, Any]] = field(default_factory=list)

    def ranked(self) -> list[TargetResult]:
        """Targets by gain-normalised d90 ascending; not-reached last (by best accuracy)."""
        return sorted(self.targets, key=_rank_key)

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for t in self.ranked():
            rows.append({
                "target": t.target,
                "D": t.D,
                "d90": _fmt_d(t.d90),
                "d90 CI": _fmt_ci(t.d90),
                "d90 classic": _fmt_d(t.d90_classic),
                "best acc": max(t.acc_mean) if t.acc_mean else None,
                "trials": t.trials,
                "time_s": round(t.wall_time_s, 1),
            })
        return rows


def _rank_key(t: TargetResult) -> tuple[int, float]:
    if t.d90.reached and t.d90.value is not None:
        return (0, t.d90.value)
    return (1, -(max(t.acc_mean) if t.acc_mean else 0.0))


def _fmt_d(d: D90) -> str:
    if not d.reached or d.value is None:
        return "not reached"
    return f"<={d.value:.0f}" if d.below_min else f"{d.value:.0f}"


def _fmt_ci(d: D90) -> str:
    lo = "-" if d.ci_low is None else f"{d.ci_low:.0f}"
    hi = "inf" if d.ci_high is None or not np.isfinite(d.ci_high) else f"{d.ci_high:.0f}"
    return f"[{lo}, {hi}]"


# --------------------------------------------------------------------------------------------------- workers


@functools.lru_cache(maxsize=2)
def _dataset(name: str, skip_bad_images: bool = False):
    """Built-ins in memory, folders as a file index (decoded per batch); one per worker process."""
    return open_dataset(name, skip_bad_images=skip_bad_images)


@functools.lru_cache(maxsize=8)
def _prepared(model_json: str, data_json: str, seed: int, recipe_json: str, device: str) -> tuple[Any, Task]:
    """The seed's task and a model with its linear-probe head (computed once per worker process)."""
    model_spec = from_jsonable(ModelSpec, json.loads(model_json))
    data = from_jsonable(DataSpec, json.loads(data_json))
    recipe = from_jsonable(Recipe, json.loads(recipe_json))
    ds = _dataset(data.dataset, data.skip_bad_images)
    model = prepare_model(model_spec, ds.num_classes, seed=seed)
    task = build_task(data, model, dataset=ds, augment=recipe.augment)
    lp = fit_linear_probe(model, task, recipe, seed=seed, device=device)
    return (model.cpu(), lp), task



def probe_trial(trial: Trial) -> dict[str, Any]:
    """Worker: run one baseline or subspace trial described by ``trial.payload``."""
    p = trial.payload
    torch.set_num_threads(max(1, int(p.get("threads", torch.get_num_threads()))))
    device = p.get("device", "cpu")
    (base, lp), task = _prepared(p["model"], p["data"], p["seed"], p["recipe"], device)
    recipe = from_jsonable(Recipe, json.loads(p["recipe"]))
    seed = int(p["seed"])
    if trial.kind == "lp":
        return _summary(lp, device)
    model = copy.deepcopy(base)
    if trial.kind == "ft":
        model.requires_grad_(True)
        if p.get("ft_lr") is not None:  # raw weights want a smaller step than subspace coordinates
            recipe = dataclasses.replace(recipe, lr=float(p["ft_lr"]), head_lr=recipe.head_lr or recipe.lr)
        res = fit(model, task.train, task.val, recipe, test=task.test, seed=seed, device=device)
        return _summary(res, device)
    if trial.kind != "subspace":
        raise ValueError(f"unknown probe trial kind {trial.kind!r}")
    model.requires_grad_(False)
    model.get_classifier().requires_grad_(p["head"] == "train")
    units = resolve_targets(model, p["units"])
    wrapped = SubspaceModel(model, units, int(p["d"]), projection=p["projection"], seed=seed, said=bool(p["said"]))
    res = fit(wrapped, task.train, task.val, recipe, test=task.test, seed=seed, device=device)
    return _summary(res, device)


def _summary(res, device: str) -> dict[str, Any]:
    return {
        "device": str(device),  # where and with how many torch threads the worker actually ran it
        "threads": torch.get_num_threads(),
        "val_acc": res.val_acc,
        "test_acc": res.test_acc,
        "last_test_acc": res.last_test_acc,
        "best_epoch": res.best_epoch,
        "val_curve": res.val_curve,
        "train_loss": res.train_loss,
        "trainable": res.trainable,
        "fit_time_s": res.wall_time_s,
    }


# --------------------------------------------------------------------------------------------------- driver


def expand_targets(model, targets: list[str], per_block: bool) -> dict[str, list[str]]:
    """Target label -> unit names. With ``per_block``, each label becomes one set per block."""
    out: dict[str, list[str]] = {}
    depth = len(model.blocks)
    for spec in targets:
        units = resolve_targets(model, spec)
        if per_block and not spec.startswith("blocks"):
            for b in range(depth):
                block_units = [u.name for u in units if u.block == b]
                if block_units:
                    out[f"blocks.{b}.{spec}"] = block_units
        else:
            out[spec] = [u.name for u in units]
    return out


def run_probe(
    model: ModelSpec,
    data: DataSpec,
    config: ProbeConfig,
    *,
    out: str | Path | None = None,
    log_path: str | Path | None = None,
    device: str = "cpu",
    n_jobs: int = 1,
    backend: str = "loky",
    scheduler: str | None = None,
    threads_per_job: int | None = None,
    on_trial: Callable[[dict[str, Any], bool], None] | None = None,
    on_round: Callable[[int, int], None] | None = None,
) -> ProbeResult:
    """Measure the local intrinsic dimension of each target; return (and optionally save) a :class:`ProbeResult`.

    Args:
        out: where to write ``probe.json`` (atomically). ``log_path`` defaults to ``<out>.trials.jsonl``; rerunning
            with the same log skips finished trials.
        n_jobs: parallel worker processes (joblib); ``threads_per_job`` torch threads each.
        on_trial: called per finished (or cached) trial; ``on_round(round, n_trials)`` before each round.
    """
    start = time.perf_counter()
    ds = _dataset(data.dataset, data.skip_bad_images)
    template = prepare_model(model, ds.num_classes, seed=0)
    sets = expand_targets(template, config.targets, config.per_block)
    D_of = {label: subspace_size(resolve_targets(template, names)) for label, names in sets.items()}
    if config.dims is not None:
        too_big = [(label, d) for label in sets for d in config.dims if d > D_of[label]]
        if too_big:
            label, d = too_big[0]
            raise PetlError(f"d={d} exceeds D={D_of[label]} of target {label!r}; the largest d for it is {D_of[label]}")
    log_file = Path(log_path) if log_path else (Path(str(out) + ".trials.jsonl") if out else None)
    log = JsonlLog(log_file) if log_file else MemoryLog()
    threads = threads_per_job or (max(1, torch.get_num_threads() // max(1, n_jobs)))
    common = {
        "model": json.dumps(to_jsonable(model), sort_keys=True),
        "recipe": key_json(config.recipe),
        "device": device,
        "threads": threads,
    }
    seeds = list(range(config.seeds))

    def data_json(seed: int) -> str:
        return key_json(seed_data(data, seed))

    def base_trial(kind: str, seed: int) -> Trial:
        extra = {"ft_lr": config.ft_lr} if kind == "ft" and config.ft_lr is not None else {}
        return Trial(kind, {**common, "data": data_json(seed), "seed": seed, **extra})

    def sub_trial(label: str, d: int, seed: int) -> Trial:
        return Trial("subspace", {**common, "data": data_json(seed), "seed": seed, "units": sets[label], "d": int(d),
                                  "projection": config.projection, "said": config.said, "head": config.head})

    run = functools.partial(run_trials, log=log, n_jobs=n_jobs, on_record=on_trial, backend=backend,
                            scheduler=scheduler)
    if on_round:
        on_round(0, 2 * len(seeds))
    baseline_recs = run([base_trial(k, s) for k in ("lp", "ft") for s in seeds], probe_trial)
    baselines = {}
    for kind in ("lp", "ft"):
        recs = [baseline_recs[base_trial(kind, s).key] for s in seeds]
        accs = [_metric(r, config.metric) for r in recs]
        if any(a is None for a in accs):
            raise PetlError(f"the {kind} baseline failed: {next(r.get('error') for r in recs if r['status'] != STATUS_OK)}")
        baselines[kind] = Baseline(accs, float(np.mean(accs)), float(np.std(accs)),
                                   int(recs[0]["result"]["trainable"]["total_incl_head"]))
    target_gain = d90_lib.threshold_value(baselines["lp"].mean, baselines["ft"].mean, config.threshold, mode="gain")
    target_classic = d90_lib.threshold_value(baselines["lp"].mean, baselines["ft"].mean, config.threshold, mode="classic")

    dims_of: dict[str, list[int]] = {
        label: sorted(set(config.dims)) if config.dims else d90_lib.coarse_grid(D_of[label], d_min=config.d_min,
                                                                            points_per_decade=config.points_per_decade,
                                                                            d_max=config.max_d)
        for label in sets
    }
    records: dict[str, dict[str, Any]] = {}
    rounds = 1 if config.dims else 1 + config.max_refinements
    pending = {label: list(dims) for label, dims in dims_of.items()}
    for r in range(rounds):
        trials = [sub_trial(label, d, s) for label, dims in pending.items() for d in dims for s in seeds]
        if not trials:
            break
        if on_round:
            on_round(r + 1, len(trials))
        records.update(run(trials, probe_trial))
        if config.dims or r == rounds - 1:
            break  # the last round proposes nothing: a proposal would never be run
        pending = {}
        for label in sets:
            dims, per_seed = _curve(label, dims_of[label], seeds, records, sub_trial, config.metric)
            proposed = d90_lib.next_dims(dims, np.nanmean(np.array(per_seed, dtype=float), axis=1), target_gain,
                                         max_d=min(D_of[label], config.max_d or D_of[label]))
            proposed = [d for d in proposed if d not in dims_of[label]]
            if proposed:
                dims_of[label] = sorted(set(dims_of[label]) | set(proposed))
                pending[label] = proposed

    results = []
    for label in sets:
        dims, per_seed = _curve(label, dims_of[label], seeds, records, sub_trial, config.metric)
        results.append(_target_result(label, sets[label], D_of[label], dims, per_seed, target_gain, target_classic,
                                      [records[sub_trial(label, d, s).key] for d in dims_of[label] for s in seeds]))
    all_records = list(baseline_recs.values()) + list(records.values())
    failed = [{"target": label, "d": d, "seed": s, "error": rec.get("error") or "no error message",
               "attempts": rec.get("attempts")}
              for label in sets for d in dims_of[label] for s in seeds
              for rec in [records[sub_trial(label, d, s).key]] if rec["status"] != STATUS_OK]
    result = ProbeResult(
        model=model,
        data=data,
        config=config,
        baselines=baselines,
        targets=results,
        trials_total=len(all_records),
        failed_trials=sum(r["status"] != STATUS_OK for r in all_records),
        wall_time_s=time.perf_counter() - start,
        trials_log=str(log_file) if log_file else "",
        failed=failed,
    )
    if out:
        result.save(out)
    return result



def _metric(record: dict[str, Any], metric: str) -> float | None:
    if record.get("status") != STATUS_OK:
        return None
    return record["result"]["test_acc" if metric == "test" else "val_acc"]


def _curve(label, dims, seeds, records, make_trial, metric) -> tuple[list[int], list[list[float]]]:
    """Dims tried and accuracy per (d, seed); failed trials are NaN."""
    per_seed = []
    for d in dims:
        row = []
        for s in seeds:
            rec = records.get(make_trial(label, d, s).key)
            acc = _metric(rec, metric) if rec else None
            row.append(float("nan") if acc is None else float(acc))
        per_seed.append(row)
    return list(dims), per_seed


def _to_d90(est: d90_lib.D90Estimate, threshold_acc: float) -> D90:
    return D90(threshold_acc=threshold_acc, value=est.d90, ci_low=est.ci_low, ci_high=est.ci_high,
               reached=est.reached, below_min=est.below_min, reached_fraction=est.reached_fraction)


def _target_result(label, units, D, dims, per_seed, target_gain, target_classic, recs) -> TargetResult:
    arr = np.array(per_seed, dtype=float)
    ok = ~np.isnan(arr).all(axis=1)
    dims_ok = [d for d, keep in zip(dims, ok) if keep]
    arr_ok = arr[ok]
    gain = d90_lib.estimate_d90(dims_ok, arr_ok, target_gain)
    classic = d90_lib.estimate_d90(dims_ok, arr_ok, target_classic)
    return TargetResult(
        target=label,
        units=list(units),
        D=int(D),
        dims=[int(d) for d in dims],
        acc_mean=[float(np.nanmean(row)) if not np.isnan(row).all() else float("nan") for row in arr],
        acc_std=[float(np.nanstd(row)) if not np.isnan(row).all() else float("nan") for row in arr],
        acc_per_seed=arr.tolist(),
        fitted=[float(v) for v in gain.fitted_at(dims)],
        d90=_to_d90(gain, target_gain),
        d90_classic=_to_d90(classic, target_classic),
        trials=len(recs),
        failed_trials=sum(r["status"] != STATUS_OK for r in recs),
        wall_time_s=float(sum(r.get("wall_time_s", 0.0) for r in recs)),
    )
