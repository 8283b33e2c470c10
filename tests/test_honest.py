"""Honest measurement: no decision of probe -> select -> plan reads the test split.

Every test label is changed (shifted to the next class) after the split is made, so the train and validation images
and labels are exactly the same as in the reference run; only what test accuracy would say differs. The d90s, the
d grids the adaptive search chose, ``ranking.json`` and the plan files must come out bit-for-bit the same.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

import petl_analysis.task as task_module
from petl_analysis.data import SplitSpec
from petl_analysis.models import ModelSpec
from petl_analysis.plan import plan_for_budget
from petl_analysis.probe import ProbeConfig, default_probe_recipe, run_probe
from petl_analysis.probe import trial as probe_module
from petl_analysis.select import run_select
from petl_analysis.task import DataSpec, prepare_model

MODEL = ModelSpec("petl_vit_tiny", weights="random")
DATA = DataSpec("digits", SplitSpec(max_train=100, val_shots=10))
BUDGETS = (2_000, 8_000)


def _study(tmp_path, name: str) -> dict[str, object]:
    """probe (adaptive grid, 2 seeds) -> select (d90 + proxies) -> plans; what each artefact holds, as JSON."""
    probe_module._prepared.cache_clear()  # the worker cache keys on specs, not on labels
    recipe = dataclasses.replace(default_probe_recipe(), epochs=2, eval_batch_size=1024)
    config = ProbeConfig(
        targets=["blocks.0.attn.v", "blocks.3.mlp.fc2"],
        seeds=2,
        d_min=4,
        points_per_decade=1,
        max_d=100,
        max_refinements=1,
        recipe=recipe,
    )
    out = tmp_path / name
    out.mkdir()
    probe = run_probe(MODEL, DATA, config, out=out / "probe.json")
    ranking = run_select(probe, ["rgn", "fisher", "random"], source="probe.json")
    ranking.save(out / "ranking.json")
    net = prepare_model(MODEL, 10)
    plans = {b: plan_for_budget(ranking, net, b, model_spec=MODEL, source="ranking.json").to_dict() for b in BUDGETS}
    saved = json.loads((out / "probe.json").read_text())
    return {
        "d90": [
            {k: t[k] for k in ("target", "dims", "val_per_seed", "lr", "d90", "d90_classic")} for t in saved["targets"]
        ],
        "baselines_val": {k: b["val_per_seed"] for k, b in saved["baselines"].items()},
        "test": [t["test_per_seed"] for t in saved["targets"]],
        "ranking": (out / "ranking.json").read_text(),
        "plans": json.dumps(plans, sort_keys=True),
    }


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("honest")
    reference = _study(tmp, "reference")
    real_make_splits = task_module.make_splits

    def shifted_test_labels(ds, spec):
        splits = real_make_splits(ds, spec)
        test = dataclasses.replace(splits.test, labels=(splits.test.labels + 1) % ds.num_classes)
        return dataclasses.replace(splits, test=test)

    mp = pytest.MonkeyPatch()
    mp.setattr(task_module, "make_splits", shifted_test_labels)
    try:
        changed = _study(tmp, "changed")
    finally:
        mp.undo()
        probe_module._prepared.cache_clear()
    return reference, changed


def test_changing_every_test_label_changes_test_accuracy(both_runs):
    reference, changed = both_runs
    assert reference["test"] != changed["test"]  # the patch reached the trials: the test below can fail


def test_changing_every_test_label_leaves_every_decision_unchanged(both_runs):
    reference, changed = both_runs
    assert changed["d90"] == reference["d90"]
    assert changed["baselines_val"] == reference["baselines_val"]
    assert changed["ranking"] == reference["ranking"]
    assert changed["plans"] == reference["plans"]
