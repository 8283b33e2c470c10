"""The ``Ranking`` artefact: target sets ordered by adaptation priority (rank 1 = adapt first)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from ..artefacts import Artefact
from ..errors import PetlError
from ..models import ModelSpec
from ..probe.d90 import format_ci, format_d90
from ..task import DataSpec, same_dataset


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


def dataset_for_ranking(
    dataset: str | None, ranking: Ranking | None, source: str | None, flag: str = "--ranking", then: str = "sweep"
) -> str:
    """The dataset a stage after select works on: ``dataset`` if given, else the ranking's. A ranking made on
    another dataset is refused (its order is about that data), and without either there is no dataset (no silent
    default). ``source``, ``flag`` and ``then`` name the ranking file, its option and the stage in the message."""
    ranked_on = ranking.data.dataset if ranking is not None and ranking.data is not None else None
    if dataset is None:
        if ranked_on is None:
            raise PetlError(
                f"{then}: no dataset; give --dataset (a built-in name, see `petl-analyze datasets`, or "
                f"an image-folder path){'' if ranking is not None else ' or a --ranking made on one'}"
            )
        return ranked_on
    if ranked_on is not None and not same_dataset(dataset, ranked_on):
        raise PetlError(
            f"{flag} {source!r} ranks targets on dataset {ranked_on!r}, not {dataset!r}; "
            f"drop --dataset to {then} on {ranked_on!r}, or select on {dataset!r} first"
        )
    return dataset


def skip_bad_images_for(ranking: Ranking | None, dataset: str, requested: bool = False) -> bool:
    """Whether to skip a folder's undecodable images: as ``requested``, or as the ranking chose for its own dataset
    (carried forward, as select reads the probe's)."""
    ranked = ranking.data if ranking is not None else None
    return requested or bool(ranked is not None and ranked.skip_bad_images and same_dataset(ranked.dataset, dataset))


def data_dir_for(ranking: Ranking | None, dataset: str, requested: str | None = None) -> str | None:
    """Where a timm source's files are: ``requested``, or the ranking's for its own dataset (carried forward like
    :func:`skip_bad_images_for`)."""
    ranked = ranking.data if ranking is not None else None
    if requested is not None or ranked is None or not same_dataset(ranked.dataset, dataset):
        return requested
    return ranked.data_dir
