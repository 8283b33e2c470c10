"""Flat rows of the report's tables, built from the artefacts, and their CSV form.

Accuracies in the artefacts are fractions; rows keep fractions and the formatters show percentages.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..probe.d90 import D90
from ..tuners import METHODS
from .pareto import KADAPTATION_M0, PPT_M0, pareto_front, pe_score

VARIANT_NAMES = {"selected": "selected", "fixed": "fixed q,v", "worst": "worst-ranked"}
if TYPE_CHECKING:
    from ..probe import ProbeResult, TargetResult
    from ..select import Ranking
    from ..sweep import SweepResult

BLOCK_TARGET = re.compile(r"^blocks\.(\d+)\.(.+)$")


def method_name(method: str, *, short: bool = False) -> str:
    """The name a method registered to be shown by (``KAdaptation``; ``short``: ``KA``, for narrow cells); an
    unregistered name as it is."""
    if method not in METHODS:
        return method
    cls = METHODS.get(method)
    return cls.short_name if short else cls.display_name


def display_name(method: str, variant: str) -> str:
    """``KAdaptation (selected)``, ``LoRA (fixed q,v)``, ``Adapter``, ``Linear probe``."""
    name = method_name(method)
    return f"{name} ({VARIANT_NAMES[variant]})" if variant in VARIANT_NAMES else name


@dataclass
class PointRow:
    """One (label, budget) point of a sweep, flattened; accuracies are fractions (NaN when every seed failed)."""

    label: str
    method: str
    variant: str
    name: str
    budget: int | None
    params: int  # trainable, head included
    params_excl_head: int
    adapter: int
    shared: int
    head: int
    bias_norm: int
    backbone: int
    model_total: int
    acc: float
    std: float
    last_acc: float
    seed_accs: list[float]
    targets: str = ""
    pe: float = math.nan  # at the report's M0
    pe_1e8: float = math.nan
    pe_1e7: float = math.nan
    on_front: bool = False
    same_as: str | None = None  # ``label@budget`` of an identical configuration (one result, trained once)
    still_falling: int = 0  # seeds whose training loss was still falling at the last epoch
    loss_rose: int = 0  # seeds whose training loss ended above its first epoch's (a learning rate too high)

    @property
    def ok(self) -> bool:
        return math.isfinite(self.acc) and self.params > 0

    @property
    def acc_text(self) -> str:
        """``91.23 ± 0.45`` in percent; no ``±`` when fewer than two seeds succeeded (there is no spread)."""
        return fmt_acc(self.acc, self.std) if len(self.seed_accs) > 1 else fmt_pct(self.acc)


def _finite(x: float | None) -> float:
    return math.nan if x is None else float(x)


def default_m0(sweep: SweepResult) -> int:
    """The size of the model being adapted: parameters of the pretrained network plus its head (what full
    fine-tuning trains), i.e. ``model_total`` minus the parameters a method added. The most common value over the
    sweep's points (they share one model)."""
    sizes = [
        p.run.trainable["model_total"] - p.run.trainable.get("adapter", 0) - p.run.trainable.get("shared", 0)
        for p in sweep.points
        if p.run.trainable.get("model_total")
    ]
    if not sizes:
        return int(KADAPTATION_M0)
    counts = Counter(sizes)
    return max(counts, key=lambda s: (counts[s], s))


def point_rows(sweep: SweepResult, m0: float) -> list[PointRow]:
    """Every sweep point as a row, sorted by trainable parameters (head included), with PE and the front flag."""
    rows = []
    for p in sweep.points:
        t, run = p.run.trainable, p.run
        targets = ", ".join(t.target for t in p.plan.targets)
        rows.append(
            PointRow(
                label=p.label,
                method=p.method,
                variant=p.variant,
                name=display_name(p.method, p.variant),
                budget=p.budget,
                params=int(t["total_incl_head"]),
                params_excl_head=int(t["total_excl_head"]),
                adapter=int(t.get("adapter", 0)),
                shared=int(t.get("shared", 0)),
                head=int(t.get("head", 0)),
                bias_norm=int(t.get("bias_norm", 0)),
                backbone=int(t.get("backbone", 0)),
                model_total=int(t.get("model_total", 0)),
                acc=_finite(run.test_acc_mean),
                std=_finite(run.test_acc_std),
                last_acc=_finite(run.last_test_acc_mean),
                seed_accs=[float(s.test_acc) for s in run.seeds if s.test_acc is not None],
                targets=targets,
                same_as=p.same_as,
                still_falling=sum(s.loss_still_falling for s in run.seeds),
                loss_rose=sum(s.loss_rose for s in run.seeds),
            )
        )
    rows.sort(key=lambda r: (r.params, -1 if r.budget is None else r.budget, r.label))
    for r in rows:
        if r.ok:
            r.pe, r.pe_1e8, r.pe_1e7 = (pe_score(r.acc, r.params, m) for m in (m0, KADAPTATION_M0, PPT_M0))
    front = pareto_front([r.params for r in rows], [r.acc if r.ok else math.nan for r in rows])
    for r, on in zip(rows, front):
        r.on_front = bool(on)
    return rows


# --------------------------------------------------------------------------------------------------- probe rows


@dataclass
class ProbeRow:
    """One probed target set: its d90 (gain-normalised and classic) and curve summary."""

    rank: int
    target: str
    block: int | None
    kind: str
    D: int
    units: int
    d90: D90  # gain-normalised (what the ranking orders by)
    d90_classic: D90
    best_acc: float  # best seed-mean validation accuracy over d
    best_test_acc: float  # seed-mean test accuracy at that d (reported, never decided on)
    dims_tried: int
    trials: int
    failed_trials: int
    ranking_rank: int | None = None
    tied_with: list[str] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        """The gain-normalised threshold was reached within the d tried."""
        return self.d90.reached_value is not None


def split_block_target(target: str) -> tuple[int | None, str]:
    """``blocks.3.attn.v`` -> ``(3, "attn.v")``; other labels -> ``(None, label)``."""
    m = BLOCK_TARGET.match(target)
    return (int(m.group(1)), m.group(2)) if m else (None, target)


def is_per_block(probe: ProbeResult) -> bool:
    """A per-block probe: at least two targets named ``blocks.N.<kind>`` (enough for a block x kind heatmap)."""
    return sum(BLOCK_TARGET.match(t.target) is not None for t in probe.targets) >= 2


def _best(t: TargetResult) -> tuple[float, float]:
    """Best seed-mean validation accuracy and the test accuracy at the same d."""
    ok = [i for i, a in enumerate(t.val_mean) if a is not None and math.isfinite(a)]
    if not ok:
        return math.nan, math.nan
    i = max(ok, key=lambda j: t.val_mean[j])
    return t.val_mean[i], t.test_mean[i]


def probe_rows(probe: ProbeResult, ranking: Ranking | None = None) -> list[ProbeRow]:
    """Targets in the one d90 order (:meth:`~petl_analysis.probe.ProbeResult.ranked`, as the ranking)."""
    ranked = {e.target: e for e in ranking.entries} if ranking is not None else {}
    rows = []
    for i, t in enumerate(probe.ranked(), start=1):
        block, kind = split_block_target(t.target)
        entry = ranked.get(t.target)
        best_val, best_test = _best(t)
        rows.append(
            ProbeRow(
                rank=i,
                target=t.target,
                block=block,
                kind=kind,
                D=t.D,
                units=len(t.units),
                d90=t.d90,
                d90_classic=t.d90_classic,
                best_acc=best_val,
                best_test_acc=best_test,
                dims_tried=len(t.dims),
                trials=t.trials,
                failed_trials=t.failed_trials,
                ranking_rank=entry.rank if entry else None,
                tied_with=list(entry.tied_with) if entry else [],
            )
        )
    return rows


# --------------------------------------------------------------------------------------------------- formatting


def fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{int(n):,}"


def fmt_params(n: float) -> str:
    """Compact count: 650, 12.3k, 5.71M."""
    n = float(n)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            v = n / div
            return f"{v:.3g}{suffix}"
    return f"{n:.0f}"


def fmt_pct(frac: float, digits: int = 2) -> str:
    return "n/a" if frac is None or not math.isfinite(frac) else f"{100 * frac:.{digits}f}"


def fmt_acc(mean: float, std: float) -> str:
    """``91.23 ± 0.45`` (percent)."""
    if mean is None or not math.isfinite(mean):
        return "n/a"
    return f"{fmt_pct(mean)} ± {fmt_pct(std)}" if std is not None and math.isfinite(std) else fmt_pct(mean)


def fmt_pe(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"


def fmt_d(r: ProbeRow) -> str:
    """The row's gain-normalised d90 (``<=`` when reached at the smallest d tried)."""
    return r.d90.text()


def fmt_d_classic(r: ProbeRow) -> str:
    return r.d90_classic.text()


def fmt_ci(r: ProbeRow) -> str:
    """The row's bootstrap interval, ``n/a, 1 seed``, or ``-`` when the threshold was not reached."""
    return r.d90.ci_text() if r.reached or r.d90.n_seeds < 2 else "-"


# --------------------------------------------------------------------------------------------------- CSV


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _num(x: float | None, digits: int) -> str:
    if x is None:
        return ""
    x = float(x)
    if math.isnan(x):
        return ""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


POINTS_HEADER = [
    "label",
    "method",
    "variant",
    "budget",
    "trainable_incl_head",
    "trainable_excl_head",
    "adapter",
    "shared",
    "head",
    "bias_norm",
    "backbone",
    "test_acc_mean_pct",
    "test_acc_std_pct",
    "last_epoch_acc_pct",
    "seeds",
    "m0",
    "pe_m0",
    "pe_1e8",
    "pe_1e7",
    "on_pareto_front",
    "targets",
]


def points_csv(rows: list[PointRow], m0: float) -> str:
    """``points.csv``: one line per sweep point; accuracies in percent, PE as a fraction."""
    out = []
    for r in rows:
        out.append(
            [
                r.label,
                r.method,
                r.variant,
                "" if r.budget is None else r.budget,
                r.params,
                r.params_excl_head,
                r.adapter,
                r.shared,
                r.head,
                r.bias_norm,
                r.backbone,
                _num(100 * r.acc, 4),
                _num(100 * r.std, 4),
                _num(100 * r.last_acc, 4),
                len(r.seed_accs),
                f"{m0:.0f}",
                _num(r.pe, 4),
                _num(r.pe_1e8, 4),
                _num(r.pe_1e7, 4),
                str(r.on_front).lower(),
                r.targets,
            ]
        )
    return _csv(POINTS_HEADER, out)


PROBE_HEADER = [
    "rank",
    "target",
    "block",
    "kind",
    "D",
    "units",
    "d90",
    "d90_ci_low",
    "d90_ci_high",
    "reached",
    "below_min",
    "reached_fraction",
    "seeds",
    "d90_classic",
    "classic_below_min",
    "threshold_acc_pct",
    "classic_threshold_acc_pct",
    "best_val_acc_pct",
    "test_acc_at_best_val_pct",
    "dims_tried",
    "trials",
    "failed_trials",
    "ranking_rank",
]


def probe_csv(rows: list[ProbeRow]) -> str:
    """``probe.csv``: one line per target set; d90 empty when not reached, CI high ``inf`` when unbounded, CI empty
    with one seed. ``d90`` is an upper bound (``<=``) where ``below_min`` is true, ``d90_classic`` where
    ``classic_below_min`` is.
    """
    out = []
    for r in rows:
        d, c = r.d90, r.d90_classic
        out.append(
            [
                r.rank,
                r.target,
                "" if r.block is None else r.block,
                r.kind,
                r.D,
                r.units,
                _num(d.reached_value, 1),
                _num(d.ci_low, 1),
                _num(d.ci_high, 1),
                str(r.reached).lower(),
                str(d.below_min).lower(),
                _num(d.reached_fraction, 3),
                d.n_seeds,
                _num(c.reached_value, 1),
                str(c.reached and c.below_min).lower(),
                _num(100 * d.threshold_acc, 4),
                _num(100 * c.threshold_acc, 4),
                _num(100 * r.best_acc, 4),
                _num(100 * r.best_test_acc, 4),
                r.dims_tried,
                r.trials,
                r.failed_trials,
                "" if r.ranking_rank is None else r.ranking_rank,
            ]
        )
    return _csv(PROBE_HEADER, out)


def seed_count(rows: list[PointRow]) -> tuple[int, int]:
    """(fewest, most) seeds that succeeded over the points that have any."""
    counts = [len(r.seed_accs) for r in rows if r.seed_accs] or [0]
    return int(np.min(counts)), int(np.max(counts))
