"""The sweep compares like with like: every baseline trains as long as the methods from the same head, and plans
that coincide are one result, reported as such."""

from __future__ import annotations

import json

import pytest

from petl_analysis.data import SplitSpec
from petl_analysis.engine import Recipe, loss_still_falling
from petl_analysis.models import ModelSpec
from petl_analysis.report.tables import point_rows
from petl_analysis.report.verdict import outcome, selection_rows, selection_verdict
from petl_analysis.select import RankedTarget, Ranking
from petl_analysis.sweep import run_sweep
from petl_analysis.task import DataSpec
from petl_analysis.train import train_one_seed
from petl_analysis.tuners import config_from_dict

MODEL = ModelSpec("petl_vit_tiny", weights="random")
DATA = DataSpec("digits", SplitSpec(shots=5))
RECIPE = Recipe(epochs=3, batch_size=64, lr=1e-2)


pytestmark = pytest.mark.usefixtures("single_thread")


def test_linear_trains_as_long_as_the_methods_from_the_same_head():
    linear, counts = train_one_seed(MODEL, DATA, config_from_dict({"method": "linear"}), RECIPE, 0)
    bitfit, _ = train_one_seed(MODEL, DATA, config_from_dict({"method": "bitfit"}), RECIPE, 0)
    assert linear.epochs_run == bitfit.epochs_run == RECIPE.epochs
    assert len(linear.train_loss) == len(bitfit.train_loss) == RECIPE.epochs
    assert counts["total_incl_head"] == counts["head"] == 64 * 10 + 10
    # Both start from the same linear-probe head: the first epoch's loss is already that of a trained head.
    assert linear.train_loss[0] == pytest.approx(bitfit.train_loss[0], rel=0.5)


def test_loss_still_falling():
    assert loss_still_falling([1.0 - 0.09 * i for i in range(10)])  # steady descent to the last epoch
    assert not loss_still_falling([2.0, 1.0, 0.6, 0.5, 0.45, 0.42, 0.41, 0.405, 0.404, 0.404])
    # a small loss creeping down by a few percent of itself has stopped: 0.0798 -> 0.0767 after 2.0 -> 0.08
    assert not loss_still_falling([2.0, 0.9, 0.4, 0.2, 0.12, 0.09, 0.0798, 0.0784, 0.0774, 0.0767])
    assert not loss_still_falling([1.0]) and not loss_still_falling([0.5, 0.6])


def _ranking(targets: list[str]) -> Ranking:
    entries = [RankedTarget(target=t, units=[f"blocks.{b}.{t}" for b in range(4)], D=4 * 4160, rank=i + 1, score=None)
               for i, t in enumerate(targets)]
    return Ranking(selector="d90", model=MODEL, data=DATA, entries=entries)


def test_plans_that_coincide_are_trained_once_and_reported_as_the_same(tmp_path):
    # Two targets and a budget large enough for both: the selected and the worst-ranked plans adapt the same units.
    ranking = _ranking(["attn.v", "attn.q"])
    result = run_sweep(MODEL, DATA, [50_000], ["kadaptation"], ranking, seeds=1, recipe=RECIPE,
                       out=tmp_path / "sweep.json")
    by_label = {p.label: p for p in result.points}
    selected, worst = by_label["kadaptation@selected"], by_label["kadaptation@worst"]
    assert selected.run.config == worst.run.config
    assert worst.same_as == "kadaptation@selected@50000" and selected.same_as is None
    log = (tmp_path / "sweep.json.trials.jsonl").read_text().splitlines()
    assert len(log) == len({json.dumps(p.run.config, sort_keys=True) for p in result.points}) < len(result.points)
    rows = point_rows(result, m0=1e5)
    sel_row = next(r for r in rows if r.label == "kadaptation@selected")
    worst_row = next(r for r in rows if r.label == "kadaptation@worst")
    assert outcome(sel_row, worst_row) == "same"
    (row,) = selection_rows(rows, {})
    assert row.vs_worst == "same"
    text = " ".join(selection_verdict([row]))
    assert "the same configuration as (trained once) worst-ranked" in text
    assert "Selection chose exactly the worst-ranked configuration at every budget" in text
