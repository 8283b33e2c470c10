"""Timing helpers and model configurations shared by the benchmark scripts (not part of the library)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch

from petl_analysis.models import ModelSpec

#: The models the benchmarks compare: the bundled ViT and a ViT-Tiny layout (random weights, no download).
MODELS: dict[str, tuple[str, ModelSpec]] = {
    "tiny": (
        "petl_vit_tiny (bundled; 16px/p4, width 64, depth 4, 16 tokens)",
        ModelSpec("petl_vit_tiny", weights="random", num_classes=10),
    ),
    "vit-tiny": (
        "ViT-Tiny (32px/p4, width 192, depth 12, 65 tokens)",
        ModelSpec("vit_tiny_patch16_224", weights="random", img_size=32, patch_size=4, num_classes=10),
    ),
}


def sync() -> None:
    """Wait for queued CUDA work so wall times cover it."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def interleaved_times(
    fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 3, block: int = 1
) -> dict[str, list[float]]:
    """Wall times (ms per call) per function over ``repeats`` rounds. Each round runs every function in turn (the
    order reversed every other round), ``block`` calls in a row (timed together, reported per call), so background
    load and clock drift hit all of them alike while ``block > 1`` keeps each function's own data warm in cache,
    as in a training loop."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns.items())
    for r in range(repeats):
        # Alternate the order (ABBA...): neither function always runs first in a round, straight after the other.
        for name, fn in order if r % 2 == 0 else order[::-1]:
            sync()
            start = time.perf_counter()
            for _ in range(block):
                fn()
            sync()
            times[name].append(1e3 * (time.perf_counter() - start) / block)
    return times


def interleaved_median_ms(fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median wall time (ms) per function, calls interleaved round-robin (:func:`interleaved_times`)."""
    return {name: statistics.median(ts) for name, ts in interleaved_times(fns, repeats, warmup).items()}


def round_ratios(times: dict[str, list[float]], reference: str) -> dict[str, list[float]]:
    """Per round, ``time / time[reference]`` measured in that round (take the median over rounds): on a noisy
    machine this is steadier than a ratio of medians, since each pair shares the round's load."""
    ref = times[reference]
    return {name: [t / r for t, r in zip(ts, ref)] for name, ts in times.items()}


def machine_line() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"torch {torch.__version__}; {os.cpu_count()} CPU(s), {torch.get_num_threads()} thread(s); load average {load:.1f} at start"
