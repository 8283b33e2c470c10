"""The validate stage: agreement maths, the oracle/regret study end to end on a tiny model, its artefact and report."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os

import numpy as np
import pytest
from helpers import synthetic_probe
from scipy import stats
from typer.testing import CliRunner

from petl_analysis.cli.main import app
from petl_analysis.data import SplitSpec
from petl_analysis.engine import Recipe, unpack_correct
from petl_analysis.errors import PetlError
from petl_analysis.report import write_report
from petl_analysis.task import DataSpec
from petl_analysis.validate import (
    ValidationResult,
    agreement_stats,
    agreement_verdict,
    default_budgets,
    holm,
    image_bootstrap,
    oracle_order,
    permutation_test,
    random_null,
    rank_correlation,
    run_validate,
    seed_span,
    top_k_overlap,
)
from petl_analysis.validate.agreement import seed_resamples, smallest_p

LABELS = ["a", "b", "c", "d"]
ACC = np.array([[0.90, 0.91, 0.89], [0.80, 0.82, 0.79], [0.70, 0.72, 0.71], [0.60, 0.60, 0.61]])
RECIPE = Recipe(
    epochs=1, batch_size=32, lr=3e-3, head_lr=3e-3, max_steps=2, eval_batch_size=1024, epoch_selection="last"
)


# ------------------------------------------------------------------------------------------------ pure functions


def test_perfect_and_reversed_orders():
    assert oracle_order(LABELS, ACC) == LABELS
    perfect = agreement_stats(LABELS, LABELS, ACC)
    assert perfect.spearman == pytest.approx(1.0) and perfect.kendall == pytest.approx(1.0)
    assert perfect.spearman_span == [pytest.approx(1.0), pytest.approx(1.0)]
    # only the identity among the 4! orders reaches rho = 1, only it reaches rho <= 1 ... all 24 do
    assert perfect.test.p_better == pytest.approx(1 / 24) and perfect.test.p_worse == pytest.approx(1.0)
    assert perfect.test.exact and perfect.test.permutations == 24
    reverse = agreement_stats(LABELS[::-1], LABELS, ACC)
    assert reverse.spearman == pytest.approx(-1.0)
    assert reverse.test.p_better == pytest.approx(1.0) and reverse.test.p_worse == pytest.approx(1 / 24)


def test_correlation_is_computed_on_validation_means_not_on_order_of_labels():
    acc = ACC[[2, 0, 3, 1]]  # the same sets in another row order
    labels = [LABELS[i] for i in (2, 0, 3, 1)]
    assert rank_correlation(LABELS, labels, acc.mean(1)) == pytest.approx((1.0, 1.0))


def test_declared_ties_are_midranks_and_the_permutation_test_keeps_them():
    # "a" first, then b, c, d declared tied (midrank 3): rho = corr([-1, -3, -3, -3], oracle) = 0.7746 whatever the
    # order inside the class; by hand over the 24 assignments of the scores 4 > 3 > 2 > 1: rho depends only on which
    # score lands on "a": score 4 (6 assignments) gives 0.7746, so p_better = 6/24; every one is <= it, p_worse = 1.
    classes = [["a"], ["b", "c", "d"]]
    score = np.array([4.0, 3.0, 2.0, 1.0])
    rho, tau = rank_correlation(classes, LABELS, score)
    assert rho == pytest.approx(math.sqrt(0.6)) and tau == pytest.approx(math.sqrt(0.5))
    for inside in (["b", "c", "d"], ["d", "c", "b"]):  # the strict order inside the class is not read
        assert rank_correlation([["a"], inside], LABELS, score) == pytest.approx((rho, tau))
    test = permutation_test(classes, LABELS, score)
    assert (test.p_better, test.p_worse, test.permutations, test.exact) == (
        pytest.approx(0.25),
        pytest.approx(1.0),
        24,
        True,
    )
    brute = [stats.spearmanr([-1, -3, -3, -3], score[list(p)]).statistic for p in itertools.permutations(range(4))]
    assert test.p_better == pytest.approx(np.mean(np.array(brute) >= rho - 1e-9))
    # broken ties would claim more: the strict order a, b, c, d reaches p = 1/24
    assert permutation_test(LABELS, LABELS, score).p_better == pytest.approx(1 / 24)
    # the "a" on the worst score: lower tail 6/24
    assert permutation_test([["d"], ["a", "b", "c"]], LABELS, score).p_worse == pytest.approx(0.25)


def test_rho_is_undefined_when_everything_is_tied():
    assert all(math.isnan(x) for x in rank_correlation([LABELS], LABELS, np.array([4.0, 3, 2, 1])))
    assert all(math.isnan(x) for x in rank_correlation(LABELS, LABELS, np.ones(4)))
    t = permutation_test([LABELS], LABELS, np.array([4.0, 3, 2, 1]))
    assert math.isnan(t.p_better) and math.isnan(t.p_worse)


def test_permutations_are_drawn_with_a_fixed_seed_above_the_exact_limit():
    labels = [f"s{i}" for i in range(9)]  # 9! = 362,880 > 50,000: seeded draws
    score = np.arange(9.0)[::-1]
    a, b = permutation_test(labels, labels, score), permutation_test(labels, labels, score)
    assert not a.exact and a.permutations == 50_000 and a.p_better == b.p_better
    assert a.p_better == pytest.approx(1 / 50_001)  # only the observed reaches rho = 1 (counted once, as scipy does)


def test_smallest_p_of_a_tie_structure():
    assert smallest_p([["a"], ["b", "c", "d"]]) == pytest.approx(6 / 24)
    assert smallest_p([[x] for x in "abcdef"]) == pytest.approx(1 / 720)
    assert smallest_p([["a"], list("bcdef")]) == pytest.approx(1 / 6)  # animals d90: one set reached the bar


def test_holm_on_known_p_values():
    # sorted 0.01, 0.03, 0.04 of m = 3: 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06; nan is no test
    assert holm([0.01, 0.04, 0.03, math.nan])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(holm([0.01, 0.04, 0.03, math.nan])[3])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])


def test_seed_span_enumerates_every_seed_resample():
    assert seed_resamples(2) == [(0, 0), (0, 1), (1, 1)]
    assert len(seed_resamples(3)) == 10
    one_rho, _one_tau, n = seed_span(LABELS, LABELS, ACC[:, :1])
    assert one_rho == [None, None] and n == 0
    # Two seeds that disagree on a vs b: resamples (0,0) rho 1, (1,1) rho 0.8, (0,1) the mean (a ahead): rho 1.
    acc = np.array([[0.9, 0.7], [0.7, 0.8], [0.5, 0.5], [0.3, 0.3]])
    rho, tau, n = seed_span(LABELS, LABELS, acc)
    assert (
        n == 3
        and rho == [pytest.approx(0.8), pytest.approx(1.0)]
        and tau == [pytest.approx(2 / 3), pytest.approx(1.0)]
    )


def test_image_bootstrap_is_paired_across_sets():
    # Nested sets: each set gets right every image the next one does, plus 20 of 1,000 (2 points apart). A draw of
    # images shared by all sets keeps that order in every draw; drawing each set's images apart (unpaired) would
    # swap neighbours often (the sampling sd of one accuracy is ~1.6 points).
    u = np.random.default_rng(0).random(1000)
    correct = np.stack([np.stack([u < t] * 2) for t in (0.53, 0.51, 0.49, 0.47)])  # [set, seed, image]
    assert image_bootstrap(LABELS, LABELS, correct, n_boot=100) == [pytest.approx(1.0), pytest.approx(1.0)]
    assert image_bootstrap(LABELS[::-1], LABELS, correct, n_boot=100) == [pytest.approx(-1.0), pytest.approx(-1.0)]
    with pytest.raises(ValueError, match="set, seed, image"):
        image_bootstrap(LABELS, LABELS, correct[:, 0])


def test_random_null_is_exact_and_centred():
    null = random_null(5)
    assert len(null) == math.factorial(5)
    assert float(np.mean(null)) == pytest.approx(0.0, abs=1e-12)
    assert null.max() == pytest.approx(1.0) and null.min() == pytest.approx(-1.0)
    # Against scipy for every order of 4.
    from scipy import stats

    brute = [stats.spearmanr(p, range(4)).statistic for p in itertools.permutations(range(4))]
    assert sorted(random_null(4)) == pytest.approx(sorted(brute))


def test_top_k_overlap():
    assert top_k_overlap(["a", "b", "c"], ["a", "b", "c"], 1) == 1.0
    assert top_k_overlap(["b", "a", "c"], ["a", "b", "c"], 1) == 0.0
    assert top_k_overlap(["b", "a", "c"], ["a", "b", "c"], 2) == 1.0
    assert top_k_overlap(["c", "a", "b"], ["a", "b", "c"], 2) == 0.5


def test_verdicts_read_the_corrected_p_values():
    assert agreement_verdict(0.01, 0.99, 0.8, 1 / 720) == "better than random"
    assert agreement_verdict(0.20, 0.80, 0.6, 1 / 720) == "no better than random"  # random orders do as well
    assert agreement_verdict(0.99, 0.01, -0.7, 1 / 720) == "worse than random"  # its own lower-tail test
    assert agreement_verdict(0.99, 0.20, -0.7, 1 / 720) == "no better than random"  # negative rho alone is not "worse"
    assert agreement_verdict(math.nan, math.nan, math.nan) == "cannot tell"
    assert agreement_verdict(0.17, 0.9, 0.9, 1 / 6) == "cannot tell"  # the declared ties leave no significant outcome


def test_default_budgets_bracket_the_oracle_budget():
    assert default_budgets(3864) == [970, 3900, 15000]


# ------------------------------------------------------------------------------------------------ the study


def _probe(part: str | None = "A"):
    probe = synthetic_probe()
    # 6 validation images per class, 10 classes: what the probe would have recorded (on split A).
    return dataclasses.replace(
        probe, data=DataSpec("digits", SplitSpec(max_train=60, val_shots=6, part=part)), n_val=60
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("validate") / "validation.json"
    seen: list[bool] = []
    result = run_validate(
        _probe(),
        selectors=("d90", "d90+acc", "apla", "kappa", "constant"),
        seeds=2,
        recipe=RECIPE,
        budgets=[2_000],
        out=out,
        on_trial=lambda record, cached: seen.append(cached),
    )
    return result, out, seen


def test_oracle_adapts_each_set_alone_at_a_matched_budget(study):
    result, _, _ = study
    assert {(e.target, e.method) for e in result.oracle} == {
        (t, m) for t in result.sets for m in ("kadaptation", "lora")
    }
    for e in result.oracle:
        assert e.used <= result.budget and e.used >= 0.5 * result.budget
        assert len(e.val_per_seed) == 2
        targets = e.config["targets"]
        assert targets == e.units  # that set's units, nothing else


def test_agreement_is_recomputable_from_the_stored_validation_scores(study):
    result, _, _ = study
    assert {(a.selector, a.method) for a in result.agreement} == {
        (s, m) for s in ("d90", "d90+acc", "apla", "kappa", "constant") for m in ("kadaptation", "lora")
    }
    for a in result.agreement:
        acc = np.array(
            [
                next(e.val_per_seed for e in result.oracle if e.method == a.method and e.target == t)
                for t in result.sets
            ]
        )
        again = agreement_stats(a.tie_classes, result.sets, acc)
        assert (a.spearman, a.kendall) == pytest.approx((again.spearman, again.kendall), nan_ok=True)
        assert (a.p_better, a.p_worse) == pytest.approx((again.test.p_better, again.test.p_worse), nan_ok=True)
        family = [b for b in result.agreement if b.method == a.method]
        i = family.index(a)
        assert a.p_better_holm == pytest.approx(holm([b.p_better for b in family])[i], nan_ok=True)
        assert a.p_worse_holm == pytest.approx(holm([b.p_worse for b in family])[i], nan_ok=True)
        spread = float(np.ptp(acc.mean(1))) * result.n_val
        expected = (
            "sets tied"
            if result.n_val and spread < 2
            else agreement_verdict(a.p_better_holm, a.p_worse_holm, again.spearman, smallest_p(a.tie_classes))
        )
        assert a.verdict == expected
        # The image bootstrap: every oracle training's per-image scores are recorded; they give its accuracy.
        entries = [next(e for e in result.oracle if e.method == a.method and e.target == t) for t in result.sets]
        correct = np.array([[unpack_correct(c, result.n_val) for c in e.val_correct] for e in entries])
        assert correct.mean(axis=2) == pytest.approx(acc)
        assert a.spearman_images == image_bootstrap(a.tie_classes, result.sets, correct)
        lo, hi = a.spearman_images
        assert lo is None or -1 <= lo <= hi <= 1
    d90 = next(a for a in result.agreement if a.selector == "d90")
    assert d90.order == ["attn.v", "attn.q", "mlp.fc1", "attn.proj"]  # the synthetic probe's d90 order
    assert d90.n_measured == sum(t.d90.reached for t in _probe().targets)
    assert next(a for a in result.agreement if a.selector == "d90+acc").n_measured == d90.n_measured
    constant = next(a for a in result.agreement if a.selector == "constant")
    assert constant.order == result.sets and constant.cost.trainings == 0  # the listing order, for nothing
    apla = next(a for a in result.agreement if a.selector == "apla")
    assert apla.tie_classes == [["attn.proj"], ["attn.q", "attn.v", "mlp.fc1"]]  # the rule names only attn.proj
    kappa = next(a for a in result.agreement if a.selector == "kappa")
    assert kappa.cost.trainings == 0 and kappa.cost.seconds > 0 and d90.cost.trainings == 0  # no probe log here
    for m in ("kadaptation", "lora"):
        assert result.oracle_cost[m].trainings == 2 * len(result.sets) and result.oracle_cost[m].seconds > 0


def test_regret_reference_is_chosen_on_split_a_and_every_plan_trains_once(study):
    result, _, seen = study
    assert result.judged_on == "split B" and result.seeds == [1000, 1001] and result.seed_offset == 1000
    assert result.probe_data.split.part == "A" and result.data.split.part == "B"
    plans = [p for p in result.plans if p.budget == 2_000]
    assert len({json.dumps(p.config, sort_keys=True) for p in plans}) == len(plans)  # one per distinct plan
    assert sum(p.floor_share for p in plans) == pytest.approx(1.0)  # the floor weighs every order
    (ref,) = [p for p in plans if p.reference]
    assert ref.a_val_mean == max(p.a_val_mean for p in plans)  # chosen on split A ...
    assert ref.regret == 0.0  # ... and every regret is measured from its split-B score
    for r in (r for r in result.regrets if r.budget == 2_000):
        assert sum(r.plan_shares.values()) == pytest.approx(1.0) and r.orders == "exact"
        values = [sum(w * plans[int(i)].val_per_seed[s] for i, w in r.plan_shares.items()) for s in range(2)]
        assert r.val_per_seed == pytest.approx(values)
        assert r.diff_per_seed == pytest.approx([v - b for v, b in zip(values, ref.val_per_seed)])
        assert r.interval_kind == "seed span" and r.diff_interval == pytest.approx(
            [min(r.diff_per_seed), max(r.diff_per_seed)]
        )
        assert result.mean_regret(r.selector, 2_000) == pytest.approx(-np.mean(r.diff_per_seed))
    assert {r.selector for r in result.regrets} == {"random", "oracle", "d90", "d90+acc", "apla", "kappa", "constant"}
    distinct = {json.dumps(e.config, sort_keys=True) for e in result.oracle} | {
        json.dumps(p.config, sort_keys=True) for p in plans
    }
    assert len(seen) == 2 * len(distinct)  # every configuration trained once per seed


def test_refuses_a_probe_not_made_on_split_a_unless_told(tmp_path):
    for part in (None, "B"):
        with pytest.raises(PetlError, match=r"probe\.json: data\.split\.part is .*--allow-shared-data"):
            run_validate(_probe(part), probe_source="probe.json", recipe=RECIPE)
    shared = run_validate(
        _probe(None),
        selectors=("d90",),
        methods=("kadaptation",),
        seeds=1,
        recipe=RECIPE,
        budgets=[2_000],
        allow_shared_data=True,
    )
    assert shared.judged_on == "the probe's own data" and shared.data == shared.probe_data
    assert all(row["verdict"].endswith("(judged on the probe's own data)") for row in shared.agreement_table())


def test_probe_and_judge_data_are_disjoint_on_real_splits(study):
    from petl_analysis.data import make_splits, open_dataset

    result, _, _ = study
    ds = open_dataset("digits")
    for probe_data in (
        result.probe_data,
        DataSpec("digits", SplitSpec(part="A")),
        DataSpec("digits", SplitSpec(shots=5, part="A")),
    ):
        from petl_analysis.validate.run import judge_split

        judge_data, _ = judge_split(probe_data, False)
        for seed in (0, 1000):
            a = make_splits(ds, probe_data.for_seed(seed).split).indices
            b = make_splits(ds, judge_data.for_seed(seed).split).indices
            assert len(a["train"]) and len(b["train"]) and len(a["val"]) and len(b["val"])
            for x in ("train", "val"):
                for y in ("train", "val", "test"):
                    assert not set(a[x]) & set(b[y]), (x, y)
            assert list(a["test"]) == list(b["test"])


def test_artefact_round_trip_and_resume(study, tmp_path):
    result, out, _ = study
    loaded = ValidationResult.load(out)
    assert json.dumps(loaded.to_dict(), sort_keys=True) == json.dumps(result.to_dict(), sort_keys=True)
    again: list[bool] = []
    rerun = run_validate(
        _probe(),
        selectors=("d90", "d90+acc", "apla", "kappa", "constant"),
        seeds=2,
        recipe=RECIPE,
        budgets=[2_000],
        out=out,
        on_trial=lambda record, cached: again.append(cached),
    )
    assert again and all(again)  # nothing retrained
    assert [p.val_per_seed for p in rerun.plans] == [p.val_per_seed for p in result.plans]


def test_report_section(study, tmp_path):
    result, _, _ = study
    files = write_report(None, None, tmp_path / "report", validation=result)
    md = files.markdown.read_text()
    assert "## Does the ranking predict?" in md and "### Regret per budget" in md
    assert files.oracle_vs_predicted is not None and files.oracle_vs_predicted.read_bytes()[:4] == b"\x89PNG"
    for a in result.agreement:
        assert f"`{a.selector}`" in md
    assert (tmp_path / "report" / "report.html").read_text().count("data:image/png") == 1


def test_refusals():
    probe = _probe()
    with pytest.raises(PetlError, match="at least 2"):
        run_validate(dataclasses.replace(probe, targets=probe.targets[:1]), recipe=RECIPE)
    with pytest.raises(PetlError, match="selector"):
        run_validate(probe, selectors=("d90", "nope"), recipe=RECIPE)
    with pytest.raises(PetlError, match=r"^ValidateConfig\.methods must be a non-empty list of plannable methods \("):
        run_validate(probe, methods=("adapter",), recipe=RECIPE)
    with pytest.raises(PetlError, match="cannot adapt|fits only part|below the smallest"):
        run_validate(probe, budget=10, recipe=RECIPE)


def test_cli_validate(tmp_path):
    probe_path = tmp_path / "probe.json"
    _probe().save(probe_path)
    out = tmp_path / "v.json"
    r = CliRunner().invoke(
        app,
        [
            "validate",
            "--probe",
            str(probe_path),
            "--selectors",
            "d90,apla",
            "--methods",
            "kadaptation",
            "--seeds",
            "1",
            "--budgets",
            "2k",
            "--epochs",
            "1",
            "--max-steps",
            "1",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "agreement with the oracle" in r.output and out.exists()
    v = ValidationResult.load(out)
    assert v.methods == ["kadaptation"] and v.command.startswith("petl-analyze")
    bad = CliRunner().invoke(app, ["validate", "--probe", str(tmp_path / "missing.json")])
    assert bad.exit_code != 0 and "missing.json" in bad.output and "Traceback" not in bad.output


def test_p_value_counts_orders_tied_with_the_observed_rho():
    # 6 sets: 6 of the 720 orders have rho >= 0.943 (the identity and 5 adjacent swaps), 12 have rho >= 0.886.
    labels = list("abcdef")
    acc = np.linspace(0.9, 0.4, 6)[:, None]
    swapped = ["a", "b", "c", "d", "f", "e"]
    assert agreement_stats(swapped, labels, acc).test.p_better == pytest.approx(6 / 720)
    two_swaps = ["b", "a", "c", "d", "f", "e"]
    assert agreement_stats(two_swaps, labels, acc).test.p_better == pytest.approx(12 / 720)


def test_selector_costs_read_the_probe_log_once_per_trial_key(tmp_path):
    from petl_analysis.select import PROBE_SELECTORS, rank_by_proxy
    from petl_analysis.validate.run import selector_costs

    probe = _probe()
    path = tmp_path / "probe.json"
    probe.save(path)
    log = tmp_path / "probe.json.trials.jsonl"
    lines = [
        {"key": "k1", "kind": "subspace", "status": "ok", "payload": {}, "result": {}, "wall_time_s": 10.0},
        {"key": "k2", "kind": "subspace", "status": "ok", "payload": {}, "result": {}, "wall_time_s": 5.0},
        {"key": "k1", "kind": "subspace", "status": "ok", "payload": {}, "result": {}, "wall_time_s": 10.0},
        {"key": "k3", "kind": "subspace", "status": "failed", "payload": {}, "error": "x"},
    ]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    from petl_analysis.models import create_model

    net = create_model(probe.model)
    rankings = {
        "d90": PROBE_SELECTORS.get("d90")(probe),
        "d90+acc": PROBE_SELECTORS.get("d90+acc")(probe),
        "constant": rank_by_proxy(
            "constant", net, None, {t.target: t.units for t in probe.targets}, model_spec=probe.model
        ),
    }
    costs = selector_costs(rankings, str(path))
    # k1 logged twice (a resumed run) is one training; the failed k3 trained nothing that counts
    assert (costs["d90"].trainings, costs["d90"].seconds) == (2, 15.0) and costs["d90+acc"] == costs["d90"]
    assert costs["d90"].source == str(log) and costs["d90"].text() == "2 trainings, 15 s"
    assert costs["constant"].trainings == 0 and costs["constant"].seconds < 1
    missing = selector_costs(rankings, str(tmp_path / "elsewhere.json"))["d90"]
    assert math.isnan(missing.seconds) and missing.text() == "unknown (probe trial log not found)"


def test_a_version_1_validation_file_migrates():
    import pathlib

    v1 = json.loads((pathlib.Path(__file__).parent / "data/legacy_validation_v1/validation.json").read_text())
    assert v1["version"] == 1
    v = ValidationResult.from_dict(v1)
    a = v.agreement[0]
    assert a.p_better == v1["agreement"][0]["p_random"]
    # the random-bootstrap "95%" interval is not relabelled: the span is recomputed over every seed resample
    acc = np.array([next(e.val_per_seed for e in v.oracle if e.method == a.method and e.target == t) for t in v.sets])
    assert a.spearman_span == seed_span(a.order, v.sets, acc)[0]
    assert a.classes() == [[t] for t in a.order] and math.isnan(a.p_worse) and a.cost is None
    assert v.oracle_cost == {}


def test_tie_classes_and_p_values_as_the_report_writes_them():
    from petl_analysis.validate.result import format_classes, format_p

    assert format_classes([["a"], ["b", "c", "d", "e", "f"]]) == "6 sets, 2 classes (1+5)"
    assert format_classes([["a"], ["b"]]) == "2 sets, strict"
    assert format_classes([["a", "b", "c"]]) == "3 sets, all tied"
    assert format_p(0.0167, 0.15) == "0.017 (0.150)" and format_p(math.nan, math.nan) == "-"


# ------------------------------------------------------------------------------------------------ the regret maths


@pytest.mark.parametrize(
    "budget, groups", [(500, None), (2_000, None), (2_000, [["mlp.fc1"], ["attn.v", "attn.q", "attn.proj"]])]
)
def test_plan_shares_equal_brute_force_over_every_order(budget, groups):
    # The recursion over (chosen sets, sets still fitting) against planning every order consistent with the ties.
    from petl_analysis.models import ModelSpec
    from petl_analysis.plan import plan_for_budget
    from petl_analysis.plan.planner import greedy_plan_shares
    from petl_analysis.task import prepare_model
    from petl_analysis.validate.run import _order_ranking

    probe = synthetic_probe()
    sets = {t.target: list(t.units) for t in probe.targets}
    groups = groups or [list(sets)]
    model = ModelSpec("petl_vit_tiny", weights="random")
    net = prepare_model(model, 10)

    def config(order):
        plan = plan_for_budget(_order_ranking(order, sets, model, "x"), net, budget, model_spec=model)
        return json.dumps(plan.config, sort_keys=True)

    orders = [
        list(itertools.chain.from_iterable(parts))
        for parts in itertools.product(*[itertools.permutations(g) for g in groups])
    ]
    brute: dict[str, float] = {}
    for order in orders:
        brute[config(order)] = brute.get(config(order), 0.0) + 1 / len(orders)
    exact: dict[str, float] = {}
    for order, share in greedy_plan_shares(groups, sets, net, budget).shares.items():
        exact[config(order)] = exact.get(config(order), 0.0) + share
    assert exact.keys() == brute.keys() and len(brute) > 1
    assert all(exact[k] == pytest.approx(brute[k]) for k in brute)
    # past its limit of budget checks it samples orders, and says so (below every whole set it needs no count)
    sampled = greedy_plan_shares(groups, sets, net, budget, max_checks=1)
    assert sampled.how.startswith("sampled: 32 orders") == (budget > 500)
    assert sum(sampled.shares.values()) == pytest.approx(1.0)
    assert {config(o) for o in sampled.shares} <= set(brute)


def test_plan_shares_do_not_depend_on_the_string_hash_seed():
    # The recursion walks sets of target names; in their hash order the shares' keys and float sums would change
    # from one process to the next (a committed validation.json then does not re-derive bit for bit).
    import subprocess
    import sys

    code = (
        "from petl_analysis.models import ModelSpec; from petl_analysis.task import prepare_model; "
        "from petl_analysis.plan.planner import greedy_plan_shares; "
        "units = {t: [f'blocks.{b}.{t}' for b in range(4)] for t in "
        "['attn.q', 'attn.k', 'attn.v', 'attn.proj', 'mlp.fc1', 'mlp.fc2']}; "
        "net = prepare_model(ModelSpec('petl_vit_tiny', weights='random'), 10); "
        "print(repr(list(greedy_plan_shares([list(units)], units, net, 3_900).shares.items())))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(runs) == 1 and "attn" in runs.pop()


def test_paired_difference_interval():
    from petl_analysis.validate.regret import expected_per_seed, paired_difference, reference_index

    span = paired_difference([0.5, 0.7, 0.6], [0.6, 0.6, 0.6])
    assert span.per_seed == pytest.approx([-0.1, 0.1, 0.0]) and span.interval_kind == "seed span"
    assert span.interval == pytest.approx([-0.1, 0.1]) and span.mean == pytest.approx(0.0)
    t = paired_difference([0.5, 0.7, 0.6, 0.8], [0.6] * 4)
    from scipy import stats

    d = np.array([-0.1, 0.1, 0.0, 0.2])
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert t.interval == pytest.approx([d.mean() - half, d.mean() + half]) and t.interval_kind.startswith("t 95%")
    assert expected_per_seed([0.25, 0.75], [[0.4, 0.8], [0.8, 0.4]]) == pytest.approx([0.7, 0.5])
    assert reference_index([0.5, 0.7, 0.7], ["c", "b", "a"]) == 2  # best on split A; ties by key, never by split B


def test_version_1_validation_loads_with_its_old_regret():
    from pathlib import Path

    v = ValidationResult.load(Path(__file__).resolve().parent / "data" / "legacy_validation_v1" / "validation.json")
    assert v.judged_on == "" and v.probe_data == v.data and not v.regrets
    assert math.isfinite(v.mean_regret(v.selectors[0], v.budgets[0]))


def test_probe_cost_counts_only_the_trials_the_probe_uses(tmp_path):
    # A probe log also keeps the trials of an earlier probe under the same name (here one with another grid): the
    # selectors' cost is what this probe's order needed, not the whole log.
    from pathlib import Path

    from petl_analysis.models import ModelSpec
    from petl_analysis.probe import ProbeConfig, default_probe_recipe, run_probe
    from petl_analysis.select import PROBE_SELECTORS
    from petl_analysis.trials import open_trial_log, read_records, trial_cost
    from petl_analysis.validate.run import selector_costs

    recipe = dataclasses.replace(default_probe_recipe(), epochs=1, eval_batch_size=1024)
    model, data = ModelSpec("petl_vit_tiny", weights="random"), DataSpec("digits", SplitSpec(max_train=60, part="A"))
    out = tmp_path / "probe.json"
    for dims in ([4, 16], [8]):  # the first probe's d = 4 and 16 stay in the log, unused by the second
        probe = run_probe(model, data, ProbeConfig(targets=["attn.v"], dims=dims, seeds=1, recipe=recipe), out=out)
    records = list(read_records(open_trial_log(Path(str(out) + ".trials.jsonl"))))
    whole = trial_cost(records)
    ranking = {"d90": PROBE_SELECTORS.get("d90")(probe)}
    cost = selector_costs(ranking, str(out), probe)["d90"]
    assert whole[0] == 3 + 3 and cost.trainings == 3 + 1  # three baselines, then each probe's subspace trials
    assert cost.seconds < whole[1]
    assert selector_costs(ranking, str(out))["d90"].trainings == whole[0]  # without the probe: the whole log
