"""Local intrinsic dimension of ViT submodules: the probe stage.

For each target set S (a catalogue spec such as ``attn.v`` or ``blocks[3].mlp``) and dimension d, a short training
run of ``theta_S = theta0_S + P theta_d`` gives a validation accuracy; d90 is the smallest d reaching the threshold,
found by a coarse log grid refined between the bracketing points, with a monotone fit over seeds and a bootstrap CI
over seeds. The threshold of each seed comes from the curve's own floor (the head trained alone with the trial
recipe: d = 0) and ceiling (full fine-tuning with the same recipe). Only validation accuracy is read by any of
this; test accuracy is recorded per trial and reported.

Every trial goes through :mod:`petl_analysis.trials`, so a probe is resumable and parallel.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..accounting import classifier
from ..artefacts import Artefact, key_json
from ..data import open_dataset
from ..engine import Recipe, fit
from ..errors import PetlError
from ..io import JsonlLog, MemoryLog
from ..models import DEFAULT_PROBE_TARGETS, ModelSpec, resolve_targets, spec_with_load
from ..task import (
    DataSpec,
    InputConversion,
    Task,
    announce,
    build_task,
    fit_linear_probe,
    input_conversion,
    prepare_model,
)
from ..trials import STATUS_OK, Trial, run_trials
from . import d90 as d90_lib
from .subspace import SubspaceModel, subspace_size

HEAD_MODES = ("train", "frozen")
#: Accuracy gaps under this many validation images are not read as differences anywhere (probe gain, oracle
#: spread): one image is rounding, and a decision should rest on more than one.
RESOLVED_IMAGES = 2
LR_SCALINGS = ("sqrt", "constant")


def default_probe_recipe() -> Recipe:
    """Short trainings: every (target, d, seed) costs one of these. ``head_lr`` is the classifier's rate; ``lr`` is
    theta_d's only with ``ProbeConfig.lr_scaling="constant"`` (see :func:`theta_lr`)."""
    return Recipe(epochs=10, batch_size=64, lr=1e-2, head_lr=1e-2, weight_decay=0.0, warmup_epochs=1.0)


def theta_lr(base: float, d: int, scaling: str) -> float:
    """Learning rate of theta_d at dimension d.

    Adam moves every coordinate of theta_d by about ``lr`` per step, so with (near-)orthogonal unit-norm projection
    columns one step moves the weights by about ``lr * sqrt(d)`` in norm: a fixed ``lr`` takes ever longer steps in
    weight space as d grows. ``"sqrt"`` keeps that length fixed: ``lr = base / sqrt(d)`` (``base`` is the step
    length, ``ProbeConfig.theta_step``); ``"constant"`` uses ``base`` at every d (Li et al. 2018).
    """
    if scaling not in LR_SCALINGS:
        raise PetlError(f"unknown lr scaling {scaling!r}; expected one of: {', '.join(LR_SCALINGS)}")
    if scaling == "constant":
        return float(base)
    return float(base) / math.sqrt(d)


@dataclass
class ProbeConfig:
    """What to probe and how (recorded in the result).

    Every decision of the probe (the refinement of the d grid, d90, the learning rate chosen for each d, the order
    of targets that never reach the threshold) reads validation accuracy. Test accuracy is computed once per trial
    and reported beside it; nothing reads it.

    Attributes:
        targets: catalogue specs, each probed as one subspace set S.
        per_block: expand each target into one set per block (``attn.v`` -> ``blocks.0.attn.v``, ...).
        dims: explicit d grid; ``None`` runs the adaptive search (coarse log grid, then refinement).
        projection: registered projection kind (``fastfood``, ``dense``, ``sparse``).
        threshold: fraction in (0, 1] defining d90 (0.9).
        seeds: seeds 0..seeds-1; each seed draws its own k-shot sample, training order and projection.
        head: ``train`` (initialised from the linear probe, trained jointly) or ``frozen`` (the linear-probe head).
        said: structure-aware intrinsic dimension (one learned scale per tensor, counted in d).
        d_min: smallest d of the coarse grid.
        points_per_decade: density of the coarse grid.
        max_d: largest d the adaptive search may try (default: D of each set); a set whose curve stays below the
            threshold up to it is reported as "not reached within max d".
        max_refinements: refinement rounds after the coarse grid.
        ft_lr: learning rate of the backbone in the full fine-tuning baseline (the ceiling). Every other setting of
            that baseline is the recipe's; raw weights need a smaller step than the subspace coordinates theta_d.
        lr_scaling: how theta_d's learning rate depends on d (:func:`theta_lr`): ``"sqrt"`` (default: ``theta_step
            / sqrt(d)``, the same step length in weight space at every d) or ``"constant"`` (the recipe's ``lr``
            at every d).
        theta_step: with ``"sqrt"``, the weight-space length of one Adam step on theta_d (1.0: lr 0.01 at
            d = 10,000, 0.1 at d = 100; chosen on validation in ``docs/probe_validation.md``).
        lr_grid: multipliers of that learning rate tried at every (target, d); the one with the best seed-mean
            validation accuracy is kept (``[1.0]``: the rule alone; ``[0.3, 1, 3]`` costs three times the trials).
        recipe: training recipe of every trial, baselines included (``recipe.lr`` is theta_d's rate only with
            ``lr_scaling="constant"``; ``recipe.head_lr`` is the classifier's in every trial).
    """

    targets: list[str] = field(default_factory=lambda: list(DEFAULT_PROBE_TARGETS))
    per_block: bool = False
    dims: list[int] | None = None
    projection: str = "fastfood"
    threshold: float = 0.9
    seeds: int = 2
    head: str = "train"
    said: bool = False
    d_min: int = 4
    points_per_decade: int = 2
    max_d: int | None = None
    ft_lr: float = 1e-3
    lr_scaling: str = "sqrt"
    theta_step: float = 1.0
    lr_grid: list[float] = field(default_factory=lambda: [1.0])
    max_refinements: int = 2
    recipe: Recipe = field(default_factory=default_probe_recipe)

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise PetlError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.seeds < 1:
            raise PetlError(f"seeds must be >= 1, got {self.seeds}")
        if self.head not in HEAD_MODES:
            raise PetlError(f"unknown head mode {self.head!r}; expected one of: {', '.join(HEAD_MODES)}")
        if self.lr_scaling not in LR_SCALINGS:
            raise PetlError(f"unknown lr scaling {self.lr_scaling!r}; expected one of: {', '.join(LR_SCALINGS)}")
        if not self.lr_grid or any(not (m > 0 and math.isfinite(m)) for m in self.lr_grid):
            raise PetlError(f"lr_grid must be positive learning-rate multipliers, e.g. [0.3, 1, 3]; got {self.lr_grid}")
        if len(set(self.lr_grid)) != len(self.lr_grid):
            raise PetlError(f"lr_grid has repeated multipliers: {self.lr_grid}")
        if not self.ft_lr > 0 or not self.theta_step > 0:
            raise PetlError(f"ft_lr and theta_step must be > 0, got {self.ft_lr} and {self.theta_step}")
        if self.max_d is not None and self.max_d < 1:
            raise PetlError(f"max_d must be a positive integer, got {self.max_d}")
        if self.dims is not None and (not self.dims or min(self.dims) < 1):
            raise PetlError(f"dims must be positive integers, got {self.dims}")

    @property
    def floor(self) -> str:
        """The baseline that is the curve's d = 0 point: the trained head (``head``), or the frozen linear probe."""
        return "head" if self.head == "train" else "lp"

    def base_theta_lr(self) -> float:
        return self.theta_step if self.lr_scaling == "sqrt" else self.recipe.lr


@dataclass
class D90:
    """A d90 estimate: ``value`` is None when the threshold was not reached within the largest d tried.

    ``threshold_acc`` is the mean of ``threshold_per_seed`` (each seed's bar from its own floor and ceiling);
    ``ci_low``/``ci_high`` are ``None`` with one seed (:func:`~petl_analysis.probe.d90.format_ci` says so).
    """

    threshold_acc: float
    threshold_per_seed: list[float]
    value: float | None
    ci_low: float | None
    ci_high: float | None
    reached: bool
    below_min: bool
    reached_fraction: float
    n_seeds: int

    def text(self) -> str:
        return d90_lib.format_d90(self.value, self.reached, self.below_min)

    def ci_text(self) -> str:
        return d90_lib.format_ci(self.ci_low, self.ci_high, self.n_seeds)


@dataclass
class Baseline:
    """A baseline per seed: validation accuracy (what the thresholds read) and test accuracy (reported only)."""

    val_per_seed: list[float]
    test_per_seed: list[float]
    val_mean: float
    val_std: float
    test_mean: float
    test_std: float
    trainable: int

    @classmethod
    def from_seeds(cls, val: list[float], test: list[float], trainable: int) -> "Baseline":
        return cls(list(val), list(test), float(np.mean(val)), float(np.std(val)), float(np.mean(test)),
                   float(np.std(test)), int(trainable))


@dataclass
class TargetResult:
    """The local-intrinsic-dimension curve and d90 of one target set S.

    ``val_*`` is the curve every decision reads (validation accuracy at the best-validation epoch, per d and seed);
    ``test_*`` is reported beside it. ``lr`` is theta_d's learning rate at each d (chosen on validation when the
    config has an ``lr_grid``).
    """

    target: str
    units: list[str]
    D: int
    dims: list[int]
    val_mean: list[float]
    val_std: list[float]
    val_per_seed: list[list[float]]
    test_mean: list[float]
    test_per_seed: list[list[float]]
    lr: list[float]
    fitted: list[float]
    d90: D90  # gain-normalised (the ranking default)
    d90_classic: D90
    trials: int
    failed_trials: int
    wall_time_s: float

    @property
    def best_val(self) -> float:
        vals = [a for a in self.val_mean if math.isfinite(a)]
        return max(vals) if vals else float("nan")


@dataclass
class ProbeResult(Artefact):
    """Output of the probe stage (``probe.json``).

    ``baselines`` holds ``lp`` (linear probe on frozen features), ``head`` (the head alone trained with the trial
    recipe from the linear-probe init: the curve's d = 0 point; only with ``head="train"``) and ``ft`` (full
    fine-tuning with the trial recipe and ``ft_lr``: the ceiling). ``n_val`` and ``n_test`` are the split sizes.
    """

    SCHEMA = "probe_result"
    VERSION = 2

    model: ModelSpec
    data: DataSpec
    config: ProbeConfig
    baselines: dict[str, Baseline]
    targets: list[TargetResult]
    trials_total: int
    failed_trials: int
    wall_time_s: float
    n_train: int = 0
    n_val: int = 0
    n_test: int = 0
    trials_log: str = ""
    #: One entry per failed subspace trial: target, d, seed and error (each was retried once before).
    failed: list[dict[str, Any]] = field(default_factory=list)
    #: How the dataset's images were converted for the model (channels, size).
    input_conversion: InputConversion | None = None

    @property
    def floor(self) -> Baseline:
        return self.baselines[self.config.floor]

    @property
    def ceiling(self) -> Baseline:
        return self.baselines["ft"]

    def unresolved_gain(self) -> str | None:
        """:func:`unresolved_gain` of this probe's floor and ceiling (None: d90s can order the targets)."""
        return unresolved_gain((self.floor.val_mean, self.floor.val_std),
                               (self.ceiling.val_mean, self.ceiling.val_std), self.n_val)

    def ranked(self) -> list[TargetResult]:
        """Targets by gain-normalised d90 ascending; not-reached last (by best validation accuracy)."""
        return sorted(self.targets, key=_rank_key)

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for t in self.ranked():
            rows.append({
                "target": t.target,
                "D": t.D,
                "d90": t.d90.text(),
                "d90 CI": t.d90.ci_text(),
                "d90 classic": t.d90_classic.text(),
                "best val acc": t.best_val,
                "trials": t.trials,
                "time_s": round(t.wall_time_s, 1),
            })
        return rows


def unresolved_gain(floor: tuple[float, float], ceiling: tuple[float, float], n_val: int = 0) -> str | None:
    """Why the ceiling's gain over the floor is too small to normalise d90 by, or None when it is resolved.

    ``floor`` and ``ceiling`` are (mean, std over seeds) validation accuracies (fractions) of the head alone and of
    full fine-tuning; ``n_val`` the validation images each is scored on (0: unknown). The gain is unresolved when
    it is not positive, under :data:`RESOLVED_IMAGES` validation images, or within the seeds' spread: the
    gain-normalised threshold then sits inside the noise and d90s do not order the targets.
    """
    (f, f_std), (c, c_std) = floor, ceiling
    what = f"full fine-tuning ({100 * c:.1f}% validation)"
    if c <= f:
        return f"{what} does not beat the head trained alone ({100 * f:.1f}%)"
    if n_val and (c - f) * n_val < RESOLVED_IMAGES:
        return (f"{what} beats the head trained alone ({100 * f:.1f}%) by {(c - f) * n_val:.1f} of the "
                f"{n_val:,} validation images, under {RESOLVED_IMAGES}")
    spread = math.hypot(f_std, c_std)
    if c - f <= spread:
        return (f"{what} is not clearly above the head trained alone ({100 * f:.1f}%): the gain is within the seed "
                f"spread ({100 * spread:.1f} points)")
    return None


def _rank_key(t: TargetResult) -> tuple[int, float]:
    if t.d90.reached and t.d90.value is not None:
        return (0, t.d90.value)
    return (1, -(t.best_val if math.isfinite(t.best_val) else 0.0))


# --------------------------------------------------------------------------------------------------- workers


@functools.lru_cache(maxsize=2)
def _dataset(name: str, skip_bad_images: bool = False):
    """Built-ins in memory, folders as a file index (decoded per batch); one per worker process."""
    return open_dataset(name, skip_bad_images=skip_bad_images)


@dataclass
class ProbeTrial:
    """What one probe trial trains: a baseline (``lp``, ``head``, ``ft`` with ``ft_lr``) or, with the subspace
    fields, theta_d of dimension ``d`` over ``units`` at learning rate ``lr``."""

    model: ModelSpec
    recipe: Recipe
    device: str
    threads: int
    data: DataSpec
    seed: int
    ft_lr: float | None = None
    units: list[str] | None = None
    d: int | None = None
    lr: float | None = None
    projection: str | None = None
    said: bool | None = None
    head: str | None = None


class _Memo:
    """Memoises ``fn`` on the canonical JSON of its arguments (specs holding dicts cannot be hashed for lru_cache)."""

    def __init__(self, fn: Callable[..., Any], maxsize: int) -> None:
        self.fn, self.maxsize, self.cache = fn, maxsize, {}
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any) -> Any:
        key = key_json(list(args))
        if key not in self.cache:
            if len(self.cache) >= self.maxsize:
                self.cache.pop(next(iter(self.cache)))
            self.cache[key] = self.fn(*args)
        return self.cache[key]

    def cache_clear(self) -> None:
        self.cache.clear()


def _prepare(model_spec: ModelSpec, data: DataSpec, seed: int, recipe: Recipe, device: str) -> tuple[Any, Task]:
    """The seed's task and a model with its linear-probe head (computed once per worker process)."""
    ds = _dataset(data.dataset, data.skip_bad_images)
    model = prepare_model(model_spec, ds.num_classes, seed=seed)
    task = build_task(data, model, dataset=ds, augment=recipe.augment)
    lp = fit_linear_probe(model, task, recipe, seed=seed, device=device)
    return (model.cpu(), lp), task


_prepared = _Memo(_prepare, maxsize=8)


def probe_trial(trial: Trial) -> dict[str, Any]:
    """Worker: run one baseline (``lp``, ``head``, ``ft``) or ``subspace`` trial described by its :class:`ProbeTrial`."""
    p = trial.spec(ProbeTrial)
    torch.set_num_threads(max(1, p.threads))
    device, seed, recipe = p.device, p.seed, p.recipe
    (base, lp), task = _prepared(p.model, p.data, seed, recipe, device)
    if trial.kind == "lp":
        return _summary(lp, device)
    model = copy.deepcopy(base)
    head = classifier(model)
    if trial.kind == "ft":
        model.requires_grad_(True)  # raw weights want a smaller step than subspace coordinates
        recipe = dataclasses.replace(recipe, lr=float(p.ft_lr), head_lr=recipe.head_lr or recipe.lr)
        return _summary(fit(model, task.train, task.val, recipe, test=task.test, seed=seed, device=device), device)
    model.requires_grad_(False)
    if trial.kind == "head":  # d = 0: the trial recipe with no subspace, the curve's floor
        head.requires_grad_(True)
        return _summary(fit(model, task.train, task.val, recipe, test=task.test, seed=seed, device=device), device)
    if trial.kind != "subspace":
        raise ValueError(f"unknown probe trial kind {trial.kind!r}")
    head.requires_grad_(p.head == "train")
    units = resolve_targets(model, p.units)
    wrapped = SubspaceModel(model, units, int(p.d), projection=p.projection, seed=seed, said=bool(p.said))
    recipe = dataclasses.replace(recipe, lr=float(p.lr), head_lr=recipe.head_lr or recipe.lr)
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
        "n_train": res.n_train,
        "n_val": res.n_val,
        "n_test": res.n_test,
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

    The curve of a target is its validation accuracy against d; its floor is the head trained alone with the
    trial recipe (d = 0) and its ceiling full fine-tuning with the same recipe, both per seed, so each seed has its
    own threshold. Test accuracy is recorded for every trial and read by nothing here.

    Args:
        out: where to write ``probe.json`` (atomically). ``log_path`` defaults to ``<out>.trials.jsonl``; rerunning
            with the same log skips finished trials.
        n_jobs: parallel worker processes (joblib); ``threads_per_job`` torch threads each.
        on_trial: called per finished (or cached) trial; ``on_round(round, n_trials)`` before each round.
    """
    start = time.perf_counter()
    ds = _dataset(data.dataset, data.skip_bad_images)
    template = prepare_model(model, ds.num_classes, seed=0)
    conversion = input_conversion(ds, template)
    announce(conversion, data.dataset)
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
    seeds = list(range(config.seeds))
    base_lr = config.base_theta_lr()

    def spec(seed: int, **fields: Any) -> ProbeTrial:
        return ProbeTrial(model=model, recipe=config.recipe, device=device, threads=threads, data=data.for_seed(seed),
                          seed=seed, **fields)

    def base_trial(kind: str, seed: int) -> Trial:
        return Trial.of(kind, spec(seed, ft_lr=config.ft_lr if kind == "ft" else None))

    def sub_trial(label: str, d: int, seed: int, mult: float) -> Trial:
        return Trial.of("subspace", spec(seed, units=sets[label], d=int(d),
                                         lr=theta_lr(base_lr, d, config.lr_scaling) * mult,
                                         projection=config.projection, said=config.said, head=config.head))

    run = functools.partial(run_trials, log=log, n_jobs=n_jobs, on_record=on_trial, backend=backend,
                            scheduler=scheduler)
    kinds = ("lp", "head", "ft") if config.floor == "head" else ("lp", "ft")
    if on_round:
        on_round(0, len(kinds) * len(seeds))
    baseline_recs = run([base_trial(k, s) for k in kinds for s in seeds], probe_trial)
    baselines = {}
    for kind in kinds:
        recs = [baseline_recs[base_trial(kind, s).key] for s in seeds]
        bad = next((r for r in recs if r["status"] != STATUS_OK), None)
        if bad is not None:
            raise PetlError(f"the {kind} baseline failed: {bad.get('error') or 'no error message'}")
        baselines[kind] = Baseline.from_seeds([r["result"]["val_acc"] for r in recs],
                                              [r["result"]["test_acc"] for r in recs],
                                              int(recs[0]["result"]["trainable"]["total_incl_head"]))
    floor, ceiling = baselines[config.floor].val_per_seed, baselines["ft"].val_per_seed
    target_gain = [d90_lib.threshold_value(f, c, config.threshold, mode="gain") for f, c in zip(floor, ceiling)]
    target_classic = [d90_lib.threshold_value(f, c, config.threshold, mode="classic") for f, c in zip(floor, ceiling)]

    dims_of: dict[str, list[int]] = {
        label: sorted(set(config.dims)) if config.dims else d90_lib.coarse_grid(D_of[label], d_min=config.d_min,
                                                                            points_per_decade=config.points_per_decade,
                                                                            d_max=config.max_d)
        for label in sets
    }
    records: dict[str, dict[str, Any]] = {}

    def label_records(label: str) -> dict[tuple[int, int, float], dict[str, Any]]:
        """(d, seed, lr multiplier) -> trial record of one target (every trial asked for has one)."""
        return {(d, s, m): records[sub_trial(label, d, s, m).key]
                for d in dims_of[label] for s in seeds for m in config.lr_grid}

    def curve(label: str, recs: dict[tuple[int, int, float], dict[str, Any]] | None = None) -> _Curve:
        return _choose_lr(dims_of[label], seeds, config.lr_grid, recs or label_records(label))

    rounds = 1 if config.dims else 1 + config.max_refinements
    pending = {label: list(dims) for label, dims in dims_of.items()}
    for r in range(rounds):
        trials = [sub_trial(label, d, s, m) for label, dims in pending.items() for d in dims for s in seeds
                  for m in config.lr_grid]
        if not trials:
            break
        if on_round:
            on_round(r + 1, len(trials))
        records.update(run(trials, probe_trial))
        if config.dims or r == rounds - 1:
            break  # the last round proposes nothing: a proposal would never be run
        pending = {}
        for label in sets:
            c = curve(label)
            proposed = d90_lib.next_dims(c.dims, c.val, target_gain, max_d=min(D_of[label], config.max_d or D_of[label]))
            proposed = [d for d in proposed if d not in dims_of[label]]
            if proposed:
                dims_of[label] = sorted(set(dims_of[label]) | set(proposed))
                pending[label] = proposed

    results, failed = [], []
    for label in sets:
        recs = label_records(label)
        results.append(_target_result(label, sets[label], D_of[label], curve(label, recs), target_gain,
                                      target_classic, list(recs.values())))
        failed += [{"target": label, "d": d, "seed": s, "lr": rec["payload"]["lr"],
                    "error": rec.get("error") or "no error message", "attempts": rec.get("attempts")}
                   for (d, s, _), rec in recs.items() if rec["status"] != STATUS_OK]
    all_records = list(baseline_recs.values()) + list(records.values())
    sizes = baseline_recs[base_trial("ft", 0).key]["result"]
    result = ProbeResult(
        model=spec_with_load(model, template),
        data=data,
        config=config,
        baselines=baselines,
        targets=results,
        trials_total=len(all_records),
        failed_trials=sum(r["status"] != STATUS_OK for r in all_records),
        wall_time_s=time.perf_counter() - start,
        n_train=int(sizes.get("n_train", 0)),
        n_val=int(sizes.get("n_val", 0)),
        n_test=int(sizes.get("n_test", 0)),
        trials_log=str(log_file) if log_file else "",
        failed=failed,
        input_conversion=conversion,
    )
    if out:
        result.save(out)
    return result


@dataclass
class _Curve:
    """One target's accuracy per (d, seed) at the learning rate chosen for each d; NaN for failed trials."""

    dims: list[int]
    val: np.ndarray  # (n_dims, n_seeds)
    test: np.ndarray
    lr: list[float]


def _choose_lr(dims, seeds, grid, recs: dict[tuple[int, int, float], dict[str, Any]]) -> _Curve:
    """For each d, the lr multiplier with the best seed-mean validation accuracy (ties: the one nearest the rule).

    ``recs`` maps (d, seed, multiplier) to the trial record; the learning rate is read from its payload."""
    val_rows, test_rows, lrs = [], [], []
    for d in dims:
        options = []
        for m in grid:
            val = [_acc(recs[d, s, m], "val_acc") for s in seeds]
            finite = [v for v in val if math.isfinite(v)]
            options.append((-float(np.mean(finite)) if finite else math.inf, abs(math.log(m)), m))
        m = min(options)[2]
        val_rows.append([_acc(recs[d, s, m], "val_acc") for s in seeds])
        test_rows.append([_acc(recs[d, s, m], "test_acc") for s in seeds])
        lrs.append(float(recs[d, seeds[0], m]["payload"]["lr"]))
    return _Curve(list(dims), np.array(val_rows, dtype=float).reshape(len(dims), len(seeds)),
                  np.array(test_rows, dtype=float).reshape(len(dims), len(seeds)), lrs)


def _acc(record: dict[str, Any], key: str) -> float:
    if record.get("status") != STATUS_OK or record["result"].get(key) is None:
        return float("nan")
    return float(record["result"][key])


def _to_d90(est: d90_lib.D90Estimate, per_seed: list[float]) -> D90:
    return D90(threshold_acc=est.target, threshold_per_seed=[float(t) for t in per_seed], value=est.d90,
               ci_low=est.ci_low, ci_high=est.ci_high, reached=est.reached, below_min=est.below_min,
               reached_fraction=est.reached_fraction, n_seeds=est.n_seeds)


def _row_stats(arr: np.ndarray, fn) -> list[float]:
    return [float(fn(row)) if not np.isnan(row).all() else float("nan") for row in arr]


def _target_result(label, units, D, c: _Curve, target_gain, target_classic, recs) -> TargetResult:
    gain = d90_lib.estimate_d90(c.dims, c.val, target_gain)
    classic = d90_lib.estimate_d90(c.dims, c.val, target_classic)
    return TargetResult(
        target=label,
        units=list(units),
        D=int(D),
        dims=[int(d) for d in c.dims],
        val_mean=_row_stats(c.val, np.nanmean),
        val_std=_row_stats(c.val, np.nanstd),
        val_per_seed=c.val.tolist(),
        test_mean=_row_stats(c.test, np.nanmean),
        test_per_seed=c.test.tolist(),
        lr=c.lr,
        fitted=[float(v) for v in gain.fitted_at(c.dims)],
        d90=_to_d90(gain, target_gain),
        d90_classic=_to_d90(classic, target_classic),
        trials=len(recs),
        failed_trials=sum(r["status"] != STATUS_OK for r in recs),
        wall_time_s=float(sum(r.get("wall_time_s", 0.0) for r in recs)),
    )
