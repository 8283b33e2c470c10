"""The probe driver: the baselines, then the adaptive search over d for every target, then d90 per target.

For each target set S and dimension d, a short training of ``theta_S = theta0_S + P theta_d`` gives a validation
accuracy; the coarse log grid is refined between the bracketing points (:func:`~petl_analysis.probe.d90.next_dims`)
and d90 estimated from the seeds (:func:`~petl_analysis.probe.d90.estimate_d90`). Every trial goes through
:mod:`petl_analysis.trials`, so a probe is resumable and parallel.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import PetlError
from ..models import ModelSpec, resolve_targets, spec_with_load
from ..task import DataSpec
from ..trials import Trial, TrialRecord, open_trial_log
from . import d90 as d90_lib
from .config import ProbeConfig, theta_lr
from .result import Baseline, ProbeResult, TargetResult
from .subspace import subspace_size
from .trial import ProbeTrial, probe_trial

if TYPE_CHECKING:
    from ..study import Study


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
    compile: bool = False,
    grad_checkpointing: bool = False,
    log_to: str | None = None,
    threads_per_job: int | None = None,
    on_trial: Callable[[TrialRecord, bool], None] | None = None,
    on_round: Callable[[int, int], None] | None = None,
) -> ProbeResult:
    """Measure the local intrinsic dimension of each target; return (and optionally save) a :class:`ProbeResult`.

    Builds a :class:`~petl_analysis.study.Study` with these execution options and calls :func:`probe_study`.

    Args:
        out: where to write ``probe.json`` (atomically). ``log_path`` defaults to ``<out>.trials.jsonl``; rerunning
            with the same log skips finished trials.
        n_jobs: parallel worker processes (joblib); ``threads_per_job`` torch threads each.
        compile, grad_checkpointing: :func:`~petl_analysis.engine.fit`'s options, outside the trial keys (grad
            checkpointing applies to the baselines; a subspace trial cannot replay its substitution).
        log_to: where each trial's epochs are logged (:mod:`~petl_analysis.epoch_log`).
        on_trial: called per finished (or cached) trial; ``on_round(round, n_trials)`` before each round.
    """
    from ..study import Study

    study = Study(
        model,
        data,
        device=device,
        n_jobs=n_jobs,
        backend=backend,
        scheduler=scheduler,
        compile=compile,
        grad_checkpointing=grad_checkpointing,
        log_to=log_to,
        on_trial=on_trial,
    )
    return study.probe(config, out=out, log_path=log_path, threads_per_job=threads_per_job, on_round=on_round)


def probe_study(
    study: Study,
    config: ProbeConfig,
    *,
    log: Path | None = None,
    threads_per_job: int | None = None,
    on_round: Callable[[int, int], None] | None = None,
) -> ProbeResult:
    """The probe stage on ``study``: trials in the log at ``log`` (None: in memory); returns the result.

    The curve of a target is its validation accuracy against d; its floor is the head trained alone with the
    trial recipe (d = 0) and its ceiling full fine-tuning with the same recipe, both per seed, so each seed has its
    own threshold. Test accuracy is recorded for every trial and read by nothing here.
    """
    start = time.perf_counter()
    template, conversion = study.template, study.conversion
    sets = expand_targets(template, config.targets, config.per_block)
    opened = open_trial_log(log)  # one log for every round (an in-memory one keeps the earlier rounds)
    search = _Search(
        study.model,
        study.data,
        config,
        sets,
        _subspace_sizes(template, sets, config.dims),
        device=study.device,
        threads=threads_per_job or study.threads_per_job(),
        run=functools.partial(study.run_trials, log=opened),
        on_round=on_round,
    )
    baselines = search.baselines()
    floor, ceiling = baselines[config.floor].val_per_seed, baselines["ft"].val_per_seed
    bars = {
        mode: [d90_lib.threshold_value(f, c, config.threshold, mode=mode) for f, c in zip(floor, ceiling)]
        for mode in ("gain", "classic")
    }  # each seed's own threshold, from its own floor and ceiling
    search.refine(bars["gain"])
    results, failed = search.target_results(bars["gain"], bars["classic"])
    records = list(search.baseline_records.values()) + list(search.records.values())
    sizes = search.baseline_records[search.base_trial("ft", 0).key].result
    return ProbeResult(
        model=spec_with_load(study.model, template),
        data=study.data_record,
        config=config,
        baselines=baselines,
        targets=results,
        trials_total=len(records),
        failed_trials=sum(not r.ok for r in records),
        wall_time_s=time.perf_counter() - start,
        n_train=int(sizes.get("n_train", 0)),
        n_val=int(sizes.get("n_val", 0)),
        n_test=int(sizes.get("n_test", 0)),
        trials_log=str(log) if log else "",
        failed=failed,
        input_conversion=conversion,
    )


def _subspace_sizes(template: Any, sets: dict[str, list[str]], dims: list[int] | None) -> dict[str, int]:
    """D of every target set; an explicit d grid must fit each (a one-line error names the first that does not)."""
    D_of = {label: subspace_size(resolve_targets(template, names)) for label, names in sets.items()}
    too_big = [(label, d) for label in sets for d in (dims or []) if d > D_of[label]]
    if too_big:
        label, d = too_big[0]
        raise PetlError(f"d={d} exceeds D={D_of[label]} of target {label!r}; the largest d for it is {D_of[label]}")
    return D_of


class _Search:
    """The trials of one probe: the spec of each, the records the log returned, and each target's grid of d."""

    def __init__(
        self,
        model: ModelSpec,
        data: DataSpec,
        config: ProbeConfig,
        sets: dict[str, list[str]],
        D_of: dict[str, int],
        *,
        device: str,
        threads: int,
        run: Callable[..., dict[str, TrialRecord]],
        on_round: Callable[[int, int], None] | None,
    ) -> None:
        self.model, self.data, self.config, self.sets, self.D_of = model, data, config, sets, D_of
        self.device, self.threads, self.run, self.on_round = device, threads, run, on_round
        self.seeds = list(range(config.seeds))
        self.base_lr = config.base_theta_lr()
        self.baseline_records: dict[str, TrialRecord] = {}
        self.records: dict[str, TrialRecord] = {}
        self.dims_of: dict[str, list[int]] = {
            label: sorted(set(config.dims))
            if config.dims
            else d90_lib.coarse_grid(
                D_of[label], d_min=config.d_min, points_per_decade=config.points_per_decade, d_max=config.max_d
            )
            for label in sets
        }

    def _spec(self, seed: int, **fields: Any) -> ProbeTrial:
        return ProbeTrial(
            model=self.model,
            recipe=self.config.recipe,
            device=self.device,
            threads=self.threads,
            data=self.data.for_seed(seed),
            seed=seed,
            **fields,
        )

    def base_trial(self, kind: str, seed: int) -> Trial:
        return Trial.of(kind, self._spec(seed, ft_lr=self.config.ft_lr if kind == "ft" else None))

    def sub_trial(self, label: str, d: int, seed: int, mult: float) -> Trial:
        cfg = self.config
        return Trial.of(
            "subspace",
            self._spec(
                seed,
                units=self.sets[label],
                d=int(d),
                lr=theta_lr(self.base_lr, d, cfg.lr_scaling) * mult,
                projection=cfg.projection,
                said=cfg.said,
                head=cfg.head,
            ),
        )

    def baselines(self) -> dict[str, Baseline]:
        """Run (or read back) every seed's baselines: ``lp``, ``head`` (the floor with ``head="train"``), ``ft``."""
        kinds = ("lp", "head", "ft") if self.config.floor == "head" else ("lp", "ft")
        if self.on_round:
            self.on_round(0, len(kinds) * len(self.seeds))
        self.baseline_records = self.run([self.base_trial(k, s) for k in kinds for s in self.seeds], probe_trial)
        baselines = {}
        for kind in kinds:
            recs = [self.baseline_records[self.base_trial(kind, s).key] for s in self.seeds]
            bad = next((r for r in recs if not r.ok), None)
            if bad is not None:
                raise PetlError(f"the {kind} baseline failed: {bad.error or 'no error message'}")
            baselines[kind] = Baseline.from_seeds(
                [r.result["val_acc"] for r in recs],
                [r.result["test_acc"] for r in recs],
                int(recs[0].result["trainable"]["total_incl_head"]),
            )
        return baselines

    def label_records(self, label: str) -> dict[tuple[int, int, float], TrialRecord]:
        """(d, seed, lr multiplier) -> trial record of one target (every trial asked for has one)."""
        return {
            (d, s, m): self.records[self.sub_trial(label, d, s, m).key]
            for d in self.dims_of[label]
            for s in self.seeds
            for m in self.config.lr_grid
        }

    def curve(self, label: str, recs: dict[tuple[int, int, float], TrialRecord] | None = None) -> _Curve:
        return _choose_lr(self.dims_of[label], self.seeds, self.config.lr_grid, recs or self.label_records(label))

    def refine(self, target_gain: list[float]) -> None:
        """The coarse grid, then rounds of d proposed between the bracketing points (none with explicit dims)."""
        cfg = self.config
        rounds = 1 if cfg.dims else 1 + cfg.max_refinements
        pending = {label: list(dims) for label, dims in self.dims_of.items()}
        for r in range(rounds):
            trials = [
                self.sub_trial(label, d, s, m)
                for label, dims in pending.items()
                for d in dims
                for s in self.seeds
                for m in cfg.lr_grid
            ]
            if not trials:
                break
            if self.on_round:
                self.on_round(r + 1, len(trials))
            self.records.update(self.run(trials, probe_trial))
            if cfg.dims or r == rounds - 1:
                break  # the last round proposes nothing: a proposal would never be run
            pending = {}
            for label in self.sets:
                c = self.curve(label)
                D = self.D_of[label]
                proposed = d90_lib.next_dims(c.dims, c.val, target_gain, max_d=min(D, cfg.max_d or D))
                proposed = [d for d in proposed if d not in self.dims_of[label]]
                if proposed:
                    self.dims_of[label] = sorted(set(self.dims_of[label]) | set(proposed))
                    pending[label] = proposed

    def target_results(
        self, target_gain: list[float], target_classic: list[float]
    ) -> tuple[list[TargetResult], list[dict[str, Any]]]:
        """Each target's curve and d90s, and one entry per failed subspace trial."""
        results, failed = [], []
        for label in self.sets:
            recs = self.label_records(label)
            results.append(
                _target_result(
                    label,
                    self.sets[label],
                    self.D_of[label],
                    self.curve(label, recs),
                    target_gain,
                    target_classic,
                    list(recs.values()),
                )
            )
            failed += [
                {
                    "target": label,
                    "d": d,
                    "seed": s,
                    "lr": rec.payload["lr"],
                    "error": rec.error or "no error message",
                    "attempts": rec.attempts,
                }
                for (d, s, _), rec in recs.items()
                if not rec.ok
            ]
        return results, failed


@dataclass
class _Curve:
    """One target's accuracy per (d, seed) at the learning rate chosen for each d; NaN for failed trials."""

    dims: list[int]
    val: np.ndarray  # (n_dims, n_seeds)
    test: np.ndarray
    lr: list[float]


def _choose_lr(dims, seeds, grid, recs: dict[tuple[int, int, float], TrialRecord]) -> _Curve:
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
        lrs.append(float(recs[d, seeds[0], m].payload["lr"]))
    return _Curve(
        list(dims),
        np.array(val_rows, dtype=float).reshape(len(dims), len(seeds)),
        np.array(test_rows, dtype=float).reshape(len(dims), len(seeds)),
        lrs,
    )


def _acc(record: TrialRecord, key: str) -> float:
    if not record.ok or record.result.get(key) is None:
        return float("nan")
    return float(record.result[key])


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
        d90=gain,
        d90_classic=classic,
        trials=len(recs),
        failed_trials=sum(not r.ok for r in recs),
        wall_time_s=float(sum(r.wall_time_s or 0.0 for r in recs)),
    )
