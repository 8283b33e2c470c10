#!/usr/bin/env python
"""Planted unit: does the ranking find the ViT unit that changed?

For each planted unit (a grouped catalogue target such as ``attn.v``: that unit in every block), the task is built
by :func:`petl_analysis.validate.plant_unit`: the bundled backbone with its linear-probe head (fitted on the base
dataset's real labels) plus a rank-``--rank`` change in that unit, strength calibrated so that ``--share`` of the
labels change; every image is relabelled with this teacher's argmax and written as an image folder (with
``planted.json``). The unchanged pipeline then runs on that folder, as ``petl-analyze probe --dataset <folder>``
would: the probe (``run_probe``) on the six grouped targets, the select stage (``run_select``: d90 ranking plus the
proxy selectors on the same sets), and the greedy plan (``plan_for_budget``) at ``--budget``.

Reported per planted unit: the share of labels changed, the planted unit's rank by d90 (gain-normalised, the
ranking default), its d90 and the best other unit's (with the probe's bootstrap intervals over seeds), whether the
plan adapts it, its rank under each proxy selector, and the best validation accuracy reached by each unit's
subspace over the d grid (what training that unit alone achieves at the largest d: the "oracle" column says
whether the planted unit is even the best one to adapt). Every number is validation accuracy; test accuracy is in
the JSON only.

Usage::

    python scripts/validate_planted_unit.py --out /tmp/planted_unit.json          # the documented run
    python scripts/validate_planted_unit.py --units attn.v,mlp.fc1 --seeds 1 --dims 10,1000   # a quick look

Writes the folders and the probe trial logs under ``--work`` (a rerun with the same ``--threads`` resumes finished
trials: the thread count is part of each trial's key, since it changes the numerics) and everything to
``--out`` (JSON, atomically); prints the markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("PETL_ANALYSIS_WORKERS", "0")  # tiny PNGs: decoding in-process beats worker start-up

import torch  # noqa: E402

from petl_analysis.data import SplitSpec  # noqa: E402
from petl_analysis.io import atomic_write_json  # noqa: E402
from petl_analysis.models import ModelSpec, resolve_targets  # noqa: E402
from petl_analysis.plan import plan_for_budget  # noqa: E402
from petl_analysis.probe import (  # noqa: E402
    RESOLVED_IMAGES, ProbeConfig, ProbeResult, default_probe_recipe, run_probe)
from petl_analysis.select import SELECTORS, Ranking, run_select  # noqa: E402
from petl_analysis.task import DataSpec, prepare_model  # noqa: E402
from petl_analysis.validate import plant_unit  # noqa: E402

TARGETS = ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2")
PROXIES = ("rgn", "fisher", "gps", "spt", "kappa", "apla", "random")


def planted_label(planted_units: list[str], sets: dict[str, list[str]]) -> str:
    """The probed target set that holds the planted units (the grouped label for a grouped or one-block plant)."""
    hits = [label for label, units in sets.items() if set(planted_units) <= set(units)]
    if not hits:
        raise ValueError(f"no probed target holds all of {planted_units}")
    return min(hits, key=lambda label: len(sets[label]))


def rank_of(order: list[str], label: str) -> int:
    return order.index(label) + 1


def d90_cell(t) -> dict[str, Any]:
    d = t.d90
    return {"target": t.target, "d90": d.value, "text": d.text(), "ci": d.ci_text(), "reached": d.reached,
            "ci_low": d.ci_low, "ci_high": d.ci_high, "best_val": t.best_val}


def summarise(plant, probe: ProbeResult, ranking: Ranking, plan, budget: int) -> dict[str, Any]:
    """One planted unit's row: where the planted set lands under each selector and in the plan."""
    sets = {t.target: t.units for t in probe.targets}
    label = planted_label(plant.units, sets)
    order = ranking.order()
    by_target = {t.target: t for t in probe.targets}
    others = [by_target[x] for x in order if x != label]
    best_other = others[0]  # the ranking's first non-planted set
    oracle = sorted(probe.targets, key=lambda t: -t.best_val)
    planned = {u for t in plan.targets for u in t.units} if plan is not None else set()
    entry = next(e for e in ranking.entries if e.target == label)
    return {
        "planted": plant.target, "label": label, "units": plant.units,
        "share_changed": plant.share_changed, "strength": plant.strength, "rank": plant.rank,
        "teacher_agreement": plant.teacher_agreement, "class_counts": plant.class_counts,
        "baselines_val": {k: v.val_mean for k, v in probe.baselines.items()},
        "n_val": probe.n_val, "unresolved_gain": probe.unresolved_gain(),
        "d90_order": order, "d90_rank": rank_of(order, label), "d90_tied_with": entry.tied_with,
        "planted_d90": d90_cell(by_target[label]), "best_other_d90": d90_cell(best_other),
        "oracle_order": [t.target for t in oracle], "oracle_rank": [t.target for t in oracle].index(label) + 1,
        "best_val": {t.target: t.best_val for t in probe.targets},
        "proxy_rank": {name: rank_of(info["order"], label) for name, info in ranking.details["proxies"].items()},
        "proxy_order": {name: info["order"] for name, info in ranking.details["proxies"].items()},
        "plan": None if plan is None else {"budget": budget, "targets": [t.target for t in plan.targets],
                                           "config": plan.config, "used": plan.used},
        "plan_adapts_planted": bool(plan is not None and set(plant.units) <= planned),
        "curves": {t.target: {"dims": t.dims, "val_mean": t.val_mean, "val_per_seed": t.val_per_seed,
                              "test_mean": t.test_mean} for t in probe.targets},
        "probe_wall_s": probe.wall_time_s,
    }


def run_one(target: str, plant_seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    plant = plant_unit(ModelSpec(), args.dataset, target, rank=args.rank, share=args.share, seed=plant_seed)
    name = target if plant_seed == 0 else f"{target}_s{plant_seed}"  # seed 0 keeps the first runs' names (resume)
    folder = plant.write(work / f"planted_{name}", overwrite=True)
    t_plant = time.perf_counter() - t0
    recipe = dataclasses.replace(default_probe_recipe(), epochs=args.epochs)
    grid: dict[str, Any] = ({"dims": [int(d) for d in args.dims.split(",")]} if args.dims
                            else {"d_min": 10, "points_per_decade": 1, "max_refinements": args.refinements})
    config = ProbeConfig(targets=list(TARGETS), seeds=args.seeds, recipe=recipe, **grid)
    data = DataSpec(str(folder), SplitSpec(max_train=args.max_train))
    probe = run_probe(ModelSpec(), data, config, out=work / f"probe_{name}.json")
    ranking = run_select(probe, list(args.proxies.split(",")), source=str(work / f"probe_{name}.json"))
    net = prepare_model(ModelSpec(), plant.dataset.num_classes)
    try:
        plan = plan_for_budget(ranking, net, args.budget, method=args.method, model_spec=ModelSpec())
    except Exception as e:  # noqa: BLE001 - a refused plan is a result too
        print(f"  plan at {args.budget}: {e}", flush=True)
        plan = None
    row = summarise(plant, probe, ranking, plan, args.budget)
    row.update(plant_seed=plant_seed, folder=str(folder), plant_s=t_plant, wall_s=time.perf_counter() - t0,
               planted_meta=plant.metadata())
    return row


def plant_name(row: dict[str, Any]) -> str:
    seed = row.get("plant_seed", 0)
    return row["planted"] if seed == 0 else f"{row['planted']} (plant seed {seed})"


def fmt_d90(c: dict[str, Any]) -> str:
    ci = "" if c["ci"] in ("", "n/a, 1 seed") else f" {c['ci']}"
    return f"{c['text']}{ci}"


def report(rows: list[dict[str, Any]], proxies: list[str]) -> str:
    head = ["planted unit", "labels changed", "full FT - head (val images)", "d90 rank", "d90 planted",
            "d90 best other", "plan adapts it (plan)", "oracle rank (best val)"] + [f"{p} rank" for p in proxies]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        other = r["best_other_d90"]
        tied = " (tied)" if r["d90_tied_with"] and r["d90_rank"] == 1 else ""
        plan = ("yes" if r["plan_adapts_planted"] else "no") + f" ({', '.join(r['plan']['targets'])})" \
            if r["plan"] else "no plan"
        best_other = max(v for k, v in r["best_val"].items() if k != r["label"])
        oracle = f"{r['oracle_rank']} ({100 * r['best_val'][r['label']]:.1f}% vs {100 * best_other:.1f}%)"
        b = r["baselines_val"]
        gain = f"{100 * (b['ft'] - b['head']):+.1f} pts ({(b['ft'] - b['head']) * r['n_val']:+.1f})" + \
            ("" if r["unresolved_gain"] is None else ", unresolved")
        cells = [plant_name(r), f"{100 * r['share_changed']:.0f}%", gain,
                 f"{r['d90_rank']} / {len(r['d90_order'])}{tied}", fmt_d90(r["planted_d90"]),
                 f"{other['target']}: {fmt_d90(other)}", plan, oracle]
        lines.append("| " + " | ".join(cells + [str(r["proxy_rank"][p]) for p in proxies]) + " |")
    first = sum(r["d90_rank"] == 1 for r in rows)
    resolved = [r for r in rows if r["unresolved_gain"] is None]
    lines.append("")
    lines.append(f"plants whose gain is resolved (full fine-tuning beats the head by at least {RESOLVED_IMAGES} "
                 f"validation images and the seed spread): {len(resolved)} of {len(rows)}; among them the planted "
                 f"unit is ranked first by d90 in {sum(r['d90_rank'] == 1 for r in resolved)} and adapted by the "
                 f"plan in {sum(r['plan_adapts_planted'] for r in resolved)}")
    lines.append(f"planted unit ranked first by d90: {first} of {len(rows)}; by each proxy: "
                 + ", ".join(f"{p} {sum(r['proxy_rank'][p] == 1 for r in rows)}" for p in proxies)
                 + f"; planted unit the best single unit to train (oracle): "
                 f"{sum(r['oracle_rank'] == 1 for r in rows)} of {len(rows)}")
    lines.append("")
    lines.append("| planted unit | strength | head (d=0) | full FT | " + " | ".join(f"best val {t}" for t in TARGETS)
                 + " | d90 order |")
    lines.append("|" + "---|" * (5 + len(TARGETS)))
    for r in rows:
        b = r["baselines_val"]
        lines.append(f"| {plant_name(r)} | {r['strength']:.3g} | {100 * b.get('head', math.nan):.1f} | "
                     f"{100 * b['ft']:.1f} | " + " | ".join(f"{100 * r['best_val'][t]:.1f}" for t in TARGETS)
                     + f" | {', '.join(r['d90_order'])} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--units", default="attn.q,attn.v,attn.proj,mlp.fc1,mlp.fc2", help="planted targets")
    p.add_argument("--rank", type=int, default=8, help="rank of the planted change in each unit")
    p.add_argument("--share", type=float, default=0.5, help="share of labels the plant changes (calibrated)")
    p.add_argument("--plant-seeds", default="0",
                   help="seeds of the plant (the teacher's head and the planted directions); each is one plant")
    p.add_argument("--seeds", type=int, default=2, help="probe seeds")
    p.add_argument("--max-train", type=int, default=600, help="probe training images (stratified cap)")
    p.add_argument("--epochs", type=int, default=10, help="epochs of every probe trial")
    p.add_argument("--dims", default="10,100,1000,10000",
                   help="fixed d grid; empty: the demo's adaptive grid (10, 100, ... then refinement)")
    p.add_argument("--refinements", type=int, default=2, help="refinement rounds of the adaptive grid")
    p.add_argument("--budget", type=int, default=1500, help="plan budget (trainable parameters, head excluded)")
    p.add_argument("--method", default="kadaptation")
    p.add_argument("--proxies", default=",".join(PROXIES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default="/tmp/planted_unit_work", help="folders and probe trial logs")
    p.add_argument("--out", default="/tmp/planted_unit.json")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.proxies.split(","):
        SELECTORS.get(name)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = []
    units = args.units.split(",")
    for target in units:
        resolve_targets(prepare_model(ModelSpec(), 10), target)  # a bad name fails before any work
    for target, plant_seed in [(t, int(s)) for s in args.plant_seeds.split(",") for t in units]:
        row = run_one(target, plant_seed, args, work)
        rows.append(row)
        print(f"{plant_name(row)}: {100 * row['share_changed']:.0f}% labels changed, d90 rank {row['d90_rank']}, "
              f"order {row['d90_order']}, plan adapts it: {row['plan_adapts_planted']} ({row['wall_s']:.0f} s)",
              flush=True)
        atomic_write_json(args.out, {"config": vars(args), "rows": rows, "partial": True})
    summary = {"config": vars(args), "rows": rows, "wall_time_s": time.perf_counter() - t0,
               "torch": torch.__version__, "threads": torch.get_num_threads()}
    atomic_write_json(args.out, summary)
    print()
    print(report(rows, args.proxies.split(",")))
    print(f"\ntotal {summary['wall_time_s']:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
