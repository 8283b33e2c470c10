"""Adapter cost side by side: KAdaptation vs LoRA vs peft's LoKr, training step and merged/unmerged inference.

    python benchmarks/bench_adapters.py                       # both models, ~1-2 min on 2 cores
    python benchmarks/bench_adapters.py --models vit-tiny --batch 16 --repeats 20 --threads 1

Training table: median wall time of one step (forward, cross-entropy, backward, AdamW step) per method on the same
model and the same targets, and its ratio to the linear probe (head only) and to LoRA. Inference table: eval-mode
forward under ``torch.no_grad`` for the base model, the unmerged adapter (the parametrisation rebuilds
``W0 + ΔW`` at every weight read), the unmerged adapter inside ``torch.nn.utils.parametrize.cached()`` (``ΔW`` built
once per forward call), the merged adapter (still parametrised) and the merged adapter after ``unload()`` (a plain
timm model again: what one deploys); ratios are to the base model. Calls are interleaved round-robin
(after warm-up) so background load hits every variant alike.

peft's LoKr can only wrap whole modules, so the like-for-like rows target the whole fused ``attn.qkv``; our q/v-slice
rows (the paper's targets) follow without a peft counterpart. If peft is not installed, its rows are skipped with a
message.

Measured while ``petl_analysis/functional/kron.py`` was written (2026-12-01, 2 CPU cores, float32, 768×768 result,
n = 32; one-off timing): ``factored_kron_sum`` (one GEMM, no permute) about 2× faster than ``kron_sum`` for the
same result.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MODELS, interleaved_median_ms, machine_line

from petl_analysis.models import create_model, model_input_config
from petl_analysis.tuners import KAdaptationConfig, LinearConfig, LoraConfig, Method, apply_method


def _peft():
    try:
        from peft import LoKrConfig, inject_adapter_in_model
    except ImportError as e:
        return None, f"peft is not installed ({e}); `pip install peft` to add the LoKr rows"
    return (LoKrConfig, inject_adapter_in_model), None


def _kron_n(width: int) -> int:
    """The paper's n=32 at width 768 scaled to the model (n = width / 24, at least 2)."""
    return max(2, width // 24)


Variants = dict[str, tuple[nn.Module, str, "Method | None"]]


def build_variants(base: nn.Module, width: int, rank: int) -> tuple[Variants, str | None]:
    """Label -> (adapted copy of ``base``, targets, our method or None for peft) for every method to time."""
    n = _kron_n(width)
    ours = {
        "linear probe": (LinearConfig(), "-"),
        f"lora r={rank}": (LoraConfig(targets=["attn.qkv"], rank=rank, alpha=float(rank)), "attn.qkv"),
        f"kadaptation n={n} r=1": (KAdaptationConfig(targets=["attn.qkv"], n=n), "attn.qkv"),
    }
    variants: Variants = {}
    for label, (cfg, targets) in ours.items():
        model = copy.deepcopy(base)
        variants[label] = (model, targets, apply_method(model, cfg))
    peft, why = _peft()
    if peft is not None:
        LoKrConfig, inject = peft
        model = copy.deepcopy(base)
        for p in model.parameters():
            p.requires_grad_(False)
        model = inject(LoKrConfig(r=rank, alpha=rank, target_modules=["qkv"]), model)
        for p in model.get_classifier().parameters():
            p.requires_grad_(True)
        variants[f"peft LoKr r={rank}"] = (model, "attn.qkv", None)
    for label, cfg in {
        f"lora r={rank} (q,v slices)": LoraConfig(targets=["attn.q", "attn.v"], rank=rank, alpha=float(rank)),
        f"kadaptation n={n} (q,v slices)": KAdaptationConfig(targets=["attn.q", "attn.v"], n=n, bias=True),
    }.items():
        model = copy.deepcopy(base)
        variants[label] = (model, "attn.q,attn.v", apply_method(model, cfg))
    return variants, why


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def bench_training(variants, x, y, repeats: int) -> dict[str, float]:
    steps: dict[str, Callable[[], None]] = {}
    for label, (model, _, _) in variants.items():
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

        def step(model=model, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        steps[label] = step
    return interleaved_median_ms(steps, repeats)


def bench_inference(base: nn.Module, variants, x, repeats: int) -> dict[str, dict[str, float]]:
    """Per adapter: base / unmerged / unmerged+cached / merged forward times (ms)."""
    rows: dict[str, dict[str, float]] = {}
    base.eval()
    for label, (model, _, method) in variants.items():
        if label.startswith("linear"):
            continue
        model.eval()
        merged = copy.deepcopy(model)
        if method is None:  # peft: its LoKr layers merge themselves
            for m in merged.modules():
                if hasattr(m, "merge") and hasattr(m, "lokr_w1"):
                    m.merge()
        else:
            method.merge(merged)
            unloaded = copy.deepcopy(model)
            method.unload(unloaded)  # merged and turned back into a plain timm model: what one deploys

        fns: dict[str, Callable[[], None]] = {}

        def fwd(m):
            def call() -> None:
                with torch.no_grad():
                    m(x)

            return call

        def fwd_cached(m):
            def call() -> None:
                with torch.no_grad(), parametrize.cached():
                    m(x)

            return call

        fns["base"] = fwd(base)
        fns["unmerged"] = fwd(model)
        if method is not None:
            fns["unmerged+cached"] = fwd_cached(model)
        fns["merged"] = fwd(merged)
        if method is not None:
            fns["merged+unloaded"] = fwd(unloaded)
        with torch.no_grad():
            err = (merged(x) - model(x)).abs().max().item()
        rows[label] = {**interleaved_median_ms(fns, repeats), "merge_err": err}
    return rows


def run(key: str, batch: int, repeats: int, rank: int, device: str) -> None:
    title, spec = MODELS[key]
    torch.manual_seed(0)
    base = create_model(spec).to(device)
    width = base.embed_dim
    cfg = model_input_config(base)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg["in_chans"], cfg["img_size"], cfg["img_size"], generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    variants, why = build_variants(base, width, rank)
    print(f"\n== {title}; batch {batch}; {device}, {torch.get_num_threads()} thread(s); median of {repeats}")
    if why:
        print(f"   (peft LoKr skipped: {why})")
    train_ms = bench_training(variants, x, y, repeats)
    lin = train_ms["linear probe"]
    lora = train_ms[f"lora r={rank}"]
    print("\nTraining step (forward + backward + AdamW), ms")
    print(f"{'method':34s} {'targets':14s} {'trainable':>10s} {'ms':>9s} {'x linear':>9s} {'x lora':>7s}")
    for label, (model, targets, _) in variants.items():
        ms = train_ms[label]
        print(f"{label:34s} {targets:14s} {_trainable(model):>10,d} {ms:9.2f} {ms / lin:9.2f} {ms / lora:7.2f}")
    inf = bench_inference(base, variants, x, repeats)
    print("\nInference (eval, no_grad), ms and ratio to base")
    print(
        f"{'adapter':34s} {'base':>8s} {'unmerged':>16s} {'unmerged+cached':>16s} {'merged':>16s} "
        f"{'merged+unloaded':>16s} {'|merged-unm|':>12s}"
    )
    for label, r in inf.items():
        b = r["base"]

        def cell(k: str) -> str:
            return f"{r[k]:7.2f} ({r[k] / b:4.2f}x)" if k in r else f"{'n/a':>16s}"

        print(
            f"{label:34s} {b:8.2f} {cell('unmerged'):>16s} {cell('unmerged+cached'):>16s} {cell('merged'):>16s} "
            f"{cell('merged+unloaded'):>16s} {r['merge_err']:12.1e}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["tiny", "vit-tiny"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rank", type=int, default=4, help="LoRA and LoKr rank")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_line())
    for key in args.models:
        run(key, args.batch, args.repeats, args.rank, args.device)


if __name__ == "__main__":
    main()
