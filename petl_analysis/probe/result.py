"""What a probe measured: the baselines, each target's curve and d90, and the ``probe.json`` artefact."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..artefacts import Artefact
from ..models import ModelSpec
from ..task import DataSpec, InputConversion
from .config import ProbeConfig
from .d90 import D90, rank_key

#: Accuracy gaps under this many validation images are not read as differences anywhere (probe gain, oracle
#: spread): one image is rounding, and a decision should rest on more than one.
RESOLVED_IMAGES = 2


def images_apart(high: float, low: float, n_val: int) -> float:
    """How many of ``n_val`` validation images accuracy ``high`` is above ``low`` (both fractions), rounded so that
    float error does not put a gap of exactly 2 images under 2 ((0.48 - 0.44) * 50 is 1.9999999999999996)."""
    return round((high - low) * n_val, 6)


def sample_std(values) -> float:
    """Sample standard deviation (ddof = 1) of per-seed values: the spread a verdict compares a difference with.
    nan with fewer than 2 values (no spread measured)."""
    values = [float(v) for v in values]
    return float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan


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

    @property
    def val_spread(self) -> float:
        """Sample std (ddof = 1) of the validation accuracy over seeds, 0 with one seed: what verdicts compare with
        (``val_std`` is the stored population std, kept for the artefact's readers)."""
        s = sample_std(self.val_per_seed)
        return 0.0 if math.isnan(s) else s

    @classmethod
    def from_seeds(cls, val: list[float], test: list[float], trainable: int) -> Baseline:
        return cls(
            list(val),
            list(test),
            float(np.mean(val)),
            float(np.std(val)),
            float(np.mean(test)),
            float(np.std(test)),
            int(trainable),
        )


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
    #: Seeds run at each d (the lean race runs a second seed only where a point is undecided); ``None``: every seed
    #: at every d (the adaptive search). ``val_per_seed`` holds NaN for a seed not run.
    seeds_run: list[int] | None = None

    def seeds_at(self, d: int, n_seeds: int) -> int:
        """How many seeds (0, 1, ...) were run at ``d``."""
        if self.seeds_run is None:
            return n_seeds
        return self.seeds_run[self.dims.index(d)] if d in self.dims else 0

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
        return unresolved_gain(
            (self.floor.val_mean, self.floor.val_spread), (self.ceiling.val_mean, self.ceiling.val_spread), self.n_val
        )

    def lr_at_grid_edge(self) -> str | None:
        """Why the learning-rate search may have stopped short, or None: with ``lr_grid`` of two or more multipliers,
        the multiplier chosen on validation was the largest (or smallest) the search could reach (the grid's end,
        moved ``lr_grid_extend`` steps outward) at more than half the points tried. A best value on the edge of a
        search says the optimum may lie beyond it: the curves are then lower than they could be and the d90s too
        high (widen ``--lr-grid`` on that side, or let ``--lr-grid-extend`` follow it)."""
        if len(self.config.lr_grid) < 2:
            return None
        chosen = [
            self.config.lr_multiplier(lr, d)
            for t in self.targets
            for d, lr in zip(t.dims, t.lr)
            if lr is not None and math.isfinite(lr)
        ]
        up, down = self.config.lr_range()
        extended = f", extended {self.config.lr_grid_extend}x" if self.config.lr_grid_extend else ""
        for edge, side, where in ((up, "largest", "upward"), (down, "smallest", "downward")):
            n = sum(math.isclose(m, edge, rel_tol=1e-6) for m in chosen)
            if chosen and n > len(chosen) / 2:
                return (
                    f"the best learning rate was the {side} of --lr-grid{extended} ({edge:g}x) at {n} of "
                    f"{len(chosen)} points: the optimum may lie beyond the search and the d90s be too high; widen "
                    f"--lr-grid {where} or raise --lr-grid-extend"
                )
        return None

    def ranked(self, classic: bool = False) -> list[TargetResult]:
        """Targets in the one d90 order (:func:`~petl_analysis.probe.d90.rank_key`): gain-normalised d90 ascending
        (``classic``: the classic d90), equal d90s by best validation accuracy, not-reached last. The ranking
        (``select``) and the report's probe table read this order."""
        return sorted(self.targets, key=lambda t: rank_key(t.d90_classic if classic else t.d90, t.best_val))

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for t in self.ranked():
            rows.append(
                {
                    "target": t.target,
                    "D": t.D,
                    "d90": t.d90.text(),
                    "d90 CI": t.d90.ci_text(),
                    "d90 classic": t.d90_classic.text(),
                    "best val acc": t.best_val,
                    "trials": t.trials,
                    "time_s": round(t.wall_time_s, 1),
                }
            )
        return rows


def unresolved_gain(floor: tuple[float, float], ceiling: tuple[float, float], n_val: int = 0) -> str | None:
    """Why the ceiling's gain over the floor is too small to normalise d90 by, or None when it is resolved.

    ``floor`` and ``ceiling`` are (mean, sample std over seeds, ddof = 1) validation accuracies (fractions) of the head alone and of
    full fine-tuning; ``n_val`` the validation images each is scored on (0: unknown). The gain is unresolved when
    it is not positive, under :data:`RESOLVED_IMAGES` validation images, or within the seeds' spread: the
    gain-normalised threshold then sits inside the noise and d90s do not order the targets.
    """
    (f, f_std), (c, c_std) = floor, ceiling
    what = f"full fine-tuning ({100 * c:.1f}% validation)"
    if c <= f:
        return f"{what} does not beat the head trained alone ({100 * f:.1f}%)"
    if n_val and images_apart(c, f, n_val) < RESOLVED_IMAGES:
        return (
            f"{what} beats the head trained alone ({100 * f:.1f}%) by {images_apart(c, f, n_val):.1f} of the "
            f"{n_val:,} validation images, under {RESOLVED_IMAGES}"
        )
    spread = math.hypot(f_std, c_std)
    if c - f <= spread:
        return (
            f"{what} is not clearly above the head trained alone ({100 * f:.1f}%): the gain is within the seed "
            f"spread ({100 * spread:.1f} points)"
        )
    return None
