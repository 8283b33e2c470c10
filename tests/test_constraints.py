"""Declared field constraints (:mod:`petl_analysis.constraints`): the constraint types, the one message format, and
every config class declaring what each of its fields accepts."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import math
import pkgutil
from numbers import Integral, Real
from pathlib import Path
from typing import ClassVar

import pytest

import petl_analysis
from petl_analysis.constraints import (
    Interval,
    ListOf,
    Options,
    Satisfies,
    Unset,
    check_value,
    describe,
    from_annotation,
    validate_fields,
    validate_params,
)
from petl_analysis.errors import PetlError

ROOT = Path(petl_analysis.__file__).resolve().parent

#: Dataclasses named like a config that declare no constraints, and why.
EXEMPT = {
    "BudgetSpec": "built only by parse_budget, which checks the text it comes from",
}


def _config_classes() -> list[type]:
    """Every dataclass of the package named ``*Config`` / ``*Spec`` or declaring ``_parameter_constraints``."""
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(petl_analysis.__path__, "petl_analysis."):
        if info.name.startswith("petl_analysis.cli"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if not (isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__):
                continue
            if name.endswith(("Config", "Spec")) or hasattr(obj, "_parameter_constraints"):
                found[f"{obj.__module__}.{name}"] = obj
    return [found[k] for k in sorted(found)]


CONFIGS = [c for c in _config_classes() if c.__name__ not in EXEMPT]


def test_the_config_classes_are_found() -> None:
    names = {c.__name__ for c in CONFIGS}
    assert {
        "ProbeConfig",
        "SplitSpec",
        "DataSpec",
        "ModelSpec",
        "PipelineConfig",
        "Plan",
        "LoraConfig",
        "Recipe",
    } <= names
    from petl_analysis.tuners import METHODS

    assert {METHODS.get(m).config_class.__name__ for m in METHODS.names()} <= names


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_field_declares_its_constraints(cls: type) -> None:
    declared = set(getattr(cls, "_parameter_constraints", {}))
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    assert fields - declared == set(), f"{cls.__name__}: fields without constraints"
    assert declared - fields == set(), f"{cls.__name__}: constraints of no field"
    assert "validate_fields(self)" in inspect.getsource(cls.__post_init__), f"{cls.__name__} checks nothing"


def test_every_method_config_accepts_only_its_own_method_name() -> None:
    from petl_analysis.tuners import METHODS

    for name in METHODS.names():
        cls = METHODS.get(name).config_class
        (only,) = cls._parameter_constraints["method"]
        assert only.is_satisfied_by(name) and not only.is_satisfied_by("x" + name), name


# --------------------------------------------------------------------------------------------- the message format


@pytest.mark.parametrize(
    "constraints, good, bad, text",
    [
        ([Interval(Real, 0, 1, closed="right")], [1, 0.5, 1e-9], [0, 1.5, math.nan, True, "0.5"], "a float in (0, 1]"),
        ([Interval(Integral, 1, None, closed="left")], [1, 7], [0, 1.0, True, None], "an integer >= 1"),
        ([Interval(Real, 0, None, closed="neither")], [1e-9, 3], [0, -1, math.inf], "a float > 0"),
        ([Interval(Real, None, 1, closed="left")], [-5, 0.5], [1, 2], "a float < 1"),
        ([Interval(Real, None, None)], [-1e9, 0], [math.nan, -math.inf], "a float"),
        ([Options(str, {"b", "a"})], ["a", "b"], ["c", None, 1], "one of 'a', 'b'"),
        ([Options(str, {"lora"})], ["lora"], ["LoRA"], "'lora'"),
        (["boolean"], [True, False], [0, 1, "true", None], "true or false"),
        ([Interval(Integral, 1, None, closed="left"), None], [None, 2], [0], "an integer >= 1 or None"),
        (
            [Interval(Integral, 1, None, closed="left"), Unset("no cap")],
            [None, 3],
            [0, -1],
            "an integer >= 1, or unset for no cap",
        ),
        ([str], ["x", ""], [None, 1], "a str"),
        (["callable"], [len, print], [1, "x"], "a callable"),
        (
            [ListOf(Interval(Real, 0, None, closed="neither"), non_empty=True, unique=True)],
            [[1.0], (0.3, 1, 3)],
            [[], [1.0, 1.0], [0.0], "1", [1, None]],
            "a non-empty list of items each a float > 0, without repeats",
        ),
        (
            [Satisfies(lambda s: s.strip() != "", "a non-empty str")],
            ["x"],
            [" ", None, 3],
            "a non-empty str",
        ),
    ],
)
def test_constraints_accept_reject_and_describe(constraints, good, bad, text) -> None:
    assert describe(constraints) == text
    for value in good:
        validate_params("Owner", {"field": value}, {"field": constraints})
    for value in bad:
        with pytest.raises(PetlError) as e:
            validate_params("Owner", {"field": value}, {"field": constraints})
        assert str(e.value) == f"Owner.field must be {text}; got {value!r}"


def test_the_brief_example_and_meanings() -> None:
    from petl_analysis.data import SplitSpec
    from petl_analysis.probe import ProbeConfig

    with pytest.raises(PetlError) as e:
        ProbeConfig(threshold=1.5)
    assert str(e.value) == "ProbeConfig.threshold must be a float in (0, 1]; got 1.5"
    with pytest.raises(PetlError) as e:
        SplitSpec(shots=0)  # a CLI user set --shots: the message names what it means, not the class
    assert str(e.value) == (
        "training images per class (shots) must be an integer >= 1, or unset for the full training set; got 0"
    )
    with pytest.raises(PetlError) as e:
        SplitSpec(val_fraction=0.5, test_fraction=0.5)
    assert str(e.value) == "val_fraction + test_fraction must be < 1 to leave a train pool; got 1.0"


def test_only_declared_values_are_checked_and_long_values_are_cut() -> None:
    validate_params("f", {"x": object()}, {})  # undeclared: not checked
    with pytest.raises(PetlError) as e:
        validate_params("f", {"x": list(range(100))}, {"x": [None]})
    message = str(e.value)
    assert message.startswith("f.x must be None; got [0, 1, 2") and message.endswith("...") and len(message) < 120


def test_validate_fields_reads_the_class_declaration() -> None:
    @dataclasses.dataclass
    class Thing:
        n: int = 1
        _parameter_constraints: ClassVar[dict] = {"n": [Interval(Integral, 0, 3, closed="both")]}

        def __post_init__(self) -> None:
            validate_fields(self)

    Thing(3)
    with pytest.raises(PetlError, match=r"^Thing\.n must be an integer in \[0, 3\]; got 4$"):
        Thing(4)


def test_function_arguments_are_checked_the_same_way() -> None:
    from petl_analysis.select.selectors import rank_from_probe
    from petl_analysis.sweep import check_seeds

    with pytest.raises(PetlError, match=r"^the number of seeds \(seeds\) must be an integer >= 1; got 0$"):
        check_seeds(0)
    with pytest.raises(PetlError, match=r"^rank_from_probe\.tie_break must be one of 'accuracy', 'declared'"):
        rank_from_probe(None, tie_break="random")


def test_a_raw_value_is_checked_under_its_readers_subject() -> None:
    from petl_analysis.engine import Recipe

    lr = Recipe._parameter_constraints["lr"]
    check_value("study.toml: [recipe] lr", 0.1, lr)
    with pytest.raises(PetlError) as e:
        check_value("study.toml: [recipe] lr", "abc", lr)
    assert str(e.value) == "study.toml: [recipe] lr must be a float > 0; got 'abc'"


@pytest.mark.parametrize(
    "hint, good, bad, text",
    [
        (int, [0, -3], [1.5, True, "1"], "an integer"),
        (float, [1, 0.5], [math.nan, False, "x"], "a float"),
        (bool, [True], [1, "true"], "true or false"),
        (str, ["a"], [1, None], "a str"),
        (list[str], [["a"], []], ["a", [1]], "a list of strings"),
        (int | None, [None, 2], ["2"], "an integer, or unset for its default"),
    ],
)
def test_a_type_hint_implies_its_constraints(hint, good, bad, text) -> None:
    constraints = from_annotation(hint)
    assert describe(constraints) == text
    for value in good:
        check_value("k", value, constraints)
    for value in bad:
        with pytest.raises(PetlError, match=f"^k must be {text.replace('(', '.').replace(')', '.')}; got "):
            check_value("k", value, constraints)
    with pytest.raises(TypeError, match="declare one"):
        from_annotation(dict[str, int])


def test_options_computed_lazily_are_read_only_for_a_value_outside_fast() -> None:
    calls: list[int] = []

    def names() -> list[str]:
        calls.append(1)
        return ["adamw", "lion"]

    options = Options(str, names, fast=("adamw",), what="adamw or another name")
    assert options.is_satisfied_by("adamw") and calls == []  # no lookup (timm's registry imports torch)
    assert options.is_satisfied_by("lion") and not options.is_satisfied_by("adam9") and len(calls) == 2
    assert describe([options]) == "adamw or another name"
    assert describe([Options(str, lambda: ["b", "a"])]) == "one of 'a', 'b'"


def test_recipe_amp_still_reads_the_flag_it_was() -> None:
    from petl_analysis.engine import Recipe

    assert Recipe(amp=True).amp == "auto" and Recipe(amp=False).amp == "off" and Recipe(amp="bf16").amp == "bf16"
    check_value("study.toml: [recipe] amp", True, Recipe._parameter_constraints["amp"])  # amp = true in a file
    assert Recipe.decoded("amp", False) == "off" and Recipe.decoded("amp", "fp16") == "fp16"


# ------------------------------------------------------------------------------------ pure maths raise ValueError


def test_functional_raises_value_error_never_the_user_error() -> None:
    """``functional/`` is pure maths: ``ValueError``, and no import of the CLI's error type."""
    for path in sorted((ROOT / "functional").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        raised = {
            n.exc.func.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call) and isinstance(n.exc.func, ast.Name)
        }
        assert "PetlError" not in imported | raised, path.name
