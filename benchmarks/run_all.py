"""Every benchmark in one run, one table after another (the numbers quoted in the README).

    python benchmarks/run_all.py            # ~10 min on 2 cores, plus ~8 min for bench_memory
    python benchmarks/run_all.py --quick    # smoke run of every script, ~2 min, plus ~2 min for bench_memory

1. subspace (Fastfood) vs direct training step, bundled ViT and ViT-Tiny; Fastfood vs dense buffers by d
   (``bench_subspace.py``);
2. dense vs Fastfood vs sparse projection time and memory by (D, d) (``bench_projections.py``);
3. KAdaptation vs LoRA vs peft LoKr training step; merged vs unmerged vs base inference (``bench_adapters.py``);
4. probe wall time, trials per d90 (adaptive vs grid), loky workers 1 vs 2 (``bench_probe.py``);
5. peak memory and images/s of the streamed image-folder path at 2k / 8k / 32k images, ViT-B/16 at 224 px
   (``bench_memory.py``; ``gpu_check.py`` is separate, it needs a GPU);
6. DataLoader workers 0 / 1 / 2 for a streamed trial by stored image size (``bench_loader_workers.py``);
7. the planner's sizing, bisected rank ladders against counting every configuration (``bench_plan.py``).

Each script interleaves the variants it compares, so every ratio is measured side by side in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_adapters
import bench_loader_workers
import bench_memory
import bench_plan
import bench_probe
import bench_projections
import bench_subspace


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    a = parser.parse_args(argv)
    runs = [
        (
            "subspace vs direct training step",
            bench_subspace.main,
            ["--passes", "1", "--repeats", "3", "--models", "tiny"] if a.quick else [],
        ),
        (
            "projections",
            bench_projections.main,
            ["--repeats", "3", "--D", "16640", "--d", "10", "1000"] if a.quick else [],
        ),
        ("adapters", bench_adapters.main, ["--repeats", "3", "--models", "tiny"] if a.quick else []),
        ("probe", bench_probe.main, ["--quick"] if a.quick else []),
        ("memory", bench_memory.main, ["--quick"] if a.quick else ["--max-steps", "1"]),
        ("DataLoader workers", bench_loader_workers.main, ["--sizes", "48", "--rounds", "1"] if a.quick else []),
        ("planner sizing", bench_plan.main, ["--model", "tiny", "--rounds", "1"] if a.quick else []),
    ]
    start = time.perf_counter()
    for title, fn, args in runs:
        print(f"\n{'#' * 100}\n# {title}: {fn.__module__} {' '.join(args)}\n{'#' * 100}", flush=True)
        fn(args)
    print(f"\nall benchmarks: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
