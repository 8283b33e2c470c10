#!/usr/bin/env python
"""Rewrite the committed reports under ``reports/`` from their committed artefacts (no training): run after a change
to the report's wording, so that the committed reports say what the library now says.

    python scripts/regenerate_reports.py            # in place
    python scripts/regenerate_reports.py --out /tmp/reports   # elsewhere, to compare

The command lines each report lists are those that made its artefacts (the demo, then ``validate``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from petl_analysis.probe import ProbeResult
from petl_analysis.report import write_report
from petl_analysis.select import Ranking
from petl_analysis.sweep import SweepResult
from petl_analysis.validate import ValidationResult

ROOT = Path(__file__).resolve().parents[1] / "reports"
DEMO = "petl-analyze demo --out reports/demo --jobs 2"
#: The validation studies of ``scripts/validation_studies.sh`` (probe on split A, judged on split B).
STUDIES = ("animals", "digits", "per_block", "glyph_folder")
#: Each study's artefacts: ``probe.json``/``validation.json`` (the full probe) and ``probe_lean.json``/
#: ``validation_lean.json`` (the lean probe judged with every selector).
VARIANTS = ("", "_lean")
#: The DINOv2-S/14 studies of ``scripts/dinov2_study.sh``.
DINOV2_STUDIES = ("animals", "glyph_folder")


def reports() -> dict[str, dict]:
    """``{report folder under reports/: write_report arguments}`` for every committed report."""
    out = {}
    for ds in ("digits", "animals"):
        d = ROOT / "demo" / ds
        out[f"demo/{ds}/report"] = dict(
            sweep=SweepResult.load(d / "sweep.json"),
            probe=ProbeResult.load(d / "probe.json"),
            ranking=Ranking.load(d / "ranking.json"),
            commands=[DEMO],
        )
    for study in STUDIES:
        d = ROOT / "validation" / study
        for variant in VARIANTS:  # the full probe's study, and the lean probe's (issue 26)
            if not (d / f"validation{variant}.json").is_file():
                continue  # a study still running commits its probe and trial logs first
            v = ValidationResult.load(d / f"validation{variant}.json")
            probe = ProbeResult.load(d / f"probe{variant}.json")
            # The script's probe command is in its own file (one place); the validate command is the artefact's.
            out[f"validation/{study}/report{variant}"] = dict(
                sweep=None,
                probe=probe,
                ranking=None,
                validation=v,
                commands=[f"bash scripts/validation_studies.sh {study}", v.command],
            )
    for study in DINOV2_STUDIES:  # issue 27: a report once the probe is validated; the sweep's once it is in
        d = ROOT / "dinov2" / study
        if not (d / "validation.json").is_file():
            continue
        swept = (d / "sweep.json").is_file() and (d / "ranking.json").is_file()
        v = ValidationResult.load(d / "validation.json")
        out[f"dinov2/{study}/report"] = dict(
            sweep=SweepResult.load(d / "sweep.json") if swept else None,
            probe=ProbeResult.load(d / "probe.json"),
            ranking=Ranking.load(d / "ranking.json") if swept else None,
            validation=v,
            commands=[f"bash scripts/dinov2_study.sh {study}", v.command],
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT), help="Root of the rewritten reports (default: reports/, in place).")
    args = ap.parse_args()
    for name, kw in reports().items():
        files = write_report(kw.pop("sweep"), kw.pop("probe"), Path(args.out) / name, **kw)
        print(f"{name} -> {files.html}")


if __name__ == "__main__":
    main()
