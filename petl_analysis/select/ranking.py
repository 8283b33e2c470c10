"""The ``Ranking`` artefact: target sets ordered by adaptation priority (rank 1 = adapt first)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from ..artefacts import Artefact
from ..models import ModelSpec
from ..probe.d90 import format_ci, format_d90
from ..task import DataSpec


@dataclass
class RankedTarget:
    """One target set in a ranking.

    Attributes:
        target: the label (a catalogue spec such as ``attn.v`` or ``blocks.2.mlp``).
        units: the concrete units of the set.
        D: number of parameters the set spans.
        rank: 1-based position (1 = adapt first).
        score: the selector's raw score (d90 for the probe selector; the proxy value otherwise).
        d90, d90_ci: the probe's gain-normalised d90 and its CI when known (``None`` = not reached / not probed).
        reached: the probe reached the threshold for this set.
        below_min: reached already at the smallest d tried, so ``d90`` is an upper bound (shown ``<=``).
        n_seeds: probe seeds behind the d90 (1: no interval).
        tied_with: targets whose d90 CI overlaps this one's (statistically indistinguishable).
        group: the declared tie class (1 = first): entries with the same ``group`` are tied by the selector's own
            rule (sets that never reached the bar, the tail of a rule that only names its first set); ``0`` (the
            default) means no declared tie, i.e. the entry's own ``rank``. ``rank`` stays a strict order because a
            planner needs one; agreement statistics read the groups (midranks).
    """

    target: str
    units: list[str]
    D: int
    rank: int
    score: float | None
    d90: float | None = None
    d90_ci: list[float | None] = field(default_factory=list)
    reached: bool = True
    below_min: bool = False
    n_seeds: int = 0
    tied_with: list[str] = field(default_factory=list)
    group: int = 0


@dataclass
class Ranking(Artefact):
    """Output of the select stage (``ranking.json``)."""

    SCHEMA = "ranking"
    VERSION = 1

    selector: str
    model: ModelSpec
    data: DataSpec | None
    entries: list[RankedTarget]
    source: str = ""
    direction: str = "ascending"  # how ``score`` maps to priority
    details: dict[str, Any] = field(default_factory=dict)

    def order(self) -> list[str]:
        """The strict order (rank 1 first) a planner follows; declared ties are broken here, see :meth:`tie_groups`."""
        return [e.target for e in sorted(self.entries, key=lambda e: e.rank)]

    def tie_groups(self) -> list[list[str]]:
        """The declared order as tie classes, best first: each class lists its targets in :meth:`order`."""
        groups: dict[int, list[str]] = {}
        for e in sorted(self.entries, key=lambda e: e.rank):
            groups.setdefault(e.group or e.rank, []).append(e.target)
        return [groups[g] for g in sorted(groups)]

    def midranks(self) -> dict[str, float]:
        """Each target's midrank (1 = first) under the declared ties: a tie class of positions 3-5 gives 4.0 each."""
        out: dict[str, float] = {}
        start = 1
        for group in self.tie_groups():
            for t in group:
                out[t] = start + (len(group) - 1) / 2
            start += len(group)
        return out

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "rank": e.rank,
                "target": e.target,
                "D": e.D,
                "score": e.score,
                "d90": format_d90(e.d90, e.reached, e.below_min) if e.n_seeds else "-",
                "d90 CI": format_ci(*(e.d90_ci + [None, None])[:2], e.n_seeds) if e.n_seeds else "-",
                "tied with": ", ".join(e.tied_with) or "-",
            }
            for e in sorted(self.entries, key=lambda e: e.rank)
        ]


def rank_correlations(reference: Ranking, other: Ranking, *, declared_ties: bool = False) -> dict[str, float]:
    """Spearman rho and Kendall tau (tau-b) between two rankings over their common targets.

    ``declared_ties=False`` compares the strict orders (a planner's view); ``True`` compares midranks under each
    ranking's declared tie classes, so sets a ranking declares tied count as tied (nan when either ranking ties
    every target)."""
    ref = reference.midranks() if declared_ties else {e.target: e.rank for e in reference.entries}
    oth = other.midranks() if declared_ties else {e.target: e.rank for e in other.entries}
    common = [t for t in ref if t in oth]
    if len(common) < 3:
        return {"spearman": float("nan"), "kendall": float("nan"), "n": len(common)}
    a = np.array([ref[t] for t in common], dtype=float)
    b = np.array([oth[t] for t in common], dtype=float)
    rho = stats.spearmanr(a, b).statistic
    tau = stats.kendalltau(a, b).statistic
    return {"spearman": float(rho), "kendall": float(tau), "n": len(common)}
