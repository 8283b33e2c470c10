"""Exact statistics of the planted-unit study: where each selector puts the planted set, against chance and paired.

Every function is pure. A selector's order of the ``m`` probed sets comes as tie classes (best first); the planted
set's *midrank* (1 = first; a class of positions 3-5 gives 4) and its *first-place credit* (``1 / |first class|``
when it is in the first class, else 0) are the two per-plant scores.

The chance null of one selector keeps its own tie structure on every plant and makes the planted set's position
uniform over the ``m`` positions (equivalently: the selector's order is a uniformly random order with those tie
sizes). Per plant the score is then uniform over the ``m`` positions' scores; the sum over plants has an exact
distribution (convolution, in exact fractions). Paired comparisons of two selectors on the same plants use the
exact sign-flip (permutation) test of the per-plant midrank differences.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from fractions import Fraction

__all__ = [
    "first_credit",
    "holm",
    "midrank_of",
    "null_sum_distribution",
    "position_scores",
    "sign_flip_test",
    "tail_probability",
    "tie_classes",
]


def tie_classes(order: Sequence[str], scores: dict[str, float | None] | None = None) -> list[list[str]]:
    """Tie classes of a strict ``order``: consecutive sets with equal ``scores`` (``None`` equals ``None``) tie.

    Without ``scores`` every set is its own class (a strict order)."""
    classes: list[list[str]] = []
    for t in order:
        if classes and scores is not None and scores.get(t) == scores.get(classes[-1][-1]):
            classes[-1].append(t)
        else:
            classes.append([t])
    return classes


def midrank_of(classes: list[list[str]], label: str) -> Fraction:
    """The midrank of ``label`` (1 = first) under the tie classes."""
    start = 1
    for c in classes:
        if label in c:
            return Fraction(2 * start + len(c) - 1, 2)
        start += len(c)
    raise KeyError(label)


def first_credit(classes: list[list[str]], label: str) -> Fraction:
    """``1 / |first class|`` when ``label`` is in the first class, else 0 (a shared first place counts a share)."""
    return Fraction(1, len(classes[0])) if label in classes[0] else Fraction(0)


def position_scores(classes: list[list[str]], score) -> list[Fraction]:
    """The score (``midrank_of`` or ``first_credit``) each of the ``m`` positions would get: the null's support."""
    return [score(classes, t) for c in classes for t in c]


def null_sum_distribution(supports: Sequence[Sequence[Fraction]]) -> dict[Fraction, Fraction]:
    """Exact distribution of ``Σ_i X_i`` with ``X_i`` uniform over ``supports[i]`` (independent): value -> prob."""
    dist = {Fraction(0): Fraction(1)}
    for sup in supports:
        nxt: dict[Fraction, Fraction] = {}
        w = Fraction(1, len(sup))
        for s, p in dist.items():
            for v in sup:
                nxt[s + v] = nxt.get(s + v, Fraction(0)) + p * w
        dist = nxt
    return dist


def tail_probability(dist: dict[Fraction, Fraction], observed: Fraction, upper: bool) -> float:
    """``P(S >= observed)`` (``upper``) or ``P(S <= observed)`` under ``dist``."""
    return float(sum(p for v, p in dist.items() if (v >= observed if upper else v <= observed)))


def sign_flip_test(differences: Sequence[Fraction | float]) -> float:
    """Exact two-sided paired permutation test: ``P(|Σ ±d_i| >= |Σ d_i|)`` over all ``2^n`` sign flips of the
    non-zero differences (a zero difference flips to itself). 1.0 when every difference is 0."""
    d = [Fraction(x) for x in differences if x != 0]
    if not d:
        return 1.0
    observed = abs(sum(d))
    hits = sum(
        abs(sum(s * x for s, x in zip(signs, d, strict=True))) >= observed
        for signs in itertools.product((1, -1), repeat=len(d))
    )
    return hits / 2 ** len(d)


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error over the keys), monotone, capped at 1."""
    ordered = sorted(pvalues, key=lambda k: pvalues[k])
    out: dict[str, float] = {}
    running = 0.0
    for i, k in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - i) * pvalues[k]))
        out[k] = running
    return out
