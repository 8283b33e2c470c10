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

``--profile dinov2-s14`` measures the DINOv2-S/14 backbone instead (``vit_small_patch14_dinov2``, ``--weights
dinov2-s14``; needs ``pip install 'petl-analysis[dinov2]'``) and rewrites the table of ``MODEL_CARD_DINOV2_S14.md``.
It runs the grid of :data:`PROFILES` (per method: a k-shot regime, image sizes and datasets chosen to fit about an
hour on one CPU thread), writes every finished run to ``--json`` at once and, with ``--resume``, skips the runs that
file already holds::

    nice -n 5 python scripts/transfer_table.py --profile dinov2-s14 --threads 1 \\
        --json petl_analysis/models/transfer_dinov2_s14.json --resume
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

from petl_analysis.data import SplitSpec, load_dataset
from petl_analysis.engine import Recipe, fit
from petl_analysis.io import atomic_write_json, atomic_write_text
from petl_analysis.models import BUNDLED_MODEL, ModelSpec, load_weights
from petl_analysis.models.dinov2 import MODEL_NAME as DINO_MODEL
from petl_analysis.models.dinov2 import SOURCE_NAME as DINO_WEIGHTS
from petl_analysis.task import DataSpec, build_task, fit_linear_probe, prepare_model

CARD = REPO / "petl_analysis" / "models" / "MODEL_CARD.md"
START, END = "<!-- transfer-table:start -->", "<!-- transfer-table:end -->"
SHOTS = 5

#: The fixed recipes (identical for random and pretrained weights). Few-shot sets have 50 images, i.e. one step per
#: epoch, so they get more epochs; the full-data recipes are the library's usual 30-epoch AdamW/cosine schedule.
RECIPES: dict[tuple[str, str], Recipe] = {
    ("lp", "5-shot"): Recipe(epochs=200, batch_size=64, lr=1e-2, weight_decay=1e-4, warmup_epochs=1, grad_clip=None),
    ("lp", "full"): Recipe(epochs=50, batch_size=64, lr=1e-2, weight_decay=1e-4, warmup_epochs=1, grad_clip=None),
    ("ft", "5-shot"): Recipe(
        epochs=100, batch_size=64, lr=1e-3, weight_decay=0.05, warmup_epochs=5, label_smoothing=0.1, grad_clip=1.0
    ),
    ("ft", "full"): Recipe(
        epochs=30, batch_size=64, lr=1e-3, weight_decay=0.05, warmup_epochs=2, label_smoothing=0.1, grad_clip=1.0
    ),
}
METHOD_NAMES = {"lp": "linear probe", "ft": "full fine-tuning", "pixels": "logistic regression on pixels"}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One group of runs of a profile: a method on a k-shot regime at one img size, on some datasets."""

    method: str
    regime: str
    img_size: int
    datasets: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Profile:
    """A backbone to measure and the grid that fits its cost (the bundled model keeps the default grid above)."""

    model: str
    weights: str
    card: Path
    cells: tuple[Cell, ...]
    recipes: dict[tuple[str, str], Recipe]
    val_shots: dict[str, int]  # regime -> per-class val images
    test_fraction: dict[str, float]  # dataset -> test fraction (smaller test sets where extraction is costly)


#: DINOv2-S/14 on one CPU thread: a forward pass is ~10 ms/image at 56 px and ~40 ms at 112 px, a batch-16 training
#: step ~0.5 s and ~1.8 s, on an idle core; on the shared machine about three times that. Linear probes (one forward
#: pass over the data) get 50 images per class (at 112 px on digits only); full fine-tuning gets 10 per class at
#: 56 px. Fine-tuning uses lr 1e-4 for the backbone and 1e-3 for the new head, for both initialisations alike.
PROFILES: dict[str, Profile] = {
    DINO_WEIGHTS: Profile(
        model=DINO_MODEL,
        weights=DINO_WEIGHTS,
        card=REPO / "petl_analysis" / "models" / "MODEL_CARD_DINOV2_S14.md",
        cells=(
            Cell("lp", "50-shot", 56, ("digits", "animals")),
            Cell("ft", "10-shot", 56, ("digits", "animals")),
            Cell("lp", "50-shot", 112, ("digits",)),
        ),
        recipes={
            ("lp", "50-shot"): Recipe(
                epochs=50,
                batch_size=64,
                lr=1e-2,
                weight_decay=1e-4,
                warmup_epochs=1,
                grad_clip=None,
                eval_batch_size=128,
            ),
            ("ft", "10-shot"): Recipe(
                epochs=10,
                batch_size=16,
                lr=1e-4,
                head_lr=1e-3,
                weight_decay=0.05,
                warmup_epochs=1,
                label_smoothing=0.1,
                grad_clip=1.0,
                eval_batch_size=128,
            ),
        },
        val_shots={"50-shot": 20, "10-shot": 10},
        test_fraction={"animals": 0.1},
    ),
}


def shots_of(regime: str) -> int | None:
    return None if regime == "full" else int(regime.removesuffix("-shot"))


def split_for(regime: str, seed: int, profile: Profile | None = None, dataset: str = "") -> SplitSpec:
    if profile is None:
        return SplitSpec(shots=SHOTS, shot_seed=seed) if regime == "5-shot" else SplitSpec()
    return SplitSpec(
        shots=shots_of(regime),
        shot_seed=seed,
        val_shots=profile.val_shots.get(regime),
        test_fraction=profile.test_fraction.get(dataset, SplitSpec().test_fraction),
    )


def run_one(
    dataset: str,
    regime: str,
    method: str,
    weights: str,
    seed: int,
    threads: int,
    profile: Profile | None = None,
    img_size: int | None = None,
) -> dict:
    """One training run; returns its test accuracy (at the best-validation epoch) and bookkeeping."""
    torch.set_num_threads(threads)
    data = DataSpec(dataset, split_for(regime, seed, profile, dataset))
    ds = load_dataset(dataset)
    if profile is not None:
        model = prepare_model(ModelSpec(profile.model, weights=weights, img_size=img_size), ds.num_classes, seed=seed)
    elif weights in ("default", "random"):
        model = prepare_model(ModelSpec(BUNDLED_MODEL, weights=weights), ds.num_classes, seed=seed)
    else:  # a pilot checkpoint: same seeded fresh head as "default" (a local file would also load a same-shape head)
        model = load_weights(
            prepare_model(ModelSpec(BUNDLED_MODEL, weights="random"), ds.num_classes, seed=seed),
            weights,
            ignore_head=True,
        )
    task = build_task(data, model, ds)
    recipe = (profile.recipes if profile is not None else RECIPES)[(method, regime)]
    if method == "lp":
        result = fit_linear_probe(model, task, recipe, seed=seed, device="cpu")
    else:
        model.requires_grad_(True)
        result = fit(model, task.train, task.val, recipe, test=task.test, seed=seed, device="cpu")
    return {
        "test_acc": result.test_acc,
        "val_acc": result.val_acc,
        "best_epoch": result.best_epoch,
        "n_train": result.n_train,
        "n_test": result.n_test,
        "wall_s": round(result.wall_time_s, 2),
    }


def run_pixels(
    dataset: str, regime: str, seed: int, profile: Profile | None = None, img_size: int | None = None
) -> dict:
    """Reference: scikit-learn logistic regression on the standardised pixels the model sees (train split only)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ds = load_dataset(dataset)
    spec = (
        ModelSpec(profile.model, weights="random", img_size=img_size)
        if profile
        else ModelSpec(BUNDLED_MODEL, weights="random")
    )
    model = prepare_model(spec, ds.num_classes, seed=seed)
    task = build_task(DataSpec(dataset, split_for(regime, seed, profile, dataset)), model, ds)
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
                lines.append(
                    f"| {ds} | {label} | {METHOD_NAMES[method]} | {_cell(rnd)} | **{_cell(pre)}** | "
                    f"{gap:+.1f} | {sep} |"
                )
            pix = accs(dataset=ds, regime=regime, method="pixels", weights="none")
            if pix:
                lines.append(f"| {ds} | {label} | *{METHOD_NAMES['pixels']} (reference)* | {_cell(pix)} | | | |")
    lines += [
        "",
        "Recipes (``petl_analysis.engine.Recipe``; AdamW, linear warm-up then cosine decay, selection on val):",
        "",
    ]
    for (method, regime), r in RECIPES.items():
        lines.append(
            f"- {METHOD_NAMES[method]}, {regime}: epochs {r.epochs}, batch {r.batch_size}, lr {r.lr:g}, "
            f"weight decay {r.weight_decay:g}, warm-up {r.warmup_epochs:g} epochs, label smoothing "
            f"{r.label_smoothing:g}, grad clip {r.grad_clip}"
        )
    lines += [
        "",
        f"Produced by `python scripts/transfer_table.py` ({meta['threads']} CPU thread(s), torch {meta['torch']}, "
        f"{meta['wall_s'] / 60:.1f} min; weights `{meta['weights']}`, sha256 `{meta['weights_sha256'][:16]}…`).",
    ]
    return "\n".join(lines)


def render_profile_markdown(results: list[dict], profile: Profile, seeds: list[int], meta: dict) -> str:
    """The table of a :class:`Profile` run: one row per (dataset, regime, img size, method)."""

    def accs(**key) -> list[float]:
        return [r["test_acc"] for r in results if all(r[k] == v for k, v in key.items())]

    lines = [
        f"Test accuracy (%), mean ± sample std over seeds {', '.join(map(str, seeds))} (the seed draws the k-shot "
        "train/val images, the head and, for random init, the backbone); the same recipe, seeds and splits for both "
        "initialisations; each run scored on test at its best-validation epoch. *Δ* = pretrained − random; "
        "*separated* = every pretrained seed beats every random seed.",
        "",
        "| dataset | data | img | method | random init | pretrained | Δ | separated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in profile.cells:
        for ds in cell.datasets:
            key = dict(dataset=ds, regime=cell.regime, img_size=cell.img_size)
            done = [r for r in results if all(r.get(k) == v for k, v in key.items())]
            if not done:
                continue
            label = f"{cell.regime} ({done[0]['n_train']} train, {done[0]['n_test']} test)"
            rnd, pre = (
                accs(**key, method=cell.method, weights="random"),
                accs(**key, method=cell.method, weights="pretrained"),
            )
            if rnd and pre:
                gap = _stats(pre)[0] - _stats(rnd)[0]
                sep = "yes" if min(pre) > max(rnd) else "no"
                lines.append(
                    f"| {ds} | {label} | {cell.img_size} px | {METHOD_NAMES[cell.method]} | {_cell(rnd)} | "
                    f"**{_cell(pre)}** | {gap:+.1f} | {sep} |"
                )
            pix = accs(**key, method="pixels", weights="none")
            if pix and cell.method == "lp":
                lines.append(
                    f"| {ds} | {label} | {cell.img_size} px | *{METHOD_NAMES['pixels']} (reference)* | "
                    f"{_cell(pix)} | | | |"
                )
    lines += [
        "",
        "Recipes (``petl_analysis.engine.Recipe``; AdamW, linear warm-up then cosine decay, selection on val):",
        "",
    ]
    for (method, regime), r in profile.recipes.items():
        lines.append(
            f"- {METHOD_NAMES[method]}, {regime} ({profile.val_shots[regime]} val images per class): epochs "
            f"{r.epochs}, batch {r.batch_size}, lr {r.lr:g} (head {r.head_lr or r.lr:g}), weight decay "
            f"{r.weight_decay:g}, warm-up {r.warmup_epochs:g} epochs, label smoothing {r.label_smoothing:g}, "
            f"grad clip {r.grad_clip}"
        )
    fractions = ", ".join(f"{d} {f:g}" for d, f in profile.test_fraction.items())
    lines += [
        "",
        f"Splits: the library's `SplitSpec` (split seed 0; test fraction 0.25, {fractions}). Produced by "
        f"`python scripts/transfer_table.py --profile {profile.weights}` ({meta['threads']} CPU thread(s), torch "
        f"{meta['torch']}, {meta['wall_s'] / 60:.1f} min of runs; ONNX sha256 `{meta['weights_sha256'][:16]}…`); "
        f"every run is in `{meta['json']}`.",
    ]
    return "\n".join(lines)


def main_profile(
    profile: Profile, seeds: list[int], threads: int, json_path: Path | None, resume: bool, no_card: bool
) -> None:
    """Run ``profile``'s grid (random and pretrained, every seed), saving each run as it finishes."""
    from petl_analysis.io import read_json
    from petl_analysis.models.dinov2 import dinov2_state_dict

    _, info = dinov2_state_dict()  # converts (or reads the cache) once, before the timed runs
    results: list[dict] = []
    if resume and json_path is not None and json_path.is_file():
        results = read_json(json_path, what="transfer table results")["results"]
    done = {(r["dataset"], r["regime"], r["img_size"], r["method"], r["weights"], r["seed"]) for r in results}
    prior_s = sum(r.get("wall_s", 0.0) for r in results)
    start = time.perf_counter()

    def save() -> dict:
        meta = {
            "threads": threads,
            "torch": torch.__version__,
            "model": profile.model,
            "weights": profile.weights,
            "weights_sha256": info["sha256"],
            "wall_s": prior_s + time.perf_counter() - start,
            "json": str(json_path.relative_to(REPO))
            if json_path and json_path.is_relative_to(REPO)
            else str(json_path),
        }
        if json_path is not None:
            atomic_write_json(
                json_path,
                {
                    "meta": meta,
                    "recipes": {f"{m}/{r}": dataclasses.asdict(v) for (m, r), v in profile.recipes.items()},
                    "results": results,
                },
            )
        return meta

    for cell in profile.cells:
        for ds in cell.datasets:
            for seed in seeds:
                runs = (
                    [("pixels", "none", None)]
                    if cell.method == "lp" and cell.img_size == min(c.img_size for c in profile.cells)
                    else []
                )
                runs += [(cell.method, "random", "random"), (cell.method, "pretrained", profile.weights)]
                for method, name, weights in runs:
                    if (ds, cell.regime, cell.img_size, method, name, seed) in done:
                        continue
                    t0 = time.perf_counter()
                    if method == "pixels":
                        r = run_pixels(ds, cell.regime, seed, profile, cell.img_size)
                        r["val_acc"], r["best_epoch"] = None, None
                    else:
                        r = run_one(ds, cell.regime, method, weights, seed, threads, profile, cell.img_size)
                    r["wall_s"] = round(time.perf_counter() - t0, 2)
                    results.append(
                        {
                            "dataset": ds,
                            "regime": cell.regime,
                            "img_size": cell.img_size,
                            "method": method,
                            "weights": name,
                            "seed": seed,
                            **r,
                        }
                    )
                    save()
                    val = "-" if r["val_acc"] is None else f"{100 * r['val_acc']:5.1f}%"
                    print(
                        f"{ds:8s} {cell.regime:8s} {cell.img_size:3d}px {method:6s} {name:10s} seed {seed}: test "
                        f"{100 * r['test_acc']:5.1f}% (val {val}, best epoch {r['best_epoch']}, "
                        f"{r['wall_s']:.1f} s) [{time.perf_counter() - start:.0f} s]",
                        flush=True,
                    )
    table = render_profile_markdown(results, profile, seeds, save())
    print("\n" + table)
    if not no_card:
        _rewrite_card(profile.card, table)


def _rewrite_card(card_path: Path, table: str) -> None:
    card = card_path.read_text()
    if START not in card or END not in card:
        raise SystemExit(f"{card_path} lacks the markers {START} / {END}; paste the table above by hand")
    head, rest = card.split(START, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(card_path, f"{head}{START}\n{table}\n{END}{tail}")
    print(f"\nrewrote the transfer table in {card_path}")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["digits", "animals"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--regimes", nargs="+", default=["5-shot", "full"], choices=["5-shot", "full"])
    ap.add_argument("--methods", nargs="+", default=["lp", "ft"], choices=["lp", "ft"])
    ap.add_argument(
        "--weights",
        default="default",
        help="pretrained weights: 'default' (the bundled file) or a .safetensors path (pilots)",
    )
    ap.add_argument("--no-random", action="store_true", help="skip the random-init runs (pilots comparing weights)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-card", action="store_true", help="print the table; do not rewrite MODEL_CARD.md")
    ap.add_argument("--json", type=Path, default=None, help="also write every run's result to this JSON file")
    ap.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help="measure another backbone on its own grid (see PROFILES) instead of the bundled model",
    )
    ap.add_argument("--resume", action="store_true", help="with --profile: skip the runs --json already holds")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.profile is not None:
        return main_profile(PROFILES[a.profile], a.seeds, a.threads, a.json, a.resume, a.no_card)

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
                results.append(
                    {
                        "dataset": ds,
                        "regime": regime,
                        "method": "pixels",
                        "weights": "none",
                        "seed": seed,
                        **run_pixels(ds, regime, seed),
                    }
                )
                for method in a.methods:
                    for name, weights in inits:
                        r = run_one(ds, regime, method, weights, seed, a.threads)
                        results.append(
                            {"dataset": ds, "regime": regime, "method": method, "weights": name, "seed": seed, **r}
                        )
                        print(
                            f"{ds:8s} {regime:6s} {method} {name:10s} seed {seed}: test {100 * r['test_acc']:5.1f}% "
                            f"(val {100 * r['val_acc']:5.1f}%, best epoch {r['best_epoch']}, {r['wall_s']:.1f} s) "
                            f"[{time.perf_counter() - start:.0f} s]",
                            flush=True,
                        )
    meta = {
        "threads": a.threads,
        "torch": torch.__version__,
        "wall_s": time.perf_counter() - start,
        "weights": str(wpath.relative_to(REPO)) if wpath.is_relative_to(REPO) else str(wpath),
        "weights_sha256": _sha256(wpath),
    }
    table = render_markdown(results, a.datasets, a.seeds, meta)
    print("\n" + table)
    if a.json:
        atomic_write_json(
            a.json,
            {
                "meta": meta,
                "recipes": {f"{m}/{r}": dataclasses.asdict(v) for (m, r), v in RECIPES.items()},
                "results": results,
            },
        )
    if not a.no_card:
        _rewrite_card(CARD, table)


if __name__ == "__main__":
    main()
