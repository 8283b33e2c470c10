from __future__ import annotations

import dataclasses

import pytest
from helpers import synthetic_probe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petl_analysis.accounting import count_parameters
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec, create_model
from petl_analysis.plan import Plan, export_peft, fixed_plan, plan_for_budget, reverse_ranking, validate_plan
from petl_analysis.select import rank_from_probe
from petl_analysis.tuners import apply_method

RANKING = rank_from_probe(synthetic_probe())


def _model(width: int = 64, depth: int = 4, classes: int = 10):
    return create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=classes,
                                  kwargs=dict(embed_dim=width, depth=depth, num_heads=4)))


@pytest.mark.parametrize("method", ["kadaptation", "lora"])
def test_plan_counts_equal_injected_counts(tmp_path, method: str) -> None:
    model = _model()
    plan = plan_for_budget(RANKING, model, 5_000, method=method)
    assert plan.used <= 5_000 and plan.targets[0].target == "attn.v"
    loaded = Plan.load(plan.save(tmp_path / "p.json"))
    assert loaded == plan
    validate_plan(loaded, model)
    apply_method(model, loaded.method_config())
    assert count_parameters(model).as_dict() == plan.trainable


def test_plan_grows_with_budget_and_refuses_below_minimum() -> None:
    model = _model()
    small, big = plan_for_budget(RANKING, model, 1_000), plan_for_budget(RANKING, model, 40_000)
    assert len(big.targets) >= len(small.targets) and big.used > small.used
    with pytest.raises(PetlError, match=r"below the smallest valid kadaptation plan \(\d+ trainable"):
        plan_for_budget(RANKING, model, 50)
    with pytest.raises(PetlError, match="budget must be a positive"):
        plan_for_budget(RANKING, model, 0)


def test_mismatched_plan_is_rejected() -> None:
    model = _model()
    plan = plan_for_budget(RANKING, model, 5_000)
    with pytest.raises(PetlError, match="made for model 'petl_vit_tiny', not 'vit_tiny_patch16_224'"):
        validate_plan(plan, model, ModelSpec("vit_tiny_patch16_224"))
    edited = dataclasses.replace(plan, trainable={**plan.trainable, "total_incl_head": 1})
    with pytest.raises(PetlError, match="does not match"):
        validate_plan(edited, model)
    with pytest.raises(PetlError, match="10-class head"):
        validate_plan(plan, _model(classes=3))
    with pytest.raises(PetlError):
        validate_plan(plan, _model(width=48))  # n no longer divides / counts differ


def test_fixed_and_worst_plans() -> None:
    model = _model()
    fixed = fixed_plan(model, ["attn.q", "attn.v"], 4_000, model_spec=RANKING.model)
    assert fixed.config["targets"] == [f"blocks.{b}.attn.{x}" for b in range(4) for x in "qv"]
    worst = plan_for_budget(reverse_ranking(RANKING), model, 4_000)
    assert worst.targets[0].target != "attn.v"


def test_export_peft() -> None:
    model = _model()
    cfg, notes = export_peft(plan_for_budget(RANKING, model, 5_000, method="lora"), model)
    assert cfg["peft_type"] == "LORA" and "blocks.0.attn.qkv" in cfg["target_modules"]
    assert any("row slices" in n for n in notes)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(budget=st.integers(min_value=1, max_value=300_000), width=st.sampled_from([32, 64]),
       depth=st.integers(min_value=1, max_value=4), method=st.sampled_from(["kadaptation", "lora"]),
       head_in_budget=st.booleans())
def test_planner_never_exceeds_the_budget(budget, width, depth, method, head_in_budget) -> None:
    model = _model(width=width, depth=depth)
    probe = synthetic_probe({label: [f"blocks.{b}.{label}" for b in range(depth)] for label in
                             ("attn.v", "attn.q", "mlp.fc1", "attn.proj")})
    try:
        plan = plan_for_budget(rank_from_probe(probe), model, budget, method=method, head_in_budget=head_in_budget)
    except PetlError as e:
        assert "below the smallest valid" in str(e)
        return
    used = plan.trainable["total_incl_head" if head_in_budget else "total_excl_head"]
    assert used == plan.used <= budget
