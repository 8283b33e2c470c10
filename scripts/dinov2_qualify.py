#!/usr/bin/env python
"""Which datasets can answer "does the ranking predict?" on DINOv2-S/14 (issue 27, step 1).

A dataset qualifies when full fine-tuning beats the head trained alone by at least 2 validation images (the
validation resolution) and outside the seed spread: every seed's own gain (its ceiling minus its floor) is above 0.
Both were fixed before any baseline was seen. The trials are the probe's own baselines (same keys, same log), so the
probe of a qualifying dataset, run later with ``--out reports/dinov2/<dataset>/probe.json``, reuses them.

    python scripts/dinov2_qualify.py                 # every candidate; resumable
    python scripts/dinov2_qualify.py digits animals  # some

Writes ``reports/dinov2/qualification.json`` (atomically) and prints its table. Needs the ``dinov2`` extra.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from petl_analysis.data import SplitSpec
from petl_analysis.io import atomic_write_text
from petl_analysis.models import ModelSpec
from petl_analysis.probe import ProbeConfig, probe_baselines
from petl_analysis.probe.result import RESOLVED_IMAGES, images_apart
from petl_analysis.study import Study
from petl_analysis.task import DataSpec

OUT = ROOT / "reports" / "dinov2"
GLYPHS = "/tmp/glyph_letters"  # scripts/export_glyph_folder.py writes it
CANDIDATES = {"digits": "digits", "animals": "animals", "glyph_folder": GLYPHS}
#: The study's CPU scale (issue 27 item 3), fixed before any result: 56 px, 300 training images of split A, 3 seeds,
#: the probe recipe; the full fine-tuning ceiling at 1e-5 (1e-3 and 1e-4 diverged on this backbone, stop 30).
MODEL = ModelSpec("vit_small_patch14_dinov2", weights="dinov2-s14", img_size=56)
SEEDS, MAX_TRAIN, FT_LR = 3, 300, 1e-5


def config() -> ProbeConfig:
    return ProbeConfig(seeds=SEEDS, ft_lr=FT_LR)


def data(name: str) -> DataSpec:
    return DataSpec(CANDIDATES[name], SplitSpec(max_train=MAX_TRAIN, part="A"))


def qualify(name: str, n_jobs: int) -> dict:
    study = Study(MODEL, data(name), n_jobs=n_jobs)
    log = OUT / name / "probe.json.trials.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    base, n_val = probe_baselines(study, config(), log=log, threads_per_job=1)
    head, ft = base["head"], base["ft"]
    gains = [f - h for f, h in zip(ft.val_per_seed, head.val_per_seed)]
    gain_images = images_apart(ft.val_mean, head.val_mean, n_val)
    return {
        "dataset": name,
        "n_val": n_val,
        "lp_val": base["lp"].val_per_seed,
        "head_val": head.val_per_seed,
        "ft_val": ft.val_per_seed,
        "gain_images": gain_images,
        "seed_gains_images": [images_apart(g, 0.0, n_val) for g in gains],
        "qualifies": bool(gain_images >= RESOLVED_IMAGES and min(gains) > 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="*", default=list(CANDIDATES), choices=list(CANDIDATES))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    path = OUT / "qualification.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    for name in args.datasets:
        done[name] = qualify(name, args.jobs)
        record = {
            "model": dataclasses.asdict(MODEL),
            "seeds": SEEDS,
            "max_train": MAX_TRAIN,
            "ft_lr": FT_LR,
            "rule": f"gain of ft over head >= {RESOLVED_IMAGES} validation images and every seed's gain > 0",
            "datasets": {k: v for k, v in done.items() if k in CANDIDATES},
        }
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    print(f"{'dataset':14} {'n_val':>5} {'head':>14} {'ft':>14} {'gain (images)':>14} {'per seed':>18} qualifies")
    for name, r in done.items():
        mean = lambda v: sum(v) / len(v)  # noqa: E731
        print(
            f"{name:14} {r['n_val']:>5} {mean(r['head_val']):>14.3f} {mean(r['ft_val']):>14.3f} "
            f"{r['gain_images']:>14.1f} {r['seed_gains_images']!s:>18} {r['qualifies']}"
        )


if __name__ == "__main__":
    main()
