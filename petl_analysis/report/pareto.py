"""Trade-off maths for the report (pure numpy): the accuracy/parameter Pareto front and the PE score.

Conventions: ``params`` are trainable-parameter counts (the report uses the head-included total); accuracies are
fractions in [0, 1]. Fewer parameters and higher accuracy are better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import PetlError

__all__ = ["KADAPTATION_M0", "PPT_M0", "front_order", "pareto_front", "pe_score", "seeds_differ", "within_spread"]

#: Confidence of :func:`seeds_differ`: a "beats" claim needs the 95 % interval of the difference to exclude 0.
CONFIDENCE = 0.95

#: M0 of the KAdaptation paper's PE metric (Figure 1 and its tables).
KADAPTATION_M0 = 1e8
#: C of V-PETL Bench's PPT score (same formula, different constant).
PPT_M0 = 1e7


def _pair(params: Sequence[float], acc: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(params, dtype=float).ravel()
    a = np.asarray(acc, dtype=float).ravel()
    if p.shape != a.shape:
        raise PetlError(f"params and acc must have the same length, got {p.size} and {a.size}")
    return p, a


def pareto_front(params: Sequence[float], acc: Sequence[float]) -> np.ndarray:
    """Boolean mask of the points on the upper-left Pareto front (minimise ``params``, maximise ``acc``).

    A point is on the front when no other point has at most as many parameters and at least the same accuracy,
    with one of the two strictly better. Hence, among points with equal ``params`` only those with the best
    accuracy can be on the front, and exact duplicates of a front point are on the front too. Points with a
    non-finite ``params`` or ``acc`` (e.g. a configuration whose every seed failed) are never on it.

    Args:
        params: shape ``(n,)`` trainable-parameter counts.
        acc: shape ``(n,)`` accuracies (any unit; only the order matters).

    Returns:
        shape ``(n,)`` boolean mask in the input order.
    """
    p, a = _pair(params, acc)
    mask = np.zeros(p.size, dtype=bool)
    valid = np.flatnonzero(np.isfinite(p) & np.isfinite(a))
    best_so_far = -math.inf  # best accuracy among points with strictly fewer parameters
    for value in np.unique(p[valid]):  # ascending
        group = valid[p[valid] == value]
        top = a[group].max()
        if top > best_so_far:
            mask[group[a[group] == top]] = True
            best_so_far = top
    return mask


def front_order(params: Sequence[float], acc: Sequence[float]) -> np.ndarray:
    """Indices of the front points sorted by ``params`` (then accuracy): the order to draw the step line in."""
    p, a = _pair(params, acc)
    idx = np.flatnonzero(pareto_front(p, a))
    return idx[np.lexsort((a[idx], p[idx]))]


def pe_score(acc, params, m0: float):
    """Performance-efficiency score ``acc · exp(−log10(params / m0 + 1))``.

    The KAdaptation paper's PE metric uses ``m0 = 1e8`` and V-PETL Bench's PPT ``m0 = 1e7``; a method training
    ``m0`` parameters keeps ``exp(−log10 2) ≈ 0.74`` of its accuracy, one training none keeps all of it.

    Args:
        acc: accuracy as a fraction in [0, 1] (scalar or array); the score is in the same unit.
        params: trainable-parameter count(s), ``>= 0``; broadcasts against ``acc``.
        m0: the scale constant, ``> 0``.

    Returns:
        a float for scalar inputs, else an array of the broadcast shape.
    """
    if (
        isinstance(m0, bool)
        or not isinstance(m0, (int, float, np.integer, np.floating))
        or not m0 > 0
        or not math.isfinite(float(m0))
    ):
        raise PetlError(f"m0 must be a positive number of parameters, got {m0!r}")
    a = np.asarray(acc, dtype=float)
    p = np.asarray(params, dtype=float)
    if np.any(p < 0):
        raise PetlError(f"params must be non-negative counts, got {p[p < 0].tolist()}")
    score = a * np.exp(-np.log10(p / float(m0) + 1.0))
    return float(score) if score.ndim == 0 else score


def seeds_differ(seeds_a: Sequence[float], seeds_b: Sequence[float], confidence: float = CONFIDENCE) -> bool:
    """Whether two results over seeds differ beyond their seed spread: the ``confidence`` interval of the
    difference of means (Welch: sample std per side, Student t at Welch-Satterthwaite degrees of freedom) excludes 0.

    With few seeds the sample std is itself uncertain and t is large (12.7 at one degree of freedom, 4.3 at two), so
    a gap of a few test images between two 2-seed means is not a difference. Both sides need two seeds; with zero
    spread on both sides any gap counts.
    """
    a, b = np.asarray(seeds_a, dtype=float), np.asarray(seeds_b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise PetlError("seeds_differ needs at least two seeds per side")
    from scipy import stats

    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    gap = abs(a.mean() - b.mean())
    if va + vb == 0:
        return bool(gap > 0)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return bool(gap > stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt(va + vb))


def within_spread(mean_a: float, std_a: float, mean_b: float, std_b: float) -> bool:
    """True when two seed-averaged results differ by no more than their combined spread ``sqrt(std_a² + std_b²)``.

    The report calls such a pair "not distinguishable within seed spread". With a single seed each (both std 0)
    only an exact tie counts as within spread.
    """
    return abs(mean_a - mean_b) <= math.hypot(std_a, std_b)
