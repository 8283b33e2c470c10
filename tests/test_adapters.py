"""Adapters as outputs: saved by train and sweep, canonical names, refused on the wrong base, old folders migrate."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from petl_analysis.data import SplitSpec, open_dataset
from petl_analysis.engine import Recipe
from petl_analysis.engine.train import evaluate
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec
from petl_analysis.plan import Plan
from petl_analysis.sweep import sweep as sweep_module
from petl_analysis.sweep import sweep_plans
from petl_analysis.task import DataSpec, build_task, prepare_model
from petl_analysis.train import train_one_seed
from petl_analysis.tuners import (
    ADAPTER_FILE,
    ADAPTER_RECORD_FILE,
    KAdaptationConfig,
    LoraConfig,
    apply_method,
    load_adapter,
    read_adapter_record,
    save_adapter,
)

MODEL = ModelSpec("petl_vit_tiny", weights="random")
DATA = DataSpec("digits", SplitSpec(shots=5))
RECIPE = Recipe(epochs=2, batch_size=64, lr=1e-2)


def _trained(tmp_path, config=None, seed=0):
    folder = tmp_path / f"adapter{seed}"
    run, _ = train_one_seed(MODEL, DATA, config or LoraConfig(rank=2), RECIPE, seed, adapter_dir=folder)
    return run, folder


def test_a_trained_adapter_loads_onto_a_fresh_model_and_scores_its_validation_accuracy(tmp_path, single_thread):
    run, folder = _trained(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [ADAPTER_RECORD_FILE, ADAPTER_FILE]  # not peft's names
    record = read_adapter_record(folder)
    assert record.base.num_classes == 10 and record.base.model.name == "petl_vit_tiny"
    assert record.seed == 0 and record.val_acc == run.val_acc
    header = json.loads((folder / ADAPTER_RECORD_FILE).read_text())
    assert (header["schema"], header["version"]) == ("petl-adapter", 3) and "format" not in header
    keys = set(load_file(str(folder / ADAPTER_FILE)))
    assert "blocks.0.attn.q.lora.lora_A" in keys and not any("parametrizations" in k for k in keys)

    fresh = prepare_model(MODEL, 10, seed=0)  # the base the seed trained on (random weights are seeded)
    base_out = fresh(torch.zeros(2, 1, 16, 16)).detach()
    load_adapter(fresh, folder)
    assert not torch.allclose(fresh(torch.zeros(2, 1, 16, 16)), base_out)
    task = build_task(DATA.for_seed(0), fresh, dataset=open_dataset("digits"))
    assert evaluate(fresh, task.val)[0] == pytest.approx(run.val_acc, abs=1e-9)  # the trained model, reloaded


def test_loading_onto_another_base_is_a_one_line_error(tmp_path, single_thread):
    _, folder = _trained(tmp_path)
    with pytest.raises(PetlError, match=r"trained on petl_vit_tiny \(weights random\).*weights differ"):
        load_adapter(prepare_model(MODEL, 10, seed=1), folder)  # other random weights
    with pytest.raises(PetlError, match="10-class head; this model has 3 classes"):
        load_adapter(prepare_model(MODEL, 3, seed=0), folder)
    load_adapter(prepare_model(MODEL, 10, seed=1), folder, check_base=False)  # transplanting on purpose


def test_canonical_names_round_trip_with_shared_rules_and_bias_shifts(tmp_path):
    model = prepare_model(MODEL, 4)
    method = apply_method(model, KAdaptationConfig(targets=["attn.q", "attn.v", "mlp.fc1"], bias=True))
    for p in method.adapter_state_dict(model).values():
        torch.nn.init.normal_(p)
    save_adapter(model, method, tmp_path / "a")
    keys = set(load_file(str(tmp_path / "a" / ADAPTER_FILE)))
    assert {
        "blocks.0.attn.q.kadaptation.u",
        "blocks.0.attn.q.kadaptation.rules.a",
        "blocks.0.attn.qkv.bias.kadaptation_bias64.b",
    } <= keys
    fresh = prepare_model(MODEL, 4)
    load_adapter(fresh, tmp_path / "a")
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))


def test_an_adapter_folder_of_format_version_1_still_loads(tmp_path):
    model = prepare_model(MODEL, 4)
    method = apply_method(model, LoraConfig(rank=2))
    for p in method.adapter_state_dict(model).values():
        torch.nn.init.normal_(p)
    old = tmp_path / "old"  # what petl-analysis wrote before: peft's file names, parametrize keys, no base record
    old.mkdir()
    save_file(
        {k: v.contiguous() for k, v in method.adapter_state_dict(model).items()},
        str(old / "adapter_model.safetensors"),
    )
    (old / "adapter_config.json").write_text(
        json.dumps(
            {"format": "petl-adapter", "format_version": 1, "tool_version": "0.1.0", "config": method.config.to_dict()}
        )
    )
    fresh = prepare_model(MODEL, 4)
    load_adapter(fresh, old)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))
    (old / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(PetlError, match="is a peft adapter, not a petl-analysis one"):
        load_adapter(prepare_model(MODEL, 4), old)


def test_an_adapter_record_of_format_version_2_still_loads(tmp_path):
    """Version 2 wrote the header as format / format_version; the fields were the same."""
    model = prepare_model(MODEL, 4)
    method = apply_method(model, LoraConfig(rank=2))
    folder = save_adapter(model, method, tmp_path / "a", model_spec=MODEL, extra={"seed": 3})
    current = read_adapter_record(folder)
    now = json.loads((folder / ADAPTER_RECORD_FILE).read_text())
    body = {k: v for k, v in now.items() if k not in ("schema", "version", "tool_version")}
    (folder / ADAPTER_RECORD_FILE).write_text(
        json.dumps({"format": "petl-adapter", "format_version": 2, "tool_version": "0.1.0", **body})
    )
    assert read_adapter_record(folder) == current and current.seed == 3 and current.base.model == MODEL
    load_adapter(prepare_model(MODEL, 4), folder)
    (folder / ADAPTER_RECORD_FILE).write_text(json.dumps({"format": "petl-adapter", "format_version": 4, **body}))
    with pytest.raises(PetlError, match="petl-adapter schema version 4 is not supported; expected version 3"):
        load_adapter(prepare_model(MODEL, 4), folder)


def _study_plans(net) -> list[Plan]:
    from petl_analysis.plan import plan_study
    from petl_analysis.plan.budgets import resolve_budgets

    budgets = resolve_budgets([3000], net, methods=["linear", "lora"])
    plans, _ = plan_study(MODEL, net, budgets, ["linear", "lora"], None)
    return [p.for_dataset("digits") for p in plans]


def test_a_sweep_saves_each_points_best_seed_and_a_resumed_sweep_neither_retrains_nor_rewrites(
    tmp_path, monkeypatch, single_thread
):
    plans = _study_plans(prepare_model(MODEL, 10))
    out = tmp_path / "sweep.json"
    result = sweep_plans(plans, DATA, seeds=2, recipe=RECIPE, out=out)
    folder = tmp_path / "sweep.json.adapters"
    assert not (folder / "trials").exists()  # only the best seeds are kept
    for point in result.points:
        record = read_adapter_record(tmp_path / point.adapter)
        best = max(point.run.seeds, key=lambda s: (s.val_acc, -s.seed))
        assert record.seed == best.seed and record.val_acc == best.val_acc
        assert (
            (tmp_path / point.adapter).name == f"plan_{point.budget}_lora-{point.plan.variant}"
            if point.budget
            else (tmp_path / point.adapter).name == "plan_linear"
        )
    stamp = {p.adapter: (tmp_path / p.adapter / ADAPTER_FILE).stat().st_mtime_ns for p in result.points}

    def no_training(trial):
        raise AssertionError("a logged trial was trained again")

    monkeypatch.setattr(sweep_module, "sweep_trial", no_training)
    again = sweep_plans(plans, DATA, seeds=2, recipe=RECIPE, out=out)
    assert [p.adapter for p in again.points] == [p.adapter for p in result.points]
    assert stamp == {p.adapter: (tmp_path / p.adapter / ADAPTER_FILE).stat().st_mtime_ns for p in again.points}

    # a log from before adapters were saved: resumed without training, the points say they have none
    shutil.rmtree(folder)
    third = sweep_plans(plans, DATA, seeds=2, recipe=RECIPE, out=out)
    assert all(p.adapter is None for p in third.points)
