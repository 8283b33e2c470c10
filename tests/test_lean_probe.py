"""The lean probe (``ProbeConfig.search="lean"``), the ``direct`` selector and the 2025-26 proxies.

The search logic is checked on a fixed task with planted curves (a fake trial whose accuracy follows a known d90 per
set, so the full adaptive probe and the lean race can both run in a second); the proxies on the bundled tiny ViT."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from petl_analysis.data import SplitSpec
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec
from petl_analysis.probe import ProbeConfig, default_probe_recipe, run_probe
from petl_analysis.probe import search as probe_module
from petl_analysis.select import PROBE_SELECTORS
from petl_analysis.select.ranking import rank_correlations
from petl_analysis.select.selectors import effective_rank
from petl_analysis.stale import used_keys
from petl_analysis.task import DataSpec
from petl_analysis.trials import open_trial_log, read_records

TARGETS = ["attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2"]
#: the planted d90 of each set (None: the set never reaches the bar, even at d = D)
PLANTED = {"attn.q": 50, "attn.k": 700, "attn.v": 6000, "attn.proj": None, "mlp.fc1": 200, "mlp.fc2": None}
FLOOR, CEILING, N_VAL = 0.50, 0.90, 500


def _planted_accuracy(units: list[str], d: int, seed: int) -> float:
    kind = ".".join(units[0].split(".")[2:])  # blocks.0.attn.q -> attn.q
    d90 = PLANTED[kind]
    share = 0.9 * (d / d90) ** 0.3 if d90 else 0.75 * min(1.0, d / 60_000) ** 0.3
    noise = 0.002 * (1 if (seed + d) % 2 else -1)  # a fixed, seed-dependent wobble
    return FLOOR + (CEILING - FLOOR) * min(share, 1.0) + noise


def _fake(trial) -> dict:
    p = trial.payload
    base = {"lp": FLOOR - 0.01, "head": FLOOR, "ft": CEILING}
    acc = (
        base[trial.kind] + 0.003 * p["seed"]
        if trial.kind in base
        else _planted_accuracy(p["units"], p["d"], p["seed"])
    )
    return {
        "val_acc": acc,
        "test_acc": 1.0 - acc,  # nothing may read test
        "last_test_acc": 1.0 - acc,
        "best_epoch": 1,
        "val_curve": [acc],
        "train_loss": [1.0],
        "trainable": {"total_incl_head": 1},
        "fit_time_s": 1.0,
        "n_train": 100,
        "n_val": N_VAL,
        "n_test": 100,
    }


def _config(search: str) -> ProbeConfig:
    recipe = dataclasses.replace(default_probe_recipe(), epochs=1)
    return ProbeConfig(targets=TARGETS, seeds=2, d_min=10, points_per_decade=2, search=search, recipe=recipe)


@pytest.fixture
def planted(monkeypatch, tmp_path):
    """Both searches on the planted task, sharing one trial log (as a lean probe run beside a full one would)."""
    monkeypatch.setattr(probe_module, "probe_trial", _fake)
    model, data = ModelSpec("petl_vit_tiny", weights="random"), DataSpec("digits", SplitSpec(max_train=50))
    log = tmp_path / "lean.json.trials.jsonl"  # the lean probe's log, which the full probe shares
    full = run_probe(model, data, _config("adaptive"), out=tmp_path / "full.json", log_path=log)
    lean = run_probe(model, data, _config("lean"), out=tmp_path / "lean.json", log_path=log)
    return full, lean, log


def test_lean_probe_reproduces_the_full_probe_ranking_for_a_third_of_the_trainings(planted):
    full, lean, log = planted
    d90 = PROBE_SELECTORS.get("d90")
    full_rank, lean_rank = d90(full), d90(lean)
    assert lean_rank.tie_groups() == full_rank.tie_groups()
    assert lean_rank.tie_groups() == [["attn.q"], ["mlp.fc1"], ["attn.k"], ["attn.v"], ["attn.proj", "mlp.fc2"]]
    assert rank_correlations(full_rank, lean_rank, declared_ties=True)["kendall"] >= 0.9
    records = list(read_records(open_trial_log(log)))
    n_full, n_lean = len(used_keys(records, [full])), len(used_keys(records, [lean]))
    assert n_lean == lean.trials_total and n_full == full.trials_total
    assert n_lean <= n_full / 3


def test_lean_probe_brackets_hold_the_planted_d90_and_unreached_sets_cost_one_point(planted):
    _, lean, _ = planted
    for t in lean.targets:
        planted_d90 = PLANTED[t.target]
        if planted_d90 is None:
            assert not t.d90.reached and t.dims == [t.D]  # not reached at d = D: nothing more to learn
            continue
        below = [d for d in t.dims if d < planted_d90]
        above = [d for d in t.dims if d >= planted_d90]
        assert above, t.target
        assert (max(below) if below else 0) < t.d90.value <= min(above) * 1.0001
        assert t.seeds_run is not None and len(t.seeds_run) == len(t.dims)
        assert all(1 <= n <= 2 for n in t.seeds_run)


def test_lean_probe_runs_a_second_seed_only_where_a_point_is_undecided(planted):
    _, lean, _ = planted
    # the wobble is 0.002 and the bars' spread 0.003 * 0.9 * sqrt(2) / 2 ...: points far from the bar keep one seed
    singles = sum(n == 1 for t in lean.targets for n in t.seeds_run)
    assert singles > 0
    for t in lean.targets:
        for d, n, vals in zip(t.dims, t.seeds_run, t.val_per_seed):
            assert math.isfinite(vals[0]) and (math.isnan(vals[1]) if n == 1 else math.isfinite(vals[1]))


def test_the_direct_selector_ranks_by_the_d_equal_D_training(planted):
    full, lean, _ = planted
    direct = PROBE_SELECTORS.get("direct")(lean)
    accs = {e.target: e.score for e in direct.entries}
    assert [e.target for e in direct.entries] == sorted(accs, key=lambda t: (-accs[t], t))
    # every reachable set reaches the ceiling's neighbourhood at D: within 2 of 500 images they are one tie class
    top = next(g for g in direct.tie_groups() if "attn.q" in g)
    assert {"attn.q", "attn.k", "mlp.fc1"} <= set(top)
    # the adaptive search never trained attn.q at d = D: the selector says so instead of guessing
    with pytest.raises(PetlError, match="attn.q"):
        PROBE_SELECTORS.get("direct")(full)


def test_lean_probe_config_is_validated():
    with pytest.raises(PetlError, match="search"):
        ProbeConfig(search="greedy")


def test_effective_rank_of_known_spectra():
    assert effective_rank(torch.eye(4)) == pytest.approx(4.0)
    assert effective_rank(torch.outer(torch.arange(1.0, 4.0), torch.ones(5))) == pytest.approx(1.0)
    assert effective_rank(torch.zeros(3, 3)) == 0.0
    assert 1.0 < effective_rank(torch.diag(torch.tensor([3.0, 1.0]))) < 2.0


@pytest.fixture(scope="module")
def tiny():
    from petl_analysis.study import Study
    from petl_analysis.task import build_task

    data = DataSpec("digits", SplitSpec(max_train=64))
    study = Study(ModelSpec("petl_vit_tiny"), data)
    net = study.build_model(0)
    return net, build_task(data, net, dataset=study.dataset)


@pytest.mark.parametrize("name", ["gid", "page", "residual"])
def test_new_proxies_score_every_set_deterministically(tiny, name):
    from petl_analysis.select import SELECTORS

    model, task = tiny
    fn, _ = SELECTORS.get(name)
    sets = {"attn.q": ["blocks.0.attn.q"], "mlp.fc2": ["blocks.0.mlp.fc2", "blocks.1.mlp.fc2"]}
    a = fn(model, task, sets, n_batches=2, batch_size=16, seed=0)
    b = fn(model, task, sets, n_batches=2, batch_size=16, seed=0)
    assert a == b and set(a) == set(sets) and all(np.isfinite(v) and v > 0 for v in a.values())


def test_residual_score_doubles_when_the_unit_weight_doubles(tiny):
    from petl_analysis.select import SELECTORS

    model, task = tiny
    fn, _ = SELECTORS.get("residual")
    sets = {"proj": ["blocks.1.attn.proj"]}
    before = fn(model, task, sets, n_batches=1, batch_size=8, seed=0)["proj"]
    w = model.blocks[1].attn.proj.weight
    with torch.no_grad():
        w.mul_(2.0)
    try:
        after = fn(model, task, sets, n_batches=1, batch_size=8, seed=0)["proj"]
    finally:
        with torch.no_grad():
            w.div_(2.0)
    assert after == pytest.approx(2.0 * before, rel=1e-6)


def test_direct_costs_only_the_d_equal_D_trainings_and_d90_the_lean_probe_s(planted):
    from petl_analysis.validate.run import selector_costs

    _, lean, log = planted
    rankings = {name: PROBE_SELECTORS.get(name)(lean) for name in ("d90", "direct")}
    costs = selector_costs(rankings, str(log.with_name("lean.json")), lean)
    at_top = sum(t.seeds_at(t.D, lean.config.seeds) for t in lean.targets)
    assert (
        costs["direct"].trainings
        == at_top
        == len(TARGETS) + sum(n == 2 for t in lean.targets for n in t.seeds_run[-1:])
    )
    assert costs["d90"].trainings == lean.trials_total  # the full probe's trials in the same log are not counted


def test_rank_correlations_can_keep_declared_ties():
    from petl_analysis.select.ranking import RankedTarget, Ranking

    def ranking(order, groups):
        entries = [
            RankedTarget(target=t, units=[t], D=1, rank=i + 1, score=None, group=g)
            for i, (t, g) in enumerate(zip(order, groups))
        ]
        return Ranking(selector="x", model=ModelSpec("petl_vit_tiny"), data=None, entries=entries)

    tied = ranking(["a", "b", "c", "d"], [0, 2, 2, 0])  # b and c declared tied
    other = ranking(["a", "c", "b", "d"], [0, 0, 0, 0])
    assert rank_correlations(tied, other)["kendall"] < 1.0
    assert rank_correlations(tied, other, declared_ties=True)["kendall"] == pytest.approx(0.9128709, rel=1e-6)
