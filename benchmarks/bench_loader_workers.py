"""DataLoader worker processes against decoding in the training process, side by side, for streamed image folders:
the measurement behind :func:`petl_analysis.data.stream.default_num_workers`.

    python benchmarks/bench_loader_workers.py                 # 32, 48, 96, 224 px; workers 0, 1, 2; 3 rounds
    python benchmarks/bench_loader_workers.py --sizes 48 --rounds 5

For each stored image size, a folder of 2 classes x 40 RGB PNGs is written to a temporary directory; one trial is
``fit`` of the bundled ViT architecture at 48 px input, 3 channels, random weights (the issue's setting: a subspace
trial on 48 px images costs about as much per step), its head trained for 3 epochs of 60 training images, batch 16,
validation on 10 images every epoch, one torch thread. Only the number of DataLoader workers differs; the rounds
interleave the worker counts (ABBA order) so that background load falls on all of them alike, and the table gives
the median time per trial and the median per-round ratio to in-process decoding (workers = 0). Workers are
started anew for every pass over a split (as the engine does), which is what costs on few cores: process start and
pickling, against decoding that for small images takes well under a millisecond per image. Nothing is asserted;
the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from _common import machine_line

from petl_analysis.data import SplitSpec, open_dataset
from petl_analysis.data.stream import default_num_workers
from petl_analysis.engine import Recipe, fit
from petl_analysis.models import ModelSpec
from petl_analysis.task import DataSpec, build_task, prepare_model

MODEL = ModelSpec("petl_vit_tiny", weights="random", in_chans=3, img_size=48)
RECIPE = Recipe(epochs=3, batch_size=16, lr=1e-2, eval_batch_size=64)


def write_folder(root: Path, size: int, per_class: int = 40) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i:03d}.png")
    return root


def trial(folder: Path, workers: int) -> float:
    """Seconds of one head-training trial whose streamed splits use ``workers`` DataLoader workers."""
    data = DataSpec(str(folder), SplitSpec(shots=30, val_fraction=0.125, test_fraction=0.125))
    net = prepare_model(MODEL, 2)
    for name, p in net.named_parameters():
        p.requires_grad_(name.startswith("head."))
    start = time.perf_counter()
    task = build_task(data, net, dataset=open_dataset(str(folder)), num_workers=workers)
    fit(net, task.train, task.val, RECIPE, seed=0)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="32,48,96,224", help="Stored image sizes in pixels (square).")
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = [int(w) for w in args.workers.split(",")]
    print(machine_line())
    print(
        f"trial: head of {MODEL.name} (in_chans 3, img_size 48) trained {RECIPE.epochs} epochs on 60 images, "
        f"batch {RECIPE.batch_size}, validated on 10 each epoch; median of {args.rounds} interleaved rounds"
    )
    print(
        "| stored image size | "
        + " | ".join(f"workers={w} (s)" for w in counts)
        + " | "
        + " | ".join(f"workers={w} / workers=0" for w in counts if w)
        + " | default here |"
    )
    print("|---|" + "---|" * (2 * len(counts)))
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            folder = write_folder(Path(tmp) / f"px{size}", size)
            trial(folder, 0)  # warm: the files' first decode (the broken-image check) and imports
            times: dict[int, list[float]] = {w: [] for w in counts}
            for r in range(args.rounds):
                for w in counts if r % 2 == 0 else counts[::-1]:
                    times[w].append(trial(folder, w))
                    print(
                        f"  {size} px, round {r + 1}, workers={w}: {times[w][-1]:.2f} s", file=sys.stderr, flush=True
                    )
            med = {w: statistics.median(ts) for w, ts in times.items()}
            ratios = {w: statistics.median(t / t0 for t, t0 in zip(times[w], times[0])) for w in counts if w}
            print(
                f"| {size}x{size} | "
                + " | ".join(f"{med[w]:.2f}" for w in counts)
                + " | "
                + " | ".join(f"{ratios[w]:.2f}x" for w in counts if w)
                + f" | {default_num_workers(size * size)} |",
                flush=True,
            )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
