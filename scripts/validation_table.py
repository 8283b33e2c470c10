#!/usr/bin/env python
"""Print the README's agreement table from ``validation.json`` files: per selector and dataset, Spearman rho
against the first method's oracle with its seed interval, the verdict, and the regret of its plans per budget.

    python scripts/validation_table.py reports/demo/digits/validation.json reports/demo/animals/validation.json \
        reports/validation/glyph_folder/validation.json
"""

from __future__ import annotations

import argparse
import math

from petl_analysis.validate import ValidationResult

SHORT = {"better than random": "better", "no better than random": "no better", "worse than random": "worse",
         "undefined": "-", "sets tied": "sets tied"}


def _rho(a) -> str:
    lo, hi = (a.spearman_ci + [None, None])[:2]
    ci = f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None and hi is not None else ""
    return f"{a.spearman:+.2f}{ci}" if math.isfinite(a.spearman) else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args()
    results = [ValidationResult.load(p) for p in args.paths]
    names = [v.data.dataset.removeprefix("folder:").rstrip("/").split("/")[-1] for v in results]
    selectors = list(dict.fromkeys(s for v in results for s in v.selectors))
    print("| selector | " + " | ".join(f"{n}: ρ vs {v.methods[0]} oracle [95%], verdict" for n, v in zip(names, results))
          + " |")
    print("|---|" + "---|" * len(results))
    for s in selectors:
        cells = []
        for v in results:
            a = next((a for a in v.agreement if a.selector == s and a.method == v.methods[0]), None)
            cells.append("-" if a is None else f"{_rho(a)}, {SHORT[a.verdict]}")
        print(f"| `{s}` | " + " | ".join(cells) + " |")
    print()
    for n, v in zip(names, results):
        def regret(sel: str, b: int) -> str:
            vals = [p.regret for p in v.plans if p.budget == b and (p.selector == sel or p.selector.startswith(sel + ":"))]
            return f"{100 * sum(vals) / len(vals):.1f}" if vals else "-"

        print(f"{n}: regret (points of validation accuracy) per budget " + ", ".join(f"{b:,}" for b in v.budgets))
        print("| selector | " + " | ".join(f"{b:,}" for b in v.budgets) + " |")
        print("|---|" + "---:|" * len(v.budgets))
        for s in ["oracle", *v.selectors, "random"]:
            print(f"| `{s}` | " + " | ".join(regret(s, b) for b in v.budgets) + " |")
        print()


if __name__ == "__main__":
    main()
