"""How far a probe's d90s move when its learning-rate search reaches further (issue 27's sensitivity reruns).

    python scripts/probe_sensitivity.py reports/dinov2/glyph_folder/probe.json \
        reports/dinov2/glyph_folder/probe_extended.json

Prints one markdown row per target set: D, its d90 in each probe, their ratio, and the multiplier of the
step the search chose at each tried d. It reads the two artefacts and decides nothing: the committed probe stays the
study's, fixed before its validation; this says how far its d90s were upper bounds.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from petl_analysis.probe import ProbeResult
from petl_analysis.report.document import Table, to_markdown


def _d90(target) -> str:
    d = target.d90
    if not d.reached:
        return "not reached"
    text = f"{d.reached_value:,.0f}"
    return f"<= {text}" if d.below_min else text


def _multipliers(probe: ProbeResult, target) -> str:
    """``d: multiplier`` of the chosen step at each tried d (``-`` where no step was chosen)."""
    out = []
    for d, lr in zip(target.dims, target.lr):
        if lr is None or not math.isfinite(lr):
            continue
        out.append(f"{d:,}: {probe.config.lr_multiplier(lr, d):g}x")
    return ", ".join(out) or "-"


def sensitivity_table(before: ProbeResult, after: ProbeResult) -> Table:
    """One row per target set of ``before`` (``after`` must have probed the same sets)."""
    theirs = {t.target: t for t in after.targets}
    missing = [t.target for t in before.targets if t.target not in theirs]
    if missing:
        raise SystemExit(f"error: the second probe lacks the target sets {', '.join(missing)}")
    rows = []
    for t in before.targets:
        u = theirs[t.target]
        ratio = "-"
        if t.d90.reached and u.d90.reached:
            ratio = f"{u.d90.reached_value / t.d90.reached_value:.2f}"
        rows.append(
            [
                f"`{t.target}`",
                f"{t.D:,}",
                _d90(t),
                _d90(u),
                ratio,
                _multipliers(after, u),
            ]
        )
    return Table(["set", "D", "d90", "d90, search extended", "ratio", "step chosen (extended)"], rows, numeric={1, 4})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probe", type=Path, help="The probe as committed (probe.json).")
    ap.add_argument("extended", type=Path, help="The same probe rerun with a wider search (probe_extended.json).")
    args = ap.parse_args()
    before, after = ProbeResult.load(args.probe), ProbeResult.load(args.extended)
    print(to_markdown([sensitivity_table(before, after)]))
    for name, p in (("probe", before), ("extended", after)):
        edge = p.lr_at_grid_edge()
        print(f"{name}: {p.trials_total} trials; {edge or 'the chosen steps are inside the search'}")


if __name__ == "__main__":
    main()
