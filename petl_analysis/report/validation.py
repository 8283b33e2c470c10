"""The report section "Does the ranking predict?", from a :class:`~petl_analysis.validate.ValidationResult`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..probe import RESOLVED_IMAGES
from ..probe.result import images_apart
from ..validate.result import format_classes, format_correlation, format_interval, format_p
from . import plots
from .document import Block, Bullets, Heading, Image, Paragraph, Table
from .tables import method_name

if TYPE_CHECKING:
    from ..probe import ProbeResult
    from ..validate import Agreement, ValidationResult

VALIDATION_PNG = "oracle_vs_predicted.png"


def _pts(x: float) -> str:
    """Points with one decimal; a value that rounds to zero prints ``0.0``, never ``-0.0``."""
    return "-" if not math.isfinite(x) else f"{round(100 * x, 1) + 0.0:.1f}"


def oracle_spread(v: ValidationResult, method: str) -> tuple[float, float]:
    """(best - worst set, mean sample std over seeds, ddof = 1) of a method's oracle, in accuracy fractions: if the
    first is not clearly above the second, the sets adapt equally well and no ranking can be judged right or wrong
    (nan spread with one seed)."""
    entries = v.oracle_of(method)
    means = [e.val_mean for e in entries]
    return (max(means) - min(means), float(np.mean([e.val_std for e in entries])))


#: What each verdict says, in the report's words (``undefined``: files written before "cannot tell").
_VERDICT_WORDS = {
    "better than random": "is **better than random** here",
    "no better than random": "is **no better than random** here",
    "worse than random": "is **worse than random** here (the sets it ranks first adapt worse)",
    "cannot tell": "**cannot be told** from random here",
    "undefined": "**cannot be told** from random here (the oracle sets are all equal)",
    "sets tied": "cannot be judged here (the sets are fewer than 2 validation images apart)",
}


def _why_cannot_tell(a: Agreement) -> str:
    classes = a.classes()
    if not math.isfinite(a.spearman):
        return " (ρ is undefined: too few sets, or every set tied in the oracle or in the selector's order)"
    if len(classes) < sum(len(c) for c in classes):
        return (
            f" (its order declares {len(classes)} tie classes of {sum(len(c) for c in classes)} sets: even a "
            "perfect match with the oracle could not be told from chance)"
        )
    return ""


def _agreement_sentence(a: Agreement, method_name: str) -> str:
    here = _VERDICT_WORDS[a.verdict] + (_why_cannot_tell(a) if a.verdict == "cannot tell" else "")
    if math.isfinite(a.p_worse):
        tests = (
            f"p = {a.p_better:.2f} better, {a.p_worse:.2f} worse than random orders under its declared ties, "
            f"{a.p_better_holm:.2f} and {a.p_worse_holm:.2f} after Holm over the selectors"
        )
    elif math.isfinite(a.p_better):  # a version-1 file: the upper tail of the strict order only
        tests = f"share of random orders at least as good: {a.p_better:.2f}"
    else:
        tests = "no permutation test: ρ is undefined"
    measured = (
        f"; {a.n_measured} of {sum(len(c) for c in a.classes())} sets had a measured d90"
        if a.n_measured is not None
        else ""
    )
    cost = f"; it cost {a.cost.text()}" if a.cost is not None else ""
    return (
        f"`{a.selector}` {here}: Spearman ρ = {format_correlation(a.spearman, a.spearman_span)} against the "
        f"{method_name} oracle ({tests}){measured}{cost}; its first set is "
        f"{'the oracle best' if a.top_k[0] == 1 else f'{_pts(a.top1_regret)} points below the oracle best'}."
    )


def validation_section(v: ValidationResult, figure: Callable[[str, str, bytes, str, str], Image]) -> list[Block]:
    """The section: setup, verdicts, the agreement and regret tables, the oracle table and the per-selector plot.

    ``figure(key, filename, png, alt, caption)`` writes a PNG and returns its block (the report builder's)."""
    blocks: list[Block] = [Heading("Does the ranking predict?", 2), *_setup_and_verdicts(v)]
    blocks += _agreement_blocks(v) + _regret_blocks(v) + _oracle_blocks(v)
    blocks.append(_oracle_figure(v, figure))
    if v.notes:
        blocks += [Heading("Notes", 3), Bullets(list(v.notes))]
    return blocks


def _setup_and_verdicts(v: ValidationResult) -> list[Block]:
    """What was trained, then one verdict on the oracle's spread and one per selector."""
    primary = v.methods[0]
    seeds = len(v.seeds)
    setup = Paragraph(
        f"Each of the {len(v.sets)} target sets was adapted **alone** at a matched budget of {v.budget:,} trainable "
        f"parameters (head excluded) with {', '.join(v.methods)}, over {seeds} seed{'s' if seeds != 1 else ''}, and "
        "scored on validation: the oracle. Every selector's order is compared with it (rank correlations on "
        "midranks with their seed span, permutation tests under the selector's declared ties, Holm-corrected over "
        "the selectors), beside what the selector cost, and each selector's plan is trained "
        f"at {', '.join(f'{b:,}' for b in v.budgets)} parameters with {v.regret_method} ({_regret_words(v)}). "
        "Validation decides throughout; test accuracy is in the artefact only." + _judge_words(v)
    )
    spread, noise = oracle_spread(v, primary)
    verdicts = []
    images = images_apart(spread, 0.0, v.n_val)
    if not math.isfinite(noise):
        verdicts.append(
            f"The {primary} oracle separates the sets by {_pts(spread)} points (best − worst); with one "
            "seed there is no seed spread to compare that with: cannot tell whether the sets differ."
        )
    elif v.n_val and images < RESOLVED_IMAGES:
        verdicts.append(
            f"The {primary} oracle separates the sets by {_pts(spread)} points (best − worst), fewer than "
            f"{RESOLVED_IMAGES} of the {v.n_val:,} validation images ({images:.1f}): the sets adapt equally "
            "well here, and the agreement below orders near-ties: no verdict is given."
        )
    elif spread <= 2 * noise:
        verdicts.append(
            f"The {primary} oracle separates the sets by {_pts(spread)} points (best − worst), within "
            f"twice the seed spread ({_pts(noise)} points): here the sets adapt about equally well, so "
            "no ranking can do much better or worse than another."
        )
    else:
        verdicts.append(
            f"The {primary} oracle separates the sets by {_pts(spread)} points (best − worst), against a "
            f"seed spread of {_pts(noise)} points: which set is adapted matters here."
        )
    for a in v.agreement:
        if a.method == primary:
            verdicts.append(_agreement_sentence(a, primary) + v.verdict_label)
    return [setup, Bullets(verdicts)]


def _regret_words(v: ValidationResult) -> str:
    if not v.judged_on:
        return (
            "regret = validation accuracy of the best plan trained at that budget minus the selector's; random "
            "orders give the floor"
        )
    return (
        "regret = split-B validation accuracy of the plan best on split A minus the selector's; every order of "
        "the sets gives the floor"
    )


def _judge_words(v: ValidationResult) -> str:
    if not v.judged_on:
        return ""
    if v.judged_on == "split B":
        return (
            f" The probe and the selectors decided on split A of the data; the oracle and the regret trained and "
            f"scored on split B (disjoint training and validation images) with seeds "
            f"{', '.join(map(str, v.seeds))}, on a fixed schedule of {v.recipe.epochs} "
            f"epoch{'s' if v.recipe.epochs != 1 else ''} (the last one scored)"
            if v.recipe.epoch_selection == "last"
            else f" The probe and the selectors decided on split A of the data; the oracle and the regret trained and "
            f"scored on split B with seeds {', '.join(map(str, v.seeds))}"
        ) + "."
    return " **Judged on the probe's own data** (--allow-shared-data): the verdicts below may flatter the ranking."


def agreement_table(v: ValidationResult) -> Table:
    """The agreement table of the report: each selector against each method's oracle (correlations with their seed
    spans and image-bootstrap interval, Holm-corrected p-values, top-k, cost, verdict), what a random order gets,
    and the oracle's own cost."""
    header = [
        "selector",
        "oracle",
        "tie classes",
        "Spearman ρ [seed span]",
        "Kendall τ [seed span]",
        "ρ, image bootstrap 95%",
        "p better (Holm)",
        "p worse (Holm)",
        "top-1",
        "top-3",
        "top-1 regret (pts)",
        "cost",
        "verdict",
    ]
    rows = []
    for a in v.agreement:
        rows.append(
            [
                f"`{a.selector}`",
                a.method,
                format_classes(a.classes())
                + (f"; d90 measured for {a.n_measured}" if a.n_measured is not None else ""),
                format_correlation(a.spearman, a.spearman_span),
                format_correlation(a.kendall, a.kendall_span),
                format_interval(a.spearman_images),
                format_p(a.p_better, a.p_better_holm),
                format_p(a.p_worse, a.p_worse_holm),
                f"{a.top_k[0]:.0%}",
                f"{a.top_k[-1]:.0%}" if len(a.top_k) >= 3 else "-",
                _pts(a.top1_regret),
                a.cost.text() if a.cost is not None else "-",
                a.verdict + v.verdict_label,
            ]
        )
    for m in v.methods:
        r = v.random.get(m)
        if r:
            lo, hi = r["spearman_95"]
            rows.append(
                [
                    "random (expected)",
                    m,
                    "-",
                    f"{r['spearman_mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]",
                    "-",
                    "-",
                    "-",
                    "-",
                    f"{r['top_k'][0]:.0%}",
                    f"{r['top_k'][-1]:.0%}" if len(r["top_k"]) >= 3 else "-",
                    _pts(r["top1_regret"]),
                    "no training, 0.0 s",
                    "-",
                ]
            )
    for m, c in v.oracle_cost.items():
        rows.append(["oracle (its own cost)", m, "-", "-", "-", "-", "-", "-", "-", "-", "-", c.text(), "-"])
    return Table(header, rows, numeric={3, 4, 5, 6, 7, 8, 9, 10})


def _agreement_blocks(v: ValidationResult) -> list[Block]:
    """Each selector's agreement with the oracle, its cost beside it, and what a random order gets."""
    tested = next((a for a in v.agreement if math.isfinite(a.p_worse)), None)
    how = (
        ""
        if tested is None
        else f" p-values permute which set gets which oracle score, keeping the selector's declared tie classes "
        f"({'all' if tested.exact else tested.permutations} permutations"
        f"{'' if tested.exact else ', seeded draws'}); in brackets, Holm-corrected over the "
        f"{sum(a.method == tested.method for a in v.agreement)} selectors, per oracle method and tail. A selector "
        'whose ties leave no outcome significant even uncorrected is "cannot tell".'
    )
    return [
        Heading("Agreement with the oracle", 3),
        Paragraph(
            "ρ, τ > 0: sets ranked earlier adapt better; ties a selector declares (d90's unreached sets, the "
            "tail of a rule that names only its first set, equal proxy scores) are kept as midranks. "
            f"Seed span: min..max over every resample of the oracle's {len(v.seeds)} seeds (not a confidence "
            "interval). Image bootstrap: the central 95% of ρ over 2,000 resamples of the judge's "
            'validation images, one draw shared by every set and seed ("-": per-image scores not '
            "recorded)." + how + " Cost: trainings (unique trial keys) and their summed seconds behind the "
            "selector's order (d90, d90+acc: the probe's; proxies: compute only), beside the oracle's own. "
            '"random (expected)": a uniformly random order (its ρ range is the central 95% of all '
            "orders)."
        ),
        agreement_table(v),
    ]


def regret_table(v: ValidationResult) -> Table:
    """The regret table of the report (a file judged on split B or its own data): per selector and budget, the
    points its plan gives up against the reference, with the interval of the per-seed paired differences."""
    budgets = [b for b in v.budgets if any(r.budget == b for r in v.regrets)]
    rows = []
    for name in ["oracle", *v.selectors, "random"]:
        cells = [f"`{name}`" if name != "random" else "random (every order)"]
        for b in budgets:
            r = v.regret_of(name, b)
            cells.append(
                "-" if r is None else f"{_pts(r.regret)} [{_pts(-r.diff_interval[1])}, {_pts(-r.diff_interval[0])}]"
            )
        rows.append(cells)
    return Table(["selector", *[f"{b:,}" for b in budgets]], rows, numeric=set(range(1, len(budgets) + 1)))


def _regret_blocks(v: ValidationResult) -> list[Block]:
    """Regret of each selector's plan per budget, and what the reference plan at each budget was."""
    if not v.judged_on:
        return _legacy_regret_blocks(v)
    budgets = [b for b in v.budgets if any(r.budget == b for r in v.regrets)]
    kinds = sorted({r.interval_kind for r in v.regrets})
    where = (
        "its own validation images (the probe's data: the reference is chosen and scored on the same images)"
        if v.judged_on != "split B"
        else "split A's validation images (the probe's), scored on split B's"
    )
    text = (
        f"Points of validation accuracy given up by each selector's {v.regret_method} plan against the "
        f"reference plan at that budget: every distinct plan that some order of the sets gives is trained on the "
        f"judge's data over the judge's seeds, and the reference is the one best on {where}. A selector that "
        "declares ties is the expectation over the orders its ties allow; random is the exact expectation over "
        f"all orders. In brackets: the {' / '.join(kinds)} of the per-seed paired differences (same judge seed, "
        "selector minus reference, sign flipped)."
    )
    bullets = [row for b in budgets for row in [_reference_row(v, b)] if row]
    bullets += [f"budget {b:,}: every order of the sets gives the same plan; left out" for b in v.regret_left_out]
    bullets += sorted({f"{r.selector} at {r.budget:,}: {r.orders}" for r in v.regrets if r.orders != "exact"})
    return [
        Heading("Regret per budget", 3),
        Paragraph(text),
        regret_table(v),
        Bullets(bullets),
    ]


def _reference_row(v: ValidationResult, b: int) -> str | None:
    """The reference plan at budget ``b`` (chosen on split A) and its split-B score."""
    at_b = [p for p in v.plans if p.budget == b]
    ref = next((p for p in at_b if p.reference), None)
    if ref is None:
        return None
    a_val = f"{_pts(ref.a_val_mean)} % on split A, " if ref.a_val_per_seed else ""
    return (
        f"budget {b:,}: {len(at_b)} distinct plans; reference {', '.join(ref.targets)} ({ref.used:,} "
        f"parameters) at {a_val}{_pts(ref.val_mean)} ± {_pts(ref.val_std)} % on the judge's validation images"
    )


def _legacy_regret_blocks(v: ValidationResult) -> list[Block]:
    """A version-1 validation (best plan chosen and scored on the same images, a few random draws)."""
    reg_rows = []
    for name in ["oracle", *v.selectors, "random"]:
        cells = [f"`{name}`" if name != "random" else f"random (mean of {v.random_draws})"]
        cells += [_pts(v.mean_regret(name, b)) for b in v.budgets]
        reg_rows.append(cells)
    best_rows = [row for b in v.budgets for row in [_best_plan_row(v, b)] if row]
    return [
        Heading("Regret per budget", 3),
        Paragraph(
            f"Points of validation accuracy given up by training each selector's {v.regret_method} plan "
            "instead of the best plan trained at that budget (0 = it produced the best). Plans that "
            "coincide were trained once."
        ),
        Table(["selector", *[f"{b:,}" for b in v.budgets]], reg_rows, numeric=set(range(1, len(v.budgets) + 1))),
        Bullets(best_rows),
    ]


def _best_plan_row(v: ValidationResult, b: int) -> str | None:
    """The best plan trained at budget ``b`` and whether the plans there are distinguishable (None: none trained)."""
    at_b = [p for p in v.plans if p.budget == b and p.val_per_seed]
    if not at_b:
        return None
    top = max(at_b, key=lambda p: p.val_mean)
    gap = top.val_mean - min(p.val_mean for p in at_b)
    noise = float(np.mean([p.val_std for p in at_b]))
    distinct = len({p.same_as or p.selector for p in at_b})
    reading = (
        "with one seed there is no seed spread: cannot tell whether the plans differ"
        if not math.isfinite(noise)
        else "within twice the seed spread: at this budget the plans are not distinguishable, and neither "
        "are the regrets"
        if gap <= 2 * noise
        else "outside twice the seed spread"
    )
    if distinct == 1:
        return (
            f"budget {b:,}: every selector produced the same plan ({', '.join(top.targets)}; "
            f"{top.used:,} parameters, {_pts(top.val_mean)} ± {_pts(top.val_std)} % validation)"
        )
    return (
        f"budget {b:,}: best plan {top.selector} ({', '.join(top.targets)}; {top.used:,} "
        f"parameters) at {_pts(top.val_mean)} ± {_pts(top.val_std)} % validation; the "
        f"{distinct} distinct plans span {_pts(gap)} points against a mean seed spread of "
        f"{_pts(noise)}, {reading}"
    )


def _oracle_blocks(v: ValidationResult) -> list[Block]:
    oracle_rows = []
    for m in v.methods:
        for i, e in enumerate(v.oracle_of(m)):
            oracle_rows.append(
                [
                    m,
                    str(i + 1),
                    f"`{e.target}`",
                    f"{e.used:,}",
                    f"{_pts(e.val_mean)} ± {_pts(e.val_std)}",
                    _pts(e.test_mean),
                ]
            )
    return [
        Heading("Oracle: each set adapted alone", 3),
        Table(
            ["method", "oracle rank", "set", "trainable", "val acc (%)", "test acc (%)"],
            oracle_rows,
            numeric={1, 3, 4, 5},
        ),
    ]


def _oracle_figure(v: ValidationResult, figure: Callable[[str, str, bytes, str, str], Image]) -> Image:
    """One panel per selector: the oracle accuracy of each set against the rank the selector gives it."""
    primary = v.methods[0]
    oracle = {m: {e.target: e.val_per_seed for e in v.oracle if e.method == m} for m in v.methods}
    by = {(a.selector, a.method): a for a in v.agreement}
    panels = [("oracle", f"oracle ({primary})", [e.target for e in v.oracle_of(primary)])]
    for name in v.selectors:
        a = by[(name, primary)]
        panels.append((name, f"{name}: ρ = {format_correlation(a.spearman, a.spearman_span)}", a.order))
    png = plots.oracle_vs_predicted(
        panels,
        oracle,
        title=f"Oracle accuracy against predicted rank ({v.model.name} on {v.data.dataset}, {len(v.seeds)} seeds)",
    )
    return figure(
        "oracle_vs_predicted",
        VALIDATION_PNG,
        png,
        "oracle validation accuracy of each set against the rank each selector gives it",
        "One panel per selector: a selector that predicts draws a falling line. The first panel is "
        "the oracle's own order (the best any selector can do).",
    )


# ------------------------------------------------------------------------------------------ across studies (README)


def _reaching(probe: ProbeResult) -> str:
    """``2 of 6 (0.78-0.84)``: sets whose d90 reached the bar, and their d90 as a fraction of their D."""
    fractions = sorted(t.d90.value / t.D for t in probe.targets if t.d90.reached and t.d90.value is not None)
    text = f"{len(fractions)} of {len(probe.targets)}"
    if not fractions:
        return text
    if all(t.d90.below_min for t in probe.targets if t.d90.reached):
        return f"{text} (all below d = {probe.config.d_min:,})"
    lo, hi = (f"{x:.2g}" for x in (fractions[0], fractions[-1]))
    return f"{text} ({lo})" if lo == hi else f"{text} ({lo}-{hi})"


def _agreement_cell(v: ValidationResult, selector: str) -> str:
    """``KA +0.07, 0.47 (1.00); LoRA ...``: rho against each method's oracle, raw p better (Holm), or why not."""
    cells = []
    for a in (a for a in v.agreement if a.selector == selector):
        if a.verdict == "cannot tell" or not math.isfinite(a.spearman):
            cells.append(f"{method_name(a.method, short=True)} cannot tell")
        else:
            cells.append(
                f"{method_name(a.method, short=True)} {a.spearman:+.2f}, {a.p_better:.2f} ({a.p_better_holm:.2f})"
            )
    return "; ".join(cells) or "-"


def _better_than_random(v: ValidationResult) -> str:
    """Which selectors the judge calls better than random after Holm, against which oracle (``none of 13``)."""
    better = [
        f"`{a.selector}` ({method_name(a.method, short=True)})"
        for a in v.agreement
        if a.verdict == "better than random"
    ]
    return ", ".join(better) if better else f"none of {len(v.selectors)}"


def _regret_cell(v: ValidationResult) -> str:
    """``0.0 to 0.8, every span includes 0``: every selector's regret (points) over the budgets, and which selectors'
    plans are worse than the reference over their whole paired seed span (really worse, not noise)."""
    rows = [r for r in v.regrets if r.selector not in ("oracle", "random")]
    if not rows:
        return "-"
    values = [100 * r.regret for r in rows]
    outside = sorted({f"`{r.selector}`" for r in rows if r.diff_interval[1] < 0})
    lo, hi = min(values) + 0.0, max(values) + 0.0
    # the paired difference (plan minus reference) is below 0 over every seed resample: a plan really worse
    span = (
        "every span includes 0"
        if not outside
        else f"worse than the reference on every seed resample: {', '.join(outside)}"
    )
    return f"{lo:.1f} to {hi:.1f}, {span}"


def _cost_cell(v: ValidationResult) -> str:
    """``d90 25, direct 11, oracle 18``: trainings of the d90 probe, of ``direct`` and of the cheaper oracle."""
    costs = {a.selector: a.cost for a in v.agreement if a.cost is not None}
    parts = [f"{s} {costs[s].trainings}" for s in ("d90", "direct") if s in costs]
    if v.oracle_cost:
        parts.append(f"oracle {min(c.trainings for c in v.oracle_cost.values())}")
    return ", ".join(parts) or "-"


def study_overview(studies: Sequence[tuple[str, ValidationResult, ProbeResult]]) -> Table:
    """One row per study (its label, its ``validation.json`` and the probe it judged): sets reaching the bar with
    d90 / D, d90's agreement with each oracle (rho, raw p, Holm p), the selectors better than random, the regret of
    every selector's plan, and what the ranking cost against the oracle. The README's table per backbone."""
    header = [
        "study",
        "probe",
        "sets reaching the bar (d90 / D)",
        "d90: ρ vs oracle, p (Holm)",
        "better than random (Holm)",
        "regret of any selector's plan (pts)",
        "trainings: probe, direct, oracle",
    ]
    rows = [
        [
            label,
            f"{p.config.search}, {len(p.targets)} sets",
            _reaching(p),
            _agreement_cell(v, "d90"),
            _better_than_random(v),
            _regret_cell(v),
            _cost_cell(v),
        ]
        for label, v, p in studies
    ]
    return Table(header, rows)


def selector_overview(studies: Sequence[tuple[str, ValidationResult, ProbeResult]]) -> Table:
    """Every selector (rows) in every study (columns): rho against each method's oracle, raw p (Holm)."""
    selectors = list(dict.fromkeys(s for _, v, _ in studies for s in v.selectors))
    rows = [[f"`{s}`", *[_agreement_cell(v, s) for _, v, _ in studies]] for s in selectors]
    return Table(["selector", *[label for label, _, _ in studies]], rows)
