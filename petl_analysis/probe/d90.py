"""d90: the smallest subspace dimension d whose accuracy reaches a threshold (pure functions, numpy/sklearn).

Li et al. 2018 define ``d_int90`` as the smallest d where subspace training reaches 90% of the full-training
baseline; every public implementation takes the first grid point whose seed-mean clears the bar, without
interpolation. Seed noise near the threshold makes that jumpy, so here:

1. accuracies are averaged over seeds at each d and fitted by a monotone non-decreasing (isotonic) curve in
   ``log d``, weighted by the number of seeds (:func:`isotonic_curve`);
2. d90 is where the fitted curve first reaches the target, linearly interpolated in ``log d`` between the two
   bracketing grid points (:func:`interpolate_d90`);
3. a bootstrap over seeds (resample whole seeds with replacement: a seed's curve together with the baselines
   that set its threshold; refit, re-interpolate) gives a confidence interval; resamples that never reach the
   target count as ``+inf``; with one seed there is no interval (:func:`estimate_d90`).

The threshold may differ per seed (each seed's own floor and ceiling): the fit is then on the seed-mean margin
``acc_s(d) - target_s``, crossing zero.

The target is either ``threshold·FT`` ("classic", Li et al.) or ``LP + threshold·(FT − LP)`` ("gain": the share of
the fine-tuning gain over the linear probe, which is what matters when adapting a pretrained model whose linear
probe is already strong) — see :func:`threshold_value`. Always report which one was used.

For the driver: :func:`coarse_grid` gives the first log-spaced grid and :func:`next_dims` proposes refinement
points between the bracketing dims until the bracket is narrower than a ratio tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression, isotonic_regression

from ..errors import PetlError, expected_one_of

__all__ = [
    "D90",
    "THRESHOLD_MODES",
    "D90Curve",
    "D90Estimate",
    "D90Fit",
    "coarse_grid",
    "distinct_resamples",
    "estimate_d90",
    "fitted_margin",
    "format_ci",
    "format_d90",
    "interpolate_d90",
    "isotonic_curve",
    "next_dims",
    "rank_key",
    "threshold_value",
]

THRESHOLD_MODES = ("gain", "classic")

# Accepted accuracy layouts (see _seed_matrix): {d: [acc per seed]}, a 2-D (n_dims, n_seeds) array with NaN for
# failed trials, a ragged list of per-seed lists, or one accuracy per entry of ``dims`` (a repeated d: one per seed).
AccuracyData = Any


def threshold_value(lp_acc: float, ft_acc: float, threshold: float = 0.9, mode: str = "gain") -> float:
    """Accuracy that counts as "reached".

    Args:
        lp_acc: linear-probe (head-only) accuracy, used by ``mode="gain"``.
        ft_acc: full fine-tuning accuracy of the same scope.
        threshold: fraction in (0, 1]; 0.9 gives d90.
        mode: ``"classic"`` -> ``threshold·ft_acc`` (Li et al.); ``"gain"`` -> ``lp + threshold·(ft − lp)``.
    """
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float, np.floating))
        or not (0.0 < float(threshold) <= 1.0)
    ):
        raise PetlError(f"threshold must be in (0, 1], e.g. 0.9 for d90; got {threshold!r}")
    if mode not in THRESHOLD_MODES:
        raise expected_one_of("threshold mode", mode, THRESHOLD_MODES)
    for name, value in (("lp_acc", lp_acc), ("ft_acc", ft_acc)):
        if not math.isfinite(float(value)):
            raise PetlError(f"{name} must be a finite accuracy, got {value!r}")
    if mode == "classic":
        return float(threshold) * float(ft_acc)
    return float(lp_acc) + float(threshold) * (float(ft_acc) - float(lp_acc))


def isotonic_curve(dims: Any, accs: AccuracyData) -> tuple[np.ndarray, np.ndarray]:
    """Monotone non-decreasing fit of seed-mean accuracy against ``log d``.

    Args:
        dims: subspace dimensions, one per entry of ``accs`` (repeats are pooled).
        accs: per-d accuracies: a scalar or a list of per-seed values per entry, or a 2-D ``(n_dims, n_seeds)``
            array; NaN entries (failed trials) are ignored.

    Returns:
        ``(dims_sorted_unique, fitted)``: float arrays of the same length; ``fitted`` is the weighted isotonic
        regression of the seed means (weights = number of finite seeds at each d).
    """
    d, acc = _seed_matrix(dims, accs)
    if d.size == 0:
        return d, np.asarray([], dtype=float)
    counts = np.isfinite(acc).sum(axis=1)
    means = np.nansum(acc, axis=1) / counts
    fitted = IsotonicRegression(increasing=True).fit_transform(np.log(d), means, sample_weight=counts.astype(float))
    return d, np.asarray(fitted, dtype=float)


def interpolate_d90(dims: Any, fitted: Any, target: float) -> float | None:
    """Smallest d at which a non-decreasing fitted curve reaches ``target``, interpolated linearly in ``log d``.

    Returns ``None`` when the curve stays below ``target`` up to the largest d. When the smallest d already
    reaches it, returns that d: the true d90 is *at most* ``dims[0]`` (callers flag this as "below min").
    """
    d = np.asarray(dims, dtype=float)
    f = np.asarray(fitted, dtype=float)
    if d.size == 0 or d.size != f.size:
        raise PetlError(f"interpolate_d90 needs matching, non-empty dims and fitted values ({d.size} vs {f.size})")
    hits = np.flatnonzero(f >= target)
    if hits.size == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return float(d[0])
    lo, hi = math.log(d[i - 1]), math.log(d[i])
    t = (target - f[i - 1]) / (f[i] - f[i - 1])  # f[i-1] < target <= f[i], so the denominator is positive
    return float(math.exp(lo + t * (hi - lo)))


@dataclass
class D90Curve:
    """The data behind an estimate: sorted dims with seed means, fitted isotonic values and seed counts."""

    dims: list[float]
    mean: list[float]
    fitted: list[float]
    n_seeds: list[int]


#: ``field(metadata=TRANSIENT)``: held in memory, never written to an artefact (see ``artefacts.to_jsonable``).
TRANSIENT = {"transient": True}


@dataclass
class D90Fit:
    """How an estimate was made (kept in memory, not in artefacts): the curve, the trials behind it, the bootstrap."""

    curve: D90Curve
    n_trials: int
    ci: float
    n_boot: int


@dataclass
class D90:
    """A d90 with its bootstrap confidence interval: the one d90 type (estimate, probe artefact, ranking, report).

    Attributes:
        threshold_acc: the accuracy that counts as reached (the mean of ``threshold_per_seed``, each seed's bar from
            its own floor and ceiling).
        value: interpolated d at which the fitted curve reaches the threshold; ``None`` if not reached within the grid.
        ci_low, ci_high: percentile bootstrap interval over seeds; ``math.inf`` stands for "not reached" in that
            share of resamples (so ``ci_high = inf`` means the upper end is unbounded). ``None`` with one seed or
            ``n_boot=0`` (:func:`format_ci` says so).
        reached: the point estimate reached the threshold within the grid.
        below_min: reached already at the smallest d tried: ``value <= dims[0]`` (``value`` is an upper bound).
        reached_fraction: share of bootstrap resamples that reached the threshold.
        n_seeds: seeds the estimate used.
        fit: the curve and bootstrap settings of an estimate made in this process (``None`` once loaded from JSON).
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
    fit: D90Fit | None = field(default=None, compare=False, repr=False, metadata=TRANSIENT)

    @property
    def reached_value(self) -> float | None:
        """The d90 where the threshold was reached, else ``None`` (what tables and orderings read)."""
        return self.value if self.reached and self.value is not None else None

    def text(self) -> str:
        """``1234``, ``<=10`` or ``not reached`` (:func:`format_d90`)."""
        return format_d90(self.value, self.reached, self.below_min)

    def ci_text(self) -> str:
        """``[lo, hi]``, ``n/a, 1 seed`` or ``-`` (:func:`format_ci`)."""
        return format_ci(self.ci_low, self.ci_high, self.n_seeds)

    def fitted_at(self, dims: Any) -> np.ndarray:
        """Fitted accuracy at arbitrary ``dims`` (linear in ``log d`` between fitted points, clamped at the ends)."""
        x = np.log(np.asarray(dims, dtype=float))
        if self.fit is None or not self.fit.curve.dims:
            return np.full(x.shape, np.nan)
        return np.interp(x, np.log(np.asarray(self.fit.curve.dims)), np.asarray(self.fit.curve.fitted))


#: The name :func:`estimate_d90`'s result had before there was one d90 type.
D90Estimate = D90


def rank_key(d90: D90, best_val: float) -> tuple[int, float, float]:
    """The one ordering of targets by d90 (probe table, ranking, report).

    Reached first, by d90 ascending; equal d90s (e.g. all at the smallest d tried) by best validation accuracy,
    highest first; then the targets that never reached the threshold, by best validation accuracy (closest to the
    threshold first). ``best_val`` is the target's best seed-mean validation accuracy (NaN counts as 0). Sorting is
    stable, so targets equal on all three keep their input order."""
    best = best_val if math.isfinite(best_val) else 0.0
    d = d90.reached_value
    return (0, d, -best) if d is not None else (1, math.inf, -best)


def _seed_matrix(dims: Any, accs: AccuracyData) -> tuple[np.ndarray, np.ndarray]:
    """Normalise inputs to (sorted unique dims, ``(n_dims, n_seeds)`` accuracy matrix, NaN where missing).

    Column j holds seed j: the j-th accuracy given for each d (a repeated d continues its row). Dims with no finite
    accuracy are dropped.
    """
    if isinstance(dims, Mapping) and accs is None:
        dims, accs = list(dims.keys()), list(dims.values())
    dims_arr = np.asarray(list(dims), dtype=float)
    if dims_arr.ndim != 1:
        raise PetlError(f"dims must be a 1-D list of subspace dimensions, got shape {dims_arr.shape}")
    rows = [np.ravel(np.asarray(r, dtype=float)) for r in accs]
    if len(rows) != len(dims_arr):
        raise PetlError(f"got {len(dims_arr)} dims but {len(rows)} accuracy entries; expected one entry per d")
    if np.any(~np.isfinite(dims_arr)) or np.any(dims_arr < 1):
        raise PetlError(f"subspace dimensions must be finite and >= 1, got {sorted(set(dims_arr.tolist()))}")
    pooled: dict[float, list[float]] = {}
    for d, row in zip(dims_arr, rows):
        pooled.setdefault(float(d), []).extend(float(a) for a in row)
    unique = [d for d in sorted(pooled) if any(math.isfinite(a) for a in pooled[d])]
    n_seeds = max((len(pooled[d]) for d in unique), default=0)
    matrix = np.full((len(unique), n_seeds), np.nan)
    for i, d in enumerate(unique):
        matrix[i, : len(pooled[d])] = pooled[d]
    return np.asarray(unique, dtype=float), matrix


def _per_seed_target(target: float | Sequence[float], n_seeds: int) -> np.ndarray:
    values = np.atleast_1d(np.asarray(target, dtype=float))
    if values.size == 1:
        return np.full(n_seeds, float(values[0]))
    if values.size != n_seeds:
        raise PetlError(f"got {values.size} per-seed targets for {n_seeds} seeds; expected one target or one per seed")
    if not np.all(np.isfinite(values)):
        raise PetlError(f"targets must be finite accuracies, got {values.tolist()}")
    return values


def _margin_d90(dims: np.ndarray, margins: np.ndarray) -> tuple[float, np.ndarray]:
    """d90 of one (resampled) seed set: isotonic fit of the seed-mean margin ``acc - target``, crossing zero.

    Returns ``(d90 or inf, fitted margins)``; a d with no finite margin in this set is left out of the fit (only a
    resample can have one: :func:`_seed_matrix` drops the d's without any).
    """
    counts = np.isfinite(margins).sum(axis=1)
    keep = counts > 0
    if not keep.any():  # a resample of seeds that were run at no d (the lean race runs seed 1 only where needed)
        return math.nan, np.asarray([], dtype=float)
    mean = np.nansum(margins[keep], axis=1) / counts[keep]
    fitted = isotonic_regression(mean, sample_weight=counts[keep].astype(float), increasing=True)
    value = interpolate_d90(dims[keep], fitted, 0.0)
    return (math.inf if value is None else value), np.asarray(fitted, dtype=float)


def fitted_margin(dims: Any, accs: AccuracyData, target: float | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``(dims, fitted)``: the sorted tried dims and the isotonic fit of the seed-mean margin over the bar there (the
    fit :func:`estimate_d90` reads; reached where ``fitted >= 0``)."""
    d, acc = _seed_matrix(dims, accs)
    if d.size == 0:
        return d, np.asarray([], dtype=float)
    margins = acc - _per_seed_target(target, acc.shape[1])[None, :]
    return d, _margin_d90(d, margins)[1]


def distinct_resamples(n_seeds: int) -> int:
    """How many different seed multisets a bootstrap over ``n_seeds`` seeds can draw: C(2n - 1, n) (2 seeds: 3)."""
    return math.comb(2 * n_seeds - 1, n_seeds) if n_seeds > 0 else 0


def _dims_and_accs(dims: Any, seeds_accs: AccuracyData) -> tuple[Any, AccuracyData]:
    """``(dims, accs)`` from either call form of :func:`estimate_d90` (separate, or one ``{d: accs}`` mapping)."""
    if isinstance(seeds_accs, Mapping):
        if dims is not None and sorted(map(float, dims)) != sorted(map(float, seeds_accs)):
            raise PetlError(f"dims {sorted(dims)} do not match the keys of seeds_accs {sorted(seeds_accs)}")
        return list(seeds_accs.keys()), list(seeds_accs.values())
    if isinstance(dims, Mapping):
        if seeds_accs is not None:
            raise PetlError(
                "pass either estimate_d90(dims, seeds_accs, target) or estimate_d90({d: accs}, None, target)"
            )
        return list(dims.keys()), list(dims.values())
    return dims, seeds_accs


def _bootstrap(
    d: np.ndarray, margins: np.ndarray, n_boot: int, ci: float, rng_seed: int
) -> tuple[float, float, float]:
    """Percentile interval of d90 over seed resamples (whole columns of ``margins``) and the share that reached."""
    n_seeds = margins.shape[1]
    rng = np.random.default_rng(rng_seed)
    picks = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    boots = np.fromiter((_margin_d90(d, margins[:, row])[0] for row in picks), dtype=float, count=n_boot)
    boots = boots[~np.isnan(boots)]  # resamples without any measured point say nothing
    if boots.size == 0:
        return math.nan, math.nan, math.nan
    alpha = (1.0 - ci) / 2.0
    # Order statistics ("lower"/"higher"), not interpolation: +inf entries must not turn into NaN.
    low = float(np.quantile(boots, alpha, method="lower"))
    high = float(np.quantile(boots, 1.0 - alpha, method="higher"))
    return low, high, float(np.isfinite(boots).mean())


def estimate_d90(
    dims: Any,
    seeds_accs: AccuracyData,
    target: float | Sequence[float],
    n_boot: int = 1000,
    ci: float = 0.95,
    rng_seed: int = 0,
) -> D90:
    """Point estimate and bootstrap CI of the d at which accuracy reaches ``target``.

    Each seed is one run of the whole experiment: its curve and, when ``target`` is given per seed, the baselines
    that set its bar. The fit is on the seed-mean *margin* ``acc_s(d) - target_s`` (isotonic in ``log d``), and d90
    is where it crosses zero; with a single target this is the seed-mean accuracy crossing ``target``.

    The interval resamples whole seeds with replacement (curve and target together), so it reflects the
    uncertainty of the baselines as well as of the curve. It is ``None`` with one seed (there is nothing to
    resample) and coarse with few: ``n`` seeds allow only :func:`distinct_resamples` different resamples (2 seeds:
    3, i.e. the interval spans the two single-seed estimates).

    Args:
        dims: subspace dimensions; may be ``None`` when ``seeds_accs`` is a ``{d: [acc per seed]}`` mapping.
        seeds_accs: per-d seed accuracies (``{d: [...]}``, lists, or an ``(n_dims, n_seeds)`` array with NaN for
            failed trials); entry j of each d is seed j.
        target: accuracy threshold (e.g. from :func:`threshold_value`), one for all seeds or one per seed.
        n_boot: bootstrap resamples (0 disables the CI).
        ci: confidence level of the percentile interval, in (0, 1).
        rng_seed: seed of the bootstrap's numpy Generator (results are deterministic).
    """
    dims, seeds_accs = _dims_and_accs(dims, seeds_accs)
    if not 0.0 < ci < 1.0:
        raise PetlError(f"ci must be in (0, 1), e.g. 0.95; got {ci!r}")
    if n_boot < 0:
        raise PetlError(f"n_boot must be >= 0, got {n_boot}")
    d, acc = _seed_matrix(dims, seeds_accs)
    if d.size == 0:
        raise PetlError("no finite accuracies to estimate d90 from (every trial failed?)")
    n_seeds = acc.shape[1]
    targets = _per_seed_target(target, n_seeds)
    margins = acc - targets[None, :]
    point, fitted_margin = _margin_d90(d, margins)
    counts = np.isfinite(acc).sum(axis=1)
    means = np.nansum(acc, axis=1) / counts
    mean_target = float(targets.mean())
    curve = D90Curve(d.tolist(), means.tolist(), (fitted_margin + mean_target).tolist(), counts.astype(int).tolist())

    ci_low = ci_high = None
    reached_fraction = float(math.isfinite(point))
    if n_boot > 0 and n_seeds > 1:
        ci_low, ci_high, reached_fraction = _bootstrap(d, margins, n_boot, ci, rng_seed)
    reached = math.isfinite(point)
    return D90(
        threshold_acc=mean_target,
        threshold_per_seed=targets.tolist(),
        value=point if reached else None,
        ci_low=ci_low,
        ci_high=ci_high,
        reached=reached,
        below_min=reached and bool(fitted_margin[0] >= 0.0),
        reached_fraction=reached_fraction,
        n_seeds=int(n_seeds),
        fit=D90Fit(curve=curve, n_trials=int(counts.sum()), ci=float(ci), n_boot=int(n_boot) if n_seeds > 1 else 0),
    )


def format_d90(value: float | None, reached: bool, below_min: bool = False) -> str:
    """``1234``, ``<=10`` (reached at the smallest d tried: an upper bound) or ``not reached``."""
    if not reached or value is None:
        return "not reached"
    return f"<={value:.0f}" if below_min else f"{value:.0f}"


def format_ci(low: float | None, high: float | None, n_seeds: int) -> str:
    """``[lo, hi]`` (``inf``: that share of resamples never reached the threshold), ``n/a, 1 seed``, or ``-``."""
    if n_seeds < 2:
        return "n/a, 1 seed"
    if low is None:
        return "-"
    lo = "inf" if not math.isfinite(low) else f"{low:.0f}"
    hi = "inf" if high is None or not math.isfinite(high) else f"{high:.0f}"
    return f"[{lo}, {hi}]"


def _nice_mantissas(points_per_decade: int) -> list[float]:
    if points_per_decade == 1:
        return [1.0]
    if points_per_decade == 2:
        return [1.0, 3.0]
    if points_per_decade == 3:
        return [1.0, 2.0, 5.0]
    return [float(f"{10 ** (k / points_per_decade):.2g}") for k in range(points_per_decade)]


def coarse_grid(
    D: int,
    d_min: int = 10,
    points_per_decade: int = 3,
    d_max: int | None = None,
    include_D: bool = False,
) -> list[int]:
    """Log-spaced starting grid of subspace dimensions in ``[d_min, min(D, d_max)]``.

    ``points_per_decade=3`` gives the 1-2-5 series (10, 20, 50, 100, …), 2 gives 1-3, 1 gives powers of ten,
    larger values round ``10^(k/n)`` to two significant digits. ``include_D`` appends D itself (the whole group
    as a "subspace", a sanity check that subspace training can match full training). If ``D < d_min`` the grid
    is ``[D]``.
    """
    for name, value in (("D", D), ("d_min", d_min), ("points_per_decade", points_per_decade)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise PetlError(f"{name} must be a positive integer, got {value!r}")
    cap = int(D) if d_max is None else min(int(D), int(d_max))
    if cap < 1:
        raise PetlError(f"d_max must be >= 1, got {d_max!r}")
    if cap < d_min:
        return [cap]
    grid: set[int] = set()
    mantissas = _nice_mantissas(int(points_per_decade))
    decade = 10 ** math.floor(math.log10(d_min))
    while decade <= cap:
        for m in mantissas:
            value = int(round(m * decade))
            if d_min <= value <= cap:
                grid.add(value)
        decade *= 10
    grid.add(int(d_min))
    if include_D:
        grid.add(int(D) if d_max is None or D <= d_max else cap)
    return sorted(grid)


def next_dims(
    dims: Any,
    accs: AccuracyData = None,
    target: float | Sequence[float] | None = None,
    *,
    max_d: int | None = None,
    min_d: int = 1,
    ratio_tol: float = 1.25,
    n_points: int = 1,
    expand: float = 3.0,
) -> list[int]:
    """Propose the next dims to evaluate, or ``[]`` when the search is done.

    Call as ``next_dims(dims, accs, target)`` (``accs`` as in :func:`isotonic_curve`, or one mean per d; ``target``
    one accuracy, or one per seed as in :func:`estimate_d90`) or ``next_dims({d: [acc per seed]}, target)``. The driver loops: coarse grid -> run -> ``next_dims`` -> run -> …
    until it returns ``[]``.

    * Crossing bracketed by tried dims ``lo < hi`` (fitted curve below target at lo, at or above at hi): propose
      ``n_points`` geometric points strictly inside ``(lo, hi)``, integers not yet tried; ``[]`` once
      ``hi / lo <= ratio_tol`` or no untried integer is left in between.
    * Not reached at the largest tried d: propose ``min(max_d, round(expand · d_max_tried))`` if ``max_d`` allows,
      else ``[]`` (d90 is "not reached within D").
    * Reached already at the smallest tried d: propose ``max(min_d, round(d_min_tried / expand))`` until
      ``min_d`` has been tried.
    """
    if isinstance(dims, Mapping):
        if target is not None:
            raise PetlError("next_dims({d: accs}, target) takes the target as its second argument")
        target, accs = accs, None
    if target is None:
        raise PetlError("next_dims needs a target accuracy")
    if ratio_tol <= 1.0:
        raise PetlError(f"ratio_tol must be > 1 (e.g. 1.25), got {ratio_tol}")
    if expand <= 1.0:
        raise PetlError(f"expand must be > 1, got {expand}")
    if n_points < 1:
        raise PetlError(f"n_points must be >= 1, got {n_points}")
    all_tried = {int(round(x)) for x in dims}  # includes dims whose trials all failed: never re-propose them
    tried_d, fitted = fitted_margin(dims, accs, target)
    if tried_d.size == 0:
        return []
    hits = np.flatnonzero(fitted >= 0.0)
    if hits.size == 0:
        top = int(tried_d[-1])
        if max_d is None or top >= max_d:
            return []
        proposal = [min(int(max_d), max(top + 1, int(round(top * expand))))]
    elif hits[0] == 0:
        bottom = int(tried_d[0])
        if bottom <= min_d:
            return []
        proposal = [max(int(min_d), min(bottom - 1, int(round(bottom / expand))))]
    else:
        lo, hi = float(tried_d[hits[0] - 1]), float(tried_d[hits[0]])
        if hi / lo <= ratio_tol:
            return []
        proposal = _inside(lo, hi, n_points, all_tried)
    return sorted({p for p in proposal if p not in all_tried})


def _inside(lo: float, hi: float, n_points: int, tried: set[int]) -> list[int]:
    """Up to ``n_points`` untried integers strictly inside (lo, hi), evenly spaced in log d.

    If the even split only hits tried dims (e.g. a midpoint whose trials all failed), finer splits are tried and
    the points nearest the log-midpoint kept.
    """
    ratio, middle = hi / lo, math.log(math.sqrt(lo * hi))
    m = n_points
    for _ in range(4):
        points = {int(round(lo * ratio ** (k / (m + 1)))) for k in range(1, m + 1)}
        inside = (p for p in points if lo < p < hi and p not in tried)
        ranked = sorted(inside, key=lambda p: (abs(math.log(p) - middle), p))
        if ranked:
            return ranked[:n_points]
        m = 2 * m + 1
    return []
