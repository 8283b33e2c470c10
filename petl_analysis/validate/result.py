"""The ``ValidationResult`` artefact: does a ranking predict what adapting each target set achieves?"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..artefacts import Artefact
from ..engine import Recipe
from ..models import ModelSpec
from ..probe.result import sample_std
from ..task import DataSpec, InputConversion

#: ``ValidationResult.judged_on``: the judge's data is split B, or (``allow_shared_data``) the probe's own data.
JUDGED_ON_B, JUDGED_ON_OWN = "split B", "the probe's own data"
#: Appended to every verdict shown for a validation judged on the probe's own data.
OWN_DATA_LABEL = " (judged on the probe's own data)"


class _SeedScores:
    """Seed summaries of ``val_per_seed`` / ``test_per_seed`` (nan when no seed finished)."""

    val_per_seed: list[float]
    test_per_seed: list[float]

    @property
    def val_mean(self) -> float:
        return float(np.mean(self.val_per_seed)) if self.val_per_seed else math.nan

    @property
    def val_std(self) -> float:
        """Sample std over seeds (ddof = 1; nan with one seed): the seed spread the report's verdicts compare with."""
        return sample_std(self.val_per_seed)

    @property
    def test_mean(self) -> float:
        return float(np.mean(self.test_per_seed)) if self.test_per_seed else math.nan


def format_correlation(value: float, interval: list[float | None]) -> str:
    """``+0.89 [+0.72, +0.89]``: a correlation and its interval (``-`` when undefined, no brackets without one)."""
    if not math.isfinite(value):
        return "-"
    lo, hi = (list(interval) + [None, None])[:2]
    return f"{value:+.2f}" + (f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None and hi is not None else "")


def format_p(p: float, corrected: float) -> str:
    """``0.017 (0.153)``: a raw p-value and its Holm-corrected value (``-`` when undefined)."""
    if not math.isfinite(p):
        return "-"
    return f"{p:.3f}" + (f" ({corrected:.3f})" if math.isfinite(corrected) else "")


def format_classes(classes: list[list[str]]) -> str:
    """``6 sets, 2 classes (1+5)``: how many tie classes an order declares, and their sizes when any are tied."""
    n = sum(len(c) for c in classes)
    if len(classes) == n:
        return f"{n} sets, strict"
    if len(classes) == 1:
        return f"{n} sets, all tied"
    return f"{n} sets, {len(classes)} classes ({'+'.join(str(len(c)) for c in classes)})"


def _agreement_v2(body: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2. The seed intervals were percentiles of random seed resamples labelled 95%: they are recomputed
    as seed spans (every resample) from the file's own oracle accuracies and its (strict) orders. ``p_random`` (upper
    tail, strict order) becomes ``p_better``; ``undefined`` reads ``cannot tell``. What version 1 did not record
    stays empty: tie classes (read as a strict order), the lower tail and Holm values (nan), the costs."""
    from .agreement import seed_span

    body = dict(body)
    sets = list(body.get("sets", []))
    acc = {(e["method"], e["target"]): e["val_per_seed"] for e in body.get("oracle", [])}
    agreement = []
    for a in body.get("agreement", []):
        a = dict(a)
        a.pop("spearman_ci", None), a.pop("kendall_ci", None)
        try:
            matrix = np.array([acc[(a["method"], t)] for t in sets], dtype=float)
            a["spearman_span"], a["kendall_span"], _ = seed_span(a["order"], sets, matrix)
        except (KeyError, ValueError):  # an oracle that does not cover the sets: no span
            a["spearman_span"], a["kendall_span"] = [None, None], [None, None]
        a["p_better"] = a.pop("p_random", math.nan)
        if a.get("verdict") == "undefined":
            a["verdict"] = "cannot tell"
        agreement.append(a)
    body["agreement"] = agreement
    return body


@dataclass
class OracleEntry(_SeedScores):
    """One target set adapted alone with one method at the matched budget; accuracies per seed (validation decides,
    test is only reported)."""

    target: str
    units: list[str]
    method: str
    config: dict[str, Any]
    used: int  # trainable parameters counted against the budget
    val_per_seed: list[float]
    test_per_seed: list[float]
    #: Per seed, which validation images the trained model got right (:func:`~petl_analysis.engine.pack_correct`,
    #: in the split's order); empty for results written before they were recorded.
    val_correct: list[str] = field(default_factory=list)


def format_interval(bounds: list[float | None] | None) -> str:
    """``[+0.12, +0.94]``; ``-`` when not measured (or undefined in every resample)."""
    if not bounds or bounds[0] is None or bounds[1] is None:
        return "-"
    return f"[{bounds[0]:+.2f}, {bounds[1]:+.2f}]"


@dataclass
class Cost:
    """What producing an order cost: trainings (unique trial keys, each one seed of one configuration) and their
    summed seconds. A proxy trains nothing (its seconds are its measured compute); ``source`` says where the figures
    were read (e.g. the probe's trial log), ``""`` when measured in the run itself."""

    trainings: int = 0
    seconds: float = 0.0
    source: str = ""

    def text(self) -> str:
        """``6 trainings, 812 s`` (or ``no training, 3.1 s``; ``unknown (why)`` when the seconds are not known)."""
        if not math.isfinite(self.seconds):
            return f"unknown ({self.source})" if self.source else "unknown"
        what = f"{self.trainings:,} training{'s' if self.trainings != 1 else ''}" if self.trainings else "no training"
        return f"{what}, {self.seconds:,.0f} s" if self.seconds >= 10 else f"{what}, {self.seconds:.1f} s"


@dataclass
class SelectorRegret:
    """What one selector's plan gives up at one budget against the reference plan, seed by seed (split B).

    Attributes:
        budget, selector: the budget, and a selector, ``oracle`` (the judge's own order) or ``random`` (the floor:
            every order of the sets).
        plan_shares: index into ``ValidationResult.plans`` (as text) -> share of the selector's orders (those
            consistent with its declared ties) whose greedy plan it is.
        val_per_seed: expected split-B validation accuracy per judge seed (over ``plan_shares``).
        diff_per_seed: ``val_per_seed`` minus the reference plan's, seed by seed (negative: worse than it).
        diff_mean, diff_interval, interval_kind: their mean and its interval (``seed span``: the smallest and the
            largest per-seed difference, what every resample of 3 or fewer seeds spans; else ``t 95% (ddof=1)``).
        orders: ``exact`` (every order weighed) or how orders were sampled instead (with the standard error).
    """

    budget: int
    selector: str
    plan_shares: dict[str, float]
    val_per_seed: list[float]
    diff_per_seed: list[float]
    diff_mean: float
    diff_interval: list[float]
    interval_kind: str
    orders: str = "exact"

    @property
    def regret(self) -> float:
        """Points of accuracy given up against the reference (the mean paired difference, sign flipped)."""
        return 0.0 - self.diff_mean  # never -0.0


@dataclass
class Agreement:
    """How one selector's order agrees with one method's oracle.

    Attributes:
        selector, method: the ranking compared, and the method whose oracle it is compared with.
        order: the selector's strict order of the sets (first = adapt first; what its planner follows).
        tie_classes: the order the selector declares, as tie classes best first (the statistics read these).
        spearman, kendall: rank correlation of the midranks with the oracle's seed-mean accuracies (positive = agrees).
        spearman_span, kendall_span: [min, max] over every resample of the oracle's seeds (a seed span, not a
            confidence interval; ``None`` with one seed).
        p_better, p_worse: permutation p-values of rho under the declared ties, upper tail ("better than random")
            and lower tail ("worse than random"); ``permutations`` evaluated, ``exact`` when all of them.
        p_better_holm, p_worse_holm: the same, Holm-corrected over the selectors compared with this method's oracle;
            the verdict reads these.
        top_k: ``top_k[k-1]`` = share of the oracle's best k sets among the selector's first k.
        top1_regret: oracle accuracy of the best set minus that of the selector's first set.
        verdict: ``better than random``, ``worse than random``, ``no better than random``, ``cannot tell`` (rho
            undefined, or the declared ties leave no outcome that a test could call significant) or ``sets tied``
            (the oracle's sets are fewer than 2 validation images apart).
        n_measured: sets with a measured d90 (d90 selectors; ``None`` for the others).
        cost: what the selector's order cost (the probe's trainings for d90 selectors; compute seconds for proxies).
        spearman_images: 95% percentile interval of rho over bootstrap resamples of the judge's validation images,
            one draw of images shared by every set and seed (:func:`~petl_analysis.validate.agreement.image_bootstrap`);
            ``None`` when the oracle's per-image scores were not recorded.
    """

    selector: str
    method: str
    order: list[str]
    spearman: float
    kendall: float
    spearman_span: list[float | None]
    kendall_span: list[float | None]
    p_better: float
    top_k: list[float]
    top1_regret: float
    verdict: str
    tie_classes: list[list[str]] = field(default_factory=list)
    p_worse: float = math.nan
    p_better_holm: float = math.nan
    p_worse_holm: float = math.nan
    permutations: int = 0
    exact: bool = True
    n_measured: int | None = None
    cost: Cost | None = None
    spearman_images: list[float | None] | None = None

    def classes(self) -> list[list[str]]:
        """The declared tie classes (a strict order when none were recorded)."""
        return self.tie_classes or [[t] for t in self.order]


@dataclass
class PlanOutcome(_SeedScores):
    """A plan trained at one budget over the seeds (``same_as``: an earlier selector whose plan is the same
    configuration; trained once). Under the split A/B protocol there is one per distinct plan that any order of the
    sets gives: ``selector`` is the first selector whose order gives it (``random``: only other orders),
    ``val_per_seed`` is scored on split B, ``a_val_per_seed`` the same models on split A (where the ``reference``
    plan is chosen), ``floor_share`` the share of all orders whose greedy plan it is."""

    budget: int
    selector: str
    method: str
    targets: list[str]
    units: list[str]
    config: dict[str, Any]
    used: int
    val_per_seed: list[float]
    test_per_seed: list[float]
    regret: float = math.nan
    same_as: str | None = None
    a_val_per_seed: list[float] = field(default_factory=list)
    floor_share: float = 0.0
    reference: bool = False

    @property
    def a_val_mean(self) -> float:
        return float(np.mean(self.a_val_per_seed)) if self.a_val_per_seed else math.nan


@dataclass
class ValidationResult(Artefact):
    """Output of ``petl-analyze validate`` (``validation.json``).

    ``oracle``: every set alone at ``budget`` per method. ``agreement``: every selector against every method's
    oracle; ``random``: the same measures for a random order (their expectation over all orders).
    ``plans``: at each of ``budgets``, every distinct plan (``regret_method``) that an order of the sets gives,
    trained; ``regrets``: each selector's expected plan against the reference plan (chosen on split A's validation
    images, scored on split B's), paired per judge seed; ``regret_left_out``: budgets where every order gives the
    same plan (nothing to choose).

    The data: ``probe_data`` is the probe's (split A), ``data`` the judge's (split B of the same dataset and
    ``split_seed``: the oracle and the regret train and score there, with ``seeds`` offset by ``seed_offset`` from
    the probe's). ``judged_on``: ``split B``, ``the probe's own data`` (the escape hatch ``allow_shared_data``: every
    verdict says so), or empty for a version-1 file (the old protocol: ``random_draws`` seeded orders, best plan
    chosen and scored on the same images).
    """

    SCHEMA = "validation_result"
    VERSION = 2
    #: Version 1 judged on the probe's own data: its probe's data is its data, and ``judged_on`` stays empty (the old
    #: regret fields keep their meaning); its agreement records are re-read with the tie-aware statistics.
    MIGRATIONS: ClassVar[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {
        1: lambda body: _agreement_v2({**body, "probe_data": body.get("data")})
    }

    model: ModelSpec
    data: DataSpec
    recipe: Recipe
    head_init: str
    seeds: list[int]
    methods: list[str]
    sets: list[str]
    per_block: bool
    budget: int
    oracle: list[OracleEntry]
    agreement: list[Agreement]
    random: dict[str, Any]
    budgets: list[int]
    regret_method: str
    random_draws: int
    plans: list[PlanOutcome]
    selectors: list[str]
    notes: list[str] = field(default_factory=list)
    n_val: int = 0  # validation images the oracle is scored on (per seed)
    failed: list[dict[str, Any]] = field(default_factory=list)
    probe_source: str = ""
    wall_time_s: float = 0.0  # of the call that wrote the artefact (a resumed call reads finished trials back)
    train_time_s: float = 0.0  # training summed over every trial the result uses
    command: str = ""
    input_conversion: InputConversion | None = None
    oracle_cost: dict[str, Cost] = field(default_factory=dict)  # per method: the oracle's own trainings and seconds
    probe_data: DataSpec | None = None
    judged_on: str = ""
    seed_offset: int = 0
    regrets: list[SelectorRegret] = field(default_factory=list)
    regret_left_out: list[int] = field(default_factory=list)

    def oracle_of(self, method: str) -> list[OracleEntry]:
        """The method's oracle entries, best validation accuracy first."""
        return sorted((e for e in self.oracle if e.method == method), key=lambda e: (-e.val_mean, e.target))

    def oracle_table(self) -> list[dict[str, Any]]:
        rows = []
        for method in self.methods:
            for i, e in enumerate(self.oracle_of(method)):
                rows.append(
                    {
                        "method": method,
                        "oracle rank": i + 1,
                        "target": e.target,
                        "trainable": e.used,
                        "val acc": f"{100 * e.val_mean:.1f} ± {100 * e.val_std:.1f}",
                        "test acc": f"{100 * e.test_mean:.1f}",
                    }
                )
        return rows

    def agreement_table(self) -> list[dict[str, Any]]:
        """One row per (selector, method): correlations with their seed spans and image-bootstrap interval,
        Holm-corrected p-values, top-1, cost beside the oracle's, and the verdict."""
        rows = []
        for a in self.agreement:
            oracle = self.oracle_cost.get(a.method)
            rows.append(
                {
                    "selector": a.selector,
                    "method": a.method,
                    "classes": format_classes(a.classes()),
                    "spearman": format_correlation(a.spearman, a.spearman_span),
                    "kendall": format_correlation(a.kendall, a.kendall_span),
                    "spearman, image bootstrap 95%": format_interval(a.spearman_images),
                    "p better (Holm)": format_p(a.p_better, a.p_better_holm),
                    "p worse (Holm)": format_p(a.p_worse, a.p_worse_holm),
                    "top-1": f"{a.top_k[0]:.0%}",
                    "top-1 regret": f"{100 * a.top1_regret:.1f} pts",
                    "cost": a.cost.text() if a.cost else "-",
                    "oracle cost": oracle.text() if oracle else "-",
                    "verdict": a.verdict + self.verdict_label,
                }
            )
        return rows

    @property
    def verdict_label(self) -> str:
        """What every verdict shown carries: empty, or that the judge read the probe's own data."""
        return OWN_DATA_LABEL if self.judged_on == JUDGED_ON_OWN else ""

    def regret_table(self) -> list[dict[str, Any]]:
        if self.judged_on:
            return [
                {
                    "budget": r.budget,
                    "selector": r.selector,
                    "plans": ", ".join(f"#{i} {share:.0%}" for i, share in r.plan_shares.items()),
                    "val acc (B)": f"{100 * float(np.mean(r.val_per_seed)):.1f}",
                    "regret": f"{100 * r.regret:.1f} pts",
                    f"selector − reference, {r.interval_kind}": f"[{100 * r.diff_interval[0]:+.1f}, "
                    f"{100 * r.diff_interval[1]:+.1f}]",
                    "orders": r.orders,
                }
                for r in self.regrets
            ]
        rows = []
        for b in self.budgets:
            for p in (p for p in self.plans if p.budget == b):
                rows.append(
                    {
                        "budget": b,
                        "selector": p.selector,
                        "targets": ", ".join(p.targets),
                        "trainable": p.used,
                        "val acc": f"{100 * p.val_mean:.1f} ± {100 * p.val_std:.1f}",
                        "regret": f"{100 * p.regret:.1f} pts",
                        "same as": p.same_as or "-",
                    }
                )
        return rows

    def regret_of(self, selector: str, budget: int) -> SelectorRegret | None:
        return next((r for r in self.regrets if r.selector == selector and r.budget == budget), None)

    def mean_regret(self, selector: str, budget: int) -> float:
        """Regret of ``selector``'s plan at ``budget`` against the reference (a version-1 file: mean over its plans,
        ``random`` over its draws ``random:<seed>``); nan if it planned none or the budget was left out."""
        if self.judged_on:
            r = self.regret_of(selector, budget)
            return r.regret if r is not None else math.nan
        values = [
            p.regret
            for p in self.plans
            if p.budget == budget and (p.selector == selector or p.selector.startswith(f"{selector}:"))
        ]
        return float(np.mean(values)) if values else math.nan
