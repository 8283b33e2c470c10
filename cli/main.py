"""petl-analyze: probe -> select -> plan -> train -> report, on your ViT and data or on the bundled defaults."""

from __future__ import annotations

from typing import Optional

import typer

from ._common import console, handle_errors, print_table, progress_bar, split_list

app = typer.Typer(
    name="petl-analyze",
    help=__doc__,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Options shared by many commands (typer needs one Option object per use, so these are factories).
ModelOpt = lambda: typer.Option("petl_vit_tiny", "--model", "-m", help="timm model name (default: the bundled ViT).")  # noqa: E731
WeightsOpt = lambda: typer.Option(  # noqa: E731
    "default", "--weights", "-w",
    help="'default' (bundled weights for the bundled model, random otherwise), 'random', 'hub' (timm pretrained, "
    "needs network) or a local .safetensors/.pth path.",
)
DatasetOpt = lambda: typer.Option("digits", "--dataset", "-d", help="Built-in dataset name or an image-folder path.")  # noqa: E731
DeviceOpt = lambda: typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")  # noqa: E731
ThreadsOpt = lambda: typer.Option(None, "--threads", help="torch CPU threads (default: torch's choice).")  # noqa: E731


def _setup(threads: Optional[int]) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def _model_spec(model: str, weights: str, img_size: Optional[int] = None, in_chans: Optional[int] = None):
    from petl_analysis.models import ModelSpec

    return ModelSpec(name=model, weights=weights, img_size=img_size, in_chans=in_chans)


@app.command()
@handle_errors
def info(
    model: str = ModelOpt(),
    weights: str = WeightsOpt(),
    img_size: Optional[int] = typer.Option(None, help="Override the model's input size."),
    targets: Optional[str] = typer.Option(None, "--targets", "-t", help="Resolve these target specs only."),
) -> None:
    """Show a model's size and its submodule catalogue (the names every other command accepts)."""
    from petl_analysis.accounting import count_parameters
    from petl_analysis.models import catalogue, create_model, describe_targets, model_input_config, resolve_targets

    net = create_model(_model_spec(model, weights, img_size))
    units = resolve_targets(net, targets) if targets else catalogue(net)
    cfg = model_input_config(net)
    console.print(
        f"[bold]{model}[/] weights={weights}  params={count_parameters(net).model_total:,}  "
        f"input={cfg['in_chans']}x{cfg['img_size']}x{cfg['img_size']}  blocks={len(net.blocks)}"
    )
    print_table(describe_targets(units), title="submodule catalogue")


@app.command()
@handle_errors
def datasets() -> None:
    """List the built-in datasets (all offline, shipped in the package)."""
    from petl_analysis.data import DATASETS, load_dataset

    rows = []
    for name in DATASETS.names():
        kwargs = {"n": 620} if name == "glyphs" else {}
        ds = load_dataset(name, **kwargs)
        rows.append({"name": name, "images": len(ds) if name != "glyphs" else "any (procedural)",
                     "classes": ds.num_classes, "size": "x".join(map(str, ds.images.shape[1:]))})
    print_table(rows, title="built-in datasets")


@app.command("linear-probe")
@handle_errors
def linear_probe(
    model: str = ModelOpt(),
    weights: str = WeightsOpt(),
    dataset: str = DatasetOpt(),
    shots: Optional[int] = typer.Option(None, "--shots", "-k", help="k-shot per class (default: full data)."),
    seeds: int = typer.Option(3, "--seeds", help="Number of seeds (k-shot samples and training seeds 0..n-1)."),
    epochs: int = typer.Option(50, "--epochs"),
    lr: float = typer.Option(1e-2, "--lr"),
    compare_random: bool = typer.Option(False, "--compare-random", help="Also probe the same architecture with random weights."),
    device: str = DeviceOpt(),
    threads: Optional[int] = ThreadsOpt(),
) -> None:
    """Evaluate frozen features: train only a linear head, report val/test accuracy per seed."""
    _setup(threads)
    from petl_analysis.data import SplitSpec, load_dataset
    from petl_analysis.engine import Recipe
    from petl_analysis.task import DataSpec, build_task, fit_linear_probe, prepare_model

    recipe = Recipe(epochs=epochs, lr=lr, weight_decay=0.0)
    ds = load_dataset(dataset)
    variants = [weights] + (["random"] if compare_random and weights != "random" else [])
    rows = []
    with progress_bar("linear probe", total=len(variants) * seeds) as advance:
        for w in variants:
            for seed in range(seeds):
                data = DataSpec(dataset, SplitSpec(shots=shots, shot_seed=seed))
                spec = _model_spec(model, w)
                net = prepare_model(spec, ds.num_classes, seed=seed)
                task = build_task(data, net, dataset=ds)
                res = fit_linear_probe(net, task, recipe, seed=seed, device=device)
                rows.append({"weights": w, "seed": seed, "n_train": res.n_train, "val_acc": res.val_acc,
                             "test_acc": res.test_acc, "trainable": res.trainable["total_incl_head"],
                             "time_s": round(res.wall_time_s, 2)})
                advance(1, f"{w} seed {seed}: test {res.test_acc:.3f}")
    print_table(rows, title=f"linear probe on {dataset} ({'full' if shots is None else f'{shots}-shot'})")


def _data_spec(dataset: str, shots: Optional[int], max_train: Optional[int] = None):
    from petl_analysis.data import SplitSpec
    from petl_analysis.task import DataSpec

    return DataSpec(dataset, SplitSpec(shots=shots, max_train=max_train))


def _trial_progress(advance):
    def on_trial(record: dict, cached: bool) -> None:
        p = record.get("payload", {})
        what = record["kind"] if record["kind"] != "subspace" else f"d={p.get('d')}"
        res = record.get("result") or {}
        acc = res.get("test_acc")
        status = "cached" if cached else (f"acc {acc:.3f}" if acc is not None else record.get("error", "failed"))
        advance(1, f"{what} seed {p.get('seed')}: {status}")

    return on_trial


@app.command()
@handle_errors
def probe(
    model: str = ModelOpt(),
    weights: str = WeightsOpt(),
    dataset: str = DatasetOpt(),
    shots: Optional[int] = typer.Option(None, "--shots", "-k", help="k-shot per class (default: full data)."),
    max_train: Optional[int] = typer.Option(None, "--max-train", help="Cap the full training set (stratified)."),
    targets: Optional[str] = typer.Option(None, "--targets", "-t", help="Comma-separated catalogue specs (default: q,k,v,proj,fc1,fc2,attn,mlp)."),
    per_block: bool = typer.Option(False, "--per-block", help="One subspace per block for each target."),
    dims: Optional[str] = typer.Option(None, "--dims", help="Explicit d grid (e.g. 16,64,256); default: adaptive search."),
    projection: str = typer.Option("fastfood", "--projection", help="fastfood, dense or sparse."),
    threshold: float = typer.Option(0.9, "--threshold", help="d90 threshold in (0, 1]."),
    seeds: int = typer.Option(2, "--seeds"),
    head: str = typer.Option("train", "--head", help="train (linear-probe init, trained jointly) or frozen."),
    said: bool = typer.Option(False, "--said", help="Structure-aware ID: one learned scale per tensor (counted in d)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs per trial (default: the probe recipe's)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate of theta_d (default: the probe recipe's)."),
    out: str = typer.Option("probe.json", "--out", "-o", help="ProbeResult JSON; trials are logged beside it."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Parallel worker processes."),
    device: str = DeviceOpt(),
    threads: Optional[int] = ThreadsOpt(),
) -> None:
    """Measure the local intrinsic dimension (d90) of each target submodule by random-subspace training."""
    _setup(threads)
    import dataclasses

    from petl_analysis.device import resolve_device
    from petl_analysis.probe import ProbeConfig, default_probe_recipe, run_probe

    from ._common import parse_ints

    recipe = default_probe_recipe()
    recipe = dataclasses.replace(recipe, **{k: v for k, v in {"epochs": epochs, "lr": lr}.items() if v is not None})
    config = ProbeConfig(
        targets=split_list(targets) or ProbeConfig().targets,
        per_block=per_block,
        dims=parse_ints(dims, "--dims") or None,
        projection=projection,
        threshold=threshold,
        seeds=seeds,
        head=head,
        said=said,
        recipe=recipe,
    )
    dev = str(resolve_device(device))
    with progress_bar("probe", total=None) as advance:
        result = run_probe(_model_spec(model, weights), _data_spec(dataset, shots, max_train), config, out=out,
                           device=dev, n_jobs=jobs, on_trial=_trial_progress(advance))
    lp, ft = result.baselines["lp"], result.baselines["ft"]
    console.print(f"baselines: linear probe {lp.mean:.3f} ± {lp.std:.3f} ({lp.trainable:,} params), "
                  f"full fine-tuning {ft.mean:.3f} ± {ft.std:.3f} ({ft.trainable:,} params)")
    print_table(result.table(), title=f"local intrinsic dimension (threshold {threshold}, gain-normalised d90 first)")
    console.print(f"{result.trials_total} trials ({result.failed_trials} failed) in {result.wall_time_s:.0f} s -> {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
