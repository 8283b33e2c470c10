from __future__ import annotations

import dataclasses
import math

import pytest
from helpers import synthetic_probe

from petl_analysis.errors import PetlError
from petl_analysis.select import Ranking, rank_by_proxy, rank_correlations, rank_from_probe, run_select
from petl_analysis.task import DataSpec, build_task


def test_d90_ranking_order_ties_and_not_reached(tmp_path) -> None:
    ranking = rank_from_probe(synthetic_probe())
    assert ranking.order() == ["attn.v", "attn.q", "mlp.fc1", "attn.proj"]
    by = {e.target: e for e in ranking.entries}
    assert by["attn.v"].tied_with == ["attn.q"]  # CIs [25, 60] and [35, 90] overlap
    assert by["mlp.fc1"].tied_with == []
    assert not by["attn.proj"].reached and by["attn.proj"].d90 is None
    path = ranking.save(tmp_path / "r.json")
    assert Ranking.load(path) == ranking


def test_d90_declares_its_unreached_sets_one_tie_class_and_d90_acc_breaks_it_by_accuracy() -> None:
    from helpers import below_grid_probe

    from petl_analysis.select import PROBE_SELECTORS

    probe = below_grid_probe(all_below=False)  # attn.v, mlp.fc1 reached (d90 <= 4), attn.q not
    probe.targets.append(dataclasses.replace(probe.targets[2], target="attn.k", val_mean=[0.5, 0.6, 0.9]))
    d90 = PROBE_SELECTORS.get("d90")(probe)
    assert d90.tie_groups() == [["attn.v", "mlp.fc1"], ["attn.k", "attn.q"]]  # equal d90s tie; unreached tie, last
    assert d90.midranks() == {"attn.v": 1.5, "mlp.fc1": 1.5, "attn.k": 3.5, "attn.q": 3.5}
    assert d90.order() == ["attn.v", "mlp.fc1", "attn.k", "attn.q"]  # label order inside, what a planner follows
    assert d90.details["n_measured"] == 2 and d90.selector == "d90"
    acc = PROBE_SELECTORS.get("d90+acc")(probe)
    assert acc.selector == "d90+acc" and all(e.group == 0 for e in acc.entries)  # a strict order, no declared tie
    assert acc.order() == [t.target for t in probe.ranked()]
    assert acc.order()[2:] == ["attn.k", "attn.q"] and acc.tie_groups()[2:] == [["attn.k"], ["attn.q"]]
    probe.targets[-1].val_mean = [0.5, 0.5, 0.5]  # attn.k now trains worse at d = D: d90+acc moves it, d90 does not
    assert PROBE_SELECTORS.get("d90+acc")(probe).order()[2:] == ["attn.q", "attn.k"]
    assert PROBE_SELECTORS.get("d90")(probe).order() == d90.order()


def test_proxy_ties_apla_tail_and_the_constant_order() -> None:
    from petl_analysis.models import ModelSpec, create_model

    net = create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=10))
    sets = {
        "mlp.fc1": [f"blocks.{b}.mlp.fc1" for b in range(4)],
        "attn.v": [f"blocks.{b}.attn.v" for b in range(4)],
        "attn.proj": [f"blocks.{b}.attn.proj" for b in range(4)],
        "mixed": ["blocks.0.attn.proj", "blocks.0.mlp.fc2"],
    }
    spec = synthetic_probe().model
    apla = rank_by_proxy("apla", net, None, sets, model_spec=spec)
    # the rule names attn.proj only: the partly-proj set is not "second", it is in the tied tail
    assert apla.tie_groups() == [["attn.proj"], ["mixed", "attn.v", "mlp.fc1"]]
    assert apla.order() == ["attn.proj", "mixed", "attn.v", "mlp.fc1"]  # scores then labels, for the planner
    constant = rank_by_proxy("constant", net, None, sets, model_spec=spec)
    assert constant.order() == list(sets) and constant.tie_groups() == [[s] for s in sets]
    assert constant.details["compute_s"] >= 0
    # equal proxy scores tie: two sets listed twice under other names score exactly alike under kappa
    twins = {"a": sets["attn.v"], "b": sets["attn.v"], "c": sets["mlp.fc1"]}
    kappa = rank_by_proxy("kappa", net, None, twins, model_spec=spec)
    assert ["a", "b"] in kappa.tie_groups() and len(kappa.tie_groups()) == 2


def test_select_accepts_d90_acc_and_constant_beside_d90() -> None:
    from petl_analysis.select.run import _check_select

    _check_select(synthetic_probe(), ["d90+acc", "constant"])  # no error
    ranking = run_select(synthetic_probe(), ["d90+acc"])  # read from the probe: no data, no model
    assert ranking.selector == "d90" and ranking.details["proxies"]["d90+acc"]["spearman"] == pytest.approx(1.0)
    with pytest.raises(PetlError, match="unknown selector 'd90\\+acc'"):
        _check_select(None, ["d90+acc"])  # without a probe there is no d90


def test_correlations() -> None:
    a = rank_from_probe(synthetic_probe())
    assert rank_correlations(a, a)["spearman"] == pytest.approx(1.0)
    rev = Ranking(a.selector, a.model, a.data, [type(e)(**{**e.__dict__, "rank": 5 - e.rank}) for e in a.entries])
    assert rank_correlations(a, rev)["kendall"] == pytest.approx(-1.0)


@pytest.mark.parametrize("proxy", ["rgn", "fisher", "kappa", "gps", "spt", "apla", "random"])
def test_proxies_are_deterministic(proxy: str) -> None:
    from petl_analysis.data import SplitSpec
    from petl_analysis.models import ModelSpec, create_model

    tiny_vit = create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=10))
    task = build_task(DataSpec("digits", SplitSpec(max_train=60)), tiny_vit)
    sets = {
        "attn.v": [f"blocks.{b}.attn.v" for b in range(4)],
        "mlp.fc1": [f"blocks.{b}.mlp.fc1" for b in range(4)],
        "attn.proj": [f"blocks.{b}.attn.proj" for b in range(4)],
    }
    spec = synthetic_probe().model
    a = rank_by_proxy(proxy, tiny_vit, task, sets, model_spec=spec, n_batches=2, batch_size=16)
    b = rank_by_proxy(proxy, tiny_vit, task, sets, model_spec=spec, n_batches=2, batch_size=16)
    assert a.order() == b.order() and [e.score for e in a.entries] == [e.score for e in b.entries]
    assert all(e.score is not None and math.isfinite(e.score) for e in a.entries)


def test_select_needs_probe_or_proxy() -> None:
    with pytest.raises(PetlError, match="at least one proxy"):
        run_select(None, [])
    with pytest.raises(PetlError, match="unknown selector 'nope'"):
        run_select(synthetic_probe(), ["nope"])


def test_gps_spt_and_apla_rank_what_their_papers_say() -> None:
    from petl_analysis.data import SplitSpec
    from petl_analysis.models import ModelSpec, create_model
    from petl_analysis.select.selectors import gradient_parameter_selection, sensitivity_density

    net = create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=10))
    task = build_task(DataSpec("digits", SplitSpec(max_train=60)), net)
    sets = {
        "attn.v": [f"blocks.{b}.attn.v" for b in range(4)],
        "mlp.fc1": [f"blocks.{b}.mlp.fc1" for b in range(4)],
        "attn.proj": [f"blocks.{b}.attn.proj" for b in range(4)],
        "mixed": ["blocks.0.attn.proj", "blocks.0.mlp.fc2"],
    }
    spec = synthetic_probe().model
    apla = rank_by_proxy("apla", net, None, sets, model_spec=spec)  # a rule: no data
    assert apla.order()[0] == "attn.proj" and apla.order()[1] == "mixed"
    spt = sensitivity_density(net, task, sets, n_batches=2, batch_size=16, seed=0)
    assert all(0.0 <= v <= 1.0 for v in spt.values()) and max(spt.values()) > 0
    # The sensitive share is taken over the sets together: a tiny fraction leaves most sets with none.
    disjoint = {k: v for k, v in sets.items() if k != "mixed"}
    tight = sensitivity_density(net, task, disjoint, n_batches=2, batch_size=16, seed=0, fraction=1e-6)
    assert sum(v > 0 for v in tight.values()) == 1
    gps = gradient_parameter_selection(net, task, sets, n_batches=2, batch_size=16, seed=0)
    wider = gradient_parameter_selection(net, task, sets, n_batches=2, batch_size=16, seed=0, top_k=8)
    assert all(wider[k] <= gps[k] for k in sets)  # the mean of the top 8 per row is at most the top 1


def test_an_unresolved_gain_is_named_and_flags_the_ranking() -> None:
    import dataclasses

    from helpers import below_grid_probe

    from petl_analysis.probe import RESOLVED_IMAGES, unresolved_gain

    assert "does not beat the head" in unresolved_gain((0.90, 0.0), (0.88, 0.0), 269)
    # Half a validation image (the committed digits demo's gain) is rounding, not a gain to normalise by.
    half = unresolved_gain((0.9926, 0.0), (0.9944, 0.0019), 269)
    assert half is not None and f"0.5 of the 269 validation images, under {RESOLVED_IMAGES}" in half
    assert "seed spread" in unresolved_gain((0.80, 0.03), (0.82, 0.03), 1500)
    assert unresolved_gain((0.80, 0.003), (0.82, 0.004), 1500) is None  # 30 images, 5x the spread
    assert unresolved_gain((0.80, 0.0), (0.805, 0.0), 0) is None  # no split size known: sign and spread only
    probe = below_grid_probe(all_below=False, lp=0.90, ft=0.905)
    assert "warning" not in rank_from_probe(probe).details  # n_val unknown (0): a positive gain stands
    warning = rank_from_probe(dataclasses.replace(probe, n_val=269)).details["warning"]
    assert warning.startswith(
        "full fine-tuning (90.5% validation) beats the head trained alone (90.0%) by 1.3 of "
        "the 269 validation images, under 2"
    )


def test_probe_table_ranking_and_report_share_one_d90_order():
    # Three targets with the same d90 (all reached at the smallest d tried) and different best validation accuracy,
    # listed worst first: the probe's own table, ranking.json and the report's probe rows must agree (they did not:
    # the probe kept the input order on equal d90s while the ranking sorted them by accuracy).
    from helpers import below_grid_probe

    from petl_analysis.report.tables import probe_rows

    probe = below_grid_probe(all_below=True)
    for t, acc in zip(probe.targets, ([0.9, 0.9, 0.9], [0.9, 0.91, 0.92], [0.9, 0.95, 0.91])):
        t.val_mean = acc
    expected = ["attn.q", "mlp.fc1", "attn.v"]
    assert [t.target for t in probe.ranked()] == expected
    assert [r["target"] for r in probe.table()] == expected
    assert rank_from_probe(probe, tie_break="accuracy").order() == expected  # d90+acc: the probe table's order
    assert [r.target for r in probe_rows(probe)] == expected
    assert [t.target for t in probe.ranked(classic=True)] == rank_from_probe(
        probe, classic=True, tie_break="accuracy"
    ).order()
    # d90 itself declares the equal d90s one tie class (ordered by label inside, not by accuracy)
    assert rank_from_probe(probe).tie_groups() == [["attn.q", "attn.v", "mlp.fc1"]]
