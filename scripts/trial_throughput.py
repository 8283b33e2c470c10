"""Throughput per trial type, read from trial logs: what the study's trainings cost where they ran.

    python scripts/trial_throughput.py reports/dinov2/animals/*.trials.jsonl
    python scripts/trial_throughput.py "$OUT"/*/*.trials.jsonl --json "$OUT/throughput.json"

A trial type is a probe trial's kind (``lp``, ``head``, ``ft``, ``subspace``) or a sweep or validation trial's
method (``kadaptation``, ``lora``, ``full``, ...). For each: the finished trainings, the device and torch threads
they ran with, the median training images per second (training images x epochs run / the trial's wall time, so
model building, the head's linear probe and every evaluation count against it) and the total wall time. Failed
trials are left out. Nothing is trained.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from petl_analysis.io import JsonlLog, atomic_write_json
from petl_analysis.trials import read_records


def _trial_type(kind: str, payload: dict) -> str:
    config = payload.get("config")
    return config["method"] if kind == "run" and isinstance(config, dict) else kind


def _images_and_epochs(result: dict) -> tuple[int, int] | None:
    """(training images, epochs run) of one finished trial, from a probe's fit or a sweep's seed run."""
    run = result.get("seed_run", result)
    n, epochs = run.get("n_train"), run.get("epochs_run", len(run.get("train_loss") or []))
    return (int(n), int(epochs)) if n and epochs else None


def throughput(paths: list[Path]) -> list[dict]:
    """One row per trial type over every log in ``paths``."""
    groups: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    for path in paths:
        for r in read_records(JsonlLog(path)):
            if not r.ok or not r.wall_time_s:
                continue
            counted = _images_and_epochs(r.result or {})
            if counted is None:
                continue
            key = (_trial_type(r.kind, r.payload), str(r.result.get("device", "?")), int(r.result.get("threads", 0)))
            groups.setdefault(key, []).append((counted[0] * counted[1] / r.wall_time_s, r.wall_time_s))
    return [
        {
            "type": kind,
            "device": device,
            "threads": threads,
            "trainings": len(rows),
            "median_train_images_per_s": statistics.median(rate for rate, _ in rows),
            "total_wall_s": sum(wall for _, wall in rows),
        }
        for (kind, device, threads), rows in sorted(groups.items())
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path, help="trial logs (*.trials.jsonl)")
    parser.add_argument("--json", type=Path, help="also write the rows here (atomically)")
    a = parser.parse_args(argv)
    rows = throughput(a.logs)
    print(f"{'trial type':<14}{'device':<10}{'threads':>8}{'trainings':>11}{'train img/s (median)':>22}{'wall s':>10}")
    for row in rows:
        print(
            f"{row['type']:<14}{row['device']:<10}{row['threads']:>8}{row['trainings']:>11}"
            f"{row['median_train_images_per_s']:>22,.1f}{row['total_wall_s']:>10,.0f}"
        )
    if a.json:
        atomic_write_json(a.json, rows)


if __name__ == "__main__":
    main()
