"""One study context: the dataset is opened and the template model built once for every stage, the input conversion
is announced once, the stage functions return their artefacts and the study saves them."""

from __future__ import annotations

import logging

import pytest

import petl_analysis.study as study_module
from petl_analysis.data import SplitSpec
from petl_analysis.engine import Recipe
from petl_analysis.models import ModelSpec
from petl_analysis.select import RankedTarget, Ranking
from petl_analysis.study import Study
from petl_analysis.sweep import SweepResult, sweep_plans
from petl_analysis.sweep.sweep import train_plans
from petl_analysis.task import DataSpec

MODEL = ModelSpec("petl_vit_tiny", weights="random", img_size=8, patch_size=4)
DATA = DataSpec("digits", SplitSpec(shots=2))
RECIPE = Recipe(epochs=1, batch_size=64, lr=1e-2)

pytestmark = pytest.mark.usefixtures("single_thread")


def _ranking() -> Ranking:
    entries = [
        RankedTarget(target=t, units=[f"blocks.{b}.{t}" for b in range(4)], D=1, rank=i + 1, score=None)
        for i, t in enumerate(["attn.v", "attn.q"])
    ]
    return Ranking(selector="d90", model=MODEL, data=DATA, entries=entries)


@pytest.fixture
def counted(monkeypatch) -> dict[str, int]:
    """Counts the study's dataset openings and model builds."""
    calls = {"open_dataset": 0, "prepare_model": 0}

    def counting(name, fn):
        def wrapper(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)

        return wrapper

    for name in calls:
        monkeypatch.setattr(study_module, name, counting(name, getattr(study_module, name)))
    return calls


def test_the_study_opens_the_data_and_builds_the_template_once_across_stages(tmp_path, counted, caplog) -> None:
    study = Study(MODEL, DATA, tmp_path)
    with caplog.at_level(logging.INFO, logger="petl_analysis"):
        plans, _skipped, budgets = study.plan([2_000], ["kadaptation"], _ranking(), plans_dir=tmp_path / "plans")
        first = study.sweep(plans[:1], seeds=1, recipe=RECIPE, out=tmp_path / "a.json")
        second = study.sweep(plans[1:2], seeds=1, recipe=RECIPE)
    assert counted == {"open_dataset": 1, "prepare_model": 1}
    assert budgets == [2_000] and len(plans) >= 2
    # digits (8x8) -> the model's 8x8: nothing lost, nothing announced; the record is the study's one conversion.
    assert first.input_conversion is second.input_conversion is study.conversion
    assert not [r for r in caplog.records if "dataset" in r.getMessage()]


def test_with_data_carries_the_opened_dataset_and_the_template_only_when_they_are_the_same(counted) -> None:
    study = Study(MODEL, DATA)
    template = study.template
    full = study.with_data(DataSpec("digits"))
    assert full.template is template and full.dataset is study.dataset
    other_model = study.with_data(DATA, ModelSpec("petl_vit_tiny", weights="random", img_size=16, patch_size=4))
    assert other_model.dataset is study.dataset and other_model.template is not template
    assert counted == {"open_dataset": 1, "prepare_model": 2}


def test_stage_functions_return_the_artefact_and_the_study_saves_it(tmp_path) -> None:
    study = Study(MODEL, DATA, tmp_path)
    plans, _, _ = study.plan([2_000], ["kadaptation"], _ranking())
    result = train_plans(study, plans[:1], seeds=1, recipe=RECIPE)
    assert isinstance(result, SweepResult) and list(tmp_path.iterdir()) == []  # nothing written, no trial log
    saved = sweep_plans(plans[:1], DATA, seeds=1, recipe=RECIPE, out=tmp_path / "sweep.json")
    assert SweepResult.load(tmp_path / "sweep.json").to_dict() == saved.to_dict()
    assert (tmp_path / "sweep.json.trials.jsonl").exists()
    assert [p.run.seeds[0].val_acc for p in saved.points] == [p.run.seeds[0].val_acc for p in result.points]


def test_fit_options_reach_the_workers_outside_the_trial_keys(tmp_path) -> None:
    # --grad-checkpointing (or --compile) changes how a trial runs, not what it trains: the worker gets it and its
    # record says so, and the same study without it finds the trial done (same key, nothing retrained).
    from petl_analysis.io import JsonlLog
    from petl_analysis.trials import read_records

    plans, _, _ = Study(MODEL, DATA).plan([2_000], ["kadaptation"], _ranking())
    out = tmp_path / "sweep.json"
    first = sweep_plans(plans[:1], DATA, seeds=1, recipe=RECIPE, out=out, grad_checkpointing=True)
    (record,) = read_records(JsonlLog(tmp_path / "sweep.json.trials.jsonl"))
    assert record.result["grad_checkpointing"] is True and "compile" not in record.result
    again = sweep_plans(plans[:1], DATA, seeds=1, recipe=RECIPE, out=out)
    assert len(list(read_records(JsonlLog(tmp_path / "sweep.json.trials.jsonl")))) == 1
    assert again.points[0].run.seeds[0].val_acc == first.points[0].run.seeds[0].val_acc
    assert Study(MODEL, DATA, compile=True, grad_checkpointing=False).fit_options() == {"compile": True}
