#!/usr/bin/env python
"""How theta_d's learning rate should depend on d: a grid of constant rates against the probe's scaling rule.

For each target and d in {10, 100, 1000, 10000, D}, the probe is run with every learning rate of ``--lrs`` (one
``run_probe`` with ``lr_scaling="constant"`` and an ``lr_grid`` of multipliers, so the library itself picks the best
rate per d on validation), and once more with the default rule (``lr_scaling="sqrt"``: ``lr = step / sqrt(d)``).
Every number read to choose anything is validation accuracy; test accuracy is printed beside it.

Prints, per target: validation accuracy per (lr, d), the rate the grid chose per d, the rule's rate and accuracy
and its shortfall against the grid's best; then d90 (per-seed thresholds, as the probe computes them) with the
old default (constant lr 1e-2), with the rule, and with the per-d grid. Writes ``<out>/study.json``,
``<out>/lr_curves.png`` and the trial log ``<out>/trials.jsonl`` (rerunning reuses finished trials).

Usage::

    OMP_NUM_THREADS=1 python scripts/probe_lr_study.py --targets attn.v,mlp.fc1 --jobs 2 --out docs/probe_lr

(The committed ``docs/probe_lr`` is that command's output; with its trial log in place a rerun trains nothing. Trial
keys include the torch thread count, so other thread settings train the trials again.)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from petl_analysis.data import SplitSpec, load_dataset
from petl_analysis.io import atomic_write_bytes, atomic_write_json
from petl_analysis.models import ModelSpec, resolve_targets
from petl_analysis.probe import ProbeConfig, default_probe_recipe, run_probe, subspace_size
from petl_analysis.probe.d90 import estimate_d90
from petl_analysis.task import DataSpec, prepare_model

REFERENCE_LR = 1e-2  # the probe's constant theta_d rate before the rule (and the grid's multiplier 1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="animals")
    p.add_argument("--max-train", type=int, default=300)
    p.add_argument("--targets", default="attn.q,attn.v,attn.proj,mlp.fc1,mlp.fc2")
    p.add_argument("--lrs", default="1e-3,3e-3,1e-2,3e-2,1e-1", help="constant theta_d rates of the grid")
    p.add_argument("--dims", default="10,100,1000,10000", help="d values below D (D itself is always added)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--no-rule", action="store_true", help="only the grid (the rule's trials can be added later)")
    p.add_argument("--out", default="docs/probe_lr")
    return p.parse_args(argv)


def _config(targets: list[str], dims: list[int], seeds: int, **kw) -> ProbeConfig:
    return ProbeConfig(targets=targets, dims=dims, seeds=seeds, recipe=default_probe_recipe(), **kw)


def _d90(t, thresholds: list[float], rows: np.ndarray) -> str:
    est = estimate_d90(t.dims, rows, thresholds, n_boot=0)
    if not est.reached:
        return "not reached"
    return f"<={est.value:.0f}" if est.below_min else f"{est.value:.0f}"


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "trials.jsonl"
    model, data = ModelSpec("petl_vit_tiny", "default"), DataSpec(args.dataset, SplitSpec(max_train=args.max_train))
    lrs = [float(v) for v in args.lrs.split(",")]
    net = prepare_model(model, load_dataset(args.dataset).num_classes)
    summary: dict = {
        "dataset": args.dataset,
        "max_train": args.max_train,
        "seeds": args.seeds,
        "lrs": lrs,
        "targets": [],
    }
    for target in args.targets.split(","):
        D = subspace_size(resolve_targets(net, target))
        dims = sorted({int(d) for d in args.dims.split(",") if int(d) < D} | {D})
        t0 = time.perf_counter()
        grid = run_probe(
            model,
            data,
            _config([target], dims, args.seeds, lr_scaling="constant", lr_grid=[lr / REFERENCE_LR for lr in lrs]),
            log_path=log,
            n_jobs=args.jobs,
        )
        grid_s = time.perf_counter() - t0
        (g,) = grid.targets
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        units = g.units
        by_lr: dict[float, dict[int, list[tuple[float, float]]]] = {}
        for r in records:
            p = r["payload"]
            if r["kind"] == "subspace" and p["units"] == units and r["status"] == "ok":
                lr = min(lrs, key=lambda x: abs(math.log(x / p["lr"])))
                seen = by_lr.setdefault(lr, {}).setdefault(p["d"], [])
                # One record per seed: a log may also hold the same trial run with other execution settings.
                if math.isclose(lr, p["lr"], rel_tol=1e-9) and p["seed"] not in {s for s, _, _ in seen}:
                    seen.append((p["seed"], r["result"]["val_acc"], r["result"]["test_acc"]))
        entry = {
            "target": target,
            "D": D,
            "dims": dims,
            "grid_time_s": grid_s,
            "grid_trials": g.trials,
            "val": {f"{lr:g}": [float(np.mean([v for _, v, _ in sorted(by_lr[lr][d])])) for d in dims] for lr in lrs},
            "test": {f"{lr:g}": [float(np.mean([t for _, _, t in sorted(by_lr[lr][d])])) for d in dims] for lr in lrs},
            "grid_choice": g.lr,
            "grid_val": g.val_mean,
            "floor": grid.floor.val_mean,
            "ceiling": grid.ceiling.val_mean,
            "threshold": g.d90.threshold_acc,
        }
        thresholds = grid.targets[0].d90.threshold_per_seed
        constant = np.array([[v for _, v, _ in sorted(by_lr[REFERENCE_LR][d])] for d in dims])
        entry["d90"] = {"constant 1e-2": _d90(g, thresholds, constant), "grid (best per d on val)": g.d90.text()}
        print(
            f"\n{target} (D = {D:,}): validation accuracy (%) per theta_d lr and d; floor "
            f"{100 * grid.floor.val_mean:.1f}, ceiling {100 * grid.ceiling.val_mean:.1f}, gain threshold "
            f"{100 * g.d90.threshold_acc:.1f}"
        )
        print("| lr | " + " | ".join(f"d = {d}" for d in dims) + " |")
        print("|---|" + "---|" * len(dims))
        for lr in lrs:
            print(f"| {lr:g} | " + " | ".join(f"{100 * v:.1f}" for v in entry["val"][f"{lr:g}"]) + " |")
        print("| grid's choice | " + " | ".join(f"{lr:.3g}" for lr in g.lr) + " |")
        if not args.no_rule:
            t0 = time.perf_counter()
            rule = run_probe(model, data, _config([target], dims, args.seeds), log_path=log, n_jobs=args.jobs)
            (rt,) = rule.targets
            entry.update(
                rule_time_s=time.perf_counter() - t0,
                rule_lr=rt.lr,
                rule_val=rt.val_mean,
                rule_test=rt.test_mean,
                rule_shortfall=[b - a for a, b in zip(rt.val_mean, g.val_mean)],
            )
            entry["d90"]["rule (step / sqrt(d))"] = rt.d90.text()
            print("| rule's lr | " + " | ".join(f"{lr:.3g}" for lr in rt.lr) + " |")
            print("| rule's val | " + " | ".join(f"{100 * v:.1f}" for v in rt.val_mean) + " |")
            print("| grid best - rule | " + " | ".join(f"{100 * v:+.1f}" for v in entry["rule_shortfall"]) + " |")
        print("d90: " + "; ".join(f"{k}: {v}" for k, v in entry["d90"].items()))
        summary["targets"].append(entry)
        atomic_write_json(out / "study.json", summary)
    atomic_write_bytes(out / "lr_curves.png", _plot(summary))
    print(f"\n-> {out / 'study.json'}, {out / 'lr_curves.png'}")


def _plot(summary: dict) -> bytes:
    import io

    from matplotlib.figure import Figure

    targets = summary["targets"]
    fig = Figure(figsize=(3.3 * len(targets), 3.2), layout="constrained")
    axes = fig.subplots(1, len(targets), sharey=True, squeeze=False)[0]
    colours = ["#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c", "#08306b"]
    for ax, t in zip(axes, targets):
        for i, (lr, vals) in enumerate(t["val"].items()):
            ax.plot(
                t["dims"],
                [100 * v for v in vals],
                marker=".",
                color=colours[i % len(colours)],
                label=f"constant {lr}" + (" (before)" if float(lr) == REFERENCE_LR else ""),
                linewidth=2.2 if float(lr) == REFERENCE_LR else 1.0,
            )
        if "rule_val" in t:
            ax.plot(
                t["dims"],
                [100 * v for v in t["rule_val"]],
                marker="D",
                color="#d9480f",
                linewidth=1.8,
                label="rule: lr = step / sqrt(d) (after)",
            )
        ax.axhline(100 * t["floor"], color="0.3", linestyle="--", linewidth=0.8)
        ax.axhline(100 * t["threshold"], color="#d9480f", linestyle=":", linewidth=0.9)
        # The interesting range is floor..ceiling; diverged runs (far below the floor) leave the frame.
        ax.set_ylim(100 * t["floor"] - 2.0, 100 * t["ceiling"] + 1.0)
        ax.set_xscale("log")
        ax.set_title(f"{t['target']} (D = {t['D']:,})", fontsize=9)
        ax.set_xlabel("d")
    axes[0].set_ylabel("validation accuracy (%)\n(dashed: floor, dotted: d90 bar)")
    axes[-1].legend(fontsize=6.5, loc="lower right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()


if __name__ == "__main__":
    main()
