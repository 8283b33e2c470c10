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
    return create_model(
        ModelSpec(
            "petl_vit_tiny",
            weights="random",
            num_classes=classes,
            kwargs=dict(embed_dim=width, depth=depth, num_heads=4),
        )
    )


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
    with pytest.raises(
        PetlError,
        match=r"^Plan\.trainable\.total_incl_head must be the sum of head, adapter, shared, bias_norm, backbone = \d+; got 1$",
    ):
        dataclasses.replace(plan, trainable={**plan.trainable, "total_incl_head": 1})
    edited = dataclasses.replace(plan, trainable={**plan.trainable, "model_total": plan.trainable["model_total"] + 1})
    with pytest.raises(
        PetlError,
        match=rf"plan field 'trainable.model_total' is {plan.trainable['model_total'] + 1}, "
        rf"this model gives {plan.trainable['model_total']}; the count does not match",
    ):
        validate_plan(edited, model)
    sized = dataclasses.replace(plan, model=dataclasses.replace(plan.model, img_size=32))
    with pytest.raises(PetlError, match=r"plan field 'model.img_size' is 32, the model given has null"):
        validate_plan(sized, model, plan.model)
    with pytest.raises(PetlError, match="10-class head"):
        validate_plan(plan, _model(classes=3))
    with pytest.raises(PetlError):
        validate_plan(plan, _model(width=48))  # n no longer divides / counts differ


def _plan_dict() -> dict:
    return plan_for_budget(RANKING, _model(), 5_000).to_dict()


def _edit(d: dict, path: str, value) -> dict:
    d = {**d}
    keys = path.split(".")
    inner = d
    for k in keys[:-1]:
        k = int(k) if isinstance(inner, list) else k
        inner[k] = dict(inner[k]) if isinstance(inner[k], dict) else list(inner[k])
        inner = inner[k]
    inner[int(keys[-1]) if isinstance(inner, list) else keys[-1]] = value
    return d


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("trainable.model_total", None, "Plan.trainable.model_total must be an integer >= 0; got None"),
        ("trainable.head", -3, "Plan.trainable.head must be an integer >= 0; got -3"),
        ("trainable.adapter", 7.5, "plan.trainable.adapter must be an int; got 7.5"),
        ("trainable.adapter", 1, "Plan.trainable.total_incl_head must be the sum of head, adapter"),
        ("trainable.total_excl_head", 0, "Plan.trainable.total_excl_head must be total_incl_head - head = "),
        ("trainable", {"head": 1}, "Plan.trainable must be an object of head, adapter"),
        ("budget", None, "Plan.budget must be an integer >= 1 (only a fixed-size plan has none); got None"),
        ("budget", 0, "Plan.budget must be an integer >= 1, or unset for a fixed-size plan; got 0"),
        ("budget", 10, "Plan.used must be at most the budget, 10; got "),
        ("num_classes", None, "Plan.num_classes must be an integer >= 1; got None"),
        ("head_in_budget", None, "Plan.head_in_budget must be true or false; got None"),
        ("head_in_budget", True, "Plan.used must be trainable.total_incl_head = "),
        ("used", None, "Plan.used must be an integer >= 0; got None"),
        ("used_fraction", None, "Plan.used_fraction must be used / budget = "),
        ("used_fraction", 0.123456, "Plan.used_fraction must be used / budget = "),
        ("method", "nope", "Plan.method must be one of 'adapter', 'bitfit'"),
        ("method", "lora", "Plan.config.method must be 'lora' (the plan's method); got 'kadaptation'"),
        ("config.n", "four", "Plan.config: KAdaptationConfig.n must be an integer >= 1; got 'four'"),
        ("config.bogus", 1, "Plan.config: kadaptation config: unknown option 'bogus'"),
        ("targets", [], "Plan.targets must be a non-empty list of planned targets"),
        ("targets.0.rank", None, "plan.targets[0]: PlannedTarget.rank must be an integer >= 1; got None"),
        ("targets.0.units", [], "plan.targets[0]: PlannedTarget.units must be a non-empty list of unit names"),
        ("targets.0.d90", "low", "plan.targets[0].d90 must be a float or None; got 'low'"),
        ("model", None, "Plan.model must be a ModelSpec; got None"),
        ("model.img_size", 0, "plan.model: ModelSpec.img_size must be an integer >= 1, or unset"),
        ("notes", None, "Plan.notes must be a list of strings; got None"),
        ("policy", None, "Plan.policy must be a str; got None"),
    ],
)
def test_every_plan_field_is_checked_with_one_line_naming_it(tmp_path, path, value, message) -> None:
    from petl_analysis.io import atomic_write_json

    file = atomic_write_json(tmp_path / "plan.json", _edit(_plan_dict(), path, value))
    with pytest.raises(PetlError) as e:
        Plan.load(file)
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"{str(file)!r}: ") and message in text, text


def test_edited_config_targets_name_the_field() -> None:
    model = _model()
    plan = plan_for_budget(RANKING, model, 5_000)
    edited = dataclasses.replace(plan, config={**plan.config, "targets": ["blocks.9.attn.v"]})
    with pytest.raises(PetlError, match=r"plan field 'config.targets': target 'blocks.9.attn.v': block 9 does not"):
        validate_plan(edited, model)


def test_fixed_and_worst_plans() -> None:
    model = _model()
    fixed = fixed_plan(model, ["attn.q", "attn.v"], 4_000, model_spec=RANKING.model)
    assert fixed.config["targets"] == [f"blocks.{b}.attn.{x}" for b in range(4) for x in "qv"]
    worst = plan_for_budget(reverse_ranking(RANKING), model, 4_000)
    assert worst.targets[0].target != "attn.v"


def test_export_peft(tmp_path) -> None:
    import json

    from petl_analysis.plan.peft import PeftExport

    model = _model()
    record = export_peft(plan_for_budget(RANKING, model, 5_000, method="lora"), model)
    cfg = record.peft_config
    assert cfg["peft_type"] == "LORA" and "blocks.0.attn.qkv" in cfg["target_modules"]
    assert any("row slices" in n for n in record.not_mapped) and record.approximate is False
    # Our file beside the plan is an artefact (header, atomic write); one written before had no header and loads.
    path = record.save(tmp_path / "plan.peft.json")
    written = json.loads(path.read_text())
    assert (written["schema"], written["version"]) == ("peft-export", 1) and PeftExport.load(path) == record
    body = {k: v for k, v in written.items() if k not in ("schema", "version", "tool_version")}
    path.write_text(json.dumps(body))
    assert PeftExport.load(path) == record
    with pytest.warns(DeprecationWarning, match="read the attribute PeftExport.method"):
        assert record["method"] == "LORA"  # the dict export_peft returned before still reads, with a warning


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    budget=st.integers(min_value=1, max_value=300_000),
    width=st.sampled_from([32, 64]),
    depth=st.integers(min_value=1, max_value=4),
    method=st.sampled_from(["kadaptation", "lora"]),
    head_in_budget=st.booleans(),
)
def test_planner_never_exceeds_the_budget(budget, width, depth, method, head_in_budget) -> None:
    model = _model(width=width, depth=depth)
    probe = synthetic_probe(
        {
            label: [f"blocks.{b}.{label}" for b in range(depth)]
            for label in ("attn.v", "attn.q", "mlp.fc1", "attn.proj")
        }
    )
    try:
        plan = plan_for_budget(rank_from_probe(probe), model, budget, method=method, head_in_budget=head_in_budget)
    except PetlError as e:
        assert "below the smallest valid" in str(e)
        return
    used = plan.trainable["total_incl_head" if head_in_budget else "total_excl_head"]
    assert used == plan.used <= budget


@pytest.mark.parametrize("method", ["kadaptation", "lora"])
@pytest.mark.parametrize("budget", [900, 5_000, 23_456, 80_000])
def test_bisected_sizing_is_the_exhaustive_scan(method: str, budget: int) -> None:
    # The planner bisects each rank ladder (counting every rung walks the model); it must pick what counting every
    # configuration picks: the most of the budget, ties to the larger n, then the smaller rank.
    from petl_analysis.plan import planner

    model = _model()
    units = planner.resolve_targets(model, ["blocks.0.attn.qkv", "blocks.1.mlp.fc1", "blocks.3.attn.proj"])
    fitting = []
    for cfg in planner._configs(method, {}, units, cheapest_only=False):
        used = planner._used(planner._count(model, cfg), False)
        if used <= budget:
            fitting.append((used, getattr(cfg, "n", 0), -cfg.rank, cfg))
    want = max(fitting, key=lambda t: t[:3])
    used, cfg, _ = planner._largest_config(model, method, {}, units, budget, False)
    assert (used, cfg) == (want[0], want[3])
