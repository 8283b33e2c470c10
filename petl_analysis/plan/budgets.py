"""Trainable-parameter budgets: absolute (``2k``, ``36864``, ``1.5m``) or relative to the backbone (``0.05%``).

One parser for every option that takes a budget (``--budgets`` of plan, sweep, run and validate, and validate's
``--oracle-budget``), and model-derived defaults.

A relative budget is a percentage of the **backbone parameters**: every parameter of the model as built, less its
classifier head (``timm``'s ``get_classifier()``), counted once each, trainable or not, before any adaptation. The
head is left out because its size is the dataset's (classes x width), not the backbone's: the same ``0.05%`` then
means the same on every dataset. ViT-B/16 has 85,798,656 such parameters, so ``0.05%`` is 42,899.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

from torch import nn

from ..accounting import count_parameters
from ..errors import PetlError

#: What every budget error names.
FORMS = "a positive number of parameters (2000, 8k, 1.5m) or a percentage of the backbone (0.05%)"
#: The smallest default budget: the bundled model's 2k, 8k, 32k ladder starts here, so its committed reports hold.
DEFAULT_FLOOR = 2_000
#: Each default budget is this many times the one before.
DEFAULT_STEP = 4
DEFAULT_COUNT = 3
#: The requested form of a budget the tool chose (:func:`default_budgets`).
DEFAULT_REQUEST = "default"

_NUMBER = re.compile(r"(?P<num>\d+(\.\d*)?|\.\d+)(e(?P<exp>[+-]?\d+))?(?P<suffix>[km%]?)", re.IGNORECASE)
_SCALE = {"": 1, "k": 1e3, "m": 1e6}


@dataclass(frozen=True)
class BudgetSpec:
    """One budget as given, before it meets a model: ``value`` parameters, or ``value`` percent when ``relative``."""

    text: str
    value: float
    relative: bool

    def resolve(self, backbone_params: int) -> Budget:
        """The budget in parameters: a percentage of ``backbone_params`` rounded to the nearest parameter."""
        if not self.relative:
            return Budget(int(self.value), self.text)
        params = round(self.value / 100 * backbone_params)
        if params < 1:
            raise PetlError(
                f"budget {self.text} of a {backbone_params:,}-parameter backbone is less than one "
                f"parameter; give a larger percentage or a number of parameters"
            )
        return Budget(int(params), self.text, backbone_params)


@dataclass(frozen=True)
class Budget:
    """A budget in trainable parameters (``params``), with the form it was asked for (``requested``: ``8k``,
    ``0.05%``, ``default``) and, for a relative one, the backbone count it was resolved against."""

    params: int
    requested: str
    backbone_params: int | None = None


#: Anything a budget may be given as: a count, text (``"8k"``, ``"0.05%"``), or a parsed or resolved budget.
BudgetLike = Union[int, str, BudgetSpec, Budget]


def _bad(option: str, text: str, why: str = "") -> PetlError:
    return PetlError(f"{option}: {text!r} is not a budget{why}; expected {FORMS}, comma-separated (e.g. 8k,0.05%)")


def parse_budget(text: str, option: str = "budget") -> BudgetSpec:
    """One budget (``"8k"``, ``"36864"``, ``"1.5m"``, ``"0.05%"``); a one-line error naming ``option`` otherwise."""
    raw = str(text).strip()
    match = _NUMBER.fullmatch(raw.replace("_", "").replace(",", ""))
    if not match:
        raise _bad(option, raw)
    number = float(match["num"]) * 10 ** int(match["exp"] or 0)
    suffix = match["suffix"].lower()
    if suffix == "%":
        if not 0 < number <= 100:
            raise _bad(option, raw, ": a percentage must be above 0 and at most 100")
        return BudgetSpec(raw, number, relative=True)
    count = number * _SCALE[suffix]
    if count < 1 or not math.isclose(count, round(count)):
        raise _bad(option, raw, ": a count must be a whole number of at least 1")
    return BudgetSpec(raw, float(round(count)), relative=False)


def parse_budgets(text: str | Sequence[BudgetLike] | None, option: str = "--budgets") -> list[BudgetSpec | Budget]:
    """Budgets from comma-separated text (``"2k,8k,0.05%"``) or a sequence of budgets, in the order given; None or
    empty text gives ``[]`` (the caller's defaults). Errors are one line naming ``option`` and the accepted forms."""
    if text is None:
        return []
    items = [t for t in text.split(",") if t.strip()] if isinstance(text, str) else list(text)
    out: list[BudgetSpec | Budget] = []
    for item in items:
        if isinstance(item, (BudgetSpec, Budget)):
            out.append(item)
        elif isinstance(item, bool):
            raise _bad(option, str(item))
        elif isinstance(item, int):
            if item < 1:
                raise _bad(option, str(item), ": a count must be a whole number of at least 1")
            out.append(BudgetSpec(str(item), float(item), relative=False))
        else:
            out.append(parse_budget(str(item), option))
    return out


def backbone_parameters(model: nn.Module) -> int:
    """Parameters of ``model`` less its classifier head (see the module docstring): what ``%`` budgets are of."""
    count = count_parameters(model)
    head = sum(p.numel() for p in _head_parameters(model))
    return int(count.model_total - head)


def _head_parameters(model: nn.Module) -> list[nn.Parameter]:
    from ..accounting import classifier

    head = classifier(model)
    return list(head.parameters()) if head is not None else []


def resolve_budgets(
    budgets: str | Sequence[BudgetLike] | None,
    model: nn.Module,
    *,
    methods: Sequence[str] = ("kadaptation", "lora"),
    head_in_budget: bool = False,
    option: str = "--budgets",
) -> list[Budget]:
    """``budgets`` (see :func:`parse_budgets`) in parameters of ``model``, smallest first, each once; none given:
    :func:`default_budgets` of the model for ``methods``."""
    specs = parse_budgets(budgets, option)
    if not specs:
        return default_budgets(model, methods, head_in_budget=head_in_budget)
    backbone = backbone_parameters(model) if any(isinstance(s, BudgetSpec) and s.relative for s in specs) else 0
    resolved = [s if isinstance(s, Budget) else s.resolve(backbone) for s in specs]
    unique: dict[int, Budget] = {}
    for b in resolved:
        unique.setdefault(b.params, b)
    return [unique[k] for k in sorted(unique)]


def _round_up_2(x: float) -> int:
    """``x`` rounded up to two significant figures (36,864 -> 37,000): a budget people can read that still fits."""
    digits = max(int(math.floor(math.log10(x))) - 1, 0)
    return int(math.ceil(x / 10**digits) * 10**digits)


def default_budgets(
    model: nn.Module, methods: Sequence[str] = ("kadaptation", "lora"), *, head_in_budget: bool = False
) -> list[Budget]:
    """Budgets that make sense for ``model``: ``DEFAULT_COUNT`` budgets growing ``DEFAULT_STEP``-fold from the
    smallest budget at which every planned method (KAdaptation, LoRA among ``methods``; both when none is) can adapt
    the paper's targets, q and v of every block, at rank 1, rounded up to two significant figures, and at least
    :data:`DEFAULT_FLOOR`.

    Why: a budget below that start plans only part of q, v (or nothing) for some method, so a study would compare
    methods on different targets; 4x steps span a 16x range in three points. For the bundled model the start is the
    floor (its rank-1 q,v plans cost 1,040 with KAdaptation and 1,024 with LoRA): 2k, 8k, 32k, the budgets of its
    committed reports. For ViT-B/16 (36,880 and 36,864): 37k, 148k, 592k, i.e. 0.043%, 0.17% and 0.69% of its backbone.
    """
    from ..models import resolve_targets
    from .planner import PLANNABLE, smallest_plan_cost
    from .points import PAPER_TARGETS

    planned = [m for m in methods if m in PLANNABLE] or list(PLANNABLE)
    units = [u.name for u in resolve_targets(model, list(PAPER_TARGETS))]
    smallest = max(smallest_plan_cost(model, units, method=m, head_in_budget=head_in_budget) for m in planned)
    start = max(DEFAULT_FLOOR, _round_up_2(smallest))
    return [Budget(start * DEFAULT_STEP**i, DEFAULT_REQUEST) for i in range(DEFAULT_COUNT)]


def as_budget(budget: BudgetLike, model: nn.Module, option: str = "budget") -> Budget:
    """One budget in parameters of ``model`` (an int is a count)."""
    (spec,) = parse_budgets([budget], option)
    return spec if isinstance(spec, Budget) else spec.resolve(backbone_parameters(model) if spec.relative else 0)


def budgets_text(budgets: Sequence[Budget]) -> str:
    """``2,000, 8,000`` or ``42,899 (0.05%), 171,597 (0.2%)``: what the CLI and notes print."""
    return ", ".join(
        f"{b.params:,}" + (f" ({b.requested})" if b.requested not in (str(b.params),) else "") for b in budgets
    )
