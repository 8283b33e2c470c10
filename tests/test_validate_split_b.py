"""The validation protocol's independence: no decision of validate reads split B.

The probe and the selectors decide on split A; the judge (oracle, regret) trains and scores on split B. Every
validation label of split B is changed (shifted to the next class) after the split is made, so split B's training
images and labels, and all of split A, are exactly the same as in the reference run; only what split B's validation
accuracy says differs. Every selector's order, the plans each selector makes (with their shares of the orders its
ties allow), the reference plan of the regret and the split-A scores it is chosen on must come out the same, while
split B's scores change (so the patch reached the judge and the test can fail).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from helpers import synthetic_probe

import petl_analysis.task as task_module
from petl_analysis.data import SplitSpec
from petl_analysis.engine import Recipe
from petl_analysis.task import DataSpec
from petl_analysis.validate import run_validate

#: Trained enough that the plans' scores differ (the reference is then chosen, not tie-broken).
RECIPE = Recipe(epochs=3, batch_size=16, lr=0.2, head_lr=1e-2, eval_batch_size=1024, epoch_selection="last")


def _validate() -> dict[str, object]:
    probe = dataclasses.replace(
        synthetic_probe(), n_val=60, data=DataSpec("digits", SplitSpec(max_train=60, val_shots=6, part="A"))
    )
    v = run_validate(
        probe, selectors=("d90", "fisher"), methods=("kadaptation",), seeds=1, budgets=[2_000], recipe=RECIPE
    )
    config = {str(i): json.dumps(p.config, sort_keys=True) for i, p in enumerate(v.plans)}
    return {
        "orders": {(a.selector, a.method): a.order for a in v.agreement},
        "selector plans": {
            (r.budget, r.selector): {config[i]: w for i, w in r.plan_shares.items()}
            for r in v.regrets
            if r.selector != "oracle"
        },  # the oracle's order is the judge's
        "reference": {p.budget: config[str(i)] for i, p in enumerate(v.plans) if p.reference},
        "split A scores": {config[str(i)]: p.a_val_per_seed for i, p in enumerate(v.plans)},
        "split B scores": ([e.val_per_seed for e in v.oracle], [p.val_per_seed for p in v.plans]),
    }


@pytest.fixture(scope="module")
def both_runs():
    reference = _validate()
    real_make_splits = task_module.make_splits

    def shifted_b_val_labels(ds, spec):
        splits = real_make_splits(ds, spec)
        if spec.part != "B":
            return splits
        val = dataclasses.replace(splits.val, labels=(splits.val.labels + 1) % ds.num_classes)
        return dataclasses.replace(splits, val=val)

    mp = pytest.MonkeyPatch()
    mp.setattr(task_module, "make_splits", shifted_b_val_labels)
    try:
        changed = _validate()
    finally:
        mp.undo()
    return reference, changed


def test_changing_split_b_validation_labels_changes_split_b_scores(both_runs):
    reference, changed = both_runs
    assert reference["split B scores"] != changed["split B scores"]  # the patch reached the judge


def test_changing_split_b_validation_labels_leaves_every_decision_unchanged(both_runs):
    reference, changed = both_runs
    assert len(set(map(tuple, reference["split A scores"].values()))) > 1  # the reference is chosen, not tie-broken
    for what in ("orders", "selector plans", "reference", "split A scores"):
        assert changed[what] == reference[what], what


def _regret_with(b_scores):
    """The regret stage on the synthetic probe's sets at 2k, with made-up split-B scores per plan (``b_scores``:
    plan index -> score) and fixed split-A scores: on the tiny model the trained plans score almost alike, so this
    is where the reference's choice is put under a split-B change that reverses the plans' order."""
    from petl_analysis.models import ModelSpec
    from petl_analysis.study import Study
    from petl_analysis.validate.run import Scored, regret_stage, selector_rankings

    probe = synthetic_probe()
    sets = {t.target: list(t.units) for t in probe.targets}
    study = Study(ModelSpec("petl_vit_tiny", weights="random"), DataSpec("digits", SplitSpec(part="B")))
    planners = selector_rankings(study, probe, sets, ("d90",), n_batches=1)

    def fit(plans):
        return [
            Scored([b_scores(i), b_scores(i) + 0.01], [0.0, 0.0], [0.5 + 0.1 * i, 0.5 + 0.1 * i], [])
            for i in range(len(plans))
        ]

    plans, regrets, _ = regret_stage(study, fit, planners, sets, [2_000], "kadaptation", [])
    return plans, regrets


def test_regret_reference_ignores_split_b_scores():
    first, first_regrets = _regret_with(lambda i: 0.9 - 0.1 * i)
    reversed_b, reversed_regrets = _regret_with(lambda i: 0.5 + 0.1 * i)  # the split-B order of the plans reversed
    assert len(first) > 2
    assert [p.reference for p in first] == [p.reference for p in reversed_b]  # chosen on split A only
    assert [r.plan_shares for r in first_regrets] == [r.plan_shares for r in reversed_regrets]
    assert [r.diff_per_seed for r in first_regrets] != [r.diff_per_seed for r in reversed_regrets]  # B is scored
