#!/usr/bin/env python
"""Validation-accuracy curves of two probe runs side by side (e.g. before and after a change of the probe recipe).

Reads each run's trial log (``probe.json.trials.jsonl``), so an old run whose ``probe.json`` has another schema
version still compares: per target, the seed-mean validation accuracy at each d, the floor (the head trained alone,
d = 0, when the run has it; else the linear probe) and the ceiling (full fine-tuning).

Usage::

    git show e757ef9:reports/demo/animals/probe.json.trials.jsonl > /tmp/before.jsonl
    python scripts/probe_before_after.py /tmp/before.jsonl reports/demo/animals/probe.json.trials.jsonl \\
        --labels "constant lr 1e-2" "lr 1/sqrt(d)" --out docs/probe_lr/before_after_animals.png
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from petl_analysis.io import atomic_write_bytes


def curves(log: Path) -> tuple[dict[str, dict[int, list[float]]], dict[str, float]]:
    """``{target type: {d: [val acc per seed]}}`` and ``{baseline kind: mean val acc}`` from a trial log."""
    by_target: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    baselines: dict[str, list[float]] = defaultdict(list)
    for line in log.read_text().splitlines():
        r = json.loads(line)
        if r.get("status") != "ok":
            continue
        val = r["result"]["val_acc"]
        if r["kind"] == "subspace":
            kind = ".".join(r["payload"]["units"][0].split(".")[2:])
            by_target[kind][int(r["payload"]["d"])].append(val)
        else:
            baselines[r["kind"]].append(val)
    return by_target, {k: float(np.mean(v)) for k, v in baselines.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--labels", nargs=2, default=["before", "after"])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    runs = [curves(args.before), curves(args.after)]
    targets = sorted(set(runs[0][0]) | set(runs[1][0]))
    from matplotlib.figure import Figure

    ncols = min(3, len(targets))
    nrows = -(-len(targets) // ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.7 * nrows + 0.4), layout="constrained")
    grid = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[len(targets) :]:
        ax.set_axis_off()
    for ax, target in zip(axes, targets):
        for (by_target, base), label, colour in zip(runs, args.labels, ("0.55", "#d9480f")):
            pts = sorted(by_target.get(target, {}).items())
            if pts:
                ax.plot(
                    [d for d, _ in pts],
                    [100 * np.mean(v) for _, v in pts],
                    marker="o",
                    markersize=3,
                    color=colour,
                    label=label,
                )
            floor = base.get("head", base.get("lp"))
            if floor is not None:
                ax.axhline(100 * floor, color=colour, linestyle="--", linewidth=0.8)
            if "ft" in base:
                ax.axhline(100 * base["ft"], color=colour, linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_title(target, fontsize=9)
        ax.set_xlabel("d")
        print(
            f"{target}: "
            + "; ".join(
                f"{label}: "
                + ", ".join(f"{d}:{100 * np.mean(v):.1f}" for d, v in sorted(r[0].get(target, {}).items()))
                for r, label in zip(runs, args.labels)
            )
        )
    for row in grid:
        row[0].set_ylabel("validation accuracy (%)")
    axes[len(targets) - 1].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        "dashed: floor (head alone; before: the linear probe), dotted: ceiling (full fine-tuning)", fontsize=8
    )
    for (_, base), label in zip(runs, args.labels):
        print(f"{label} baselines (validation): " + ", ".join(f"{k} {100 * v:.1f}" for k, v in sorted(base.items())))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
