"""The ``Plan`` artefact: which units to adapt, with which method and hyper-parameters, at what exact cost."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from torch import nn

from ..accounting import ParamCount, classifier
from ..artefacts import Artefact
from ..errors import PetlError
from ..models import ModelSpec, resolve_targets
from ..tuners import METHODS, MethodConfig, config_from_dict, get_method

#: The keys of a plan's ``trainable`` block: :meth:`ParamCount.as_dict`.
COUNT_FIELDS: tuple[str, ...] = tuple(ParamCount().as_dict())
#: Variants of a planned method (KAdaptation, LoRA) that differ only in *which* units they adapt: the ranking's
#: choice, the paper's fixed q and v, and the worst-ranked units (the control).
PLANNED_VARIANTS: tuple[str, ...] = ("selected", "fixed", "worst")
#: A baseline sized to the budget by its own knob (adapter bottleneck, VPT prompts).
SIZED = "sized"
#: A baseline whose size is fixed (linear, full, BitFit, LayerNorm): no budget.
FIXED_SIZE = "fixed-size"
VARIANTS: tuple[str, ...] = (*PLANNED_VARIANTS, SIZED, FIXED_SIZE)


def _bad(name: str, expected: str, value: Any) -> PetlError:
    shown = "null" if value is None else repr(value)
    return PetlError(f"plan field {name!r} must be {expected}; got {shown}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(name, "a positive integer" if minimum > 0 else "a non-negative integer", value)


def _check_str(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _bad(name, "a string", value)


@dataclass
class PlannedTarget:
    """A ranked target set the plan adapts, and why."""

    target: str
    units: list[str]
    rank: int
    d90: float | None
    reason: str

    def __post_init__(self) -> None:
        _check_str("targets[].target", self.target)
        if not isinstance(self.units, list) or not self.units or not all(isinstance(u, str) for u in self.units):
            raise _bad(f"targets[{self.target}].units", "a non-empty list of unit names", self.units)
        _check_int(f"targets[{self.target}].rank", self.rank, 1)
        if self.d90 is not None and (isinstance(self.d90, bool) or not isinstance(self.d90, (int, float))):
            raise _bad(f"targets[{self.target}].d90", "a number or null (not reached)", self.d90)
        _check_str(f"targets[{self.target}].reason", self.reason)


@dataclass
class Plan(Artefact):
    """Output of the plan stage: one configuration to train (one file per configuration).

    Attributes:
        model: the model the plan is for (checked when applied).
        num_classes: the head size the counts assume.
        budget: the trainable-parameter budget; ``head_in_budget`` says whether the head counts against it. None
            only for a ``fixed-size`` baseline.
        budget_requested: the budget as asked for: ``8k``, ``0.05%`` (of ``backbone_params``) or ``default`` (chosen
            from the model, :func:`~petl_analysis.plan.budgets.default_budgets`); null in plans of version 1.
        backbone_params: the model's parameters less its head, what a ``%`` budget is of
            (:func:`~petl_analysis.plan.budgets.backbone_parameters`); null in plans of version 1.
        method, config: the adaptation method and its full config (``targets`` are concrete unit names).
        targets: the chosen target sets, in ranking order, with the reason each was chosen (empty for baselines
            whose units the method itself decides).
        trainable: itemised expected trainable parameters (equal to the count after injection).
        used: trainable parameters counted against the budget, and ``used_fraction`` of the budget (None without one).
        variant: one of :data:`VARIANTS`: ``selected``, ``fixed``, ``worst`` (a planned method's target choice),
            ``sized`` (a baseline sized by its knob) or ``fixed-size``.
        dataset: the dataset the plan is for (:func:`~petl_analysis.task.dataset_identity`: a built-in name or
            ``folder:<absolute path>``), which a sweep of the plan trains on; None in plans of version 1, which did
            not record it.
    """

    SCHEMA = "plan"
    VERSION = 2
    #: Version 1 recorded neither how the budget was asked for nor the dataset: they read as null.
    MIGRATIONS: ClassVar[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {
        1: lambda body: {**body, "budget_requested": None, "backbone_params": None, "dataset": None}
    }

    model: ModelSpec
    num_classes: int
    budget: int | None
    head_in_budget: bool
    method: str
    config: dict[str, Any]
    targets: list[PlannedTarget]
    trainable: dict[str, int]
    used: int
    used_fraction: float | None
    policy: str = "greedy"
    selector: str = ""
    ranking_source: str = ""
    notes: list[str] = field(default_factory=list)
    variant: str = "selected"
    budget_requested: str | None = None
    backbone_params: int | None = None
    dataset: str | None = None

    @property
    def label(self) -> str:
        """How the sweep and the report name this configuration: ``kadaptation@selected``, ``adapter``, ``linear``."""
        return f"{self.method}@{self.variant}" if self.variant in PLANNED_VARIANTS else self.method

    def __post_init__(self) -> None:
        """Every field checked on load, so an edited plan fails with one line naming the field."""
        _check_int("num_classes", self.num_classes, 1)
        if self.variant not in VARIANTS:
            raise _bad("variant", f"one of {', '.join(VARIANTS)}", self.variant)
        if self.variant != FIXED_SIZE or self.budget is not None:
            _check_int("budget", self.budget, 1)
        if not isinstance(self.head_in_budget, bool):
            raise _bad("head_in_budget", "true or false", self.head_in_budget)
        _check_str("method", self.method)
        if self.method not in METHODS:
            raise _bad("method", f"one of {', '.join(METHODS.names())}", self.method)
        if not isinstance(self.config, dict):
            raise _bad("config", "an object of method options", self.config)
        if self.config.get("method") != self.method:
            raise _bad("config.method", f"{self.method!r} (the plan's method)", self.config.get("method"))
        try:
            config_from_dict(self.config)
        except PetlError as e:
            raise PetlError(f"plan field 'config': {e}") from None
        if not isinstance(self.model, ModelSpec):
            raise _bad("model", "an object describing the model (name, weights, sizes)", self.model)
        if (
            not isinstance(self.targets, list)
            or (not self.targets and self.variant in PLANNED_VARIANTS)
            or not all(isinstance(t, PlannedTarget) for t in self.targets)
        ):
            raise _bad("targets", "a non-empty list of planned targets", self.targets)
        if not isinstance(self.trainable, dict) or set(self.trainable) != set(COUNT_FIELDS):
            keys = sorted(self.trainable) if isinstance(self.trainable, dict) else self.trainable
            raise _bad("trainable", f"an object with the counts {', '.join(COUNT_FIELDS)}", keys)
        for key in COUNT_FIELDS:
            _check_int(f"trainable.{key}", self.trainable[key], 0)
        t = self.trainable
        parts = ("head", "adapter", "shared", "bias_norm", "backbone")
        if t["total_incl_head"] != sum(t[k] for k in parts):
            raise PetlError(
                f"plan field 'trainable.total_incl_head' is {t['total_incl_head']}; expected the sum of "
                f"{', '.join(parts)} = {sum(t[k] for k in parts)}"
            )
        if t["total_excl_head"] != t["total_incl_head"] - t["head"]:
            raise PetlError(
                f"plan field 'trainable.total_excl_head' is {t['total_excl_head']}; expected "
                f"total_incl_head - head = {t['total_incl_head'] - t['head']}"
            )
        _check_int("used", self.used, 0)
        counted = "total_incl_head" if self.head_in_budget else "total_excl_head"
        if self.used != t[counted]:
            raise PetlError(
                f"plan field 'used' is {self.used}; expected trainable.{counted} = {t[counted]} "
                f"(head_in_budget is {str(self.head_in_budget).lower()})"
            )
        if self.budget is None:
            if self.used_fraction is not None:
                raise _bad("used_fraction", "null (a fixed-size plan has no budget)", self.used_fraction)
        else:
            if self.used > self.budget:
                raise PetlError(f"plan field 'used' ({self.used}) exceeds field 'budget' ({self.budget})")
            if (
                isinstance(self.used_fraction, bool)
                or not isinstance(self.used_fraction, (int, float))
                or not math.isclose(self.used_fraction, self.used / self.budget, rel_tol=1e-6, abs_tol=1e-9)
            ):
                raise _bad("used_fraction", f"used / budget = {self.used / self.budget:.6g}", self.used_fraction)
        self._check_budget_request()
        for name in ("policy", "selector", "ranking_source"):
            _check_str(name, getattr(self, name))
        if self.dataset is not None:
            _check_str("dataset", self.dataset)
        if not isinstance(self.notes, list) or not all(isinstance(n, str) for n in self.notes):
            raise _bad("notes", "a list of strings", self.notes)

    def _check_budget_request(self) -> None:
        """The requested form, the backbone count and the budget agree (an edited plan names the field)."""
        from .budgets import DEFAULT_REQUEST, parse_budget

        if self.backbone_params is not None:
            _check_int("backbone_params", self.backbone_params, 1)
        if self.budget_requested is None:
            return
        _check_str("budget_requested", self.budget_requested)
        if self.budget is None:
            raise _bad("budget_requested", "null (a fixed-size plan has no budget)", self.budget_requested)
        if self.budget_requested == DEFAULT_REQUEST:
            return
        try:
            spec = parse_budget(self.budget_requested, "plan field 'budget_requested'")
        except PetlError as e:
            raise PetlError(f"{e}") from None
        if spec.relative and self.backbone_params is None:
            raise _bad("backbone_params", f"the backbone count that {self.budget_requested} is of", None)
        expected = spec.resolve(self.backbone_params or 0).params
        if expected != self.budget:
            raise PetlError(
                f"plan field 'budget' is {self.budget}; field 'budget_requested' "
                f"{self.budget_requested!r} gives {expected}"
                + (f" of {self.backbone_params:,}" if spec.relative else "")
            )

    def method_config(self) -> MethodConfig:
        return config_from_dict(self.config)

    def for_dataset(self, dataset: str) -> Plan:
        """This plan with ``dataset`` recorded (as its identity, so a folder path given relative to here still
        names the same folder from elsewhere)."""
        from ..task import dataset_identity

        return replace(self, dataset=dataset_identity(dataset))

    def summary(self) -> dict[str, Any]:
        cfg = self.config
        hp = ", ".join(f"{k}={cfg[k]}" for k in ("n", "rank", "alpha", "sharing", "scale") if k in cfg)
        return {
            "budget": self.budget,
            "method": self.method,
            "targets": ", ".join(t.target for t in self.targets),
            "units": sum(len(t.units) for t in self.targets),
            "hyper-parameters": hp,
            "adapter": self.trainable["adapter"],
            "shared": self.trainable["shared"],
            "head": self.trainable["head"],
            "bias_norm": self.trainable["bias_norm"],
            "total_incl_head": self.trainable["total_incl_head"],
            "used": self.used,
            "used %": None if self.used_fraction is None else round(100 * self.used_fraction, 1),
        }


def validate_plan(
    plan: Plan, model: nn.Module, model_spec: ModelSpec | None = None, source: str = "plan"
) -> ParamCount:
    """Check ``plan`` against ``model`` (before injection): same architecture, targets exist, the method accepts
    them (n divides every dimension, ...), and the count recomputes to the stored value. Returns the count."""
    if model_spec is not None and model_spec.name != plan.model.name:
        raise PetlError(f"{source}: made for model {plan.model.name!r}, not {model_spec.name!r}")
    if model_spec is not None:
        for f in fields(ModelSpec):
            if f.name in ("name", "weights", "num_classes", "load"):
                continue
            mine, theirs = getattr(plan.model, f.name), getattr(model_spec, f.name)
            if mine != theirs:
                raise PetlError(
                    f"{source}: plan field 'model.{f.name}' is {_json(mine)}, the model given has "
                    f"{_json(theirs)}; plan again for this model"
                )
    head = classifier(model)
    if getattr(head, "out_features", plan.num_classes) != plan.num_classes:
        raise PetlError(
            f"{source}: made for a {plan.num_classes}-class head, the dataset has {head.out_features} classes"
        )
    config = plan.method_config()
    try:
        if getattr(config, "targets", None):
            resolve_targets(model, config.targets)
    except PetlError as e:
        raise PetlError(f"{source}: plan field 'config.targets': {e}") from None
    try:
        count = get_method(config).expected_count(model)
    except PetlError as e:
        raise PetlError(f"{source}: plan field 'config': {e}") from None
    actual = count.as_dict()
    differing = [k for k in COUNT_FIELDS if plan.trainable.get(k) != actual[k]]
    if differing:
        k = differing[0]
        more = f" (and {', '.join(differing[1:])})" if len(differing) > 1 else ""
        raise PetlError(
            f"{source}: plan field 'trainable.{k}' is {plan.trainable.get(k)}, this model gives {actual[k]}{more}; "
            "the count does not match (edited plan, or another model?)"
        )
    return count


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)
