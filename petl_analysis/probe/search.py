"""The probe driver: the baselines, then the adaptive search over d for every target, then d90 per target.

For each target set S and dimension d, a short training of ``theta_S = theta0_S + P theta_d`` gives a validation
accuracy; the coarse log grid is refined between the bracketing points (:func:`~petl_analysis.probe.d90.next_dims`)
and d90 estimated from the seeds (:func:`~petl_analysis.probe.d90.estimate_d90`). Every trial goes through
:mod:`petl_analysis.trials`, so a probe is resumable and parallel.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine import Recipe
from ..errors import PetlError
from ..models import ModelSpec, resolve_targets, spec_with_load
from ..task import DataSpec
from ..trials import Trial, TrialRecord, open_trial_log
from . import d90 as d90_lib
from .config import ProbeConfig, theta_lr
from .result import RESOLVED_IMAGES, Baseline, ProbeResult, TargetResult, sample_std
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
    if config.search == "lean":
        search.race(bars["gain"], search.decision_tolerance(bars["gain"]))
    else:
        search.refine(bars["gain"])
    results, failed = search.target_results(bars["gain"], bars["classic"])
    records = list(search.baseline_records.values()) + list(search.records.values())
    sizes = search.split_sizes
    return ProbeResult(
        model=spec_with_load(study.model, template),
        data=study.data_record,
        config=config,
        baselines=baselines,
        targets=results,
        trials_total=len(records),
        failed_trials=sum(not r.ok for r in records),
        wall_time_s=time.perf_counter() - start,
        n_train=sizes["n_train"],
        n_val=sizes["n_val"],
        n_test=sizes["n_test"],
        trials_log=str(log) if log else "",
        failed=failed,
        input_conversion=conversion,
    )


def probe_baselines(
    study: Study, config: ProbeConfig, *, log: Path | None = None, threads_per_job: int | None = None
) -> tuple[dict[str, Baseline], int]:
    """The probe's baselines alone (``lp``, ``head``, ``ft`` per seed) and the validation pool size: whether a task
    has a gain of full fine-tuning over the head for d90 to divide, before any subspace trial is paid for. The
    trials are the probe's own (same keys), so a probe run later with the same log reuses them."""
    search = _Search(
        study.model,
        study.data,
        config,
        {},
        {},
        device=study.device,
        threads=threads_per_job or study.threads_per_job(),
        run=functools.partial(study.run_trials, log=open_trial_log(log)),
        on_round=None,
    )
    baselines = search.baselines()
    return baselines, search.split_sizes["n_val"]


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
        self.seeds_at: dict[tuple[str, int], int] = {}  # the lean race's seeds run at (label, d); absent: all
        self.lr_extra: dict[tuple[str, int], list[float]] = {}  # lr_grid_extend's multipliers at (label, d)
        self.dims_of: dict[str, list[int]] = {
            label: sorted(set(config.dims))
            if config.dims
            else d90_lib.coarse_grid(
                D_of[label], d_min=config.d_min, points_per_decade=config.points_per_decade, d_max=config.max_d
            )
            for label in sets
        }

    def _spec(self, seed: int, recipe: Recipe | None = None, **fields: Any) -> ProbeTrial:
        return ProbeTrial(
            model=self.model,
            recipe=recipe or self.config.recipe,
            device=self.device,
            threads=self.threads,
            data=self.data.for_seed(seed),
            seed=seed,
            **fields,
        )

    def base_trial(self, kind: str, seed: int) -> Trial:
        return Trial.of(kind, self._spec(seed, ft_lr=self.config.ft_lr if kind == "ft" else None))

    def sub_trial(self, label: str, d: int, seed: int, mult: float, *, full: bool = False) -> Trial:
        """One subspace training; with :attr:`ProbeConfig.lr_screen_epochs`, a screen (that many epochs) unless
        ``full``."""
        cfg = self.config
        screen = cfg.lr_screen_epochs is not None and not full
        return Trial.of(
            "subspace",
            self._spec(
                seed,
                recipe=dataclasses.replace(cfg.recipe, epochs=cfg.lr_screen_epochs) if screen else None,
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

    @property
    def split_sizes(self) -> dict[str, int]:
        """``n_train``, ``n_val``, ``n_test`` of the probe's split, as the first ceiling trial saw them (every trial
        of a probe trains on the same split; 0 where a record predates the field)."""
        result = self.baseline_records[self.base_trial("ft", 0).key].result
        return {k: int(result.get(k, 0) or 0) for k in ("n_train", "n_val", "n_test")}

    def decision_tolerance(self, bars: list[float]) -> float:
        """The margin under which one lean-race point is not decided: the validation resolution
        (:data:`RESOLVED_IMAGES` images) or the sample spread of the seeds' bars, whichever is larger."""
        n_val = self.split_sizes["n_val"]
        resolution = RESOLVED_IMAGES / n_val if n_val else 0.0
        spread = sample_std(bars)
        return max(resolution, 0.0 if math.isnan(spread) else spread)

    def lr_grid_at(self, label: str, d: int) -> list[float]:
        """The multipliers tried at (label, d): the grid and what :attr:`ProbeConfig.lr_grid_extend` added there."""
        return sorted({*self.config.lr_grid, *self.lr_extra.get((label, d), [])})

    def seeds_run(self, label: str, d: int) -> list[int]:
        return self.seeds[: self.seeds_at.get((label, d), len(self.seeds))]

    def label_records(self, label: str) -> dict[tuple[int, int, float], TrialRecord]:
        """(d, seed, lr multiplier) -> the learning-rate search's trial record of one target (every trial asked for
        has one): the screens with :attr:`ProbeConfig.lr_screen_epochs`, else the full trainings."""
        return {
            (d, s, m): self.records[self.sub_trial(label, d, s, m).key]
            for d in self.dims_of[label]
            for s in self.seeds_run(label, d)
            for m in self.lr_grid_at(label, d)
        }

    def full_records(
        self, label: str, recs: dict[tuple[int, int, float], TrialRecord] | None = None
    ) -> dict[tuple[int, int, float], TrialRecord]:
        """With screens: (d, seed, multiplier) -> the full training at the multiplier the screens chose at each d
        (empty without screens: the search's records are the full ones)."""
        if self.config.lr_screen_epochs is None:
            return {}
        chosen = self.chosen_mult(label, recs)
        return {
            (d, s, m): self.records[self.sub_trial(label, d, s, m, full=True).key]
            for d, m in chosen.items()
            for s in self.seeds_run(label, d)
        }

    def chosen_mult(
        self, label: str, recs: dict[tuple[int, int, float], TrialRecord] | None = None
    ) -> dict[int, float]:
        """d -> the multiplier the learning-rate search keeps (best seed-mean validation of its records)."""
        grids = {d: self.lr_grid_at(label, d) for d in self.dims_of[label]}
        c = _choose_lr(self.dims_of[label], self.seeds, grids, recs or self.label_records(label))
        return dict(zip(c.dims, c.mult))

    def curve(self, label: str, recs: dict[tuple[int, int, float], TrialRecord] | None = None) -> _Curve:
        """Accuracy per (d, seed) at the kept multiplier: the full trainings (read at that multiplier only)."""
        recs = recs or self.label_records(label)
        if self.config.lr_screen_epochs is None:
            grids = {d: self.lr_grid_at(label, d) for d in self.dims_of[label]}
            return _choose_lr(self.dims_of[label], self.seeds, grids, recs)
        chosen = self.chosen_mult(label, recs)
        grids = {d: [m] for d, m in chosen.items()}
        return _choose_lr(self.dims_of[label], self.seeds, grids, self.full_records(label, recs))

    def run_points(self, trials: list[Trial], points: set[tuple[str, int]]) -> None:
        """Run ``trials`` (those of ``points``), then follow a learning-rate search that chose its edge at any of
        the points (:attr:`ProbeConfig.lr_grid_extend`) with the seeds run there, until none does; with screens
        (:attr:`ProbeConfig.lr_screen_epochs`) the trials are screens, and the kept multiplier of every point then
        trains in full (a training already run is read back, not run again)."""
        every = set(points)
        self.records.update(self.run(trials, probe_trial))
        while points and self.config.lr_grid_extend:
            beyond = {}
            for label, d in sorted(points):
                c = _choose_lr([d], self.seeds, {d: self.lr_grid_at(label, d)}, self.label_records(label))
                if (m := self.config.lr_beyond(self.lr_grid_at(label, d), c.mult[0])) is not None:
                    beyond[label, d] = m
            if not beyond:
                break
            for point, m in beyond.items():  # after every choice: label_records asks for what was added
                self.lr_extra.setdefault(point, []).append(m)
            more = [
                self.sub_trial(label, d, s, m) for (label, d), m in beyond.items() for s in self.seeds_run(label, d)
            ]
            if self.on_round:
                self.on_round(0, len(more))
            self.records.update(self.run(more, probe_trial))
            points = set(beyond)
        if self.config.lr_screen_epochs is not None:  # the full training at each point's kept multiplier
            chosen = {label: self.chosen_mult(label) for label in {label for label, _ in every}}
            full = [
                self.sub_trial(label, d, s, chosen[label][d], full=True)
                for label, d in sorted(every)
                for s in self.seeds_run(label, d)
            ]
            if self.on_round:
                self.on_round(0, len(full))
            self.records.update(self.run(full, probe_trial))

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
                for m in self.lr_grid_at(label, d)
            ]
            if not trials:
                break
            if self.on_round:
                self.on_round(r + 1, len(trials))
            self.run_points(trials, {(label, d) for label, dims in pending.items() for d in dims})
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

    def race(self, target_gain: list[float], tolerance: float) -> None:
        """The lean search: spend trials only where the order of the sets is not settled.

        Round 1 trains every set at the top of its grid (d = D unless ``max_d`` caps it: plain training of the
        set), with one seed. A point whose seed-mean margin over the bar is within ``tolerance`` (the validation
        resolution or the seed spread of the bar, whichever is larger) gets the next seed, up to ``config.seeds``,
        before anything is decided from it. A set whose fitted margin stays below the bar at its top is done ("not
        reached"). Every other set has a bracket ``(lo, hi]``: the largest tried d below the bar and the smallest at
        or above it (on the isotonic fit that d90 reads). It is bisected on its coarse grid (the grid point nearest
        the log-middle of the bracket) only while the bracket overlaps another reached set's and untried grid
        points remain inside it: a set alone in its bracket has a settled position.
        """
        grid = {label: self._lean_grid(label) for label in self.sets}
        self.dims_of = {label: [] for label in self.sets}
        new = {(label, g[-1]) for label, g in grid.items()}
        r = 0
        while new:
            r += 1
            trials = [
                self.sub_trial(label, d, self.seeds_at.get((label, d), 0), m)
                for label, d in sorted(new)
                for m in self.lr_grid_at(label, d)
            ]
            for label, d in new:
                if d not in self.dims_of[label]:
                    self.dims_of[label] = sorted(self.dims_of[label] + [d])
                self.seeds_at[label, d] = self.seeds_at.get((label, d), 0) + 1
            if self.on_round:
                self.on_round(r, len(trials))
            self.run_points(trials, new)
            new = self._undecided(target_gain, tolerance) or self._bisections(grid, target_gain)

    def _undecided(self, target_gain: list[float], tolerance: float) -> set[tuple[str, int]]:
        """Points whose seed-mean margin over the bar is within ``tolerance`` and that have a seed left to run."""
        out = set()
        for label in self.sets:
            c = self.curve(label)
            for i, d in enumerate(c.dims):
                run = self.seeds_at[label, d]
                margin = np.nanmean(c.val[i, :run] - np.asarray(target_gain[:run])) if run else math.nan
                if run < len(self.seeds) and math.isfinite(margin) and abs(margin) < tolerance:
                    out.add((label, d))
        return out

    def _bisections(self, grid: dict[str, list[int]], target_gain: list[float]) -> set[tuple[str, int]]:
        """The next grid point of every reached set whose bracket overlaps another's and has untried points."""
        brackets = {label: _bracket(self.curve(label), target_gain) for label in self.sets}
        out = set()
        for label, (lo, hi) in brackets.items():
            if hi is None or not _overlaps_another(label, brackets):
                continue
            inside = [d for d in grid[label] if lo < d < hi and d not in self.dims_of[label]]
            if inside:
                out.add((label, _log_middle(inside, lo, hi)))
        return out

    def _lean_grid(self, label: str) -> list[int]:
        """The lean race's grid of one set: the explicit dims, or the coarse grid up to its cap with the cap on top."""
        cfg = self.config
        if cfg.dims:
            return sorted(set(cfg.dims))
        cap = min(self.D_of[label], cfg.max_d or self.D_of[label])
        coarse = d90_lib.coarse_grid(
            self.D_of[label], d_min=cfg.d_min, points_per_decade=cfg.points_per_decade, d_max=cap
        )
        return sorted(set(coarse) | {cap})

    def target_results(
        self, target_gain: list[float], target_classic: list[float]
    ) -> tuple[list[TargetResult], list[dict[str, Any]]]:
        """Each target's curve and d90s, and one entry per failed subspace trial."""
        results, failed = [], []
        for label in self.sets:
            recs = self.label_records(label)
            full = self.full_records(label, recs)  # with screens: the full trainings they chose
            result = _target_result(
                label,
                self.sets[label],
                self.D_of[label],
                self.curve(label, recs),
                target_gain,
                target_classic,
                [*recs.values(), *full.values()],
            )
            if self.seeds_at:
                result.seeds_run = [self.seeds_at[label, d] for d in result.dims]
            results.append(result)
            failed += [
                {
                    "target": label,
                    "d": d,
                    "seed": s,
                    "lr": rec.payload["lr"],
                    "error": rec.error or "no error message",
                    "attempts": rec.attempts,
                }
                for (d, s, _), rec in [*recs.items(), *full.items()]
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
    mult: list[float]  # the multiplier of the grid each lr is


def _choose_lr(dims, seeds, grids: dict[int, list[float]], recs: dict[tuple[int, int, float], TrialRecord]) -> _Curve:
    """For each d, the lr multiplier of ``grids[d]`` with the best seed-mean validation accuracy (ties: the one
    nearest the rule).

    ``recs`` maps (d, seed, multiplier) to the trial record; the learning rate is read from its payload."""
    val_rows, test_rows, lrs, mults = [], [], [], []
    for d in dims:
        options = []
        for m in grids[d]:
            val = [_acc(recs.get((d, s, m)), "val_acc") for s in seeds]
            finite = [v for v in val if math.isfinite(v)]
            options.append((-float(np.mean(finite)) if finite else math.inf, abs(math.log(m)), m))
        m = min(options)[2]
        val_rows.append([_acc(recs.get((d, s, m)), "val_acc") for s in seeds])
        test_rows.append([_acc(recs.get((d, s, m)), "test_acc") for s in seeds])
        lrs.append(float(recs[d, seeds[0], m].payload["lr"]))
        mults.append(m)
    return _Curve(
        list(dims),
        np.array(val_rows, dtype=float).reshape(len(dims), len(seeds)),
        np.array(test_rows, dtype=float).reshape(len(dims), len(seeds)),
        lrs,
        mults,
    )


def _bracket(c: _Curve, target: Sequence[float]) -> tuple[float, float | None]:
    """``(lo, hi)``: the largest tried d whose fitted margin is below the bar (0 if none) and the smallest at or
    above it (``None``: not reached at any tried d). The isotonic fit is :func:`d90.estimate_d90`'s, so a bracket
    always holds the d90 that will be reported."""
    d, fitted = d90_lib.fitted_margin(c.dims, c.val, target)
    hits = np.flatnonzero(fitted >= 0.0)
    if hits.size == 0:
        return (float(d[-1]) if d.size else 0.0), None
    i = int(hits[0])
    return (float(d[i - 1]) if i > 0 else 0.0), float(d[i])


def _overlaps_another(label: str, brackets: dict[str, tuple[float, float | None]]) -> bool:
    """Whether ``label``'s bracket ``(lo, hi]`` overlaps that of another set that reached the bar."""
    lo, hi = brackets[label]
    assert hi is not None
    return any(o_hi is not None and lo < o_hi and o_lo < hi for o, (o_lo, o_hi) in brackets.items() if o != label)


def _log_middle(candidates: list[int], lo: float, hi: float) -> int:
    """The candidate nearest the geometric middle of ``(lo, hi)``; with nothing below the bracket yet (``lo = 0``)
    its lower end is the smallest candidate. Ties go to the smaller d."""
    low = lo if lo > 0 else min(candidates)
    middle = 0.5 * (math.log(low) + math.log(hi))
    return min(candidates, key=lambda d: (abs(math.log(d) - middle), d))


def _acc(record: TrialRecord | None, key: str) -> float:
    """A trial's accuracy; NaN for a failed trial or one not run (the lean race runs a second seed only where it
    must)."""
    if record is None or not record.ok or record.result.get(key) is None:
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
