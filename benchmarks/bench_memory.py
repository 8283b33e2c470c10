"""Peak memory and throughput of the streamed data path against the number of images: flat memory is the target.

    python benchmarks/bench_memory.py --max-steps 1    # 2k, 8k, 32k images, ViT-B/16 at 224 px: 7.6 min, 2 busy cores
    python benchmarks/bench_memory.py --quick          # 500 and 2k images, one step: a smoke run
    python benchmarks/bench_memory.py --sizes 2k,8k --max-steps 3

The parent generates one image folder per size in a temporary directory (2 classes of small JPEGs, 48x40 px, so
that decoding is cheap and the model's timm transform does the resizing to 224 px), then runs each size in a fresh
Python process, so each peak RSS (``getrusage``) is that size's alone. Each child, on CPU, with
``vit_base_patch16_224`` and random weights (nothing is downloaded):

1. **index**: ``open_dataset(folder)``: lists the files and decodes each once to find broken ones;
2. **pass**: every image of the folder through the DataLoader (decode + the model's eval transform, no model), the
   full-data cost that a real epoch adds to the model's;
3. **probe**: ``run_probe`` on ``attn.v`` at one d, one seed (baselines: linear probe on cached features, full
   fine-tuning; then one subspace trial), each training capped at ``--max-steps`` steps;
4. **train**: ``run_method`` with KAdaptation (linear-probe head init, from the feature cache), ``--max-steps``.

The split is 4 training and 2 validation images per class with a tiny test fraction, so the model's work per size
is (almost) constant and what grows with the number of images is the data path alone. Columns: peak RSS of the
process after each stage (MiB, cumulative peak), peak RSS of the largest DataLoader worker, and images/s: the pass
counts decoded images, probe and train count images delivered to the model (training, evaluation and features).
"in-memory inputs" is what float32 224 px inputs would take held in memory (computed: N x 3 x 224 x 224 x 4 bytes).
Nothing is asserted; the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = "vit_base_patch16_224"
CLASSES = 2
IMAGE_HW = (40, 48)


def make_folder(root: Path, n: int) -> Path:
    """``n`` JPEGs in ``CLASSES`` class folders: noise with a class-dependent colour."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(n)
    for c in range(CLASSES):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % CLASSES
        arr = rng.integers(0, 100, (*IMAGE_HW, 3), dtype=np.uint8)
        arr[..., c] += 150
        Image.fromarray(arr).save(root / f"class{c}" / f"{i:06d}.jpg", quality=85)
    return root


def _peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: KiB


class _Counter:
    """Counts the images every engine batch delivers (wraps ``iter_batches`` where the engine looks it up)."""

    def __init__(self) -> None:
        import petl_analysis.engine.train as train_mod
        import petl_analysis.task as task_mod

        self.images = 0
        original = train_mod.iter_batches

        def counted(*args, **kwargs):
            for x, y in original(*args, **kwargs):
                self.images += int(y.shape[0])
                yield x, y

        train_mod.iter_batches = counted
        task_mod.iter_batches = counted


def child(folder: str, n: int, max_steps: int, batch_size: int) -> dict:
    import torch

    from petl_analysis.data import SplitSpec, open_dataset, stream_split
    from petl_analysis.engine import Recipe, iter_batches
    from petl_analysis.models import ModelSpec, create_model
    from petl_analysis.probe import ProbeConfig, run_probe
    from petl_analysis.task import DataSpec
    from petl_analysis.train import run_method

    row: dict = {"images": n, "torch_threads": torch.get_num_threads()}
    start = time.perf_counter()
    files = open_dataset(folder)
    row["index_s"] = time.perf_counter() - start
    row["rss_index_mib"] = _peak_mib(resource.RUSAGE_SELF)

    spec = ModelSpec(MODEL, weights="random")
    split = stream_split(files, create_model(spec))
    row["workers"] = split.num_workers
    start = time.perf_counter()
    seen = sum(int(y.shape[0]) for _, y in iter_batches(split, 64, device=torch.device("cpu")))
    row["pass_s"] = time.perf_counter() - start
    row["pass_img_s"] = seen / row["pass_s"]
    row["rss_pass_mib"] = _peak_mib(resource.RUSAGE_SELF)

    counter = _Counter()
    data = DataSpec(folder, SplitSpec(shots=4, val_shots=2, val_fraction=0.15, test_fraction=0.0002))
    recipe = Recipe(
        epochs=1,
        batch_size=batch_size,
        eval_batch_size=8,
        lr=1e-2,
        head_lr=1e-2,
        weight_decay=0.0,
        warmup_epochs=0.0,
        max_steps=max_steps,
    )
    config = ProbeConfig(targets=["attn.v"], dims=[100], seeds=1, recipe=recipe)
    start = time.perf_counter()
    probe = run_probe(spec, data, config, device="cpu")
    row["probe_s"] = time.perf_counter() - start
    row["probe_img_s"] = counter.images / row["probe_s"]
    row["probe_trials"] = probe.trials_total
    row["rss_probe_mib"] = _peak_mib(resource.RUSAGE_SELF)

    counter.images = 0
    start = time.perf_counter()
    run = run_method(spec, data, {"method": "kadaptation"}, recipe, seeds=1, device="cpu")
    row["train_s"] = time.perf_counter() - start
    row["train_img_s"] = counter.images / row["train_s"]
    row["train_steps"] = max_steps
    row["n_train"] = run.seeds[0].n_train
    row["rss_train_mib"] = _peak_mib(resource.RUSAGE_SELF)
    row["rss_worker_mib"] = _peak_mib(resource.RUSAGE_CHILDREN)
    return row


def _parse_sizes(text: str) -> list[int]:
    return [int(float(v.lower().replace("k", "e3"))) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500 and 2k images, --max-steps 1")
    ap.add_argument("--sizes", default=None, help="comma-separated image counts (default 2k,8k,32k)")
    ap.add_argument("--max-steps", type=int, default=None, help="optimizer steps per training (default 2; quick 1)")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--keep", default=None, help="generate (or reuse) the folders here instead of a temp dir")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    max_steps = args.max_steps or (1 if args.quick else 2)
    if args.child:
        n = int(args.sizes)
        print("RESULT " + json.dumps(child(args.child, n, max_steps, args.batch_size)), flush=True)
        return
    sizes = _parse_sizes(args.sizes or ("500,2k" if args.quick else "2k,8k,32k"))
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_memory_"))
    rows = []
    try:
        for n in sizes:
            folder = base / f"images_{n}"
            if not folder.exists():
                t = time.perf_counter()
                make_folder(folder, n)
                print(f"generated {n} images in {time.perf_counter() - t:.1f} s -> {folder}", flush=True)
            env = {**os.environ, "PETL_ANALYSIS_CACHE": str(base / f"cache_{n}")}
            shutil.rmtree(base / f"cache_{n}", ignore_errors=True)  # every size computes its own features
            cmd = [
                sys.executable,
                __file__,
                "--child",
                str(folder),
                "--sizes",
                str(n),
                "--max-steps",
                str(max_steps),
                "--batch-size",
                str(args.batch_size),
            ]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if out.returncode != 0 or not lines:
                sys.exit(f"size {n} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
            rows.append(json.loads(lines[-1][len("RESULT ") :]))
            print(f"{n} images done: {json.dumps(rows[-1])}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    print(
        f"\n{MODEL}, random weights, 224 px, CPU, torch threads {rows[0]['torch_threads']}, "
        f"{rows[0]['workers']} DataLoader worker(s), max_steps {max_steps}, batch {args.batch_size}, "
        f"train {rows[0]['n_train']} images\n"
    )
    cols = [
        ("images", "{:,}", "images"),
        ("in-memory inputs (MiB)", "{:,.0f}", None),
        ("index s", "{:.1f}", "index_s"),
        ("pass img/s", "{:.0f}", "pass_img_s"),
        ("probe s", "{:.0f}", "probe_s"),
        ("probe img/s", "{:.2f}", "probe_img_s"),
        ("train s", "{:.0f}", "train_s"),
        ("train img/s", "{:.2f}", "train_img_s"),
        ("peak RSS index", "{:,.0f}", "rss_index_mib"),
        ("pass", "{:,.0f}", "rss_pass_mib"),
        ("probe", "{:,.0f}", "rss_probe_mib"),
        ("train (MiB)", "{:,.0f}", "rss_train_mib"),
        ("worker peak (MiB)", "{:,.0f}", "rss_worker_mib"),
    ]
    print("| " + " | ".join(c for c, _, _ in cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        vals = [
            fmt.format(r[key]) if key else fmt.format(r["images"] * 3 * 224 * 224 * 4 / 2**20) for _, fmt, key in cols
        ]
        print("| " + " | ".join(vals) + " |")
    first, last = rows[0], rows[-1]
    ratio = lambda key: last[key] / first[key]  # noqa: E731
    print(
        f"\n{last['images'] // first['images']}x the images: peak RSS x{ratio('rss_train_mib'):.2f}, "
        f"worker peak x{ratio('rss_worker_mib'):.2f}, pass img/s x{ratio('pass_img_s'):.2f}"
    )


if __name__ == "__main__":
    main()
