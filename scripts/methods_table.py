#!/usr/bin/env python
"""Every adaptation method on the bundled ViT, one built-in dataset, 5-shot x 3 seeds and full data x 3 seeds.

Each row is one :func:`petl_analysis.train.run_method` call (exactly what ``petl-analyze train`` runs) with the
library's default training recipe, the head initialised from a linear probe (``head_init="lp"``), model selection
on validation and test accuracy at the best-validation epoch. The method settings are the paper's configurations
scaled to the 64-wide backbone: LoRA r=4 on q and v; KAdaptation n=4, r=1 on q and v with A shared per type (and
the official zero-zero ``init="pevit"``); a Houlsby adapter and a Compacter (n=4) after the MLP with bottleneck 8;
VPT with 4 shallow prompts. Trainable counts come from the library's counter, itemised and including the head.

Usage::

    python scripts/methods_table.py                           # digits; ~10 min on 2 threads
    python scripts/methods_table.py --dataset animals --json /tmp/methods_animals.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from petl_analysis.data import SplitSpec
from petl_analysis.io import atomic_write_json
from petl_analysis.models import ModelSpec
from petl_analysis.task import DataSpec
from petl_analysis.train import run_method
from petl_analysis.tuners import (
    AdapterConfig,
    BitFitConfig,
    CompacterConfig,
    FullConfig,
    KAdaptationConfig,
    LinearConfig,
    LoraConfig,
    VptConfig,
)

QV = ["attn.q", "attn.v"]
METHODS = {
    "linear probe": LinearConfig(),
    "full fine-tuning": FullConfig(),
    "BitFit": BitFitConfig(),
    "LoRA r=4 (q,v)": LoraConfig(targets=QV, rank=4, alpha=8.0),
    "adapter m=8": AdapterConfig(bottleneck=8),
    "Compacter n=4 m=8": CompacterConfig(n=4, bottleneck=8),
    "VPT shallow 4": VptConfig(num_prompts=4),
    "KAdaptation n=4 r=1 (q,v)": KAdaptationConfig(targets=QV, n=4, rank=1),
    "KAdaptation n=4 r=1 (q,v), --init pevit": KAdaptationConfig(targets=QV, n=4, rank=1, init="pevit"),
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = ModelSpec("petl_vit_tiny")
    regimes = {"5-shot": SplitSpec(shots=5), "full": SplitSpec()}
    rows, start = [], time.perf_counter()
    for label, cfg in METHODS.items():
        row = {"method": label}
        for regime, split in regimes.items():
            r = run_method(model, DataSpec(a.dataset, split), cfg, seeds=a.seeds)
            row[regime] = {
                "mean": r.test_acc_mean,
                "std": r.test_acc_std,
                "last": r.last_test_acc_mean,
                "per_seed": [s.test_acc for s in r.seeds],
                "wall_s": round(r.wall_time_s, 1),
            }
            row["trainable"] = r.trainable
            print(
                f"{label:42s} {regime:6s} {100 * r.test_acc_mean:5.1f} ± {100 * r.test_acc_std:4.1f} "
                f"({r.trainable['total_incl_head']:,} params, {r.wall_time_s:.0f} s) [{time.perf_counter() - start:.0f} s]",
                flush=True,
            )
        rows.append(row)
    print(
        f"\nbundled petl_vit_tiny on `{a.dataset}`; test accuracy (%) at the best-validation epoch, mean ± std over "
        f"{a.seeds} seeds; last-epoch mean in brackets; {a.threads} thread(s), {(time.perf_counter() - start) / 60:.1f} min"
    )
    print("\n| method | trainable (incl. head) | excl. head | 5-shot | full data |")
    print("|---|---|---|---|---|")
    for row in rows:
        t = row["trainable"]
        cells = [
            f"{100 * row[k]['mean']:.1f} ± {100 * row[k]['std']:.1f} ({100 * row[k]['last']:.1f})" for k in regimes
        ]
        print(f"| {row['method']} | {t['total_incl_head']:,} | {t['total_excl_head']:,} | " + " | ".join(cells) + " |")
    if a.json:
        atomic_write_json(a.json, {"dataset": a.dataset, "seeds": a.seeds, "rows": rows})


if __name__ == "__main__":
    main()
