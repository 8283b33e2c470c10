"""run_probe end to end on the bundled architecture (random weights, 200 training digits, 2 epochs), resumability
from the trial log, and configuration errors."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from petl_analysis.data import SplitSpec
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec
from petl_analysis.probe import ProbeConfig, ProbeResult, default_probe_recipe, run_probe
from petl_analysis.probe import search as probe_module
from petl_analysis.probe.d90 import threshold_value
from petl_analysis.task import DataSpec

TARGETS = ["attn.v", "blocks.3.mlp.fc1"]
DIMS = [4, 16]


def _config(**kw) -> ProbeConfig:
    recipe = dataclasses.replace(default_probe_recipe(), epochs=2, eval_batch_size=1024)
    return ProbeConfig(targets=TARGETS, dims=DIMS, seeds=1, recipe=recipe, **kw)


def _specs() -> tuple[ModelSpec, DataSpec]:
    return ModelSpec("petl_vit_tiny", weights="random"), DataSpec("digits", SplitSpec(max_train=200))


def _log_records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "probe.json"
    model, data = _specs()
    result = run_probe(model, data, _config(), out=out)
    return result, out


def test_probe_result_has_baselines_targets_and_trial_counts(probed):
    result, out = probed
    assert set(result.baselines) == {"lp", "head", "ft"}
    for b in result.baselines.values():
        assert len(b.val_per_seed) == len(b.test_per_seed) == 1 and 0.0 <= b.val_mean <= 1.0
    assert result.baselines["lp"].trainable == result.baselines["head"].trainable == 64 * 10 + 10  # the head only
    assert result.baselines["ft"].trainable > 100_000
    assert result.floor is result.baselines["head"] and result.ceiling is result.baselines["ft"]
    assert (result.n_train, result.n_val) == (200, 269) and result.n_test > 0
    assert [t.target for t in result.targets] == TARGETS
    d_of = {"attn.v": 4 * (64 * 64 + 64), "blocks.3.mlp.fc1": 64 * 256 + 256}
    for t in result.targets:
        assert t.D == d_of[t.target]
        assert t.dims == DIMS
        assert len(t.val_mean) == len(t.val_per_seed) == len(t.test_mean) == len(t.fitted) == len(DIMS)
        assert all(0.0 <= a <= 1.0 for a in t.val_mean + t.test_mean)
        assert t.trials == len(DIMS) and t.failed_trials == 0
        floor, ceiling = result.floor.val_per_seed[0], result.ceiling.val_per_seed[0]
        assert t.d90.threshold_per_seed == pytest.approx([threshold_value(floor, ceiling, 0.9, "gain")])
        assert t.d90_classic.threshold_per_seed == pytest.approx([0.9 * ceiling])
        assert t.d90.reached == (t.d90.value is not None)
        assert t.d90.n_seeds == 1 and t.d90.ci_low is None and t.d90.ci_text() == "n/a, 1 seed"
        # theta_d's learning rate follows the sqrt rule: the same weight-space step length at every d.
        assert t.lr == pytest.approx([1.0 / math.sqrt(d) for d in DIMS])
    assert result.trials_total == 3 + len(TARGETS) * len(DIMS)
    assert result.failed_trials == 0
    assert len(result.table()) == len(TARGETS)
    assert out.is_file() and result.trials_log == str(out) + ".trials.jsonl"


def test_subspace_trials_train_theta_d_and_the_head(probed):
    _result, out = probed
    records = [r for r in _log_records(out.with_name(out.name + ".trials.jsonl")) if r["kind"] == "subspace"]
    assert len(records) == len(TARGETS) * len(DIMS)
    for r in records:
        trainable = r["result"]["trainable"]
        assert trainable["adapter"] == r["payload"]["d"]
        assert trainable["head"] == 650 and trainable["backbone"] == trainable["bias_norm"] == 0


def test_probe_result_saves_and_loads(probed):
    result, out = probed
    loaded = ProbeResult.load(out)
    assert loaded.to_dict() == json.loads(json.dumps(result.to_dict()))
    assert loaded.config.dims == DIMS
    assert [t.target for t in loaded.ranked()] == [t.target for t in result.ranked()]


def test_rerun_with_the_same_out_runs_no_trial(probed, monkeypatch):
    result, out = probed
    log = out.with_name(out.name + ".trials.jsonl")
    n_before = len(_log_records(log))

    def must_not_run(trial):
        raise AssertionError(f"trial {trial.kind} re-run although it is in the log")

    monkeypatch.setattr(probe_module, "probe_trial", must_not_run)
    cached = []
    model, data = _specs()
    again = run_probe(model, data, _config(), out=out, on_trial=lambda rec, was_cached: cached.append(was_cached))
    assert len(_log_records(log)) == n_before == result.trials_total
    assert cached and all(cached)
    assert [t.val_per_seed for t in again.targets] == [t.val_per_seed for t in result.targets]
    assert again.baselines["ft"].val_per_seed == result.baselines["ft"].val_per_seed


def test_extending_the_grid_runs_only_the_new_trials(probed, monkeypatch, tmp_path):
    _result, out = probed
    log = out.with_name(out.name + ".trials.jsonl")
    copy_log = tmp_path / "probe.json.trials.jsonl"
    copy_log.write_text(log.read_text())
    ran = []

    def fake(trial):
        ran.append((trial.kind, trial.payload.get("d")))
        return {
            "val_acc": 0.5,
            "test_acc": 0.5,
            "last_test_acc": 0.5,
            "best_epoch": 1,
            "val_curve": [0.5],
            "train_loss": [1.0],
            "trainable": {"total_incl_head": 1},
            "fit_time_s": 0.0,
        }

    monkeypatch.setattr(probe_module, "probe_trial", fake)
    model, data = _specs()
    cfg = dataclasses.replace(_config(), dims=DIMS + [32])
    extended = run_probe(model, data, cfg, out=tmp_path / "probe.json")
    assert sorted(ran) == [("subspace", 32)] * len(TARGETS)
    assert all(t.dims == DIMS + [32] for t in extended.targets)


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.01, 2.0, math.nan])
def test_threshold_outside_unit_interval_is_an_error(threshold):
    with pytest.raises(PetlError, match=r"^ProbeConfig\.threshold must be a float in \(0, 1\]; got "):
        ProbeConfig(threshold=threshold)
    with pytest.raises(PetlError, match="threshold"):
        threshold_value(0.5, 0.9, threshold)


def test_threshold_one_is_allowed():
    assert ProbeConfig(threshold=1.0).threshold == 1.0


def test_d_above_a_targets_D_is_refused_before_training():
    model, data = _specs()
    cfg = dataclasses.replace(_config(), targets=["blocks.0.attn.proj"], dims=[4, 64 * 64 + 64 + 1])
    with pytest.raises(PetlError, match="exceeds D"):
        run_probe(model, data, cfg)


def test_adaptive_search_stays_within_max_d(tmp_path):
    model, data = _specs()
    recipe = dataclasses.replace(default_probe_recipe(), epochs=1, eval_batch_size=1024)
    cfg = ProbeConfig(targets=["blocks.0.attn.proj"], seeds=1, recipe=recipe, d_min=4, points_per_decade=1, max_d=12)
    result = run_probe(model, data, cfg, out=tmp_path / "probe.json")
    (target,) = result.targets
    assert target.D == 64 * 64 + 64 and max(target.dims) <= 12 and 4 in target.dims
    with pytest.raises(
        PetlError, match=r"^ProbeConfig\.max_d must be an integer >= 1, or unset for D of each set; got 0$"
    ):
        ProbeConfig(max_d=0)


def test_last_round_proposals_are_not_left_unrun(tmp_path):
    # A coarse grid (4, 10) and no refinement round: next_dims proposes another d (12 if the threshold is not
    # reached, a smaller one if it is reached at 4), which must not join the curve without being trained.
    model, data = _specs()
    recipe = dataclasses.replace(default_probe_recipe(), epochs=1, eval_batch_size=1024)
    cfg = ProbeConfig(
        targets=["blocks.0.attn.proj"],
        seeds=1,
        recipe=recipe,
        d_min=4,
        points_per_decade=1,
        max_d=12,
        max_refinements=0,
    )
    (target,) = run_probe(model, data, cfg, out=tmp_path / "probe.json").targets
    assert target.dims == [4, 10] and target.trials == 2


def test_the_lr_grid_keeps_the_best_validation_multiplier_per_d(probed, monkeypatch, tmp_path):
    """With an lr grid, each d keeps the multiplier with the best seed-mean validation accuracy, whatever test says."""
    model, data = _specs()
    best_for = {4: 3.0, 16: 0.3}

    def fake(trial):
        p = trial.payload
        acc, test = 0.5, 0.5
        if trial.kind == "subspace":
            mult = p["lr"] * math.sqrt(p["d"])
            acc = 0.9 if math.isclose(mult, best_for[p["d"]]) else 0.6
            test = 1.0 - acc  # a decision that read test would pick the other multiplier
        return _fake_result(acc, test)

    monkeypatch.setattr(probe_module, "probe_trial", fake)
    cfg = dataclasses.replace(_config(), targets=["attn.v"], lr_grid=[0.3, 1.0, 3.0])
    (t,) = run_probe(model, data, cfg, out=tmp_path / "probe.json").targets
    base = [1.0 / math.sqrt(d) for d in DIMS]
    assert t.lr == pytest.approx([base[0] * 3.0, base[1] * 0.3])
    assert t.val_mean == [0.9, 0.9] and t.test_mean == pytest.approx([0.1, 0.1])
    assert t.trials == 3 * len(DIMS)


def _fake_result(val: float, test: float | None = None) -> dict:
    """What a probe trial returns, scored ``val`` on validation and ``test`` (default ``val``) on test."""
    test = val if test is None else test
    return {
        "val_acc": val,
        "test_acc": test,
        "last_test_acc": test,
        "best_epoch": 1,
        "val_curve": [val],
        "train_loss": [1.0],
        "trainable": {"total_incl_head": 1},
        "fit_time_s": 0.0,
    }


def _peaked_at(best_for: dict[int, float]):
    """A fake trial whose validation accuracy peaks at the multiplier ``best_for[d]`` (falling with the log-distance
    from it), whatever grid asks: a learning-rate optimum beyond the grid's edge."""

    def fake(trial):
        p = trial.payload
        acc = 0.5
        if trial.kind == "subspace":
            mult = p["lr"] * math.sqrt(p["d"])
            acc = 0.9 - 0.05 * abs(math.log(mult / best_for[p["d"]]))
        return _fake_result(acc)

    return fake


@pytest.mark.parametrize("search", ["adaptive", "lean"])
def test_lr_grid_extend_follows_an_optimum_beyond_the_grid_where_it_lies(monkeypatch, tmp_path, search):
    """Planted optima: 9x at d = 4 (two steps above the grid 1,3), 1/3x at d = 16 (one step below). Extended twice,
    the search finds both, spends the extra trials only at those points and says nothing; not extended, it stops
    at the grid's edges; extended once, the d = 4 point ends on its reach and the probe says so."""
    model, data = _specs()
    monkeypatch.setattr(probe_module, "probe_trial", _peaked_at({4: 9.0, 16: 1 / 3}))
    kw = dict(targets=["attn.v"], lr_grid=[1.0, 3.0], search=search)
    if search == "lean":
        kw.update(dims=None, d_min=4, max_d=16, points_per_decade=1)

    def probe(extend: int):
        out = tmp_path / f"{search}{extend}.json"
        result = run_probe(model, data, dataclasses.replace(_config(), **kw, lr_grid_extend=extend), out=out)
        (t,) = result.targets
        return result, {d: lr * math.sqrt(d) for d, lr in zip(t.dims, t.lr)}, t.trials

    plain, chosen, trials = probe(0)
    top = max(chosen)  # the lean search tries d = 16 only (the top of its grid): the grid's edge there is 1x
    assert all(m in (1.0, 3.0) for m in chosen.values()) and trials == 2 * len(chosen)
    found, chosen2, trials2 = probe(2)
    want = {4: 9.0, 16: 1 / 3}
    assert {d: pytest.approx(want[d]) for d in chosen2} == chosen2
    # one multiplier more per step followed: d = 4 two (9x, then 27x to see it fall), d = 16 one (1/3x, then 1/9x)
    assert trials2 == trials + sum({4: 2, 16: 2}[d] for d in chosen2)
    assert found.lr_at_grid_edge() is None
    reach, chosen1, _ = probe(1)
    if 4 in chosen1:
        assert chosen1[4] == pytest.approx(9.0) and chosen1[16] == pytest.approx(1 / 3)
        assert reach.lr_at_grid_edge() is None  # 1 of 2 points on the reach: not more than half
    assert plain.config.lr_grid_extend == 0 and top == 16


@pytest.mark.parametrize("search", ["adaptive", "lean"])
def test_lr_screens_choose_the_multiplier_and_only_it_trains_in_full(monkeypatch, tmp_path, search):
    """Screens (2 epochs) of every multiplier, then the full recipe at the one they keep: the curve reads the full
    trainings only (a screen scores 0.05 under its multiplier's best here), the count includes the screens, and the
    kept multiplier is the screens' best even where the full trainings would rank the grid otherwise."""
    model, data = _specs()
    seen = []

    def fake(trial):
        p = trial.payload
        acc = 0.5
        if trial.kind == "subspace":
            mult = p["lr"] * math.sqrt(p["d"])
            epochs = p["recipe"]["epochs"]
            seen.append((p["d"], round(mult, 6), epochs))
            best = 3.0 if epochs < 10 else 0.3  # a full training would prefer 0.3: the screens decide
            acc = (0.8 if math.isclose(mult, best) else 0.7) - (0.05 if epochs < 10 else 0.0)
        return _fake_result(acc)

    monkeypatch.setattr(probe_module, "probe_trial", fake)
    recipe = dataclasses.replace(default_probe_recipe(), epochs=10, eval_batch_size=1024)
    kw = dict(targets=["attn.v"], lr_grid=[0.3, 1.0, 3.0], search=search, recipe=recipe, seeds=1)
    if search == "lean":
        kw.update(dims=None, d_min=4, max_d=16, points_per_decade=1)
    cfg = dataclasses.replace(_config(), **kw, lr_screen_epochs=2)
    result = run_probe(model, data, cfg, out=tmp_path / "probe.json")
    (t,) = result.targets
    from petl_analysis.stale import used_keys
    from petl_analysis.trials import open_trial_log, read_records

    records = list(read_records(open_trial_log(tmp_path / "probe.json.trials.jsonl")))
    assert len(used_keys(records, [result])) == len(records)  # the screens are the probe's (never pruned as stale)
    assert {d: round(lr * math.sqrt(d), 6) for d, lr in zip(t.dims, t.lr)} == {d: 3.0 for d in t.dims}
    assert t.val_mean == [pytest.approx(0.7)] * len(t.dims)  # the full training at 3x, not its screen (0.75)
    for d in t.dims:
        assert sorted(e for dd, m, e in seen if dd == d and e == 2) == [2, 2, 2]  # three screens
        assert [(m, e) for dd, m, e in seen if dd == d and e == 10] == [(3.0, 10)]  # one full training
    assert t.trials == 4 * len(t.dims)
    with pytest.raises(PetlError, match="fewer than the recipe's 10 epochs"):
        dataclasses.replace(cfg, lr_screen_epochs=10)


def test_lr_beyond_steps_outward_from_the_edge_the_best_is_on():
    cfg = ProbeConfig(lr_grid=[1.0, 3.0, 10.0, 30.0], lr_grid_extend=2)
    assert cfg.lr_range() == pytest.approx((270.0, 1 / 9))
    assert cfg.lr_beyond([1, 3, 10, 30], 30) == pytest.approx(90) and cfg.lr_beyond([1, 3, 10, 30], 3) is None
    assert cfg.lr_beyond([1, 3, 10, 30, 90], 90) == pytest.approx(270)
    assert cfg.lr_beyond([1, 3, 10, 30, 90, 270], 270) is None  # the reach: the probe says so instead
    assert cfg.lr_beyond([1, 3, 10, 30], 1) == pytest.approx(1 / 3)
    assert ProbeConfig(lr_grid=[1.0, 3.0]).lr_beyond([1, 3], 3) is None  # not asked
    assert ProbeConfig(lr_grid=[1.0], lr_grid_extend=3).lr_beyond([1], 1) is None  # no grid, no spacing
    with pytest.raises(PetlError):
        ProbeConfig(lr_grid_extend=-1)


def test_constant_lr_scaling_uses_the_recipe_lr_at_every_d():
    cfg = ProbeConfig(lr_scaling="constant")
    assert probe_module.theta_lr(cfg.base_theta_lr(), 10, "constant") == cfg.recipe.lr
    assert probe_module.theta_lr(ProbeConfig().base_theta_lr(), 10_000, "sqrt") == pytest.approx(1e-2)
    for bad in (dict(lr_scaling="linear"), dict(lr_grid=[]), dict(lr_grid=[1.0, -1.0]), dict(lr_grid=[1.0, 1.0])):
        with pytest.raises(PetlError):
            ProbeConfig(**bad)


def test_a_learning_rate_search_stuck_on_its_grid_edge_is_said():
    from pathlib import Path

    from petl_analysis.probe.config import theta_lr

    probe = ProbeResult.load(Path(__file__).resolve().parents[1] / "reports/validation/animals/probe_lean.json")
    assert probe.lr_at_grid_edge() is None  # one multiplier: no search, nothing to say
    config = dataclasses.replace(probe.config, lr_grid=[0.3, 1.0, 3.0])
    base = config.base_theta_lr()

    def chosen(mults: list[float]) -> ProbeResult:
        targets = [
            dataclasses.replace(t, lr=[theta_lr(base, d, config.lr_scaling) * m for d, m in zip(t.dims, mults)])
            for t in probe.targets
        ]
        return dataclasses.replace(probe, config=config, targets=targets)

    n = sum(len(t.dims) for t in probe.targets)
    up = chosen([3.0] * 99).lr_at_grid_edge()
    assert up and f"largest of --lr-grid (3x) at {n} of {n} points" in up and "widen --lr-grid upward" in up
    assert "raise --lr-grid-extend" in up
    assert "smallest of --lr-grid (0.3x)" in chosen([0.3] * 99).lr_at_grid_edge()
    assert chosen([1.0] * 99).lr_at_grid_edge() is None
