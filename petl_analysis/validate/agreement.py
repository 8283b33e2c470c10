"""Agreement between a predicted order of target sets and the oracle's accuracies: pure functions, no torch.

The oracle is a matrix ``acc[set, seed]`` of validation accuracies (each set adapted alone at a matched budget);
seeds are paired across sets (seed ``s`` shares its split and initialisation), so a resample draws seed columns,
not cells. A predicted order is a list of **tie classes**, best first (``[["a"], ["b", "c"]]``: ``a`` first, ``b``
and ``c`` tied after it); a strict order is a list of labels and reads as singletons (:func:`as_classes`). The
statistics read midranks, so a tie a selector declares is never broken in its favour.

Conventions: a positive Spearman rho / Kendall tau means the predicted order agrees with the oracle (sets predicted
earlier adapt better); ``top_k_overlap(k)`` is the share of the oracle's best ``k`` sets among the predicted first
``k``. Permutation p-values permute which set gets which oracle score and keep the predicted classes; the upper
tail asks "better than random", the lower tail "worse than random"; :func:`holm` corrects a family of them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "Correlation",
    "PermutationTest",
    "agreement_stats",
    "as_classes",
    "holm",
    "image_bootstrap",
    "midranks",
    "oracle_order",
    "permutation_test",
    "random_null",
    "rank_correlation",
    "regret",
    "seed_resamples",
    "seed_span",
    "smallest_p",
    "top_k_overlap",
]

#: Exact enumeration of the permutations up to this many (8! = 40,320); above it, this many seeded random draws.
MAX_EXACT_PERMUTATIONS = 50_000
#: Relative tolerance under which two statistics count as equal (a permutation as good as the observed counts).
_TOL = 1e-9


@dataclass
class PermutationTest:
    """Permutation p-values of a Spearman rho under the predicted tie classes.

    ``p_better``: share of permutations with rho >= the observed (upper tail); ``p_worse``: rho <= the observed
    (lower tail). ``permutations``: how many were evaluated; ``exact``: all ``n!`` of them (else seeded draws,
    :data:`MAX_EXACT_PERMUTATIONS` of them, the observed counted once as scipy does)."""

    p_better: float
    p_worse: float
    permutations: int
    exact: bool


@dataclass
class Correlation:
    """Spearman rho and Kendall tau (on midranks) of a predicted order against the oracle's seed means.

    ``*_span``: [min, max] over every resample of the oracle's seeds (:func:`seed_resamples`), ``None`` with one
    seed: how stable the statistic is over seeds, not a confidence interval. ``test``: the permutation test."""

    spearman: float
    kendall: float
    spearman_span: list[float | None]
    kendall_span: list[float | None]
    test: PermutationTest
    n_sets: int
    n_seeds: int
    n_resamples: int


def as_classes(order: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    """Tie classes from a strict order (each label its own class) or from classes (copied)."""
    return [[x] if isinstance(x, str) else list(x) for x in order]


def midranks(classes: Sequence[Sequence[str]]) -> dict[str, float]:
    """Each label's midrank (1 = first): a class spanning positions 3-5 gives 4.0 to each of its labels."""
    out: dict[str, float] = {}
    start = 1
    for group in classes:
        for label in group:
            out[label] = start + (len(group) - 1) / 2
        start += len(group)
    return out


def oracle_order(labels: Sequence[str], acc: np.ndarray) -> list[str]:
    """Labels sorted by mean accuracy over seeds, best first (ties by label, so the order is deterministic)."""
    mean = np.asarray(acc, dtype=float).mean(axis=1)
    return [labels[i] for i in sorted(range(len(labels)), key=lambda i: (-mean[i], labels[i]))]


def _predicted(order: Sequence[str] | Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """Negated midranks per label (higher = predicted better), refusing an order that lacks a label."""
    ranks = midranks(as_classes(order))
    missing = [label for label in labels if label not in ranks]
    if missing:
        raise ValueError(f"the predicted order lacks {missing}")
    return -np.array([ranks[label] for label in labels], dtype=float)


def _defined(pred: np.ndarray, score: np.ndarray) -> bool:
    """A rank correlation means something: 3 sets or more, and neither side all tied."""
    return len(score) >= 3 and np.ptp(score) > 0 and np.ptp(pred) > 0


def rank_correlation(
    order: Sequence[str] | Sequence[Sequence[str]], labels: Sequence[str], score: np.ndarray
) -> tuple[float, float]:
    """(Spearman, Kendall tau-b) between the predicted midranks and the oracle ``score`` per label (higher = better).

    nan when undefined: fewer than 3 sets, every set tied in the oracle, or every set in one predicted class."""
    pred, score = _predicted(order, labels), np.asarray(score, dtype=float)
    if not _defined(pred, score):
        return math.nan, math.nan
    return _spearman(pred, score), float(stats.kendalltau(pred, score).statistic)


def _spearman(pred: np.ndarray, score: np.ndarray) -> float:
    """Spearman rho of predicted midranks against oracle scores; nan when undefined (see :func:`_defined`)."""
    return float(stats.spearmanr(pred, score).statistic) if _defined(pred, score) else math.nan


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho of ``x`` against each row of ``y`` (average ranks), vectorised over rows."""
    rx = stats.rankdata(x)
    ry = stats.rankdata(y, axis=-1)
    rx, ry = rx - rx.mean(), ry - ry.mean(axis=-1, keepdims=True)
    return (ry @ rx) / np.sqrt((rx @ rx) * (ry * ry).sum(axis=-1))


def permutation_test(
    order: Sequence[str] | Sequence[Sequence[str]], labels: Sequence[str], score: np.ndarray, *, seed: int = 0
) -> PermutationTest:
    """Upper- and lower-tail permutation p-values of Spearman rho, keeping the predicted tie classes.

    The null: the oracle scores fall on the sets at random. Every one of the ``n!`` assignments is enumerated when
    ``n!`` <= :data:`MAX_EXACT_PERMUTATIONS`, else that many are drawn with ``seed`` (scipy's
    ``permutation_test(permutation_type="pairings")``). nan p-values when rho is undefined."""
    pred, score = _predicted(order, labels), np.asarray(score, dtype=float)
    n = len(labels)
    if not _defined(pred, score):
        return PermutationTest(math.nan, math.nan, 0, True)
    tails = {}
    for side in ("greater", "less"):
        res = stats.permutation_test(
            (score,),
            lambda y, axis=-1: _spearman_rows(pred, y),
            vectorized=True,
            permutation_type="pairings",
            n_resamples=MAX_EXACT_PERMUTATIONS,
            alternative=side,
            random_state=seed,
        )
        tails[side] = float(res.pvalue)
    exact = math.factorial(n) <= MAX_EXACT_PERMUTATIONS
    return PermutationTest(
        p_better=tails["greater"],
        p_worse=tails["less"],
        permutations=math.factorial(n) if exact else MAX_EXACT_PERMUTATIONS,
        exact=exact,
    )


def smallest_p(classes: Sequence[Sequence[str]]) -> float:
    """The smallest one-tailed permutation p an order with these tie classes can reach (distinct oracle scores):
    only the assignments that fill each class with the right scores reach the extreme, ``prod(k_i!) / n!``. When it
    is not below the significance level no outcome can decide: the verdict is "cannot tell"."""
    sizes = [len(c) for c in classes]
    return math.prod(math.factorial(k) for k in sizes) / math.factorial(sum(sizes)) if sizes else math.nan


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (nan entries are not tests: kept nan, not counted).

    Sorted ascending, the ``j``-th (from 0) of ``m`` is multiplied by ``m - j``, made non-decreasing, capped at 1."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    idx = [i for i in np.argsort(p, kind="stable") if math.isfinite(p[i])]
    m, running = len(idx), 0.0
    for j, i in enumerate(idx):
        running = max(running, min(1.0, (m - j) * p[i]))
        out[i] = running
    return [float(x) for x in out]


def seed_resamples(n_seeds: int) -> list[tuple[int, ...]]:
    """Every distinct resample of ``n_seeds`` seed columns with replacement, as sorted index tuples (multisets):
    ``C(2n-1, n)`` of them (2 seeds: 3, 3 seeds: 10)."""
    return list(itertools.combinations_with_replacement(range(n_seeds), n_seeds))


def seed_span(
    order: Sequence[str] | Sequence[Sequence[str]], labels: Sequence[str], acc: np.ndarray
) -> tuple[list[float | None], list[float | None], int]:
    """([min, max] Spearman, [min, max] Kendall, resamples) over every seed resample of the oracle ``acc[set, seed]``.

    A *seed span*, not a confidence interval: with 2 or 3 seeds there are 3 or 10 resamples, and the span says how
    much the statistic moves with the seeds drawn. ``[None, None]`` with one seed or when undefined throughout."""
    acc = np.asarray(acc, dtype=float)
    if acc.shape[1] < 2:
        return [None, None], [None, None], 0
    picks = seed_resamples(acc.shape[1])
    values = np.array([rank_correlation(order, labels, acc[:, list(p)].mean(axis=1)) for p in picks])

    def span(v: np.ndarray) -> list[float | None]:
        v = v[np.isfinite(v)]
        return [float(v.min()), float(v.max())] if v.size else [None, None]

    return span(values[:, 0]), span(values[:, 1]), len(picks)


def image_bootstrap(
    order: Sequence[str] | Sequence[Sequence[str]],
    labels: Sequence[str],
    correct: np.ndarray,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> list[float | None]:
    """Percentile interval of Spearman rho from resampling validation images, paired across sets and seeds.

    ``correct[set, seed, image]`` (bool): whether the set's model of that seed classified the image right; every
    set and seed was scored on the same images, so one draw of image indices applies to all of them (the pairing
    keeps the shared difficulty of an image out of the differences). ``[None, None]`` when rho is undefined in
    every draw."""
    correct = np.asarray(correct, dtype=float)
    if correct.ndim != 3 or correct.shape[0] != len(labels):
        raise ValueError(f"correct must be [set, seed, image] with {len(labels)} sets, got shape {correct.shape}")
    rng = np.random.default_rng(seed)
    n_seeds, n_img = correct.shape[1:]
    pred = _predicted(order, labels)
    # Per set and image, how many seeds got it right: a draw's mean is then one gather and sum of whole numbers
    # (exact in floats, so the same bits as averaging the [set, seed, image] draw).
    right = correct.sum(axis=1)
    rhos = np.array(
        [
            _spearman(pred, right[:, rng.integers(0, n_img, n_img)].sum(axis=1) / (n_seeds * n_img))
            for _ in range(n_boot)
        ]
    )
    rhos = rhos[np.isfinite(rhos)]
    if not rhos.size:
        return [None, None]
    lo, hi = np.percentile(rhos, [50 * (1 - level), 50 * (1 + level)])
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


def agreement_stats(
    order: Sequence[str] | Sequence[Sequence[str]], labels: Sequence[str], acc: np.ndarray, *, seed: int = 0
) -> Correlation:
    """Correlation of ``order`` (tie classes or a strict order) with the seed-mean oracle ``acc[set, seed]``: rho and
    tau on midranks, their seed spans, and the permutation test under the predicted ties."""
    acc = np.asarray(acc, dtype=float)
    mean = acc.mean(axis=1)
    rho, tau = rank_correlation(order, labels, mean)
    rho_span, tau_span, n_resamples = seed_span(order, labels, acc)
    return Correlation(
        spearman=rho,
        kendall=tau,
        spearman_span=rho_span,
        kendall_span=tau_span,
        test=permutation_test(order, labels, mean, seed=seed),
        n_sets=len(labels),
        n_seeds=acc.shape[1],
        n_resamples=n_resamples,
    )


def top_k_overlap(predicted: Sequence[str], oracle: Sequence[str], k: int) -> float:
    """Share of the oracle's best ``k`` sets among the first ``k`` predicted (1.0 = the same ``k`` sets)."""
    k = min(k, len(oracle))
    return len(set(predicted[:k]) & set(oracle[:k])) / k if k else math.nan


def regret(best: float, achieved: float) -> float:
    """Accuracy given up by following a selector: the best plan's accuracy minus the selector's (>= 0 by design)."""
    return float(best - achieved)
