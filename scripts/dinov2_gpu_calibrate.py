"""Issue 27 item 4, step 1: a short timing run of DINOv2-S/14 on this machine, and the training-set size it allows.

    python scripts/dinov2_gpu_calibrate.py --weights dinov2-s14:weights/dinov2_s14_fp16.safetensors --json c.json
    python scripts/dinov2_gpu_calibrate.py --device cpu --img-size 28 --steps 2 --batch-size 4   # checks the script

Times ``--steps`` training steps (after 3 warm-up steps) of full fine-tuning and of KAdaptation on q, v (the
adapter the study trains most), on one batch already on the device, under the engine's autocast (bf16 where the GPU
has it). Prints the device, images/s per step type and the largest training set (a multiple of 100, 100 to 2,000)
with which ``--trainings`` trainings of ``--epochs`` epochs fit in ``--budget-s`` seconds at the adapter's rate,
counting evaluation and set-up as ``--overhead`` times the training passes. ``dinov2_gpu_study.sh`` reads it.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from petl_analysis.device import resolve_device
from petl_analysis.engine.precision import autocast
from petl_analysis.io import atomic_write_json
from petl_analysis.models import ModelSpec
from petl_analysis.task import prepare_model
from petl_analysis.tuners import apply_method


def _images_per_s(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, device: torch.device) -> float:
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)

    def step() -> None:
        with autocast(device, "auto"):
            loss = torch.nn.functional.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * x.shape[0] / (time.perf_counter() - start)


def calibrate(a: argparse.Namespace) -> dict:
    device = resolve_device(a.device)
    spec = ModelSpec("vit_small_patch14_dinov2", weights=a.weights, img_size=a.img_size)
    model = prepare_model(spec, 10).to(device)
    x = torch.randn(a.batch_size, 3, a.img_size, a.img_size, device=device)
    y = torch.randint(0, 10, (a.batch_size,), device=device)
    full = copy.deepcopy(model).requires_grad_(True)
    adapted = copy.deepcopy(model)
    apply_method(adapted, {"method": "kadaptation", "targets": ["attn.q", "attn.v"]})
    rates = {
        "full": _images_per_s(full, x, y, a.steps, device),
        "kadaptation": _images_per_s(adapted, x, y, a.steps, device),
    }
    seconds_per_image = a.trainings * a.epochs * a.overhead / rates["kadaptation"]
    max_train = int(min(2000, max(100, a.budget_s / seconds_per_image // 100 * 100)))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "device": str(device),
        "name": name,
        "torch": torch.__version__,
        "img_size": a.img_size,
        "batch_size": a.batch_size,
        "images_per_s": rates,
        "budget_s": a.budget_s,
        "trainings": a.trainings,
        "epochs": a.epochs,
        "max_train": max_train,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default="dinov2-s14", help="as --weights takes it (dinov2-s14 or dinov2-s14:FILE)")
    p.add_argument("--device", default="auto")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--budget-s", type=float, default=300.0, help="seconds the study's trainings may take")
    p.add_argument("--trainings", type=int, default=150, help="trainings the study runs (probe, oracle, sweep)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--overhead", type=float, default=2.0, help="trial time over its training passes")
    p.add_argument("--json", type=Path, help="write the figures here (atomically)")
    a = p.parse_args(argv)
    out = calibrate(a)
    rates = ", ".join(f"{k} {v:,.0f}" if v >= 100 else f"{k} {v:.3g}" for k, v in out["images_per_s"].items())
    print(
        f"{out['name']} ({out['device']}, torch {out['torch']}), {a.img_size} px, batch {a.batch_size}: {rates} images/s"
    )
    print(f"max_train {out['max_train']} ({a.trainings} trainings x {a.epochs} epochs in {a.budget_s:.0f} s)")
    if a.json:
        atomic_write_json(a.json, out)


if __name__ == "__main__":
    main()
