#!/usr/bin/env python
"""Measure how well the bundled backbone transfers, and write the transfer table of ``MODEL_CARD.md``.

For each downstream dataset (default: ``digits``, near transfer; ``animals``, far transfer), each data regime
(5-shot with shot seeds 0, 1, 2; full data with training seeds 0, 1, 2) and each adaptation (linear probe via
``fit_linear_probe``; full fine-tuning via ``fit`` with every parameter trainable), it trains ``petl_vit_tiny`` twice
with the same recipe, the same seeds and a fresh head: once from the bundled pretrained weights (``weights="default"``)
and once from random weights (``weights="random"``; the seed also draws the random backbone). Splits: the library's
default ``SplitSpec()`` (15% val, 25% test, ``split_seed=0``), so every run of a dataset is scored on the same test
images; 5-shot runs draw 5 train and 5 val images per class with ``shot_seed``. Selection is on val, never on test.
A reference row, logistic regression on the raw 16x16 pixels (scikit-learn, same splits), shows what no backbone
gives.

Usage::

    python scripts/transfer_table.py                 # full table, rewrites the table section of MODEL_CARD.md
    python scripts/transfer_table.py --no-card       # print the markdown only
    python scripts/transfer_table.py --weights /tmp/pilot.safetensors --seeds 0 --no-card   # a quick pilot check

Runtime: about 10-15 minutes on 2 CPU threads (full fine-tuning on the 6,000 animal training images dominates).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from petl_analysis.data import SplitSpec, load_dataset  # noqa: E402
from petl_analysis.engine import Recipe, fit  # noqa: E402
from petl_analysis.io import atomic_write_json, atomic_write_text  # noqa: E402
from petl_analysis.models import BUNDLED_MODEL, ModelSpec, load_weights  # noqa: E402
from petl_analysis.task import DataSpec, build_task, fit_linear_probe, prepare_model  # noqa: E402

CARD = REPO / "petl_analysis" / "models" / "MODEL_CARD.md"
START, END = "<!-- transfer-table:start -->", "<!-- transfer-table:end -->"
SHOTS = 5

#: The fixed recipes (identical for random and pretrained weights). Few-shot sets have 50 images, i.e. one step per
#: epoch, so they get more epochs; the full-data recipes are the library's usual 30-epoch AdamW/cosine schedule.
RECIPES: dict[tuple[str, str], Recipe] = {
    ("lp", "5-shot"): Recipe(epochs=200, batch_size=64, lr=1e-2, weight_decay=1e-4, warmup_epochs=1, grad_clip=None),
    ("lp", "full"): Recipe(epochs=50, batch_size=64, lr=1e-2, weight_decay=1e-4, warmup_epochs=1, grad_clip=None),
    ("ft", "5-shot"): Recipe(epochs=100, batch_size=64, lr=1e-3, weight_decay=0.05, warmup_epochs=5,
                             label_smoothing=0.1, grad_clip=1.0),
    ("ft", "full"): Recipe(epochs=30, batch_size=64, lr=1e-3, weight_decay=0.05, warmup_epochs=2,
                           label_smoothing=0.1, grad_clip=1.0),
}
METHOD_NAMES = {"lp": "linear probe", "ft": "full fine-tuning", "pixels": "logistic regression on pixels"}


def split_for(regime: str, seed: int) -> SplitSpec:
    return SplitSpec(shots=SHOTS, shot_seed=seed) if regime == "5-shot" else SplitSpec()


def run_one(dataset: str, regime: str, method: str, weights: str, seed: int, threads: int) -> dict:
    """One training run; returns its test accuracy (at the best-validation epoch) and bookkeeping."""
    torch.set_num_threads(threads)
    data = DataSpec(dataset, split_for(regime, seed))
    ds = load_dataset(dataset)
    if weights in ("default", "random"):
        model = prepare_model(ModelSpec(BUNDLED_MODEL, weights=weights), ds.num_classes, seed=seed)
    else:  # a pilot checkpoint: same seeded fresh head as "default" (a local file would also load a same-shape head)
        model = load_weights(prepare_model(ModelSpec(BUNDLED_MODEL, weights="random"), ds.num_classes, seed=seed),
                             weights, ignore_head=True)
    task = build_task(data, model, ds)
    recipe = RECIPES[(method, regime)]
    if method == "lp":
        result = fit_linear_probe(model, task, recipe, seed=seed, device="cpu")
    else:
        model.requires_grad_(True)
        result = fit(model, task.train, task.val, recipe, test=task.test, seed=seed, device="cpu")
    return {"test_acc": result.test_acc, "val_acc": result.val_acc, "best_epoch": result.best_epoch,
            "n_train": result.n_train, "n_test": result.n_test, "wall_s": round(result.wall_time_s, 2)}


def run_pixels(dataset: str, regime: str, seed: int) -> dict:
    """Reference: scikit-learn logistic regression on the standardised 16x16 pixels (train split only)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ds = load_dataset(dataset)
    model = prepare_model(ModelSpec(BUNDLED_MODEL, weights="random"), ds.num_classes, seed=seed)
    task = build_task(DataSpec(dataset, split_for(regime, seed)), model, ds)
    flat = lambda t: t.tensors[0].flatten(1).numpy()  # noqa: E731
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    clf.fit(flat(task.train), task.train.tensors[1].numpy())
    acc = float((clf.predict(flat(task.test)) == task.test.tensors[1].numpy()).mean())
    return {"test_acc": acc, "n_train": len(task.train), "n_test": len(task.test)}


def _stats(values: list[float]) -> tuple[float, float]:
    pct = [100 * v for v in values]
    return statistics.mean(pct), (statistics.stdev(pct) if len(pct) > 1 else 0.0)


def _cell(values: list[float]) -> str:
    m, s = _stats(values)
    return f"{m:.1f} ± {s:.1f}"


def render_markdown(results: list[dict], datasets: list[str], seeds: list[int], meta: dict) -> str:
    """The transfer table (mean ± std over seeds, in %), with the gap and whether the seed ranges separate."""

    def accs(**key) -> list[float]:
        return [r["test_acc"] for r in results if all(r[k] == v for k, v in key.items())]

    lines = [
        f"Test accuracy (%), mean ± sample std over seeds {', '.join(map(str, seeds))}; same recipe, seeds and splits "
        "for both initialisations. *Δ* = pretrained − random; *separated* = every pretrained seed beats every random "
        "seed.",
        "",
        "| dataset | data | method | random init | pretrained | Δ | separated |",
        "|---|---|---|---|---|---|---|",
    ]
    for ds in datasets:
        for regime in ("5-shot", "full"):
            n_train = next((r["n_train"] for r in results if r["dataset"] == ds and r["regime"] == regime), 0)
            label = f"{regime} ({n_train} train)"
            for method in ("lp", "ft"):
                rnd = accs(dataset=ds, regime=regime, method=method, weights="random")
                pre = accs(dataset=ds, regime=regime, method=method, weights="pretrained")
                if not rnd or not pre:
                    continue
                gap = _stats(pre)[0] - _stats(rnd)[0]
                sep = "yes" if min(pre) > max(rnd) else "no"
                lines.append(f"| {ds} | {label} | {METHOD_NAMES[method]} | {_cell(rnd)} | **{_cell(pre)}** | "
                             f"{gap:+.1f} | {sep} |")
            pix = accs(dataset=ds, regime=regime, method="pixels", weights="none")
            if pix:
                lines.append(f"| {ds} | {label} | *{METHOD_NAMES['pixels']} (reference)* | {_cell(pix)} | | | |")
    lines += ["", "Recipes (``petl_analysis.engine.Recipe``; AdamW, linear warm-up then cosine decay, selection on val):", ""]
    for (method, regime), r in RECIPES.items():
        lines.append(f"- {METHOD_NAMES[method]}, {regime}: epochs {r.epochs}, batch {r.batch_size}, lr {r.lr:g}, "
                     f"weight decay {r.weight_decay:g}, warm-up {r.warmup_epochs:g} epochs, label smoothing "
                     f"{r.label_smoothing:g}, grad clip {r.grad_clip}")
    lines += [
        "",
        f"Produced by `python scripts/transfer_table.py` ({meta['threads']} CPU thread(s), torch {meta['torch']}, "
        f"{meta['wall_s'] / 60:.1f} min; weights `{meta['weights']}`, sha256 `{meta['weights_sha256'][:16]}…`).",
    ]
    return "\n".join(lines)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["digits", "animals"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--regimes", nargs="+", default=["5-shot", "full"], choices=["5-shot", "full"])
    ap.add_argument("--methods", nargs="+", default=["lp", "ft"], choices=["lp", "ft"])
    ap.add_argument("--weights", default="default",
                    help="pretrained weights: 'default' (the bundled file) or a .safetensors path (pilots)")
    ap.add_argument("--no-random", action="store_true", help="skip the random-init runs (pilots comparing weights)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-card", action="store_true", help="print the table; do not rewrite MODEL_CARD.md")
    ap.add_argument("--json", type=Path, default=None, help="also write every run's result to this JSON file")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    from petl_analysis.models import bundled_weights_path

    wpath = bundled_weights_path() if a.weights == "default" else Path(a.weights)
    if wpath is None or not wpath.is_file():
        raise SystemExit(f"no pretrained weights at {wpath}; run scripts/pretrain_tiny_vit.py first")
    inits = ([] if a.no_random else [("random", "random")]) + [("pretrained", a.weights)]

    results: list[dict] = []
    start = time.perf_counter()
    for ds in a.datasets:
        for regime in a.regimes:
            for seed in a.seeds:
                results.append({"dataset": ds, "regime": regime, "method": "pixels", "weights": "none", "seed": seed,
                                **run_pixels(ds, regime, seed)})
                for method in a.methods:
                    for name, weights in inits:
                        r = run_one(ds, regime, method, weights, seed, a.threads)
                        results.append({"dataset": ds, "regime": regime, "method": method, "weights": name,
                                        "seed": seed, **r})
                        print(f"{ds:8s} {regime:6s} {method} {name:10s} seed {seed}: test {100 * r['test_acc']:5.1f}% "
                              f"(val {100 * r['val_acc']:5.1f}%, best epoch {r['best_epoch']}, {r['wall_s']:.1f} s) "
                              f"[{time.perf_counter() - start:.0f} s]", flush=True)
    meta = {"threads": a.threads, "torch": torch.__version__, "wall_s": time.perf_counter() - start,
            "weights": str(wpath.relative_to(REPO)) if wpath.is_relative_to(REPO) else str(wpath),
            "weights_sha256": _sha256(wpath)}
    table = render_markdown(results, a.datasets, a.seeds, meta)
    print("\n" + table)
    if a.json:
        atomic_write_json(a.json, {"meta": meta, "recipes": {f"{m}/{r}": dataclasses.asdict(v)
                                                             for (m, r), v in RECIPES.items()}, "results": results})
    if not a.no_card:
        card = CARD.read_text()
        if START not in card or END not in card:
            raise SystemExit(f"{CARD} lacks the markers {START} / {END}; paste the table above by hand")
        head, rest = card.split(START, 1)
        _, tail = rest.split(END, 1)
        atomic_write_text(CARD, f"{head}{START}\n{table}\n{END}{tail}")
        print(f"\nrewrote the transfer table in {CARD}")


if __name__ == "__main__":
    main()
