"""Synthetic artefacts for tests (no training)."""

from __future__ import annotations

from petl_analysis.data import SplitSpec
from petl_analysis.models import ModelSpec
from petl_analysis.probe import D90, Baseline, ProbeConfig, ProbeResult, TargetResult
from petl_analysis.task import DataSpec

TARGETS = {  # label -> (d90, reached, ci)
    "attn.v": (40.0, True, (25.0, 60.0)),
    "attn.q": (55.0, True, (35.0, 90.0)),
    "mlp.fc1": (400.0, True, (300.0, 700.0)),
    "attn.proj": (None, False, (None, None)),
}


def synthetic_probe(model_units: dict[str, list[str]] | None = None) -> ProbeResult:
    units = model_units or {label: [f"blocks.{b}.{label}" for b in range(4)] for label in TARGETS}
    targets = []
    for label, (d90, reached, ci) in TARGETS.items():
        dims = [4, 16, 64, 256, 1024]
        acc = [0.5, 0.6, 0.7, 0.8, 0.85] if reached else [0.5, 0.52, 0.55, 0.56, 0.57]
        d = D90(
            threshold_acc=0.8,
            threshold_per_seed=[0.8, 0.8],
            value=d90,
            ci_low=ci[0],
            ci_high=ci[1] if ci[1] is not None else float("inf"),
            reached=reached,
            below_min=False,
            reached_fraction=1.0 if reached else 0.0,
            n_seeds=2,
        )
        targets.append(
            TargetResult(
                label,
                units[label],
                4160 * 4,
                dims,
                val_mean=acc,
                val_std=[0.01] * 5,
                val_per_seed=[[a, a] for a in acc],
                test_mean=acc,
                test_per_seed=[[a, a] for a in acc],
                lr=[1e-2] * 5,
                fitted=acc,
                d90=d,
                d90_classic=d,
                trials=10,
                failed_trials=0,
                wall_time_s=12.0,
            )
        )
    return ProbeResult(
        model=ModelSpec("petl_vit_tiny", weights="random"),
        data=DataSpec("digits", SplitSpec()),
        config=ProbeConfig(targets=list(TARGETS)),
        baselines={
            "lp": Baseline.from_seeds([0.5, 0.5], [0.5, 0.5], 650),
            "head": Baseline.from_seeds([0.5, 0.5], [0.5, 0.5], 650),
            "ft": Baseline.from_seeds([0.9, 0.9], [0.9, 0.9], 202826),
        },
        targets=targets,
        trials_total=44,
        failed_trials=0,
        wall_time_s=1.0,
    )


def below_grid_probe(all_below: bool, lp: float = 0.9, ft: float = 0.88) -> ProbeResult:
    """Two targets reached at the smallest d tried (d90 <= 4); with ``all_below=False`` a third one is not."""
    targets = []
    for i, label in enumerate(("attn.v", "mlp.fc1", "attn.q")):
        below = all_below or i < 2
        acc = [0.9, 0.91, 0.92] if below else [0.5, 0.6, 0.7]
        d = D90(
            threshold_acc=0.89,
            threshold_per_seed=[0.89],
            value=4.0 if below else None,
            ci_low=None,
            ci_high=None,
            reached=below,
            below_min=below,
            reached_fraction=1.0 if below else 0.0,
            n_seeds=1,
        )
        targets.append(
            TargetResult(
                label,
                [f"blocks.0.{label}"],
                1000,
                [4, 16, 64],
                val_mean=acc,
                val_std=[0.01] * 3,
                val_per_seed=[[a] for a in acc],
                test_mean=acc,
                test_per_seed=[[a] for a in acc],
                lr=[0.5, 0.25, 0.125],
                fitted=acc,
                d90=d,
                d90_classic=d,
                trials=3,
                failed_trials=0,
                wall_time_s=1.0,
            )
        )
    return ProbeResult(
        model=ModelSpec("petl_vit_tiny", weights="random"),
        data=DataSpec("digits", SplitSpec(shots=10)),
        config=ProbeConfig(targets=["attn.v", "mlp.fc1", "attn.q"], seeds=1),
        baselines={
            "lp": Baseline.from_seeds([lp], [lp], 650),
            "head": Baseline.from_seeds([lp], [lp], 650),
            "ft": Baseline.from_seeds([ft], [ft], 202826),
        },
        targets=targets,
        trials_total=11,
        failed_trials=0,
        wall_time_s=1.0,
    )


def without_times(obj):
    """``obj`` (a JSON-like artefact dict) without wall times, for comparing two runs of the same study."""
    if isinstance(obj, dict):
        return {k: without_times(v) for k, v in obj.items() if not k.endswith("time_s")}
    if isinstance(obj, list):
        return [without_times(v) for v in obj]
    return obj


def run_cli(args: list[str], cwd) -> tuple[int, str]:
    """Invoke ``petl-analyze ARGS`` in-process from folder ``cwd``: (exit code, output)."""
    import os

    from typer.testing import CliRunner

    from petl_analysis.cli.main import app

    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        os.chdir(old)
    return result.exit_code, result.output
