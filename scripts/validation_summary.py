#!/usr/bin/env python
"""Print the summary tables of the committed validation studies (README, docs/ranking_validation.md) from their
``validation.json`` files alone, so that every figure quoted there can be re-derived:

    python scripts/validation_summary.py                       # reports/validation/{animals,digits,per_block}
    python scripts/validation_summary.py reports/validation/animals/validation.json
    python scripts/validation_summary.py --overview            # the README's tables, every backbone's studies

Per study: each oracle's spread, then the report's own agreement table (every selector against every method's
oracle) and regret table, rendered by the library (``petl_analysis.report.validation``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from petl_analysis.probe import ProbeResult
from petl_analysis.report.document import to_markdown
from petl_analysis.report.validation import (
    agreement_table,
    oracle_spread,
    regret_table,
    selector_overview,
    study_overview,
)
from petl_analysis.validate import ValidationResult

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ("animals", "digits", "per_block", "glyph_folder")
#: Every backbone's committed studies in the README's order, each judged with every selector on a lean probe: the
#: bundled model's, then DINOv2-S/14's (issue 27; listed once its validation has finished).
OVERVIEW = [f"reports/validation/{s}/validation_lean.json" for s in ("animals", "digits", "glyph_folder", "per_block")]
OVERVIEW += [f"reports/dinov2/{s}/validation.json" for s in ("animals", "glyph_folder")]


def oracle_line(v: ValidationResult, method: str) -> str:
    """``kadaptation oracle: best attn.v 81.2%, worst ... (spread 1.3 pts = 19 of 1,497 validation images)``."""
    ranked = v.oracle_of(method)
    spread, seed_sd = oracle_spread(v, method)
    return (
        f"{method} oracle ({len(v.seeds)} seeds, {v.n_val:,} validation images of split B): best `{ranked[0].target}` "
        f"{100 * ranked[0].val_mean:.1f}%, worst `{ranked[-1].target}` {100 * ranked[-1].val_mean:.1f}%, spread "
        f"{100 * spread:.1f} pts ({spread * v.n_val:.0f} images); mean seed sd {100 * seed_sd:.1f} pts; cost "
        f"{v.oracle_cost[method].text()}"
    )


def summary(path: Path) -> str:
    """The study's oracle lines, then the report's agreement and regret tables (the same rows, from the library)."""
    v = ValidationResult.load(path)
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    lines = [f"### {path.parent.name} ({len(v.sets)} sets; `{shown}`)", ""]
    lines += [oracle_line(v, m) for m in v.methods] + ["", to_markdown([agreement_table(v)]), ""]
    lines += [f"Regret of each selector's {v.regret_method} plan (points; split B, reference chosen on split A):", ""]
    lines += [to_markdown([regret_table(v)]) if v.regrets else f"(no regret: {'; '.join(v.notes[1:])})"]
    if v.regret_left_out:
        lines += ["", f"Left out (every order gives the same plan): {', '.join(f'{b:,}' for b in v.regret_left_out)}"]
    return "\n".join(lines)


def overview(files: list[Path]) -> str:
    """The README's two tables: one row per study, then every selector in every study."""
    studies = []
    for path in files:
        v = ValidationResult.load(path)
        probe = Path(v.probe_source)
        studies.append(
            (
                f"`{path.parent.name}` ({v.model.name})",
                v,
                ProbeResult.load(probe if probe.is_absolute() else ROOT / probe),
            )
        )
    return "\n\n".join(to_markdown([table]) for table in (study_overview(studies), selector_overview(studies)))


def committed_studies() -> list[Path]:
    """The committed ``validation.json`` files of :data:`OVERVIEW` (those whose study has finished)."""
    return [p for f in OVERVIEW if (p := ROOT / f).is_file()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help="validation.json files (default: the committed studies)")
    ap.add_argument("--overview", action="store_true", help="the README's tables across studies and backbones")
    args = ap.parse_args(argv)
    if args.overview:
        print(overview([Path(f).resolve() for f in args.files] or committed_studies()))
        return 0
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
