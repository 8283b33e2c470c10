#!/usr/bin/env python
"""Validate the intrinsic-dimension probe on a planted task whose answer is known: d90 of the planted submodule ≈ k.

Design (see ``docs/probe_validation.md`` §a):

* A frozen ``petl_vit_tiny`` with random weights (seed 0) and a 10-class random head is the *student* at θ = θ0.
* The *teacher* is the same network with ONE submodule (default ``blocks.1.mlp.fc1``, weight and bias, D = 16,640)
  moved by ``Δ = P[:, :k] c``: ``P`` is the Fastfood projection that :class:`SubspaceModel` builds for that submodule
  with projection seed ``--plant-seed``, and ``c ~ α·N(0, I_k)``. Because Fastfood columns do not depend on d
  (nested subspaces), the student's d-dimensional subspace with the same seed contains Δ exactly when d >= k, and
  only its first d coordinates when d < k. A random subspace of another seed never contains it (d < D).
* Labels: the teacher's argmax on 5,000 real inputs (mnist5k resized to 16x16) through a frozen random head shared
  by teacher and student, scaled to the teacher's feature statistics and with its bias tuned so the ten classes are
  equally frequent (chance agreement ~10%; see :func:`set_teacher_head`).
* The head and everything outside the probed submodule are frozen: accuracy can only come from the subspace. Student
  accuracy = agreement with the teacher on 1,500 held-out inputs; by construction the ceiling is 100%.
* ``α`` is large (|Δ| ≈ 4·|W0|) so that a *partial* change is worth little: keeping only the first 28 of 32
  coordinates of c already drops agreement to about 47% (the "oracle truncation" row printed first).

The probe then trains θ_d for each d on the planted submodule (same projection seed: d90 must be ≈ k), on the same
submodule with another projection seed, and on a submodule that cannot express the change (``blocks.0.attn.proj``).
d90 is estimated with :func:`petl_analysis.probe.d90.estimate_d90` at the absolute target 0.9 (ceiling 1.0) and at
0.9 × direct fine-tuning of the planted submodule (same recipe, lr ``--direct-lr``).

Usage::

    python scripts/validate_planted.py                       # k=32, ~8 min on 1 thread
    python scripts/validate_planted.py --k 64 --dims 16,32,48,64,80,96,128 --out /tmp/planted64.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from petl_analysis.data import load_dataset, to_model_input  # noqa: E402
from petl_analysis.engine import Recipe, evaluate, fit  # noqa: E402
from petl_analysis.models import ModelSpec, create_model, resolve_targets  # noqa: E402
from petl_analysis.probe import SubspaceModel, subspace_size  # noqa: E402
from petl_analysis.probe.d90 import estimate_d90  # noqa: E402
from petl_analysis.probe.projections import make_projection  # noqa: E402

N_TRAIN, N_VAL = 3000, 500  # the rest of the 5,000 inputs (1,500) is the test set


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--k", type=int, default=32, help="dimension of the planted change")
    p.add_argument("--alpha", type=float, default=2.0, help="scale of the planted coordinates c ~ alpha*N(0,1)")
    p.add_argument("--planted", default="blocks.1.mlp.fc1", help="submodule that receives the change")
    p.add_argument("--control", default="blocks.0.attn.proj", help="submodule that cannot express it")
    p.add_argument("--plant-seed", type=int, default=0, help="projection seed used to plant the change")
    p.add_argument("--dims", default="8,16,24,28,32,36,40,48,64", help="d grid for the planted submodule")
    p.add_argument("--control-dims", default="32,128,512,2048,4160", help="d grid for the two controls")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=0.05, help="AdamW lr of theta_d")
    p.add_argument("--direct-lr", type=float, default=1e-3, help="AdamW lr of direct training (baseline)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="/tmp/planted.json")
    return p.parse_args()


def balance_head_bias(logits: torch.Tensor, iters: int = 300) -> torch.Tensor:
    """A per-class offset b such that argmax(logits + b) is close to uniform over the classes."""
    n, c = logits.shape
    b, step = torch.zeros(c), 0.02 * float(logits.std())
    for _ in range(iters):
        counts = torch.bincount((logits + b).argmax(-1), minlength=c).float()
        b -= step * torch.log((counts + 1) / (n / c))
    return b


def set_teacher_head(head: nn.Linear, features: torch.Tensor, gain: float = 3.0, seed: int = 7) -> None:
    """A random head that reads the teacher's pre-logit features at unit scale, with balanced classes.

    timm's random head (std 0.02) on a random ViT's features (which vary little across inputs) gives logits whose
    argmax is one constant class; standardising the features (teacher statistics) and a random N(0, gain²/width)
    readout gives input-dependent, balanced labels. Student and teacher share this frozen head.
    """
    mu, sd = features.mean(0), features.std(0).clamp_min(1e-6)
    r = torch.randn(head.out_features, head.in_features, generator=torch.Generator().manual_seed(seed))
    w = r * gain / math.sqrt(head.in_features) / sd
    b = -w @ mu
    b = b + balance_head_bias(features @ w.T + b)
    head.weight.copy_(w)
    head.bias.copy_(b)


def planted_delta(units, k: int, seed: int, c: torch.Tensor, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Δ for each tensor of ``units``, built independently of SubspaceModel: P[:, :k] c, laid out as the tensors
    of the units in order (weight then bias), each reshaped row-major."""
    D = subspace_size(units)
    flat = make_projection("fastfood", D, k, seed).matrix() @ c  # (D,)
    out, start = {}, 0
    for u in units:
        for t in u.tensors:
            assert t.rows is None, "plant into whole tensors only"
            out[t.param] = flat[start : start + t.numel].view(params[t.param].shape)
            start += t.numel
    assert start == D
    return out


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    torch.manual_seed(0)
    model = create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=10))
    model.requires_grad_(False)
    params = dict(model.named_parameters())

    ds = load_dataset("mnist5k")
    x = to_model_input(ds, 16, 1, (0.5,), (0.5,)).tensors[0]
    planted_units = resolve_targets(model, args.planted)
    D = subspace_size(planted_units)
    c = args.alpha * torch.randn(args.k, generator=torch.Generator().manual_seed(1234))
    delta = planted_delta(planted_units, args.k, args.plant_seed, c, params)

    teacher = copy.deepcopy(model)
    with torch.no_grad():
        for name, dv in delta.items():
            dict(teacher.named_parameters())[name].add_(dv)
        feats = teacher.forward_head(teacher.forward_features(x), pre_logits=True)
        for net in (model, teacher):
            set_teacher_head(net.get_classifier(), feats)
        y = teacher(x).argmax(-1)

    # Cross-check: the library's SubspaceModel with theta_d = (c, 0...) reproduces the teacher exactly.
    check = SubspaceModel(copy.deepcopy(model), planted_units, args.k + 5, projection="fastfood", seed=args.plant_seed)
    with torch.no_grad():
        check.theta_d[: args.k] = c
        layout_ok = bool(torch.equal(check(x).argmax(-1), y))
        max_diff = float((check(x) - teacher(x)).abs().max())

    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    tr, va, te = perm[:N_TRAIN], perm[N_TRAIN : N_TRAIN + N_VAL], perm[N_TRAIN + N_VAL :]
    train, val, test = (TensorDataset(x[i], y[i]) for i in (tr, va, te))
    counts = torch.bincount(y, minlength=10).tolist()

    with torch.no_grad():
        agree0 = float((model(x[te]).argmax(-1) == y[te]).float().mean())
        oracle = {}
        full_flat = torch.cat([delta[t.param].reshape(-1) for u in planted_units for t in u.tensors])
        P = make_projection("fastfood", D, args.k, args.plant_seed).matrix()
        for m in sorted({max(1, args.k // 4), args.k // 2, (2 * args.k) // 3, (3 * args.k) // 4, (7 * args.k) // 8,
                         args.k - 1, args.k}):
            part = P[:, :m] @ c[:m]
            sub = copy.deepcopy(model)
            start = 0
            for u in planted_units:
                for t in u.tensors:
                    dict(sub.named_parameters())[t.param].add_(part[start : start + t.numel].view(params[t.param].shape))
                    start += t.numel
            oracle[m] = float((sub(x[te]).argmax(-1) == y[te]).float().mean())
    print(f"planted {args.planted} (D={D:,}), k={args.k}, alpha={args.alpha}: |Δ|={full_flat.norm():.2f}, "
          f"|W0|={params[planted_units[0].weight.param].norm():.2f}; label counts {counts}")
    print(f"SubspaceModel(θ_d=c) reproduces the teacher: {layout_ok} (max logit diff {max_diff:.2e})")
    print(f"agreement at θ_d=0: {agree0:.3f}; oracle truncation (first m coordinates of c): "
          + ", ".join(f"m={m}: {a:.3f}" for m, a in oracle.items()))

    recipe = Recipe(epochs=args.epochs, batch_size=64, lr=args.lr, weight_decay=0.0, warmup_epochs=1.0)
    direct_recipe = dataclasses.replace(recipe, lr=args.direct_lr)

    def run_subspace(units, d: int, seed: int) -> dict:
        student = copy.deepcopy(model)
        wrapped = SubspaceModel(student, units, d, projection="fastfood", seed=seed)
        assert sum(p.numel() for p in wrapped.parameters() if p.requires_grad) == d  # head frozen: only θ_d trains
        res = fit(wrapped, train, val, recipe, test=test, seed=0)
        return {"d": d, "test_acc": res.test_acc, "val_acc": res.val_acc, "train_loss": res.train_loss[-1],
                "time_s": res.wall_time_s}

    # Direct fine-tuning of the planted submodule (and of the control), same recipe except the lr.
    baselines = {}
    for label, spec in (("planted", args.planted), ("control", args.control)):
        student = copy.deepcopy(model)
        for t in (t for u in resolve_targets(student, spec) for t in u.tensors):
            dict(student.named_parameters())[t.param].requires_grad_(True)
        res = fit(student, train, val, direct_recipe, test=test, seed=0)
        baselines[label] = {"spec": spec, "test_acc": res.test_acc, "trainable": res.trainable["total_incl_head"],
                            "time_s": res.wall_time_s}
        print(f"direct FT of {spec}: test agreement {res.test_acc:.3f} ({res.trainable['total_incl_head']:,} params, "
              f"{res.wall_time_s:.0f} s)")

    control_units = resolve_targets(model, args.control)
    D_control = subspace_size(control_units)
    series = [
        (f"{args.planted}, plant seed {args.plant_seed}", planted_units, args.plant_seed,
         [int(v) for v in args.dims.split(",")]),
        (f"{args.planted}, other seed {args.plant_seed + 1}", planted_units, args.plant_seed + 1,
         [int(v) for v in args.control_dims.split(",") if int(v) <= D]),
        (f"{args.control} (cannot express Δ)", control_units, args.plant_seed,
         [min(int(v), D_control) for v in args.control_dims.split(",")]),
    ]
    results = []
    for label, units, seed, dims in series:
        curve = []
        for d in sorted(set(dims)):
            r = run_subspace(units, d, seed)
            curve.append(r)
            print(f"  {label:45s} d={d:5d}: agreement {r['test_acc']:.3f} (train loss {r['train_loss']:.3f}, "
                  f"{r['time_s']:.0f} s)", flush=True)
        entry = {"label": label, "D": subspace_size(units), "seed": seed, "curve": curve}
        for name, target in (("d90_abs", 0.9), ("d90_ft", 0.9 * baselines["planted"]["test_acc"])):
            est = estimate_d90([r["d"] for r in curve], [[r["test_acc"]] for r in curve], target, n_boot=0)
            entry[name] = {"target": target, "d90": est.d90, "reached": est.reached, "below_min": est.below_min}
        results.append(entry)

    summary = {
        "config": vars(args), "D": D, "label_counts": counts, "agree_at_zero": agree0, "oracle_truncation": oracle,
        "layout_check": layout_ok, "baselines": baselines, "series": results,
        "wall_time_s": time.perf_counter() - t_start,
    }
    Path(args.out).write_text(json.dumps(summary, indent=1))

    print()
    print(f"| subspace | D | d90 (target 0.90) | d90 (0.9 × direct FT = {0.9 * baselines['planted']['test_acc']:.3f}) "
          "| d90 / k |")
    print("|---|---|---|---|---|")
    for e in results:
        fmt = lambda v: "not reached" if not v["reached"] else (f"≤{v['d90']:.0f}" if v["below_min"] else f"{v['d90']:.1f}")  # noqa: E731
        ratio = "-" if not e["d90_abs"]["reached"] else f"{e['d90_abs']['d90'] / args.k:.2f}"
        print(f"| {e['label']} | {e['D']:,} | {fmt(e['d90_abs'])} | {fmt(e['d90_ft'])} | {ratio} |")
    print()
    all_dims = sorted({r["d"] for e in results for r in e["curve"]})
    print("| d | " + " | ".join(e["label"] for e in results) + " |")
    print("|---" * (len(results) + 1) + "|")
    for d in all_dims:
        cells = []
        for e in results:
            hit = [r for r in e["curve"] if r["d"] == d]
            cells.append(f"{hit[0]['test_acc']:.3f}" if hit else "")
        print(f"| {d} | " + " | ".join(cells) + " |")
    print(f"\ntotal {summary['wall_time_s']:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
