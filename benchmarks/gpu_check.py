"""GPU check: the probe's feature pass, a KAdaptation training step against timm's full fine-tuning step of the same
model, and merged inference, on ViT-B/16 (and DINOv2-S/14 where its weights are installed), side by side.

    python benchmarks/gpu_check.py                  # on a CUDA GPU: ViT-B/16 at 224 px, 1,024 generated images
    python benchmarks/gpu_check.py --compile        # also the torch.compile'd KAdaptation step
    python benchmarks/gpu_check.py --cpu-smoke      # no GPU: the same code, reduced, to check the script runs

For each model (random weights for ViT-B/16, nothing is downloaded; DINOv2-S/14 with ``--weights dinov2-s14``) it
generates an image folder (small JPEGs, 4 classes) in a temporary directory and prints:

1. **feature pass**: the linear probe's frozen-feature pass over the streamed folder (DataLoader workers decode and
   apply timm's transform; pinned memory, non-blocking copies; autocast), images/s, then again from the feature
   cache;
2. **training step** on one batch already on the device, timed interleaved (ABBA) against the baseline, **timm's
   full fine-tuning step of the same model** (every parameter, AdamW): KAdaptation (``Recipe.amp="auto"``), the same
   with amp ``off`` and ``fp16`` (gradient scaler) and, where the GPU has it, ``bf16``; with gradient checkpointing;
   with ``--compile``, compiled. Each as images/s and as a ratio to the full fine-tuning step (above 1: faster), and
   on CUDA its peak memory;
3. **fit**: ``fit`` on the streamed training split for ``--steps`` steps (images/s including data loading; the
   DataLoader workers persist across its epochs);
4. **merged inference**: the base model, the unmerged adapter, the adapter merged and unloaded into a plain timm
   model: images/s and ratio to the base, with the largest logit difference merged vs unmerged.

``--cpu-smoke`` runs the same steps on CPU at 32 px (28 for DINOv2), 24 images, batch 4, 2 steps and 1 round, so
the script is known to work before a GPU is lent; its numbers say nothing about a GPU. Without a GPU and without
``--cpu-smoke`` it prints one line saying so and exits with status 1. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024, help="images in the generated folder")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="steps of the streamed fit")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds per timing")
    ap.add_argument("--img-size", type=int, default=None, help="input size (default: the model's)")
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile'd KAdaptation step")
    ap.add_argument("--cpu-smoke", action="store_true", help="run reduced on CPU: checks the script, measures nothing")
    args = ap.parse_args()
    if args.cpu_smoke:
        args.images, args.batch_size, args.steps, args.repeats = 24, 4, 2, 1
    return args


def _rate(images_per_s: float) -> str:
    return f"{images_per_s:,.0f}" if images_per_s >= 100 else f"{images_per_s:.3g}"


def _models(args: argparse.Namespace):
    """``(label, ModelSpec)`` of the models to check: ViT-B/16, and DINOv2-S/14 where its weights load."""
    from petl_analysis.errors import PetlError
    from petl_analysis.models import ModelSpec, create_model

    vit_size = args.img_size or (32 if args.cpu_smoke else None)
    yield "ViT-B/16", ModelSpec("vit_base_patch16_224", weights="random", img_size=vit_size)
    dino = ModelSpec("vit_small_patch14_dinov2", weights="dinov2-s14", img_size=28 if args.cpu_smoke else 224)
    try:
        create_model(dino)
    except PetlError as e:
        print(f"DINOv2-S/14: skipped ({e})")
        return
    yield "DINOv2-S/14", dino


def _peak_gib(fn: Callable[[], None], device) -> str:
    """Peak CUDA memory of a few calls of ``fn`` (nothing on CPU)."""
    import torch

    if device.type != "cuda":
        return ""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    return f", peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"


def check(label: str, spec, args: argparse.Namespace, device, tmp: Path) -> None:
    import torch
    from _common import interleaved_times, round_ratios
    from bench_memory import make_folder

    from petl_analysis.data import SplitSpec, open_dataset
    from petl_analysis.engine import Recipe, fit
    from petl_analysis.engine.acceleration import compiled, set_grad_checkpointing
    from petl_analysis.engine.precision import autocast, bf16_supported, grad_scaler
    from petl_analysis.models import model_input_config
    from petl_analysis.task import DataSpec, build_task, extract_features, prepare_model
    from petl_analysis.tuners import apply_method

    folder = make_folder(tmp / f"images-{label.replace('/', '')}", args.images)
    ds = open_dataset(str(folder))
    model = prepare_model(spec, ds.num_classes).to(device)
    cfg = model_input_config(model)
    task = build_task(DataSpec(str(folder), SplitSpec(val_fraction=0.1, test_fraction=0.1)), model, dataset=ds)
    bs = args.batch_size
    print(f"\n== {label} ({spec.name}, {cfg['in_chans']}x{cfg['img_size']}x{cfg['img_size']}, batch {bs})")

    # 1. feature pass: streamed (decode + transform + forward), then from the cache
    t = time.perf_counter()
    extract_features(model, task.train, device=device, batch_size=bs)
    streamed = len(task.train) / (time.perf_counter() - t)
    t = time.perf_counter()
    extract_features(model, task.train, device=device, batch_size=bs)
    cached = len(task.train) / (time.perf_counter() - t)
    print(
        f"feature pass: {_rate(streamed)} images/s streamed ({len(task.train)} images); {_rate(cached)} from the cache"
    )

    # 2. training steps on one batch on the device, against timm's full fine-tuning step
    x = torch.randn(bs, cfg["in_chans"], cfg["img_size"], cfg["img_size"], device=device)
    y = torch.randint(0, ds.num_classes, (bs,), device=device)
    base = copy.deepcopy(model).eval()
    full = copy.deepcopy(model).requires_grad_(True)
    adapted = copy.deepcopy(model)
    method = apply_method(adapted, {"method": "kadaptation"})
    with (
        torch.no_grad()
    ):  # away from the init, where some factors are zero: the merge check below then means something
        for p in adapted.parameters():
            if p.requires_grad:
                p.add_(1e-2 * torch.randn_like(p))

    def step_of(net, amp: str = "auto", forward=None) -> Callable[[], None]:
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)
        scaler = grad_scaler(amp, device)
        forward = forward or net

        def step() -> None:
            with autocast(device, amp):
                loss = torch.nn.functional.cross_entropy(forward(x).float(), y)
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()

        return step

    checkpointed = copy.deepcopy(adapted)
    set_grad_checkpointing(checkpointed, True)
    steps = {
        "full fine-tuning (timm)": step_of(full.train()),
        "KAdaptation": step_of(adapted.train()),
        "KAdaptation amp=off": step_of(adapted),
        "KAdaptation amp=fp16": step_of(adapted, "fp16"),
        "KAdaptation grad checkpointing": step_of(checkpointed.train()),
    }
    if device.type == "cpu" or bf16_supported():
        steps["KAdaptation amp=bf16"] = step_of(adapted, "bf16")
    if args.compile:
        steps["KAdaptation compiled"] = step_of(adapted, forward=compiled(adapted, device))
    times = interleaved_times(steps, args.repeats, warmup=1 if args.cpu_smoke else 5)
    ratios = round_ratios(times, "full fine-tuning (timm)")
    for name, ts in times.items():
        ms = statistics.median(ts)
        speed = statistics.median(1 / r for r in ratios[name])
        print(
            f"  {name:32s} {_rate(bs / ms * 1e3):>9} images/s  x{speed:.2f} vs full fine-tuning{_peak_gib(steps[name], device)}"
        )

    # 3. fit on the streamed split
    fitted = copy.deepcopy(model)
    apply_method(fitted, {"method": "kadaptation"})
    recipe = Recipe(epochs=1000, batch_size=bs, lr=1e-3, max_steps=args.steps, warmup_epochs=0.0)
    t = time.perf_counter()
    res = fit(fitted, task.train, None, recipe, device=device)
    print(
        f"fit (KAdaptation, streamed): {_rate(res.steps * bs / (time.perf_counter() - t))} images/s over {res.steps} steps"
    )

    # 4. merged inference
    adapted.eval()
    merged = copy.deepcopy(adapted)
    method.merge(merged)
    method.unload(merged)

    def forward_of(net) -> Callable[[], torch.Tensor]:
        @torch.no_grad()
        def run() -> torch.Tensor:
            with autocast(device, "auto"):
                return net(x)

        return run

    err = (forward_of(merged)().float() - forward_of(adapted)().float()).abs().max().item()
    nets = {"base": forward_of(base), "unmerged": forward_of(adapted), "merged+unloaded": forward_of(merged)}
    times = interleaved_times(nets, args.repeats, warmup=1 if args.cpu_smoke else 3)
    ratios = round_ratios(times, "base")
    rows = [
        f"{name} {_rate(bs / statistics.median(ts) * 1e3)} images/s (x{statistics.median(1 / r for r in ratios[name]):.2f})"
        for name, ts in times.items()
    ]
    print(f"inference: {', '.join(rows)}; max |merged - unmerged| logit {err:.3g}")


def main() -> None:
    args = _args()
    import torch

    if not torch.cuda.is_available() and not args.cpu_smoke:
        sys.exit("gpu_check: no CUDA GPU available (torch.cuda.is_available() is False); nothing measured")
    import petl_analysis.data.stream as stream
    from petl_analysis.engine.precision import bf16_supported

    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    where = (
        "CPU smoke run (reduced; its numbers check the script, they are no GPU figures)"
        if args.cpu_smoke
        else f"{torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible)"
    )
    print(
        f"{where}; torch {torch.__version__}; bf16 supported: {bf16_supported()}; "
        f"DataLoader workers: {stream.default_num_workers()}"
    )
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        os.environ["PETL_ANALYSIS_CACHE"] = str(Path(tmp) / "cache")
        for label, spec in _models(args):
            check(label, spec, args, device, Path(tmp))


if __name__ == "__main__":
    main()
