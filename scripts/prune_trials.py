"""Move the records of a trial log that no current artefact uses into ``<log>.stale.jsonl`` (issue 25, item 9).

    python scripts/prune_trials.py reports/validation/animals/probe.json.trials.jsonl \
        --keep-for reports/validation/animals/probe.json --dry-run
    python scripts/prune_trials.py LOG --keep-for ARTEFACT [--keep-for ARTEFACT ...]

The log is rewritten atomically with the used records, in their order and byte for byte; the stale ones are appended
to ``<log>.stale.jsonl`` first (see :mod:`petl_analysis.stale`). ``--all-committed`` prints, for every committed
log under ``reports/``, what pruning it against the artefact beside it would move (always a dry run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from petl_analysis.errors import PetlError
from petl_analysis.stale import prune_log
from petl_analysis.trials import unique_train_time

ROOT = Path(__file__).resolve().parents[1]


def load_artefact(path: str | Path):
    """A probe, sweep or validation result, by the schema its file names."""
    from petl_analysis.io import read_json
    from petl_analysis.probe import ProbeResult
    from petl_analysis.sweep import SweepResult
    from petl_analysis.validate import ValidationResult

    classes = {c.SCHEMA: c for c in (ProbeResult, SweepResult, ValidationResult)}
    schema = read_json(path, what="artefact").get("schema")
    if schema not in classes:
        raise PetlError(f"{path}: schema {schema!r} uses no trial log; expected one of {', '.join(sorted(classes))}")
    return classes[schema].load(path)


def _seconds(r) -> float | None:
    run = (r.result or {}).get("seed_run") or {}
    return run.get("wall_time_s", r.wall_time_s)


def report(log: Path, artefacts: list, dry_run: bool) -> None:
    result = prune_log(log, artefacts, dry_run=dry_run)
    print(result.describe())
    everything = unique_train_time([*result.kept, *result.stale], seconds=_seconds)
    used = unique_train_time(result.kept, seconds=_seconds)
    print(f"  training seconds over unique keys: {used:,.0f} used, {everything - used:,.0f} stale")
    published = [a for a in artefacts if hasattr(a, "train_time_s")]
    for a in published:
        print(f"  the artefact's train_time_s: {a.train_time_s:,.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", nargs="?", help="a .trials.jsonl file")
    ap.add_argument("--keep-for", action="append", default=[], help="an artefact whose trials stay (repeatable)")
    ap.add_argument("--dry-run", action="store_true", help="print what would move; change nothing")
    ap.add_argument("--all-committed", action="store_true", help="dry run over every committed log under reports/")
    args = ap.parse_args()
    try:
        if args.all_committed:
            for log in sorted(ROOT.glob("reports/**/*.trials.jsonl")):
                artefact = Path(str(log).removesuffix(".trials.jsonl"))
                report(log.relative_to(ROOT), [load_artefact(artefact)], dry_run=True)
            return
        if not args.log:
            ap.error("give a LOG or --all-committed")
        report(Path(args.log), [load_artefact(p) for p in args.keep_for], dry_run=args.dry_run)
    except PetlError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
