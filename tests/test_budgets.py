"""Budgets that scale with the model (issue 23, item 4): one parser, relative budgets, model-derived defaults, and
plans that record the form asked for (schema version 2, version 1 files migrated)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import synthetic_probe

from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec, create_model
from petl_analysis.plan import Plan, plan_for_budget, plan_study
from petl_analysis.plan.budgets import (
    Budget,
    BudgetSpec,
    backbone_parameters,
    default_budgets,
    parse_budgets,
    resolve_budgets,
)
from petl_analysis.select import rank_from_probe

ROOT = Path(__file__).resolve().parents[1]
#: The bundled model's parameters (202,826) less its 10-class head (64 x 10 + 10).
BUNDLED_BACKBONE = 202_826 - 650


@pytest.fixture(scope="module")
def bundled():
    return create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=10))


def test_forms_parse_to_typed_budgets() -> None:
    assert parse_budgets("2000, 8k,1.5m,0.05%,1e3, 2_500") == [
        BudgetSpec("2000", 2000, False),
        BudgetSpec("8k", 8000, False),
        BudgetSpec("1.5m", 1_500_000, False),
        BudgetSpec("0.05%", 0.05, True),
        BudgetSpec("1e3", 1000, False),
        BudgetSpec("2_500", 2500, False),
    ]
    assert parse_budgets(None) == [] and parse_budgets("") == [] and parse_budgets([300, "1%"])[0].value == 300


@pytest.mark.parametrize(
    "text, why",
    [
        ("x", "'x' is not a budget; expected"),
        ("8k,abc", "'abc' is not a budget"),
        ("0", "a count must be a whole number of at least 1"),
        ("-5", "'-5' is not a budget"),
        ("1.5", "a count must be a whole number"),
        ("0%", "a percentage must be above 0 and at most 100"),
        ("120%", "a percentage must be above 0 and at most 100"),
        ("5%%", "'5%%' is not a budget"),
    ],
)
def test_bad_budgets_are_one_line_naming_the_option_and_the_forms(text: str, why: str) -> None:
    with pytest.raises(PetlError) as e:
        parse_budgets(text, "--budgets")
    message = str(e.value)
    assert message.startswith("--budgets: ") and why in message and "\n" not in message
    assert "2000, 8k, 1.5m" in message and "0.05%" in message


def test_relative_budgets_are_shares_of_every_parameter_but_the_head(bundled) -> None:
    assert backbone_parameters(bundled) == BUNDLED_BACKBONE
    wider_head = create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=62))
    assert backbone_parameters(wider_head) == BUNDLED_BACKBONE  # the dataset's class count does not move it
    assert resolve_budgets("1%,8k,2%,8000", bundled) == [
        Budget(2022, "1%", BUNDLED_BACKBONE),
        Budget(4044, "2%", BUNDLED_BACKBONE),
        Budget(8000, "8k"),
    ]
    with pytest.raises(PetlError, match=r"budget 0.0001% of a 202,176-parameter backbone is less than one parameter"):
        resolve_budgets("0.0001%", bundled)


def test_default_budgets_follow_the_model(bundled) -> None:
    # The bundled model: the floor, so its committed reports (2k, 8k, 32k) stay what the defaults give.
    assert [b.params for b in default_budgets(bundled)] == [2_000, 8_000, 32_000]
    assert [b.params for b in resolve_budgets(None, bundled)] == [2_000, 8_000, 32_000]
    assert {b.requested for b in default_budgets(bundled)} == {"default"}
    # ViT-B/16: rank-1 LoRA on q,v is 36,864 (KAdaptation's cheapest, 36,880): every planned method fits at the start.
    vit_b = create_model(ModelSpec("vit_base_patch16_224", weights="random", num_classes=10))
    assert [b.params for b in default_budgets(vit_b)] == [37_000, 148_000, 592_000]
    assert [b.params for b in default_budgets(vit_b, ["lora", "linear"])] == [37_000, 148_000, 592_000]


def test_plans_record_the_form_asked_for_and_the_backbone(bundled, tmp_path) -> None:
    ranking = rank_from_probe(synthetic_probe())
    plan = plan_for_budget(ranking, bundled, "1%")
    assert (plan.budget, plan.budget_requested, plan.backbone_params) == (2022, "1%", BUNDLED_BACKBONE)
    assert plan.used <= 2022
    again = Plan.load(plan.save(tmp_path / "plan.json"))
    assert again == plan and json.loads((tmp_path / "plan.json").read_text())["version"] == 2
    assert plan_for_budget(ranking, bundled, 5000).budget_requested == "5000"
    spec = ModelSpec("petl_vit_tiny", weights="random")
    plans, _ = plan_study(spec, bundled, "1%,8k", ["lora", "adapter", "linear"], ranking)
    assert {(p.method, p.budget, p.budget_requested) for p in plans} >= {
        ("lora", 2022, "1%"),
        ("lora", 8000, "8k"),
        ("adapter", 8000, "8k"),
        ("linear", None, None),
    }
    assert all(p.backbone_params == BUNDLED_BACKBONE for p in plans)


def test_an_edited_budget_that_disagrees_with_its_request_is_refused(bundled) -> None:
    plan = plan_for_budget(rank_from_probe(synthetic_probe()), bundled, "2%").to_dict()
    with pytest.raises(PetlError, match=r"^Plan\.budget must be 6065 \(budget_requested '3%' of 202,176\); got 4044$"):
        Plan.from_dict({**plan, "budget_requested": "3%"})
    with pytest.raises(PetlError, match="Plan.backbone_params must be the backbone count that 2% is of; got None"):
        Plan.from_dict({**plan, "backbone_params": None})
    with pytest.raises(PetlError, match="Plan.budget_requested: 'lots' is not a budget"):
        Plan.from_dict({**plan, "budget_requested": "lots"})


def test_version_1_plan_files_are_migrated_not_refused() -> None:
    # the demo's plan as committed before plans recorded their budget request (kept as a fixture)
    path = ROOT / "tests" / "data" / "legacy_plans_v1" / "plan_16000_kadaptation-fixed.json"
    assert json.loads(path.read_text())["version"] == 1
    plan = Plan.load(path)
    assert (plan.budget, plan.budget_requested, plan.backbone_params) == (16_000, None, None)
    with pytest.raises(PetlError, match="plan schema version 7 is not supported; expected version 2"):
        Plan.from_dict({**json.loads(path.read_text()), "version": 7})


@pytest.mark.parametrize(
    "args, message",
    [
        (["sweep", "--budgets", "2k,lots", "--methods", "linear"], "--budgets: 'lots' is not a budget"),
        (["run", "-d", "digits", "--budgets", "0%"], "--budgets: '0%' is not a budget: a percentage must be above 0"),
        (["plan", "--ranking", "missing.json", "--budgets", "1.5"], "--budgets: '1.5' is not a budget"),
        (
            ["validate", "--probe", "missing.json", "--oracle-budget", "1%,2%"],
            "--oracle-budget: '1%,2%' gives 2 budgets; the oracle",
        ),
        (["validate", "--probe", "missing.json", "--budgets", "k"], "--budgets: 'k' is not a budget"),
    ],
)
def test_cli_budget_options_share_the_parser(tmp_path, monkeypatch, args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from petl_analysis.cli.main import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and message in errors[0], result.output
    assert list(tmp_path.iterdir()) == []  # refused before anything is written
