#!/usr/bin/env python
"""Print the summary tables of the committed validation studies (README, docs/ranking_validation.md) from their
``validation.json`` files alone, so that every figure quoted there can be re-derived:

    python scripts/validation_summary.py                       # reports/validation/{animals,digits,per_block}
    python scripts/validation_summary.py reports/validation/animals/validation.json

Per study: the oracle's spread, then per selector (first oracle method) rho with its seed span and image-bootstrap
interval, the Holm-corrected p-values, the verdict and the cost; then the regret per budget with its per-seed span.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from petl_analysis.validate import ValidationResult
from petl_analysis.validate.result import format_correlation, format_interval, format_p

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ("animals", "digits", "per_block", "glyph_folder")


def _pts(x: float) -> str:
    return f"{100 * x + 0.0:.1f}"  # + 0.0: never -0.0


def _signed(x: float) -> str:
    return "0.0" if round(100 * x, 1) == 0 else f"{100 * x:+.1f}"


def oracle_line(v: ValidationResult, method: str) -> str:
    """``kadaptation oracle: best attn.v 81.2%, worst ... (spread 1.3 pts = 19 of 1,497 validation images)``."""
    ranked = v.oracle_of(method)
    best, worst = ranked[0], ranked[-1]
    spread = best.val_mean - worst.val_mean
    seed_sd = float(np.mean([e.val_std for e in ranked]))
    return (
        f"{method} oracle ({len(v.seeds)} seeds, {v.n_val:,} validation images of split B): best `{best.target}` "
        f"{_pts(best.val_mean)}%, worst `{worst.target}` {_pts(worst.val_mean)}%, spread {_pts(spread)} pts "
        f"({spread * v.n_val:.0f} images); mean seed sd {_pts(seed_sd)} pts; cost {v.oracle_cost[method].text()}"
    )


def agreement_rows(v: ValidationResult, method: str) -> list[str]:
    rows = [
        "| selector | tie classes | Spearman ρ [seed span] | ρ, image bootstrap 95% | p better (Holm) "
        "| p worse (Holm) | cost | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in (a for a in v.agreement if a.method == method):
        classes = a.classes()
        n = sum(len(c) for c in classes)
        shape = "strict" if len(classes) == n else ("all tied" if len(classes) == 1 else f"{len(classes)} classes")
        if a.n_measured is not None:
            shape += f"; d90 measured for {a.n_measured}"
        rows.append(
            f"| `{a.selector}` | {shape} | {format_correlation(a.spearman, a.spearman_span)} | "
            f"{format_interval(a.spearman_images)} | {format_p(a.p_better, a.p_better_holm)} | "
            f"{format_p(a.p_worse, a.p_worse_holm)} | {a.cost.text() if a.cost else '-'} | {a.verdict} |"
        )
    return rows


def regret_rows(v: ValidationResult) -> list[str]:
    budgets = [b for b in v.budgets if any(r.budget == b for r in v.regrets)]
    if not budgets:
        return [f"(no regret: {'; '.join(v.notes[1:]) or 'no budget planned'})"]
    rows = [
        "| selector | " + " | ".join(f"regret at {b:,} (pts) [seed span]" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for name in ["oracle", *v.selectors, "random"]:
        cells = []
        for b in budgets:
            r = v.regret_of(name, b)
            cells.append(
                "-"
                if r is None
                else f"{_pts(r.regret)} [{_signed(-r.diff_interval[1])}, {_signed(-r.diff_interval[0])}]"
            )
        rows.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return rows


def summary(path: Path) -> str:
    v = ValidationResult.load(path)
    method = v.methods[0]
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    lines = [f"### {path.parent.name} ({len(v.sets)} sets; `{shown}`)", ""]
    lines += [oracle_line(v, m) for m in v.methods] + [""]
    lines += agreement_rows(v, method) + [""]
    lines += [f"Regret of each selector's {v.regret_method} plan (split B, reference chosen on split A):", ""]
    lines += regret_rows(v)
    if v.regret_left_out:
        lines += ["", f"Left out (every order gives the same plan): {', '.join(f'{b:,}' for b in v.regret_left_out)}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help="validation.json files (default: the committed studies)")
    args = ap.parse_args(argv)
    files = [Path(f).resolve() for f in args.files] or [
        p for s in STUDIES if (p := ROOT / "reports" / "validation" / s / "validation.json").is_file()
    ]
    if not files:
        print("no validation.json found", file=sys.stderr)
        return 1
    print("\n\n".join(summary(f) for f in files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
