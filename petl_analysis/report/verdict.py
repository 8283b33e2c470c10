"""Plain-language conclusions computed from the report's rows (no plotting, no I/O).

Two results are called "level" (not distinguishable within seed spread) unless the 95 % interval of the difference
of their means over seeds excludes 0 (:func:`~petl_analysis.report.pareto.seeds_differ`, Welch's t): with 2 seeds a
gap of a few test images is not a "beat". With one seed on a side there is no spread to judge by; the means then
differ by any gap, and the verdict says that every difference is untested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..plan import FIXED_SIZE as FIXED_SIZE_VARIANT
from ..plan import PLANNED_VARIANTS
from ..probe import unresolved_gain
from .pareto import CONFIDENCE, seeds_differ, within_spread
from .tables import VARIANT_NAMES, PointRow, ProbeRow, fmt_ci, fmt_d, fmt_int, fmt_pct, fmt_pe

SUBJECT = "kadaptation"
#: How far (ratio of trainable parameters) a point of another method may be from the subject and still count as
#: "comparable" when that method has no point at the same budget.
COMPARABLE_RATIO = 2.0


def outcome(a: PointRow, b: PointRow) -> str:
    """``"ahead"``, ``"behind"``, ``"level"`` (within the combined seed spread) for ``a`` against ``b``, or
    ``"same"`` when one is the other (an identical configuration, trained once)."""
    if _same(a, b):
        return "same"
    if len(a.seed_accs) > 1 and len(b.seed_accs) > 1:
        level = not seeds_differ(a.seed_accs, b.seed_accs)
    else:  # one seed: no spread (the verdict says every difference is untested)
        level = within_spread(a.acc, a.std, b.acc, b.std)
    if level:
        return "level"
    return "ahead" if a.acc > b.acc else "behind"


OUTCOME_WORDS = {
    "ahead": "ahead of",
    "behind": "behind",
    "level": "not distinguishable within seed spread from",
    "same": "the same configuration as (trained once)",
}


def _same(a: PointRow, b: PointRow) -> bool:
    return (
        a.same_as == f"{b.label}@{b.budget}"
        or b.same_as == f"{a.label}@{a.budget}"
        or (a.same_as is not None and a.same_as == b.same_as)
    )


def _describe(r: PointRow) -> str:
    return f"{r.name} ({r.acc_text} % at {fmt_int(r.params)} params)"


def _ok(rows: list[PointRow]) -> list[PointRow]:
    return [r for r in rows if r.ok]


def subject_variant(rows: list[PointRow]) -> str | None:
    """The KAdaptation variant the verdict is about: ``selected`` when the sweep has it, else ``fixed``."""
    variants = {r.variant for r in _ok(rows) if r.method == SUBJECT}
    for v in PLANNED_VARIANTS:
        if v in variants:
            return v
    return next(iter(sorted(variants)), None)


def comparable(subject: PointRow, rows: list[PointRow]) -> list[PointRow]:
    """For each other budgeted method (not KAdaptation, not fixed-size): its point at the subject's budget, else its
    point nearest in parameters within a factor :data:`COMPARABLE_RATIO`."""
    by_label: dict[str, list[PointRow]] = {}
    for r in _ok(rows):
        if r.method != SUBJECT and r.variant != FIXED_SIZE_VARIANT:
            by_label.setdefault(r.label, []).append(r)
    out = []
    for label in sorted(by_label):
        pts = by_label[label]
        same = [p for p in pts if p.budget == subject.budget]
        if same:
            out.append(same[0])
            continue
        near = min(pts, key=lambda p: abs(math.log(p.params / subject.params)))
        if max(near.params, subject.params) / min(near.params, subject.params) <= COMPARABLE_RATIO:
            out.append(near)
    return out


def _dominator(r: PointRow, rows: list[PointRow]) -> PointRow | None:
    """The most accurate point with at most ``r``'s parameters that beats it (None when ``r`` is on the front)."""
    better = [
        o
        for o in _ok(rows)
        if o is not r and o.params <= r.params and o.acc >= r.acc and (o.params < r.params or o.acc > r.acc)
    ]
    return max(better, key=lambda o: (o.acc, -o.params)) if better else None


def _counts(outcomes: list[str]) -> str:
    n = len(outcomes)
    same = outcomes.count("same")
    return (
        f"ahead at {outcomes.count('ahead')}, level at {outcomes.count('level')}, "
        f"behind at {outcomes.count('behind')}"
        + (f", the same configuration at {same}" if same else "")
        + f" of {n} budget{'s' if n != 1 else ''}"
    )


def scored_epoch(epoch_selection: str) -> str:
    """Which epoch's test accuracy a sweep reports, from its recipe's ``epoch_selection``."""
    return "the best-validation epoch" if epoch_selection == "val" else "the last epoch (a fixed schedule)"


def sweep_verdict(
    rows: list[PointRow], m0_text: str, seeds: tuple[int, int], *, epoch_selection: str = "val"
) -> list[str]:
    """Bullets: where KAdaptation sits against the other methods at comparable budgets, the Pareto front, PE."""
    ok = _ok(rows)
    if not ok:
        return ["No sweep point produced an accuracy (every trial failed), so there is nothing to compare."]
    bullets: list[str] = []
    front = [r for r in ok if r.on_front]
    best_acc = max(ok, key=lambda r: (r.acc, -r.params))
    best_pe = max(ok, key=lambda r: (r.pe, r.acc))
    variant = subject_variant(rows)
    if variant is None:
        bullets.append("The sweep has no KAdaptation point; the bullets below describe the other methods only.")
    else:
        vname = VARIANT_NAMES.get(variant, variant)
        subjects = sorted(
            [r for r in ok if r.method == SUBJECT and r.variant == variant], key=lambda r: (r.budget or 0, r.params)
        )
        on = [s for s in subjects if s.on_front]
        outcomes: list[str] = []
        detail: list[str] = []
        for s in subjects:
            comps = comparable(s, rows)
            parts = []
            for c in comps:
                o = outcome(s, c)
                outcomes.append(o)
                parts.append(f"{OUTCOME_WORDS[o]} {_describe(c)}")
            where = "on the Pareto front" if s.on_front else _off_front(s, rows)
            head = (
                f"Budget {fmt_int(s.budget)}: KAdaptation ({vname}) reaches {s.acc_text} % with "
                f"{fmt_int(s.params)} trainable parameters, {where}."
            )
            detail.append(
                head
                + (
                    " It is " + "; ".join(parts) + "."
                    if parts
                    else " No other method has a point at a comparable budget."
                )
            )
        headline = (
            f"KAdaptation ({vname}) is on the Pareto front at {len(on)} of {len(subjects)} budget"
            f"{'s' if len(subjects) != 1 else ''}"
        )
        if outcomes:
            headline += (
                f"; against the other budgeted methods at comparable budgets it is ahead in "
                f"{outcomes.count('ahead')}, level in {outcomes.count('level')} and behind in "
                f"{outcomes.count('behind')} of {len(outcomes)} comparisons"
            )
        bullets.append(headline + ".")
        bullets.extend(detail)
        refs = sorted([r for r in ok if r.variant == FIXED_SIZE_VARIANT], key=lambda r: r.params)
        if refs and subjects:
            top = max(subjects, key=lambda r: (r.acc, -r.params))
            parts = [f"{OUTCOME_WORDS[outcome(top, r)]} {_describe(r)}" for r in refs]
            bullets.append(
                f"Fixed-size references: the best KAdaptation ({vname}) point ({top.acc_text} % "
                f"at {fmt_int(top.params)} params) is " + "; ".join(parts) + "."
            )
    bullets.append(
        "Pareto front (fewest parameters for the accuracy): "
        + ", ".join(f"{r.name} at {fmt_int(r.params)}" for r in front)
        + "."
    )
    bullets.append(
        f"Most accurate point: {_describe(best_acc)}. Highest PE ({m0_text}): {best_pe.name} at "
        f"{fmt_int(best_pe.params)} params (PE {fmt_pe(best_pe.pe)})."
    )
    lo, hi = seeds
    if hi <= 1:
        bullets.append(
            "Only one seed per point: there is no seed spread, so every difference above is untested and "
            "could be noise."
        )
    else:
        n = f"{lo}" if lo == hi else f"{lo}-{hi}"
        bullets.append(
            f"Accuracy is test accuracy at {scored_epoch(epoch_selection)}, mean ± std over {n} seeds; "
            '"ahead" / "behind" / "beat" need the 95 % interval of the difference of the means '
            '(Welch\'s t over seeds) to exclude 0, otherwise "level" / "not distinguishable": with '
            "few seeds the std is itself uncertain, so a gap of a few test images is not a win."
        )
    return bullets


def _off_front(r: PointRow, rows: list[PointRow]) -> str:
    d = _dominator(r, rows)
    if d is None:
        return "not on the Pareto front"
    return f"not on the Pareto front ({d.name} reaches {d.acc_text} % with {fmt_int(d.params)} params)"


# --------------------------------------------------------------------------------------------------- selection


@dataclass
class SelectionRow:
    """One budget of the selected / fixed / worst comparison (KAdaptation)."""

    budget: int
    points: dict[str, PointRow]  # variant -> row
    vs_fixed: str | None
    vs_worst: str | None
    same_units_as_fixed: bool


def _units(r: PointRow, plans: dict[tuple[str, int | None], set[str]]) -> set[str]:
    return plans.get((r.label, r.budget), set())


def selection_rows(rows: list[PointRow], plan_units: dict[tuple[str, int | None], set[str]]) -> list[SelectionRow]:
    """Budgets where KAdaptation was trained with at least two of the selected / fixed / worst target sets."""
    by_budget: dict[int, dict[str, PointRow]] = {}
    for r in _ok(rows):
        if r.method == SUBJECT and r.variant in PLANNED_VARIANTS and r.budget is not None:
            by_budget.setdefault(r.budget, {})[r.variant] = r
    out = []
    for b in sorted(by_budget):
        pts = by_budget[b]
        if len(pts) < 2:
            continue
        sel = pts.get("selected")
        vs_fixed = outcome(sel, pts["fixed"]) if sel and "fixed" in pts else None
        vs_worst = outcome(sel, pts["worst"]) if sel and "worst" in pts else None
        same = bool(
            sel
            and "fixed" in pts
            and _units(sel, plan_units)
            and _units(sel, plan_units) == _units(pts["fixed"], plan_units)
        )
        out.append(SelectionRow(b, pts, vs_fixed, vs_worst, same))
    return out


def selection_verdict(sel_rows: list[SelectionRow]) -> list[str]:
    """Bullets: did choosing targets by the ranking beat the paper's fixed (q, v) and the worst-ranked targets?"""
    if not sel_rows:
        return []
    bullets = []
    fixed = [r.vs_fixed for r in sel_rows if r.vs_fixed]
    worst = [r.vs_worst for r in sel_rows if r.vs_worst]
    if fixed:
        bullets.append(
            f"Selected targets vs the paper's fixed q,v: {_counts(fixed)}." + _summary_word(fixed, "fixed q,v")
        )
    if worst:
        bullets.append(
            f"Selected targets vs the worst-ranked targets: {_counts(worst)}." + _summary_word(worst, "worst-ranked")
        )
    for r in sel_rows:
        parts = [
            f"{VARIANT_NAMES[v]} {p.acc_text} % ({fmt_int(p.params)} params)"
            for v, p in sorted(r.points.items(), key=lambda kv: PLANNED_VARIANTS.index(kv[0]))
        ]
        notes = []
        if r.vs_fixed:
            notes.append(f"selected is {OUTCOME_WORDS[r.vs_fixed]} fixed q,v")
        if r.vs_worst:
            notes.append(f"{OUTCOME_WORDS[r.vs_worst]} worst-ranked")
        if r.same_units_as_fixed and r.vs_fixed != "same":
            notes.append(
                "selection chose the same units as the fixed plan, so any difference comes from sizing or "
                "run-to-run noise, not from the choice of targets"
            )
        tail = " — " + "; ".join(notes) if notes else ""
        bullets.append(f"Budget {fmt_int(r.budget)}: " + " vs ".join(parts) + tail + ".")
    corrected = _corrected_selection(sel_rows)
    if corrected:
        bullets.append(corrected)
    return bullets


def _corrected_selection(sel_rows: list[SelectionRow]) -> str | None:
    """The ahead/behind calls above, re-tested for the number of comparisons the selected plan took part in
    (Bonferroni: each difference's interval at ``1 - 0.05 / n``); ``None`` when there is one comparison or none
    called. The per-comparison verdicts stay as they are: this bullet says which of them survive the correction."""
    pairs = [
        (r.budget, other, r.points["selected"], r.points[other], word)
        for r in sel_rows
        for other, word in (("fixed", r.vs_fixed), ("worst", r.vs_worst))
        if word and word != "same"
    ]
    called = [p for p in pairs if p[4] in ("ahead", "behind") and min(len(p[2].seed_accs), len(p[3].seed_accs)) > 1]
    if len(pairs) < 2 or not called:
        return None
    confidence = 1 - (1 - CONFIDENCE) / len(pairs)
    parts = []
    for budget, other, sel, ref, word in called:
        stands = seeds_differ(sel.seed_accs, ref.seed_accs, confidence)
        verdict = "stands" if stands else "not distinguishable after the correction"
        parts.append(f"{OUTCOME_WORDS[word]} {VARIANT_NAMES[other]} at {fmt_int(budget)}: {verdict}")
    return (
        f"Corrected for the {len(pairs)} comparisons of the selected targets above (Bonferroni: each difference's "
        f"{100 * confidence:.1f} % interval must exclude 0): " + "; ".join(parts) + "."
    )


def _summary_word(outcomes: list[str], other: str) -> str:
    same = outcomes.count("same")
    outcomes = [o for o in outcomes if o != "same"]
    if not outcomes:
        return f" Selection chose exactly the {other} configuration at every budget: there is nothing to compare."
    tail = (
        f" (At {same} budget{'s' if same != 1 else ''} the two plans are the same configuration, trained once, "
        "and are left out of this count.)"
        if same
        else ""
    )
    return _summary_core(outcomes, other) + tail


def _summary_core(outcomes: list[str], other: str) -> str:
    n, ahead, behind = len(outcomes), outcomes.count("ahead"), outcomes.count("behind")
    if ahead == 0 and behind == 0:
        return f" Selection and {other} are not distinguishable within seed spread at any budget."
    if behind == 0:
        if ahead == n:
            return f" Selection beat {other} at every budget."
        return (
            f" Selection was never behind {other} but ahead at only {ahead} of {n} budgets; elsewhere not "
            "distinguishable within seed spread."
        )
    if ahead == 0:
        if behind == n:
            return f" Selection lost to {other} at every budget."
        return f" Selection did not beat {other}: behind at {behind} of {n} budgets, not distinguishable elsewhere."
    return f" Mixed: ahead of {other} at some budgets and behind at others, so no consistent advantage."


# --------------------------------------------------------------------------------------------------- probe


def _smallest_d(rows: list[ProbeRow]) -> int | None:
    values = [r.d90.reached_value for r in rows if r.reached and r.d90.below_min]
    return int(min(values)) if values else None


def _ci_overlap(a: ProbeRow, b: ProbeRow) -> bool:
    def span(r: ProbeRow) -> tuple[float, float]:
        d = r.d90
        lo = d.ci_low if d.ci_low is not None and math.isfinite(d.ci_low) else (d.reached_value or math.inf)
        hi = d.ci_high if d.ci_high is not None else math.inf
        return lo, hi

    (alo, ahi), (blo, bhi) = span(a), span(b)
    return alo <= bhi and blo <= ahi


def degenerate_probe_text(below_min: list[bool], smallest_d: int | None, floor: float, ceiling: float) -> str | None:
    """The warning for a probe whose every target reached the threshold at the smallest d tried, else None.

    Args:
        below_min: per target, whether its d90 was reached already at the smallest d tried.
        smallest_d: the smallest d tried over the targets; floor, ceiling: mean validation accuracies (fractions) of
            the head alone (d = 0) and of full fine-tuning.
    """
    if not below_min or not all(below_min):
        return None
    at = f" (d90 <= {smallest_d})" if smallest_d is not None else ""
    why = (
        f"full fine-tuning ({100 * ceiling:.1f}%) does not beat the head trained alone ({100 * floor:.1f}%)"
        if ceiling <= floor
        else f"the threshold is met with almost no adaptation (head alone {100 * floor:.1f}%, full fine-tuning "
        f"{100 * ceiling:.1f}%)"
    )
    return (
        f"degenerate probe: every target reached the threshold at the smallest d tried{at}, so the d90s are "
        f"upper bounds that do not order the targets; {why}; the linear probe may be all this task needs"
    )


def degenerate_probe_warning(probe) -> str | None:
    """:func:`degenerate_probe_text` for a :class:`~petl_analysis.probe.ProbeResult` (for the console)."""
    flags = [bool(t.d90.reached and t.d90.below_min) for t in probe.targets]
    smallest = min(
        (int(t.d90.value) for t in probe.targets if t.d90.below_min and t.d90.value is not None), default=None
    )
    return degenerate_probe_text(flags, smallest, probe.floor.val_mean, probe.ceiling.val_mean)


def probe_verdict(
    rows: list[ProbeRow], floor: tuple[float, float], ceiling: tuple[float, float], *, n_val: int = 0
) -> list[str]:
    """Bullets: lowest local ID, statistically tied targets, targets that never reached the threshold (and those
    that missed it by less than one validation image), attention vs MLP (the KAdaptation paper's finding), and a
    degenerate probe (ceiling not above floor, or every d90 at the smallest d).

    ``floor`` and ``ceiling`` are (mean, std) validation accuracies of the head alone (d = 0) and full fine-tuning.
    """
    if not rows:
        return ["The probe has no targets."]
    bullets = []
    reached = [r for r in rows if r.reached]
    if reached:
        top = reached[0]
        line = (
            f"Lowest local intrinsic dimension: {top.target} with d90 = {fmt_d(top)} "
            f"(CI {fmt_ci(top)}) out of D = {fmt_int(top.D)}."
        )
        if top.d90.n_seeds < 2:  # no interval exists: the order is one d90 per target, not a tested difference
            if len(reached) > 1:
                line += (
                    " With one probe seed there is no interval: the order of the targets rests on one d90 each, "
                    "untested against seed noise (probe with 2 or more seeds to tell ties from differences)."
                )
        elif ties := [r.target for r in reached[1:] if _ci_overlap(top, r)]:
            line += " Not distinguishable from it (overlapping CIs): " + ", ".join(ties) + "."
        bullets.append(line)
    missed = [r.target for r in rows if not r.reached]
    if missed:
        bullets.append(f"Never reached the threshold within the d tried: {', '.join(missed)}.")
    if n_val:
        close = [
            f"{r.target} (best {fmt_pct(r.best_acc)} % vs {fmt_pct(r.d90.threshold_acc)} %)"
            for r in rows
            if not r.reached and 0 < r.d90.threshold_acc - r.best_acc < 1.0 / n_val
        ]
        if close:
            bullets.append(
                'Missed the threshold by less than one validation image, so "not reached" is within '
                "rounding: " + ", ".join(close) + "."
            )
    pooled = [
        f"{r.target} (best {fmt_pct(r.best_acc)} % vs {fmt_pct(r.d90.threshold_acc)} %)"
        for r in rows
        if not r.reached and r.best_acc >= r.d90.threshold_acc
    ]
    if pooled:
        bullets.append(
            "A single point above the threshold, pooled by the monotone fit with lower points at larger d "
            "(the curve falls again), so not counted as reached: " + ", ".join(pooled) + "."
        )
    groups: dict[str, list[ProbeRow]] = {"attention": [], "MLP": []}
    for r in reached:
        if r.kind.startswith("attn"):
            groups["attention"].append(r)
        elif r.kind.startswith("mlp"):
            groups["MLP"].append(r)
    if groups["attention"] and groups["MLP"]:
        a, m = groups["attention"][0], groups["MLP"][0]
        if _ci_overlap(a, m):
            verdict = (
                "not distinguishable within the bootstrap CIs, so the paper's finding is neither confirmed nor "
                "refuted here"
            )
        elif (a.d90.reached_value or math.inf) < (m.d90.reached_value or math.inf):
            verdict = "attention is lower, consistent with the KAdaptation paper's finding"
        else:
            verdict = "MLP is lower, contrary to the KAdaptation paper's finding (attention lower)"
        bullets.append(
            f"Attention vs MLP: lowest attention d90 {fmt_d(a)} ({a.target}) vs "
            f"lowest MLP d90 {fmt_d(m)} ({m.target}): {verdict}."
        )
    degenerate = degenerate_probe_text(
        [r.reached and r.d90.below_min for r in rows], _smallest_d(rows), floor[0], ceiling[0]
    )
    if degenerate:
        bullets.append(degenerate[0].upper() + degenerate[1:] + ".")
    why = unresolved_gain(floor, ceiling, n_val)
    if why:
        bullets.append(
            f"Caution: {why}, so the gain-normalised threshold sits inside the noise and d90 values are unreliable."
        )
    return bullets
