"""Subspace training step vs training the same parameters directly, and Fastfood vs dense memory, side by side.

    python benchmarks/bench_subspace.py                          # bundled ViT and ViT-Tiny, ~6 min on 2 cores
    python benchmarks/bench_subspace.py --models tiny --passes 8 --batch 32

For each model the subspace set S is every ``attn`` unit (fused qkv + proj, weights and biases, all blocks). One
step = forward, cross-entropy, backward, AdamW step, with the head trainable in both variants:

- *direct*: the tensors of S trained as ordinary parameters (``requires_grad`` on S and the head only);
- *fastfood d*: ``theta_S = theta0_S + P theta_d`` through :class:`SubspaceModel` (``functional_call``), only
  ``theta_d`` and the head trained, for d in 10^2, 10^3, 10^4, 10^5 (or D when smaller).

Each subspace variant is timed against *direct* in its own run of rounds (one subspace model alive at a time, as
in a probe trial): each round runs a block of consecutive steps of either (as in a training loop, so each keeps
its data warm in cache; the order alternates between rounds), after warm-up. This is repeated over several
passes, each with freshly built subspace models. The table gives median step times and, per variant, the median
over all rounds of its ratio to the direct block of the same round (target: at most 1.15), steadier on a noisy
machine than a ratio of medians. The default batch is the probe recipe's. The memory table gives the projection's fixed
buffers, the work vectors Fastfood keeps between calls, and a dense Gaussian P's buffers (refused above the
library's bound, as ``petl-analyze probe`` would).

Measured while the subspace step was made shorter (2 CPU cores, one-off timings on the bundled ViT; the figures
the docstrings of ``probe/subspace.py`` and ``functional/fastfood.py`` refer to):

- Fastfood work vectors (2026-12-01): five fresh multi-hundred-KiB vectors per training step slowed the model's own
  kernels beside them (gelu 2× in the profiler); reused instead. Two, not three (2026-12-02): in a training step
  each vector touched is a cold read, ~80 µs per 512 KiB.
- Fastfood backward (2026-12-02): a nested autograd Function call cost ~45 µs of overhead per step; the backward
  calls the transpose kernel directly unless a graph is being built.
- theta0 + offset as one autograd node (2026-12-02): forward + backward on the 16 ``attn`` tensors 370 µs written
  per tensor with ``split`` / ``view`` / ``pad`` / ``+``, 251 µs as one node (outside a training step).
- ``functional_call(..., tie_weights=False)`` (2026-12-02): the default tie search cost ~0.5 ms per step (3% of
  the step). Reading each touched tensor through its owner rather than ``get_parameter`` (2026-12-02): the
  attribute walk cost ~15 µs per tensor per step.
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MODELS, interleaved_times, machine_line, round_ratios

from petl_analysis.errors import PetlError
from petl_analysis.models import create_model, model_input_config, resolve_targets
from petl_analysis.probe.probe import default_probe_recipe
from petl_analysis.probe.projections import DEFAULT_MAX_BYTES, format_bytes, make_projection
from petl_analysis.probe.subspace import SubspaceModel, subspace_size

DIMS = (100, 1_000, 10_000, 100_000)
# (passes, rounds per pass, block); ViT-Tiny steps take ~1 s on 2 cores.
_ROUNDS = {"tiny": (4, 10, 5), "vit-tiny": (2, 4, 2)}


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def _head_only(model: nn.Module) -> nn.Module:
    model.requires_grad_(False)
    model.get_classifier().requires_grad_(True)
    return model


def run(key: str, target: str, batch: int, passes: int, repeats: int, block: int, device: str) -> None:
    title, spec = MODELS[key]
    torch.manual_seed(0)
    base = create_model(spec).to(device)
    units = resolve_targets(base, [target])
    D = subspace_size(units)
    cfg = model_input_config(base)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg["in_chans"], cfg["img_size"], cfg["img_size"], generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)

    direct = _head_only(copy.deepcopy(base))
    names = {t.param for u in units for t in u.tensors}
    for name, p in direct.named_parameters():
        if name in names:
            p.requires_grad_(True)
    direct_step = _step(direct, x, y)
    dims = sorted({min(d, D) for d in DIMS})
    # Per variant, its times and direct's in the same rounds, over all passes.
    rounds = {f"fastfood d={d}": {"direct": [], f"fastfood d={d}": []} for d in dims}
    for _ in range(passes):
        for d in dims:
            # One subspace model alive at a time, beside direct, as in a probe trial: with every variant alive at
            # once, each round found the others' projections and optimiser states in cache in its place. A fresh
            # model in every pass: where a model's buffers happen to land moved one pass's ratio by up to 0.1.
            sub = SubspaceModel(_head_only(copy.deepcopy(base)), units, d, projection="fastfood", seed=0).to(device)
            label = f"fastfood d={d}"
            times = interleaved_times({"direct": direct_step, label: _step(sub, x, y)}, repeats, block=block)
            for name, ts in times.items():
                rounds[label][name] += ts
            del sub
            gc.collect()
    all_direct = [t for times in rounds.values() for t in times["direct"]]
    ms = {"direct": statistics.median(all_direct)}
    beside, ratio = {"direct": ms["direct"]}, {"direct": 1.0}
    for label, times in rounds.items():
        ms[label], beside[label] = statistics.median(times[label]), statistics.median(times["direct"])
        ratio[label] = statistics.median(round_ratios(times, "direct")[label])

    print(
        f"\n== {title}; S = {target} of every block, D = {D:,}; batch {batch}; {device}; "
        f"median of {passes} passes x {repeats} rounds of {block} steps"
    )
    print(f"{'variant':22s} {'trainable':>10s} {'step ms':>9s} {'direct ms':>10s} {'x direct':>9s}")
    trainable = {"direct": sum(p.numel() for p in direct.parameters() if p.requires_grad)}
    head = sum(p.numel() for p in direct.get_classifier().parameters())
    for d in dims:
        trainable[f"fastfood d={d}"] = d + head
    for label, t in ms.items():
        print(f"{label:22s} {trainable[label]:>10,d} {t:9.1f} {beside[label]:10.1f} {ratio[label]:9.3f}")
    print("(direct ms: direct's median in the same rounds; x direct: median over rounds of the per-round ratio)")

    print(f"\nProjection buffers for D = {D:,} (dense refused above {format_bytes(DEFAULT_MAX_BYTES)})")
    print(f"{'d':>8s} {'fastfood':>12s} {'+ work':>12s} {'dense':>12s}")
    for d in dims:
        proj = make_projection("fastfood", D, d, 0, device=device)
        theta = torch.zeros(d, device=device, requires_grad=True)
        proj(theta).sum().backward()
        ff, work = proj.memory_bytes(), proj.work_memory_bytes()
        try:
            dense = format_bytes(make_projection("dense", D, d, 0, device=device).memory_bytes())
        except PetlError:
            dense = f"refused ({format_bytes(4 * D * d)})"
        print(f"{d:>8,d} {format_bytes(ff):>12s} {format_bytes(work):>12s} {dense:>12s}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["tiny", "vit-tiny"])
    parser.add_argument("--target", default="attn", help="catalogue spec of the subspace set S (default: attn)")
    parser.add_argument(
        "--batch",
        type=int,
        default=default_probe_recipe().batch_size,
        help="training batch size (default: the probe recipe's, %(default)s)",
    )
    parser.add_argument(
        "--passes",
        type=int,
        default=None,
        help="passes over the d values, each with fresh subspace models (default: 4, 2 on ViT-Tiny)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="rounds per variant and pass (default: 10 on the bundled ViT, 4 on ViT-Tiny)",
    )
    parser.add_argument(
        "--block",
        type=int,
        default=None,
        help="consecutive steps per variant and round, as in a training loop (default: 5, 2 on ViT-Tiny)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_line())
    for key in args.models:
        passes, repeats, block = _ROUNDS[key]
        run(
            key,
            args.target,
            args.batch,
            args.passes or passes,
            args.repeats or repeats,
            args.block or block,
            args.device,
        )


if __name__ == "__main__":
    main()
