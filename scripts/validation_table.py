#!/usr/bin/env python
"""Print the agreement table of docs/results/examples.md from ``validation.json`` files: per selector and dataset,
Spearman rho against the first method's oracle with its seed span, the p-value (Holm), the verdict, the cost, and the regret of its plans per
budget.

    python scripts/validation_table.py reports/demo/digits/validation.json reports/demo/animals/validation.json \
        reports/validation/glyph_folder/validation.json
"""

from __future__ import annotations

import argparse

from petl_analysis.validate import ValidationResult
from petl_analysis.validate.result import format_correlation, format_p

SHORT = {
    "better than random": "better",
    "no better than random": "no better",
    "worse than random": "worse",
    "cannot tell": "cannot tell",
    "undefined": "cannot tell",
    "sets tied": "sets tied",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args()
    results = [ValidationResult.load(p) for p in args.paths]
    names = [
        v.data.dataset.removeprefix("folder:").rstrip("/").split("/")[-1] + (" per block" if v.per_block else "")
        for v in results
    ]
    selectors = list(dict.fromkeys(s for v in results for s in v.selectors))
    print(
        "| selector | "
        + " | ".join(
            f"{n}: ρ vs {v.methods[0]} oracle [seed span], p better (Holm), verdict, cost"
            for n, v in zip(names, results)
        )
        + " |"
    )
    print("|---|" + "---|" * len(results))
    for s in selectors:
        cells = []
        for v in results:
            a = next((a for a in v.agreement if a.selector == s and a.method == v.methods[0]), None)
            cells.append(
                "-"
                if a is None
                else f"{format_correlation(a.spearman, a.spearman_span)}, {format_p(a.p_better, a.p_better_holm)}, "
                f"{SHORT[a.verdict]}, {a.cost.text() if a.cost else '-'}"
            )
        print(f"| `{s}` | " + " | ".join(cells) + " |")
    print()
    for n, v in zip(names, results):
        print(f"{n}: regret (points of validation accuracy) per budget " + ", ".join(f"{b:,}" for b in v.budgets))
        print("| selector | " + " | ".join(f"{b:,}" for b in v.budgets) + " |")
        print("|---|" + "---:|" * len(v.budgets))
        for s in ["oracle", *v.selectors, "random"]:
            print(f"| `{s}` | " + " | ".join(f"{100 * v.mean_regret(s, b):.1f}" for b in v.budgets) + " |")
        print()


if __name__ == "__main__":
    main()
