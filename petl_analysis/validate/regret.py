"""The regret's arithmetic: a selector's expected plan against the reference plan, paired over the judge's seeds.

Every plan is trained on split B's training images with the judge's seeds and scored on split B's validation
images; the reference plan at a budget is the one with the best accuracy on split A's validation images (the same
models, evaluated once more), so choosing it reads no image it is scored on (no winner's curse). A selector's plan
is the expectation over the orders consistent with its declared ties (its strict order when it declares none); the
random floor is the expectation over all orders. Both are exact (:func:`~petl_analysis.plan.greedy_plan_shares`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Up to this many seeds the interval is the exact seed span (the range of the mean over every resample of the
#: seeds with replacement: the smallest and the largest per-seed difference); above it a t interval.
SEED_SPAN_MAX = 3
T_LEVEL = 0.95


@dataclass
class PairedDifference:
    """Per-seed differences (selector minus reference, in accuracy), their mean and its interval."""

    per_seed: list[float]
    mean: float
    interval: list[float]
    interval_kind: str  # "seed span" | "t 95% (ddof=1)"


def expected_per_seed(shares: Sequence[float], per_seed: Sequence[Sequence[float]]) -> list[float]:
    """Per-seed accuracy of a mixture of plans: ``sum_p share_p * acc_p[seed]`` (``per_seed``: plans x seeds)."""
    acc = np.asarray(per_seed, dtype=float)
    w = np.asarray(shares, dtype=float)
    return [float(v) for v in (w[:, None] * acc).sum(axis=0) / w.sum()]


def paired_difference(values: Sequence[float], reference: Sequence[float]) -> PairedDifference:
    """``values - reference`` seed by seed (the same judge seed trains both), their mean and interval: the exact
    seed span with at most :data:`SEED_SPAN_MAX` seeds, else a t interval with the sample standard deviation."""
    d = np.asarray(values, dtype=float) - np.asarray(reference, dtype=float)
    mean = float(d.mean()) if d.size else math.nan
    if d.size <= SEED_SPAN_MAX:
        return PairedDifference(
            [float(x) for x in d], mean, [float(d.min()), float(d.max())] if d.size else [], "seed span"
        )
    half = float(stats.t.ppf(0.5 + T_LEVEL / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return PairedDifference([float(x) for x in d], mean, [mean - half, mean + half], "t 95% (ddof=1)")


def reference_index(a_val_means: Sequence[float], keys: Sequence[str]) -> int:
    """The reference plan: best mean accuracy on split A's validation images (ties: the first key in sort order,
    so the choice never looks at split B)."""
    return min(range(len(keys)), key=lambda i: (-a_val_means[i], keys[i]))
