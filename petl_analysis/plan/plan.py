"""The ``Plan`` artefact: which units to adapt, with which method and hyper-parameters, at what exact cost."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from numbers import Integral, Real
from typing import Any, ClassVar

from torch import nn

from ..accounting import ParamCount, classifier
from ..artefacts import Artefact
from ..constraints import Interval, ListOf, Options, Satisfies, Unset, invalid, validate_fields, validate_params
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


_AT_LEAST_ONE = Interval(Integral, 1, None, closed="left")
_COUNT = Interval(Integral, 0, None, closed="left")
_UNRECORDED = Unset("a plan of version 1, which did not record it")


@dataclass
class PlannedTarget:
    """A ranked target set the plan adapts, and why."""

    target: str
    units: list[str]
    rank: int
    d90: float | None
    reason: str

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "target": [str],
        "units": [ListOf(str, non_empty=True, what="unit names")],
        "rank": [_AT_LEAST_ONE],
        "d90": [Interval(Real, None, None), Unset("not reached")],
        "reason": [str],
    }

    def __post_init__(self) -> None:
        validate_fields(self)


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

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "model": [ModelSpec],
        "num_classes": [_AT_LEAST_ONE],
        "budget": [_AT_LEAST_ONE, Unset("a fixed-size plan")],
        "head_in_budget": ["boolean"],
        "method": [Options(str, METHODS)],
        "config": [dict],
        "targets": [ListOf(PlannedTarget, what="planned targets")],
        "trainable": [Satisfies(lambda t: set(t) == set(COUNT_FIELDS), f"an object of {', '.join(COUNT_FIELDS)}")],
        "used": [_COUNT],
        "used_fraction": [Interval(Real, 0, None, closed="left"), Unset("a fixed-size plan")],
        "policy": [str],
        "selector": [str],
        "ranking_source": [str],
        "notes": [ListOf(str, what="strings")],
        "variant": [Options(str, VARIANTS)],
        "budget_requested": [str, _UNRECORDED],
        "backbone_params": [_AT_LEAST_ONE, _UNRECORDED],
        "dataset": [str, _UNRECORDED],
    }

    def __post_init__(self) -> None:
        """Every field checked on load, so an edited plan fails with one line naming the field."""
        validate_fields(self)
        validate_params("Plan.trainable", self.trainable, {k: [_COUNT] for k in COUNT_FIELDS})
        if self.budget is None and self.variant != FIXED_SIZE:
            raise invalid("Plan.budget", f"an integer >= 1 (only a {FIXED_SIZE} plan has none)", None)
        if not self.targets and self.variant in PLANNED_VARIANTS:
            raise invalid("Plan.targets", f"a non-empty list of planned targets for a {self.variant} plan", [])
        if self.config.get("method") != self.method:
            raise invalid("Plan.config.method", f"{self.method!r} (the plan's method)", self.config.get("method"))
        try:
            config_from_dict(self.config)
        except PetlError as e:
            raise PetlError(f"Plan.config: {e}") from None
        self._check_counts()
        self._check_budget_request()

    def _check_counts(self) -> None:
        """The itemised counts add up, ``used`` is what the budget counts, and ``used_fraction`` is of the budget."""
        t = self.trainable
        parts = ("head", "adapter", "shared", "bias_norm", "backbone")
        if t["total_incl_head"] != sum(t[k] for k in parts):
            raise invalid(
                "Plan.trainable.total_incl_head",
                f"the sum of {', '.join(parts)} = {sum(t[k] for k in parts)}",
                t["total_incl_head"],
            )
        if t["total_excl_head"] != t["total_incl_head"] - t["head"]:
            raise invalid(
                "Plan.trainable.total_excl_head",
                f"total_incl_head - head = {t['total_incl_head'] - t['head']}",
                t["total_excl_head"],
            )
        counted = "total_incl_head" if self.head_in_budget else "total_excl_head"
        if self.used != t[counted]:
            raise invalid(
                "Plan.used",
                f"trainable.{counted} = {t[counted]} (head_in_budget is {str(self.head_in_budget).lower()})",
                self.used,
            )
        if self.budget is None:
            if self.used_fraction is not None:
                raise invalid("Plan.used_fraction", "None (a fixed-size plan has no budget)", self.used_fraction)
            return
        if self.used > self.budget:
            raise invalid("Plan.used", f"at most the budget, {self.budget}", self.used)
        if self.used_fraction is None or not math.isclose(
            self.used_fraction, self.used / self.budget, rel_tol=1e-6, abs_tol=1e-9
        ):
            raise invalid("Plan.used_fraction", f"used / budget = {self.used / self.budget:.6g}", self.used_fraction)

    def _check_budget_request(self) -> None:
        """The requested form, the backbone count and the budget agree (an edited plan names the field)."""
        from .budgets import DEFAULT_REQUEST, parse_budget

        if self.budget_requested is None:
            return
        if self.budget is None:
            raise invalid("Plan.budget_requested", "None (a fixed-size plan has no budget)", self.budget_requested)
        if self.budget_requested == DEFAULT_REQUEST:
            return
        spec = parse_budget(self.budget_requested, "Plan.budget_requested")
        if spec.relative and self.backbone_params is None:
            raise invalid("Plan.backbone_params", f"the backbone count that {self.budget_requested} is of", None)
        expected = spec.resolve(self.backbone_params or 0).params
        if expected != self.budget:
            of = f" of {self.backbone_params:,}" if spec.relative else ""
            raise invalid("Plan.budget", f"{expected} (budget_requested {self.budget_requested!r}{of})", self.budget)

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
