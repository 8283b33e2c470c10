"""GPU check: the probe's frozen features, a KAdaptation training step and merged inference on a ViT-B/16 on CUDA.

    python benchmarks/gpu_check.py                 # ViT-B/16 224 px, random weights, 1,024 generated images
    python benchmarks/gpu_check.py --images 256 --steps 10

Without a CUDA GPU it prints one line saying so and exits with status 1 (nothing is measured on CPU; see
``bench_memory.py`` for that). On a GPU it generates an image folder (small JPEGs, 4 classes) in a temporary
directory and prints, for ``vit_base_patch16_224`` with random weights (nothing is downloaded):

1. **probe features**: the linear probe's frozen-feature pass over the streamed folder (DataLoader workers decode
   and apply timm's transform; pinned memory, non-blocking copies; bf16 autocast where supported), images/s, and
   the same pass again from the on-disk feature cache;
2. **KAdaptation train step**: ``fit`` on the streamed training split for ``--steps`` steps (images/s including
   data loading), and the same step on one batch already on the GPU (the model's own speed);
3. **merged inference**: forward of the base model, the unmerged adapter, and the adapter merged and unloaded into
   a plain timm model, images/s each, with the largest logit difference merged vs unmerged.

Also prints the GPU, torch version, whether bf16 is supported and peak GPU memory. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _images_per_s(fn, n_images: int, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        _sync()
        t = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t)
    return n_images / sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024, help="images in the generated folder")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="KAdaptation training steps")
    ap.add_argument("--model", default="vit_base_patch16_224")
    # Runs the same code on CPU (e.g. with a tiny --model) to check the script itself; its numbers mean nothing.
    ap.add_argument("--cpu-smoke", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.cpu_smoke:
        sys.exit("gpu_check: no CUDA GPU available (torch.cuda.is_available() is False); nothing measured")

    from bench_memory import make_folder

    import petl_analysis.data.stream as stream
    from petl_analysis.data import SplitSpec, open_dataset
    from petl_analysis.engine import Recipe, fit
    from petl_analysis.engine.train import autocast, bf16_supported
    from petl_analysis.models import ModelSpec
    from petl_analysis.task import DataSpec, build_task, extract_features, prepare_model
    from petl_analysis.tuners import apply_method

    dev = torch.device("cpu" if args.cpu_smoke else "cuda")
    gpu = "CPU smoke run" if args.cpu_smoke else torch.cuda.get_device_name(0)
    print(
        f"{gpu}, torch {torch.__version__}, bf16 supported: {bf16_supported()}, "
        f"DataLoader workers: {stream.default_num_workers()}"
    )
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        os.environ["PETL_ANALYSIS_CACHE"] = str(Path(tmp) / "cache")
        folder = make_folder(Path(tmp) / "images", args.images)
        ds = open_dataset(str(folder))
        data = DataSpec(str(folder), SplitSpec(val_fraction=0.1, test_fraction=0.1))
        model = prepare_model(ModelSpec(args.model, weights="random"), ds.num_classes).to(dev)
        task = build_task(data, model, dataset=ds)
        bs = args.batch_size

        # 1. probe features: streamed (decode + transform + forward), then again from the cache
        t = time.perf_counter()
        extract_features(model, task.train, device=dev, batch_size=bs)
        _sync()
        streamed = len(task.train) / (time.perf_counter() - t)
        t = time.perf_counter()
        extract_features(model, task.train, device=dev, batch_size=bs)
        cached = len(task.train) / (time.perf_counter() - t)
        print(
            f"probe features: {streamed:,.0f} images/s streamed ({len(task.train)} images, batch {bs}); "
            f"{cached:,.0f} images/s from the feature cache"
        )

        # 2. KAdaptation train step
        base = copy.deepcopy(model)
        method = apply_method(model, {"method": "kadaptation"})
        recipe = Recipe(epochs=1000, batch_size=bs, lr=1e-3, max_steps=args.steps, warmup_epochs=0.0)
        t = time.perf_counter()
        res = fit(model, task.train, None, recipe, device=dev)
        _sync()
        print(
            f"KAdaptation fit: {res.steps * bs / (time.perf_counter() - t):,.0f} images/s over {res.steps} steps "
            f"(batch {bs}, streamed, including DataLoader start per epoch)"
        )
        in_chans, h, w = stream.model_data_config(model)["input_size"]
        x = torch.randn(bs, in_chans, h, w, device=dev)
        y = torch.randint(0, ds.num_classes, (bs,), device=dev)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-3)

        def step() -> None:
            with autocast(dev, True):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()
        print(
            f"KAdaptation step on a GPU batch: {_images_per_s(step, bs, repeats=5):,.0f} images/s "
            f"(batch {bs}, bf16 autocast: {bf16_supported()})"
        )

        # 3. merged inference
        model.eval()
        merged = copy.deepcopy(model)
        method.merge(merged)
        method.unload(merged)
        base.eval()

        @torch.no_grad()
        def forward(net):
            def run() -> torch.Tensor:
                with autocast(dev, True):
                    return net(x)

            return run

        with torch.no_grad():
            err = (forward(merged)().float() - forward(model)().float()).abs().max().item()
        rates = {
            name: _images_per_s(forward(net), bs, repeats=5)
            for name, net in (("base", base), ("unmerged", model), ("merged+unloaded", merged))
        }
        print(
            "inference: "
            + ", ".join(f"{k} {v:,.0f} images/s" for k, v in rates.items())
            + f" (batch {bs}); max |merged - unmerged| logit {err:.3g}"
        )
        if dev.type == "cuda":
            print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
