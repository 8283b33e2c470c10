#!/usr/bin/env python
"""Validate the intrinsic-dimension probe on a planted task whose answer is known: d90 of the planted submodule ≈ k.

Why this design (see ``docs/probe_validation.md``, "Planted task"). A planted change only has a *known* intrinsic
dimension if the task depends on the submodule's D parameters through exactly k linear functions of them, as in the
toy of Li et al. (2018): then a generic random d-dimensional subspace of the D parameters can reach the target iff
d >= k, whatever the projection seed. Planting ``Δ = P[:, :k] c`` with the probe's own projection (the previous
version of this script) does not have that property: only the planting seed sees a jump, any other seed sees a
gradual curve, and the known k is not recovered.

The frozen random network (a small custom ``nn.Module``, not a ViT; see :class:`PlantedNet`)::

    x = (x1, x2) ~ N(0, I_16) x N(0, I_16)
    trunk:  g  = tanh(F1 x1) ∈ R^r          h  = U1 g   ∈ R^m       (U1: frozen m×r, rank r)
    side:   g2 = tanh(F2 x2) ∈ R^r          h2 = U2 g2  ∈ R^m
    z = W h + W_side h2                    (W = ``fc.weight``, the PLANTED submodule; W_side = ``side_fc.weight``)
    logits = C (V z) + c                   (V = ``readout``: frozen q×m, reads q directions; head C, c frozen)

Every Linear is bias-free except the head, so the logits depend on W (D = m² = 4,096 numbers) only through the
q×r matrix ``M = V W U1``: k = q·r numbers. The teacher is the same network with W moved by a dense random
``ΔW`` (|ΔW| = 3|W0| in expectation), i.e. a random k-vector ``V ΔW U1`` that θ0 does not know; the other D - k
directions of ΔW are invisible. The head is random with logit scale ``--logit-scale`` (40: a confident teacher,
mean cross-entropy on its own argmax ≈ 0.1, so the hard-label cross-entropy optimum is the teacher itself) and a
bias that makes the ``--classes`` classes equally frequent. Labels = the teacher's argmax; student accuracy =
agreement with the teacher on held-out inputs (ceiling 1.0, chance 1/classes).

* Planted submodule ``fc``: with θ_fc = θ0 + P θ_d the student's M is ``M0 + G θ_d`` with ``G = V P(·) U1`` a
  k×d matrix of rank min(d, k) for a generic P (checked below for every seed), so the teacher is reachable iff
  d >= k. Below k only a d-dimensional slice of the 16..48 relevant numbers can be matched, and with 20 classes a
  partial match is worth little. Expected d90 ≈ k (in practice slightly above: at d = k, G is a square random
  matrix, nearly singular, and the θ_d it needs is long; a finite training budget only gets there reliably from
  about 1.1k-1.3k).
* Control ``side_fc`` (same shape, same D, its output IS read by the readout): it only sees x2, while the change
  is a function of x1, so no value of W_side reproduces the teacher; direct training of it is the control's
  ceiling and d90 (at the planted submodule's target) must be "not reached", even at d = D.
* ``head only``: training C and c directly (the "linear probe" of this network, n_classes·(q+1) parameters) cannot
  express the change either (C M0 has the row space of M0); it is the LP of the gain-normalised threshold.

The measuring instrument is the library's: :class:`~petl_analysis.probe.SubspaceModel` (Fastfood by default) on
:class:`~petl_analysis.models.catalogue.TensorSlice` s of the custom network (the ViT catalogue's
``resolve_targets`` does not apply to it), trained by :func:`~petl_analysis.engine.fit` with the head frozen (only
θ_d trains), with projection seeds 11 and 12 (the planted ΔW uses no projection at all, so no seed is rigged), and
:func:`~petl_analysis.probe.d90.estimate_d90` (isotonic fit in log d, interpolation, bootstrap over seeds) on the
seed-averaged curves. Two targets (:func:`~petl_analysis.probe.d90.threshold_value`):

* classic: 0.9 × FT, FT = direct training of ``fc`` (all D entries, same data, lr ``--direct-lr``);
* gain: LP + 0.9·(FT − LP), LP = the head-only baseline (what is reachable without touching the submodule).

Also printed: the rank of G per seed and d, and the "oracle" agreement of the least-squares θ_d (``G θ_d ≈ ΔM``)
plugged into SubspaceModel, which is what perfect optimisation in M-space would give.

Usage::

    python scripts/validate_planted.py                         # k = 16 and 48: ~62 trainings, ~2 min on 1 thread
    python scripts/validate_planted.py --ks 8 --seeds 11,12,13 --out /tmp/planted8.json
    python scripts/validate_planted.py --projection dense      # another projection kind

Prints a markdown table (d90 per series, d90/k) and the accuracy curves; writes everything to ``--out`` (JSON).
The default run took about 100 s (97 s of it training) on one thread of a loaded 2-core machine. ``--lr``
matters: the θ_d the teacher needs is long near d = k (minimum norm 130-4,200 at d = k, 48-96 at 1.125k, 14-36
from 1.5k on), and with a small lr·steps budget the curve is shifted right (d90 ≈ 2.5k at the library's default
probe lr 1e-2; see the doc), so check that d90 is stable when the lr is raised.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from petl_analysis.engine import Recipe, evaluate, fit
from petl_analysis.models.catalogue import TensorSlice
from petl_analysis.probe import SubspaceModel, make_projection, theta_lr
from petl_analysis.probe.d90 import estimate_d90, threshold_value

PLANTED, CONTROL = "fc.weight", "side_fc.weight"
N_IN = 16  # input size of each branch
#: Planted-submodule grid as multiples of k (dims are rounded and deduplicated).
DIM_FACTORS = (0.5, 0.75, 0.875, 1.0, 1.125, 1.25, 1.5, 2.0, 3.0)


class PlantedNet(nn.Module):
    """The frozen random network of the module docstring. Input: (N, 2·16) = (x1, x2)."""

    def __init__(self, r: int, m: int, q: int, n_classes: int) -> None:
        super().__init__()
        self.feat = nn.Linear(N_IN, r)  # F1 (+ bias, zero): g = tanh(F1 x1)
        self.lift = nn.Linear(r, m, bias=False)  # U1: h lies in an r-dim subspace of R^m
        self.fc = nn.Linear(m, m, bias=False)  # W: the planted submodule
        self.side_feat = nn.Linear(N_IN, r)
        self.side_lift = nn.Linear(r, m, bias=False)
        self.side_fc = nn.Linear(m, m, bias=False)  # W_side: the control (same shape as fc)
        self.readout = nn.Linear(m, q, bias=False)  # V: reads q directions of z
        self.head = nn.Linear(q, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lift(torch.tanh(self.feat(x[:, :N_IN])))
        h2 = self.side_lift(torch.tanh(self.side_feat(x[:, N_IN:])))
        return self.head(self.readout(self.fc(h) + self.side_fc(h2)))

    def get_classifier(self) -> nn.Module:
        return self.head


@dataclass
class PlantedTask:
    """Student at θ0, teacher, data splits and the quantities that define the planted change."""

    k: int
    q: int
    r: int
    student: PlantedNet
    teacher: PlantedNet
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    delta_w: torch.Tensor  # teacher.fc.weight - student.fc.weight (dense, D entries)
    label_counts: list[int]
    teacher_ce: float  # teacher's mean cross-entropy on its own argmax labels


def _balance_bias(logits: torch.Tensor, iters: int = 500) -> torch.Tensor:
    """Per-class offset b such that argmax(logits + b) is close to uniform over the classes."""
    n, c = logits.shape
    b, step = torch.zeros(c), 0.02 * float(logits.std())
    for _ in range(iters):
        counts = torch.bincount((logits + b).argmax(-1), minlength=c).float()
        b -= step * torch.log((counts + 1) / (n / c))
    return b


def build_task(
    k: int,
    q: int = 4,
    m: int = 64,
    n_classes: int = 20,
    logit_scale: float = 40.0,
    alpha: float = 3.0,
    n_train: int = 4000,
    n_val: int = 1000,
    n_test: int = 2000,
    seed: int = 0,
) -> PlantedTask:
    """The planted task with k = q·r (``k`` must be a multiple of ``q``); everything is drawn from ``seed``."""
    if k % q:
        raise ValueError(f"k={k} must be a multiple of q={q} (k = q·r)")
    r = k // q
    gen = torch.Generator().manual_seed(seed)
    net = PlantedNet(r, m, q, n_classes)
    with torch.no_grad():
        for lin in (net.feat, net.side_feat):  # pre-activations ~ N(0, 1): tanh in its non-linear range
            lin.weight.normal_(0, 1 / math.sqrt(N_IN), generator=gen)
            lin.bias.zero_()
        for lin in (net.lift, net.side_lift, net.fc, net.side_fc, net.readout):
            lin.weight.normal_(0, 1 / math.sqrt(lin.in_features), generator=gen)
    net.requires_grad_(False)
    x = torch.randn(n_train + n_val + n_test, 2 * N_IN, generator=gen)
    delta_w = alpha * torch.randn(m, m, generator=gen) / math.sqrt(m)

    teacher = copy.deepcopy(net)
    with torch.no_grad():
        teacher.fc.weight.add_(delta_w)
        teacher.head.weight.zero_()
        teacher.head.bias.zero_()
        feats = teacher.readout(
            teacher.fc(teacher.lift(torch.tanh(teacher.feat(x[:, :N_IN]))))
            + teacher.side_fc(teacher.side_lift(torch.tanh(teacher.side_feat(x[:, N_IN:]))))
        )
        mu, sd = feats.mean(0), feats.std(0)
        w = torch.randn(n_classes, q, generator=gen) * logit_scale / math.sqrt(q) / sd  # logits' std ≈ logit_scale
        b = -w @ mu
        b = b + _balance_bias(feats @ w.T + b)
        for model in (net, teacher):  # the head is shared and frozen
            model.head.weight.copy_(w)
            model.head.bias.copy_(b)
        logits = teacher(x)
        y = logits.argmax(-1)
        teacher_ce = float(nn.functional.cross_entropy(logits, y))
    splits = (slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None))
    train, val, test = (TensorDataset(x[s], y[s]) for s in splits)
    return PlantedTask(
        k, q, r, net, teacher, train, val, test, delta_w, torch.bincount(y, minlength=n_classes).tolist(), teacher_ce
    )


def slices_of(model: nn.Module, param: str) -> list[TensorSlice]:
    """The whole tensor ``param`` as the subspace's only slice."""
    return [TensorSlice(param, None, tuple(dict(model.named_parameters())[param].shape))]


def relevant_map(task: PlantedTask, projection: str, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G, ΔM)``: G (k×d) maps θ_d to the change of M = V W U1 (row-major), ΔM is the teacher's change."""
    V, U = task.student.readout.weight.double(), task.student.lift.weight.double()
    D = task.delta_w.numel()
    P = make_projection(projection, D, d, seed).matrix().double()  # (D, d), the same P SubspaceModel builds
    m = task.delta_w.shape[0]
    G = torch.einsum("qa,abj,br->qrj", V, P.T.reshape(d, m, m).permute(1, 2, 0), U).reshape(-1, d)
    return G, (V @ task.delta_w.double() @ U).reshape(-1)


def invariance_check(task: PlantedTask, seed: int = 99) -> float:
    """Max |logit change| when fc.weight moves by a large random ΔW with V ΔW U1 = 0 (should be ~1e-5)."""
    V, U = task.student.readout.weight, task.student.lift.weight
    g = torch.Generator().manual_seed(seed)
    dw = 3 * torch.randn(task.delta_w.shape, generator=g) / math.sqrt(task.delta_w.shape[0])
    pv = V.T @ torch.linalg.solve(V @ V.T, V)  # projector onto row space of V (output side)
    pu = U @ torch.linalg.solve(U.T @ U, U.T)  # projector onto the column space of U1 (input side)
    dw = dw - pv @ dw @ pu  # remove the visible part: V dw U1 = 0
    moved = copy.deepcopy(task.student)
    with torch.no_grad():
        moved.fc.weight.add_(dw)
        x = task.test.tensors[0]
        return float((moved(x) - task.student(x)).abs().max())


def oracle(task: PlantedTask, projection: str, d: int, seed: int) -> dict:
    """Rank of G, and agreement of SubspaceModel at the least-squares θ_d (perfect optimisation in M-space)."""
    G, dM = relevant_map(task, projection, d, seed)
    sv = torch.linalg.svdvals(G)
    rank = int((sv > sv[0] * 1e-8).sum())
    theta = torch.linalg.lstsq(G, dM.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    wrapped = SubspaceModel(copy.deepcopy(task.student), slices_of(task.student, PLANTED), d, projection, seed)
    with torch.no_grad():
        wrapped.theta_d.copy_(theta.float())
    acc, _ = evaluate(wrapped, task.test)
    return {
        "rank": rank,
        "sigma_min": float(sv[-1]),
        "theta_norm": float(theta.norm()),
        "residual": float((G @ theta - dM).norm() / dM.norm()),
        "agreement": acc,
    }


def train_subspace(
    task: PlantedTask, param: str, d: int, seed: int, recipe: Recipe, projection: str, lr_scaling: str = "constant"
) -> dict:
    """One probe trial: θ_d (only) trained on the teacher's labels; val and test agreement at the best-val epoch.

    ``lr_scaling`` as in the probe (:func:`~petl_analysis.probe.config.theta_lr`): ``recipe.lr`` at every d, or
    ``recipe.lr / sqrt(d)`` (``recipe.lr`` is then the weight-space step length)."""
    wrapped = SubspaceModel(copy.deepcopy(task.student), slices_of(task.student, param), d, projection, seed)
    n_train = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    assert n_train == d, f"only theta_d may train, got {n_train} trainable numbers for d={d}"
    lr = theta_lr(recipe.lr, d, lr_scaling)
    res = fit(wrapped, task.train, task.val, dataclasses.replace(recipe, lr=lr), test=task.test, seed=seed)
    return {
        "d": d,
        "seed": seed,
        "lr": lr,
        "val_acc": res.val_acc,
        "test_acc": res.test_acc,
        "train_loss": res.train_loss[-1],
        "time_s": res.wall_time_s,
    }


def train_direct(task: PlantedTask, params: list[str], recipe: Recipe) -> dict:
    """Direct training of the given tensors (all their entries), everything else frozen."""
    model = copy.deepcopy(task.student)
    named = dict(model.named_parameters())
    for p in params:
        named[p].requires_grad_(True)
    res = fit(model, task.train, task.val, recipe, test=task.test, seed=0)
    return {
        "params": params,
        "val_acc": res.val_acc,
        "test_acc": res.test_acc,
        "train_loss": res.train_loss[-1],
        "trainable": res.trainable["total_incl_head"],
        "time_s": res.wall_time_s,
    }


def d90_of(curve: list[dict], target: float, n_boot: int) -> dict:
    """estimate_d90 on {d: [validation agreement per seed]} (decisions read validation, never test)."""
    by_d: dict[int, list[float]] = {}
    for row in curve:
        by_d.setdefault(row["d"], []).append(row["val_acc"])
    est = estimate_d90(None, dict(sorted(by_d.items())), target, n_boot=n_boot)
    return {
        "target": target,
        "d90": est.value,
        "ci_low": est.ci_low,
        "ci_high": est.ci_high,
        "reached": est.reached,
        "below_min": est.below_min,
        "mean": dict(zip(est.fit.curve.dims, est.fit.curve.mean)),
    }


def planted_dims(k: int, D: int) -> list[int]:
    return sorted({min(D, max(1, round(f * k))) for f in DIM_FACTORS})


def control_dims(k: int, D: int) -> list[int]:
    return sorted({min(D, k * 4**i) for i in range(6) if k * 4**i < D} | {D})


def run(
    ks: list[int],
    seeds: list[int],
    recipe: Recipe,
    direct_recipe: Recipe,
    projection: str = "fastfood",
    q: int = 4,
    n_boot: int = 200,
    log=None,
    control: bool = True,
    task_kw: dict | None = None,
    lr_scaling: str = "constant",
) -> dict:
    """The whole validation for every k; returns the JSON-ready summary (see ``main`` for the printout)."""
    log = log or (lambda msg: print(msg, flush=True))
    out = {
        "ks": ks,
        "seeds": seeds,
        "projection": projection,
        "q": q,
        "lr_scaling": lr_scaling,
        "recipe": vars(recipe),
        "direct_recipe": vars(direct_recipe),
        "tasks": [],
    }
    for k in ks:
        task = build_task(k, q=q, **(task_kw or {}))
        D = task.delta_w.numel()
        entry: dict = {
            "k": k,
            "q": q,
            "r": task.r,
            "D": D,
            "label_counts": task.label_counts,
            "teacher_ce": task.teacher_ce,
            "invariance_max_logit_change": invariance_check(task),
        }
        entry["agree_at_theta0"] = evaluate(task.student, task.test)[0]
        log(
            f"k={k} (q={q} x r={task.r}), D={D:,}: teacher CE on its labels {task.teacher_ce:.3f}, classes "
            f"{min(task.label_counts)}-{max(task.label_counts)} per class; agreement at θ0 "
            f"{entry['agree_at_theta0']:.3f}; moving fc.weight in the D-k invisible directions changes logits by "
            f"{entry['invariance_max_logit_change']:.1e}"
        )
        dims = planted_dims(k, D)
        entry["oracle"] = {str(s): {str(d): oracle(task, projection, d, s) for d in dims} for s in seeds}
        for s in seeds:
            o = entry["oracle"][str(s)]
            log(
                f"  seed {s}: rank G = "
                + ", ".join(f"{d}:{o[str(d)]['rank']}" for d in dims)
                + "; least-squares θ_d agreement "
                + ", ".join(f"{d}:{o[str(d)]['agreement']:.3f}" for d in dims)
            )
        base = {
            "planted_ft": train_direct(task, [PLANTED], direct_recipe),
            "head_only": train_direct(task, ["head.weight", "head.bias"], direct_recipe),
        }
        if control:
            base["control_ft"] = train_direct(task, [CONTROL], direct_recipe)
        for name, b in base.items():
            log(
                f"  direct {name}: agreement val {b['val_acc']:.3f}, test {b['test_acc']:.3f} ({b['trainable']:,} "
                f"params, {b['time_s']:.1f} s)"
            )
        entry["baselines"] = base
        ft, lp = base["planted_ft"]["val_acc"], base["head_only"]["val_acc"]
        targets = {"classic": threshold_value(lp, ft, 0.9, "classic"), "gain": threshold_value(lp, ft, 0.9, "gain")}
        entry["targets"] = targets
        series = [("fc (planted)", PLANTED, dims)]
        if control:
            series.append(("side_fc (control)", CONTROL, control_dims(k, D)))
        entry["series"] = []
        for label, param, grid in series:
            curve = []
            for d in grid:
                for s in seeds:
                    row = train_subspace(task, param, d, s, recipe, projection, lr_scaling)
                    curve.append(row)
                log(
                    f"  {label:18s} d={d:5d}: val agreement "
                    + ", ".join(f"{r['val_acc']:.3f}" for r in curve if r["d"] == d)
                    + f" (seeds {seeds})"
                )
            e = {
                "label": label,
                "param": param,
                "D": D,
                "curve": curve,
                "d90": {name: d90_of(curve, t, n_boot) for name, t in targets.items()},
                "d90_per_seed": {
                    str(s): d90_of([r for r in curve if r["seed"] == s], targets["classic"], 0)["d90"] for s in seeds
                },
            }
            entry["series"].append(e)
        out["tasks"].append(entry)
    return out


def _fmt(v: dict) -> str:
    if not v["reached"]:
        return "not reached"
    s = f"≤{v['d90']:.0f}" if v["below_min"] else f"{v['d90']:.1f}"
    if v.get("ci_low") is not None:
        hi = "∞" if not math.isfinite(v["ci_high"]) else f"{v['ci_high']:.1f}"
        s += f" [{v['ci_low']:.1f}, {hi}]"
    return s


def report(summary: dict) -> str:
    """Markdown tables of the summary."""
    lines = [
        (
            "| k | series | D | FT (direct, this tensor) | LP (head only) | d90 classic (target) "
            "| d90 gain (target) | d90/k (classic) | d90 per seed (classic) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in summary["tasks"]:
        b = t["baselines"]
        for e in t["series"]:
            c, g = e["d90"]["classic"], e["d90"]["gain"]
            ratio = f"{c['d90'] / t['k']:.2f}" if c["reached"] else "-"
            per_seed = ", ".join("n.r." if v is None else f"{v:.1f}" for v in e["d90_per_seed"].values())
            ft = b["planted_ft"] if e["param"] == PLANTED else b.get("control_ft", {"val_acc": float("nan")})
            lines.append(
                f"| {t['k']} | {e['label']} | {e['D']:,} | {ft['val_acc']:.3f} | "
                f"{b['head_only']['val_acc']:.3f} | {_fmt(c)} ({c['target']:.3f}) | {_fmt(g)} "
                f"({g['target']:.3f}) | {ratio} | {per_seed} |"
            )
    for t in summary["tasks"]:
        seeds = summary["seeds"]
        lines += [
            "",
            (
                f"k = {t['k']}: agreement with the teacher (validation; test mean beside it), per "
                f"projection seed {seeds}; "
                f"'oracle' = least-squares θ_d (seed {seeds[0]}), rank = rank of G (seed {seeds[0]}); "
                f"θ0: {t['agree_at_theta0']:.3f}"
            ),
            "",
            "| series | d | d/k | lr | val agreement per seed | val mean | test mean | oracle | rank G |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        o = t["oracle"][str(seeds[0])]
        for e in t["series"]:
            for d in sorted({r["d"] for r in e["curve"]}):
                rows = [r for r in e["curve"] if r["d"] == d]
                accs, tests = [r["val_acc"] for r in rows], [r["test_acc"] for r in rows]
                orc = o.get(str(d)) if e["param"] == PLANTED else None
                lines.append(
                    f"| {e['label']} | {d} | {d / t['k']:.3g} | {rows[0]['lr']:.3g} | "
                    + ", ".join(f"{a:.3f}" for a in accs)
                    + f" | {sum(accs) / len(accs):.3f} | {sum(tests) / len(tests):.3f} | "
                    + (f"{orc['agreement']:.3f} | {orc['rank']}" if orc else " | ")
                    + " |"
                )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ks", default="16,48", help="planted dimensions k (multiples of --q)")
    p.add_argument("--q", type=int, default=4, help="readout directions; k = q·r")
    p.add_argument("--seeds", default="11,12", help="projection (and training) seeds")
    p.add_argument("--projection", default="fastfood", help="projection kind (fastfood, dense, sparse, grouping)")
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--logit-scale", type=float, default=40.0, help="std of the teacher's logits (confidence)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument(
        "--lr", type=float, default=0.3, help="AdamW lr of theta_d (the step length with --lr-scaling sqrt)"
    )
    p.add_argument(
        "--lr-scaling",
        default="constant",
        choices=["constant", "sqrt"],
        help="theta_d's lr against d, as in the probe: --lr at every d, or --lr / sqrt(d)",
    )
    p.add_argument("--direct-lr", type=float, default=1e-2, help="AdamW lr of direct training (baselines)")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for the d90 CI")
    p.add_argument("--no-control", action="store_true", help="skip the side_fc control series")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="/tmp/planted.json")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    recipe = Recipe(epochs=args.epochs, batch_size=64, lr=args.lr, weight_decay=0.0, warmup_epochs=1.0)
    direct = Recipe(epochs=args.epochs, batch_size=64, lr=args.direct_lr, weight_decay=0.0, warmup_epochs=1.0)
    summary = run(
        [int(v) for v in args.ks.split(",")],
        [int(v) for v in args.seeds.split(",")],
        recipe,
        direct,
        args.projection,
        q=args.q,
        n_boot=args.n_boot,
        control=not args.no_control,
        task_kw={"n_classes": args.classes, "logit_scale": args.logit_scale},
        lr_scaling=args.lr_scaling,
    )
    summary["config"] = vars(args)
    summary["wall_time_s"] = time.perf_counter() - t0
    Path(args.out).write_text(json.dumps(summary, indent=1, allow_nan=True))
    print()
    print(report(summary))
    print(f"\ntotal {summary['wall_time_s']:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
