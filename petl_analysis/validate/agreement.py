"""Agreement between a predicted order of target sets and the oracle's accuracies: pure functions, no torch.

The oracle is a matrix ``acc[set, seed]`` of validation accuracies (each set adapted alone at a matched budget);
seeds are paired across sets (seed ``s`` shares its split and initialisation), so a bootstrap resamples seed
columns, not cells. A predicted order is a list of set labels, best first.

Conventions: a positive Spearman rho / Kendall tau means the predicted order agrees with the oracle (sets predicted
earlier adapt better); ``top_k_overlap(k)`` is the share of the oracle's best ``k`` sets among the predicted first
``k``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

__all__ = [
    "Correlation",
    "bootstrap_correlation",
    "oracle_order",
    "random_null",
    "rank_correlation",
    "regret",
    "top_k_overlap",
]


@dataclass
class Correlation:
    """Spearman rho and Kendall tau of a predicted order against the oracle, each with a seed-bootstrap interval.

    ``ci_*`` are ``None`` with one seed (nothing to resample). ``p_random``: one-sided share of random orders whose
    rho is at least the observed one (the permutation null; small = better than random)."""

    spearman: float
    kendall: float
    spearman_ci: list[float | None]
    kendall_ci: list[float | None]
    p_random: float
    n_sets: int
    n_seeds: int


def oracle_order(labels: Sequence[str], acc: np.ndarray) -> list[str]:
    """Labels sorted by mean accuracy over seeds, best first (ties by label, so the order is deterministic)."""
    mean = np.asarray(acc, dtype=float).mean(axis=1)
    return [labels[i] for i in sorted(range(len(labels)), key=lambda i: (-mean[i], labels[i]))]


def _predicted_ranks(predicted: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    position = {label: i for i, label in enumerate(predicted)}
    missing = [label for label in labels if label not in position]
    if missing:
        raise ValueError(f"the predicted order lacks {missing}")
    return np.array([position[label] for label in labels], dtype=float)


def rank_correlation(predicted: Sequence[str], labels: Sequence[str], score: np.ndarray) -> tuple[float, float]:
    """(Spearman, Kendall) between predicted positions and the oracle ``score`` per label (higher = better).

    Positions are negated so that agreement is positive; a constant score (all sets equal) gives nan."""
    pos = _predicted_ranks(predicted, labels)
    score = np.asarray(score, dtype=float)
    if len(labels) < 3 or np.ptp(score) == 0:
        return math.nan, math.nan
    return float(stats.spearmanr(-pos, score).statistic), float(stats.kendalltau(-pos, score).statistic)


def _percentiles(values: np.ndarray, level: float) -> list[float | None]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [None, None]
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def random_null(n_sets: int, *, draws: int = 5000, seed: int = 0) -> np.ndarray:
    """Spearman rho of random orders against a fixed strict order of ``n_sets`` (every order for up to 7 sets)."""
    if n_sets < 3:
        return np.full(1, math.nan)
    if n_sets <= 7:
        perms = np.array(list(itertools.permutations(range(n_sets))), dtype=float)
    else:
        rng = np.random.default_rng(seed)
        perms = np.array([rng.permutation(n_sets) for _ in range(draws)], dtype=float)
    # Distinct ranks: rho = 1 - 6 sum d^2 / (n (n^2 - 1)).
    d2 = ((perms - np.arange(n_sets)) ** 2).sum(axis=1)
    return 1.0 - 6.0 * d2 / (n_sets * (n_sets**2 - 1))


def bootstrap_correlation(
    predicted: Sequence[str],
    labels: Sequence[str],
    acc: np.ndarray,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Correlation:
    """Correlation of ``predicted`` with the seed-mean oracle, and its interval from resampling seed columns.

    With ``n`` seeds only ``C(2n-1, n)`` distinct resamples exist (3 seeds: 10), so the interval is coarse and
    says how stable the oracle order is over seeds, not a population interval."""
    acc = np.asarray(acc, dtype=float)
    rho, tau = rank_correlation(predicted, labels, acc.mean(axis=1))
    n_seeds = acc.shape[1]
    rho_ci: list[float | None] = [None, None]
    tau_ci: list[float | None] = [None, None]
    if n_seeds > 1:
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
        boot = np.array([rank_correlation(predicted, labels, acc[:, p].mean(axis=1)) for p in picks])
        rho_ci, tau_ci = _percentiles(boot[:, 0], level), _percentiles(boot[:, 1], level)
    null = random_null(len(labels), seed=seed)
    p_random = float(np.mean(null >= rho - 1e-9)) if math.isfinite(rho) else math.nan  # float noise: ties count
    return Correlation(spearman=rho, kendall=tau, spearman_ci=rho_ci, kendall_ci=tau_ci, p_random=p_random,
                       n_sets=len(labels), n_seeds=n_seeds)


def top_k_overlap(predicted: Sequence[str], oracle: Sequence[str], k: int) -> float:
    """Share of the oracle's best ``k`` sets among the first ``k`` predicted (1.0 = the same ``k`` sets)."""
    k = min(k, len(oracle))
    return len(set(predicted[:k]) & set(oracle[:k])) / k if k else math.nan


def regret(best: float, achieved: float) -> float:
    """Accuracy given up by following a selector: the best plan's accuracy minus the selector's (>= 0 by design)."""
    return float(best - achieved)
