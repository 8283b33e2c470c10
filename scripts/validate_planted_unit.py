#!/usr/bin/env python
"""Planted unit: does a selector find the ViT unit that changed? (issue 25, item 8)

Protocol, in the order the code runs it (``docs/probe_validation.md``, "Planted unit"):

1. **The design is fixed first** (:data:`UNITS` x ``--plant-seeds``, seed-major order) and written to ``--out``
   before any plant is built. A rerun resumes: finished plants are read back, never re-chosen.
2. **Plant** (:func:`petl_analysis.validate.plant_unit`, ``invisible=True``): the bundled backbone plus a rank-8
   change in one grouped unit, with the teacher's head chosen so that no part of the change a head-only fit could
   express is left (printed per plant: a linear probe on the unplanted features against the unplanted labels,
   McNemar). 50% of the labels change.
3. **Two disjoint halves** of the relabelled images, class-stratified: ``L`` (learnability) and ``S`` (selectors).
4. **Learnability on L**, before any selector runs: the planted unit's weights (and the head) trained fully
   against the head alone, seeds :data:`LEARN_SEEDS` (disjoint from the probe's 0, 1). Learnable iff the gain is
   resolved by :func:`petl_analysis.probe.unresolved_gain` (>= 2 validation images and above the seeds' spread,
   ddof = 1). Written to ``--out`` before step 5.
5. **Selectors on S**: the probe (six grouped targets) and d90, the proxies, the seeded random order and the
   constant catalogue order; the planted set's midrank and first-place credit under each one's declared ties.

:func:`report` rebuilds every table and test from the JSON alone. Usage::

    python scripts/validate_planted_unit.py --out reports/planted_unit/planted_unit.json
    python scripts/validate_planted_unit.py --report reports/planted_unit/planted_unit.json   # tables only
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("PETL_ANALYSIS_WORKERS", "0")


import numpy as np
import torch

from petl_analysis.accounting import classifier
from petl_analysis.data import ImageDataset, SplitSpec, load_dataset
from petl_analysis.engine import fit
from petl_analysis.linear_probe import fit_linear_probe
from petl_analysis.models import ModelSpec, resolve_targets
from petl_analysis.probe import ProbeConfig, default_probe_recipe, run_probe, unresolved_gain
from petl_analysis.select import run_select
from petl_analysis.task import DataSpec, build_task, prepare_model
from petl_analysis.validate import PlantedUnitStudy, plant_unit
from petl_analysis.validate import planted_stats as ps

TARGETS = ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2")  # probed sets; also "constant"
UNITS = ("attn.q", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2")  # planted
PROXIES = ("rgn", "fisher", "gps", "spt", "kappa", "apla", "random")
SELECTORS = ("d90", *PROXIES, "constant")
LEARN_SEEDS = (100, 101)
SPLIT = SplitSpec(val_fraction=0.3, test_fraction=0.1)  # inside each half: ~540 train, ~270 val, ~90 test
FT_LR = 1e-3


# ------------------------------------------------------------------------------------------------ steps


def halves(ds: ImageDataset, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """Two disjoint class-stratified halves ``(S, L)`` of ``ds`` (per class: a seeded shuffle, first half S)."""
    rng = np.random.default_rng(10_000 + seed)
    s_idx, l_idx = [], []
    y = ds.labels.numpy()
    for c in range(ds.num_classes):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        s_idx.append(idx[: len(idx) // 2])
        l_idx.append(idx[len(idx) // 2 :])
    return tuple(ds.subset(torch.as_tensor(np.sort(np.concatenate(i)))) for i in (s_idx, l_idx))


def _row_mask_hooks(model: torch.nn.Module, units) -> list:
    """Train only the planted rows (q, k, v are row slices of one ``qkv`` tensor): zero the other rows' grads."""
    named = dict(model.named_parameters())
    masks: dict[str, torch.Tensor] = {}
    for u in units:
        for t in u.tensors:
            m = masks.setdefault(t.param, torch.zeros_like(named[t.param]))
            if t.rows is None:
                m.fill_(1.0)
            else:
                m[t.rows[0] : t.rows[1]] = 1.0
    hooks = []
    for name, m in masks.items():
        named[name].requires_grad_(True)
        hooks.append(named[name].register_hook(lambda g, m=m: g * m))
    return hooks


def learnability(folder: str, units: list[str], epochs: int) -> dict[str, Any]:
    """Head alone vs the planted unit trained fully (with the head), on the L half; the verdict rule fixed here."""
    ds = load_dataset(folder)
    recipe = dataclasses.replace(default_probe_recipe(), epochs=epochs)
    out: dict[str, list[float]] = {"head": [], "unit": []}
    n_val = 0
    for seed in LEARN_SEEDS:
        model = prepare_model(ModelSpec(), ds.num_classes, seed=seed)
        task = build_task(DataSpec(folder, SPLIT), model, dataset=ds)
        fit_linear_probe(model, task, recipe, seed=seed)
        for kind in ("head", "unit"):
            m = copy.deepcopy(model)
            m.requires_grad_(False)
            classifier(m).requires_grad_(True)
            r = recipe
            hooks = []
            if kind == "unit":
                hooks = _row_mask_hooks(m, resolve_targets(m, units))
                r = dataclasses.replace(recipe, lr=FT_LR, head_lr=recipe.head_lr or recipe.lr)
            res = fit(m, task.train, task.val, r, test=task.test, seed=seed)
            for h in hooks:
                h.remove()
            out[kind].append(float(res.last_val_acc))  # a fixed schedule: no epoch chosen on these images
            n_val = int(res.n_val)
    head, unit = np.array(out["head"]), np.array(out["unit"])
    why = unresolved_gain((head.mean(), head.std(ddof=1)), (unit.mean(), unit.std(ddof=1)), n_val)
    return {
        "head_val": out["head"],
        "unit_val": out["unit"],
        "n_val": n_val,
        "gain_images": float((unit.mean() - head.mean()) * n_val),
        "learnable": why is None,
        "why_not": why,
        "seeds": list(LEARN_SEEDS),
    }


def selector_classes(ranking) -> dict[str, list[list[str]]]:
    """Every selector's tie classes on this plant: d90's declared ties (equal d90, not reached: one class), the
    proxies' equal scores (apla names only its first set: the rest tie), the constant catalogue order (strict)."""
    entries = {e.target: e for e in ranking.entries}
    if any(e.group for e in ranking.entries):
        d90 = ranking.tie_groups()
    else:
        d90 = ps.tie_classes(ranking.order(), {t: (e.d90 if e.reached else None) for t, e in entries.items()})
    out = {"d90": d90}
    for name, info in ranking.details["proxies"].items():
        out[name] = info.get("groups") or ps.tie_classes(info["order"], info["scores"])
    out["constant"] = [[t] for t in TARGETS]
    return out


def run_plant(target: str, plant_seed: int, args: argparse.Namespace, work: Path, save) -> dict[str, Any]:
    """One plant, in the protocol's order: plant, learnability on L (saved), then the selectors on S."""
    t0 = time.perf_counter()
    plant = plant_unit(ModelSpec(), args.dataset, target, rank=args.rank, share=args.share, seed=plant_seed)
    name = f"{target}_s{plant_seed}"
    s_half, l_half = halves(plant.dataset, plant_seed)
    folders = {}
    for part, ds in (("S", s_half), ("L", l_half)):
        from petl_analysis.data import write_image_folder

        folders[part] = str(write_image_folder(ds, work / f"planted_{name}_{part}", overwrite=True))
    row: dict[str, Any] = {
        "planted": target,
        "plant_seed": plant_seed,
        "units": plant.units,
        "plant": plant.metadata().to_dict(),
        "halves": {"S": len(s_half), "L": len(l_half)},
        "plant_s": time.perf_counter() - t0,
    }
    hc = plant.head_check
    print(
        f"  {name}: {100 * plant.share_changed:.0f}% labels changed; head-only fit {100 * hc['head_only_val']:.1f}% "
        f"vs unplanted labels {100 * hc['unplanted_val']:.1f}% ({hc['gain_images']:+d} of {hc['n_val']} val "
        f"images, McNemar one-sided p = {hc['p_one_sided']:.3g})",
        flush=True,
    )
    t1 = time.perf_counter()
    row["learnability"] = learnability(folders["L"], plant.units, args.epochs)
    row["learnability"]["wall_s"] = time.perf_counter() - t1
    lr = row["learnability"]
    print(
        f"  {name}: learnability on L: unit {lr['unit_val']} vs head {lr['head_val']}: "
        f"{lr['gain_images']:+.1f} images -> {'learnable' if lr['learnable'] else 'not learnable'}",
        flush=True,
    )
    save(row)  # the criterion is on disk before any selector runs
    t2 = time.perf_counter()
    recipe = dataclasses.replace(default_probe_recipe(), epochs=args.epochs)
    config = ProbeConfig(
        targets=list(TARGETS), seeds=args.seeds, recipe=recipe, dims=[int(d) for d in args.dims.split(",")]
    )
    probe = run_probe(ModelSpec(), DataSpec(folders["S"], SPLIT), config, out=work / f"probe_{name}.json")
    ranking = run_select(probe, list(PROXIES), source=str(work / f"probe_{name}.json"))
    label = next(t.target for t in probe.targets if set(plant.units) <= set(t.units))
    classes = selector_classes(ranking)
    row["selectors"] = {
        "label": label,
        "classes": classes,
        "midrank": {k: str(ps.midrank_of(c, label)) for k, c in classes.items()},
        "first_credit": {k: str(ps.first_credit(c, label)) for k, c in classes.items()},
        "d90": {
            t.target: {"text": t.d90.text(), "ci": t.d90.ci_text(), "reached": t.d90.reached} for t in probe.targets
        },
        "baselines_val": {k: v.val_mean for k, v in probe.baselines.items()},
        "probe_unresolved_gain": probe.unresolved_gain(),
        "n_val": probe.n_val,
        "wall_s": time.perf_counter() - t2,
    }
    row["wall_s"] = time.perf_counter() - t0
    return row


# ------------------------------------------------------------------------------------------------ report


def _scores(rows, key: str) -> dict[str, list[Fraction]]:
    return {s: [Fraction(r["selectors"][key][s]) for r in rows] for s in SELECTORS}


def _supports(rows, score) -> dict[str, list[list[Fraction]]]:
    return {s: [ps.position_scores(r["selectors"]["classes"][s], score) for r in rows] for s in SELECTORS}


def statistics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per selector against chance (exact, tie-aware; Holm over the selectors) and every pair (sign-flip; Holm
    over the pairs), on ``rows`` (plants with selector results)."""
    if not rows:
        return {}
    mid, cred = _scores(rows, "midrank"), _scores(rows, "first_credit")
    mid_sup, cred_sup = _supports(rows, ps.midrank_of), _supports(rows, ps.first_credit)
    chance, p_mid, p_cred, p_worse = {}, {}, {}, {}
    for s in SELECTORS:
        dm, dc = ps.null_sum_distribution(mid_sup[s]), ps.null_sum_distribution(cred_sup[s])
        p_mid[s] = ps.tail_probability(dm, sum(mid[s]), upper=False)  # a lower midrank is better
        p_worse[s] = ps.tail_probability(dm, sum(mid[s]), upper=True)
        p_cred[s] = ps.tail_probability(dc, sum(cred[s]), upper=True)
        chance[s] = {
            "mean_midrank": float(sum(mid[s]) / len(rows)),
            "first": float(sum(cred[s])),
            "null_mean_midrank": float(sum(sum(x) / len(x) for x in mid_sup[s]) / len(rows)),
            "null_first": float(sum(sum(x) / len(x) for x in cred_sup[s])),
        }
    for s, h in ps.holm(p_mid).items():
        chance[s].update(p_better=p_mid[s], p_better_holm=h)
    for s, h in ps.holm(p_worse).items():
        chance[s].update(p_worse=p_worse[s], p_worse_holm=h)
    for s, h in ps.holm(p_cred).items():
        chance[s].update(p_first=p_cred[s], p_first_holm=h)
    diffs = {
        f"{a} vs {b}": [x - y for x, y in zip(mid[a], mid[b], strict=True)]
        for i, a in enumerate(SELECTORS)
        for b in SELECTORS[i + 1 :]
    }
    pairs = {k: ps.sign_flip_test(d) for k, d in diffs.items()}
    holm = ps.holm(pairs)
    paired = {k: {"mean_diff": float(sum(diffs[k]) / len(rows)), "p": p, "p_holm": holm[k]} for k, p in pairs.items()}
    return {"n": len(rows), "chance": chance, "paired": paired}


def report(doc: PlantedUnitStudy) -> str:
    """Every table from the JSON (``doc``): all plants, then the statistics on the learnable set and on all."""
    rows = doc.rows
    done = [r for r in rows if "selectors" in r]
    lines = [
        f"plants in the design: {len(doc.design['plants'])}; finished: {len(done)}"
        + ("" if len(done) == len(doc.design["plants"]) else f" (PARTIAL: resume with `{doc.design['resume']}`)"),
        "",
    ]
    head = [
        "plant",
        "labels changed",
        "head-only vs unplanted (val images, p)",
        "learnable on L (unit - head)",
        "probe gain on S",
    ] + [f"{s}" for s in SELECTORS]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_key = {(r["planted"], r["plant_seed"]): r for r in rows}
    for target, seed in doc.design["plants"]:
        r = by_key.get((target, seed))
        if r is None:
            lines.append("| " + " | ".join([f"{target} (seed {seed})"] + ["not started"] * (len(head) - 1)) + " |")
            continue
        p, hc, lr = r["plant"], r["plant"]["head_check"], r["learnability"]
        cells = [
            f"{r['planted']} (seed {r['plant_seed']})",
            f"{100 * p['share_changed']:.0f}%",
            f"{hc['gain_images']:+d} of {hc['n_val']}, p = {hc['p_one_sided']:.2f}",
            ("yes" if lr["learnable"] else "no") + f" ({lr['gain_images']:+.1f})",
        ]
        if "selectors" in r:
            sel = r["selectors"]
            b = sel["baselines_val"]
            cells.append(
                f"{(b['ft'] - b['head']) * sel['n_val']:+.1f}"
                + ("" if sel["probe_unresolved_gain"] is None else " (unresolved)")
            )
            cells += [_cell(sel, s) for s in SELECTORS]
        else:
            cells += ["not run"] * (1 + len(SELECTORS))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "(selector cells: the planted set's midrank among 6 under the selector's declared ties; "
        "'=k' marks a tie class of k sets)",
        "",
    ]
    learnable = [r for r in done if r["learnability"]["learnable"]]
    for title, subset in (
        ("learnable plants (criterion on L, fixed before any selector ran)", learnable),
        ("all finished plants", done),
    ):
        st = statistics(subset)
        lines.append(f"### {title}: n = {len(subset)}")
        if not st:
            lines.append("(none)")
            continue
        lines += [
            "",
            "| selector | mean midrank (chance) | p better (Holm) | p worse (Holm) | first places, "
            "tie-shared (chance) | p first (Holm) |",
            "|---|---|---|---|---|---|",
        ]
        for s in SELECTORS:
            c = st["chance"][s]
            lines.append(
                f"| {s} | {c['mean_midrank']:.2f} ({c['null_mean_midrank']:.2f}) | {c['p_better']:.3f} "
                f"({c['p_better_holm']:.3f}) | {c['p_worse']:.3f} ({c['p_worse_holm']:.3f}) | "
                f"{c['first']:.2f} ({c['null_first']:.2f}) | {c['p_first']:.3f} ({c['p_first_holm']:.3f}) |"
            )
        lines += [
            "",
            "paired (exact sign-flip test on the per-plant midrank difference; negative: the first "
            f"selector ranks the planted set better; Holm over the {len(st['paired'])} pairs), d90 against "
            "each other selector:",
            "",
            "| pair | mean midrank difference | p | p (Holm) |",
            "|---|---|---|---|",
        ]
        for k, v in st["paired"].items():
            if k.startswith("d90 vs"):
                lines.append(f"| {k} | {v['mean_diff']:+.2f} | {v['p']:.3f} | {v['p_holm']:.3f} |")
        best = min(st["paired"].items(), key=lambda kv: kv[1]["p"])
        lines += [
            "",
            f"smallest paired p over all pairs: {best[0]} ({best[1]['mean_diff']:+.2f}), p = "
            f"{best[1]['p']:.3f}, Holm {best[1]['p_holm']:.3f}",
            "",
        ]
    return "\n".join(lines)


def _cell(sel: dict[str, Any], s: str) -> str:
    m = Fraction(sel["midrank"][s])
    size = next(len(c) for c in sel["classes"][s] if sel["label"] in c)
    text = f"{float(m):g}"
    return text + (f" (={size})" if size > 1 else "")


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--units", default=",".join(UNITS), help="planted grouped units")
    p.add_argument("--plant-seeds", default="0,1,2")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--share", type=float, default=0.5)
    p.add_argument("--seeds", type=int, default=1, help="probe seeds (0..seeds-1)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--dims", default="10,100,1000")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default="/tmp/planted_unit_work")
    p.add_argument("--out", default="reports/planted_unit/planted_unit.json")
    p.add_argument("--report", default=None, help="print the tables of this JSON and exit")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.report:
        print(report(PlantedUnitStudy.load(args.report)))
        return
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    plants = [(u, int(s)) for s in args.plant_seeds.split(",") for u in args.units.split(",")]
    config = {k: v for k, v in vars(args).items() if k not in ("report",)}
    design = {
        "plants": [list(p) for p in plants],
        "config": config,
        "selectors": list(SELECTORS),
        "learn_seeds": list(LEARN_SEEDS),
        "split": dataclasses.asdict(SPLIT),
        "ft_lr": FT_LR,
        "criterion": "learnable iff probe.unresolved_gain((head mean, sd ddof=1), (unit mean, sd ddof=1), "
        "n_val) is None on half L: the planted unit trained fully (lr 1e-3, head 1e-2) beats "
        "the head alone by >= 2 validation images and by more than the seeds' spread",
        "resume": "nice -n 5 python scripts/validate_planted_unit.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in config.items()),
    }
    out = Path(args.out)
    doc = PlantedUnitStudy.load(out) if out.exists() else PlantedUnitStudy(design)
    if doc.design["plants"] != design["plants"] or doc.design["config"] != config:
        raise SystemExit(f"{out} holds another design; pass another --out")
    rows = {(r["planted"], r["plant_seed"]): r for r in doc.rows}
    doc.save(out)
    t0 = time.perf_counter()
    for i, (target, seed) in enumerate(plants):
        if "selectors" in rows.get((target, seed), {}):
            continue
        print(f"[{i + 1}/{len(plants)}] {target} plant seed {seed} ({time.perf_counter() - t0:.0f} s)", flush=True)

        def save(row, key=(target, seed)):
            rows[key] = row
            doc.rows = [rows[p] for p in plants if p in rows]
            doc.save(out)

        row = run_plant(target, seed, args, work, save)
        save(row)
        sel = row["selectors"]
        ranks = ", ".join(f"{s} {float(Fraction(sel['midrank'][s])):g}" for s in SELECTORS)
        print(f"  midranks: {ranks} ({row['wall_s']:.0f} s)", flush=True)
    print()
    print(report(doc))


if __name__ == "__main__":
    main()
