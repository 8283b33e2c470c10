"""From a ranking and a budget to a :class:`Plan`: the ``greedy`` policy.

1. **Coverage.** Take target sets in ranking order (sets that reached the d90 threshold first, then the others by
   best accuracy, as the ranking orders them) while the cheapest valid configuration of the method (rank 1,
   smallest valid n) on all sets taken so far still fits the budget.
   If even the top set does not fit whole, take as many of its units as fit, later blocks first (the blocks closest
   to the head are usually the most task-specific).
2. **Capacity.** With those units, choose the hyper-parameters whose exact count is the largest not above the
   budget (KAdaptation: n from the common divisors of every target's dimensions with n <= d/n, then rank up to
   the smaller side of B_i; LoRA: rank). Ties prefer larger n and smaller rank (more Kronecker terms are cheap:
   their cost is the shared rule matrices). When even the largest useful configuration stays below the budget,
   the plan says so in its notes.
3. **Refusal.** When the cheapest plan with a single unit exceeds the budget, the error says what that minimum is.

Counts come from the method's own closed form (``Method.expected_count``), so a plan's number is what training
will count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from ..accounting import ParamCount, classifier
from ..errors import PetlError
from ..models import ModelSpec, Unit, resolve_targets, spec_with_load
from ..select import Ranking
from ..tuners import PLANNED, KAdaptationConfig, LoraConfig, MethodConfig, get_method, methods_sized
from ..tuners.kadaptation import planned_ns
from .budgets import Budget, BudgetLike, as_budget, backbone_parameters
from .plan import Plan, PlannedTarget

#: Methods the greedy planner sizes (as each method registered its sizing).
PLANNABLE: tuple[str, ...] = tuple(methods_sized(PLANNED))
MAX_RANK = 64


def _base_options(method_options: dict[str, Any] | None) -> dict[str, Any]:
    """The user's method options but those the planner chooses (targets, n, rank; LoRA's earlier name ``r``)."""
    return {k: v for k, v in (method_options or {}).items() if k not in ("targets", "n", "rank", "r", "method")}


def _count(model: nn.Module, config: MethodConfig) -> ParamCount:
    return get_method(config).expected_count(model)


def _used(count: ParamCount, head_in_budget: bool) -> int:
    return count.total if head_in_budget else count.total_excl_head


def _configs(method: str, base: dict[str, Any], units: Sequence[Unit], cheapest_only: bool) -> list[MethodConfig]:
    names = [u.name for u in units]
    linear = [u for u in units if u.is_linear]
    if not linear:
        return []
    smallest = min(min(u.in_features, u.out_features) for u in linear)
    if method == "lora":
        ranks = [1] if cheapest_only else range(1, min(MAX_RANK, smallest) + 1)
        # alpha = rank keeps the update scale at 1 across ranks unless the user fixed alpha.
        return [LoraConfig(**{"alpha": float(r), **base, "targets": names, "rank": r}) for r in ranks]
    ns = planned_ns(linear)
    if cheapest_only:
        return [KAdaptationConfig(**{**base, "targets": names, "n": ns[0], "rank": 1})]
    # B_i is (d_out/n x d_in/n): a rank above its smaller side adds parameters, not capacity.
    return [
        KAdaptationConfig(**{**base, "targets": names, "n": n, "rank": r})
        for n in ns
        for r in range(1, min(MAX_RANK, smallest // n) + 1)
    ]


def _cheapest(
    model: nn.Module, method: str, base: dict[str, Any], units: Sequence[Unit], head_in_budget: bool
) -> int | None:
    """Count of the cheapest configuration on ``units`` (rank 1, smallest n); None without a Linear unit."""
    cfgs = _configs(method, base, units, cheapest_only=True)
    return _used(_count(model, cfgs[0]), head_in_budget) if cfgs else None


def plan_for_budget(
    ranking: Ranking,
    model: nn.Module,
    budget: BudgetLike,
    *,
    method: str = "kadaptation",
    model_spec: ModelSpec | None = None,
    head_in_budget: bool = False,
    method_options: dict[str, Any] | None = None,
    source: str = "",
    variant: str = "selected",
) -> Plan:
    """Build the greedy plan for one budget (see module docstring). ``model`` must carry the task's head.

    ``budget``: trainable parameters, or any form :mod:`~petl_analysis.plan.budgets` reads (``"0.05%"``); the plan
    records the form asked for. ``variant`` labels what the ranking stands for (``selected``; ``worst`` for
    :func:`reverse_ranking`)."""
    request = _checked_request(budget, model, method)
    budget = request.params
    base = _base_options(method_options)
    entries = sorted(ranking.entries, key=lambda e: e.rank)
    linear_entries = [e for e in entries if any(u.is_linear for u in resolve_targets(model, e.units))]
    if not linear_entries:
        raise PetlError("the ranking has no Linear targets to adapt")

    def cheapest(units: Sequence[Unit]) -> int | None:
        return _cheapest(model, method, base, units, head_in_budget)

    chosen, notes = _greedy_targets(model, linear_entries, cheapest, budget, method, head_in_budget)
    # Catalogue order, not ranking order: two plans that adapt the same units are then one configuration (trained
    # once, reported as the same), whatever order the rankings put the units in.
    units = resolve_targets(model, [u.name for _, chosen_units in chosen for u in chosen_units])
    used, config, count = _largest_config(model, method, base, units, budget, head_in_budget)
    if used < 0.5 * budget:
        notes.append(f"only {used:,} of the {budget:,} budget is useful for these targets with {method}")
    targets = [_planned_target(e, units, ranking.selector) for e, units in chosen]
    skipped = [e.target for e in linear_entries if e.target not in {t.target for t in targets}]
    if skipped:
        notes.append(f"not adapted (would exceed the budget at rank 1): {', '.join(skipped)}")
    head = classifier(model)
    return Plan(
        model=spec_with_load(model_spec or ranking.model, model),
        num_classes=int(head.out_features),
        budget=int(budget),
        head_in_budget=head_in_budget,
        method=method,
        config=config.to_dict(),
        targets=targets,
        trainable=count.as_dict(),
        used=int(used),
        used_fraction=used / budget,
        policy="greedy",
        selector=ranking.selector,
        ranking_source=source,
        notes=notes,
        variant=variant,
        budget_requested=request.requested,
        backbone_params=backbone_parameters(model),
    )


def _checked_request(budget: BudgetLike, model: nn.Module, method: str) -> Budget:
    """The budget in parameters (with the form asked for), after refusing a non-positive one or a method that
    cannot be planned."""
    if isinstance(budget, (int, float)) and not isinstance(budget, bool) and budget <= 0:
        raise PetlError(f"budget must be a positive number of parameters, got {budget}")
    request = as_budget(budget, model)
    if method not in PLANNABLE:
        raise PetlError(f"cannot plan method {method!r}; plannable methods: {', '.join(PLANNABLE)}")
    return request


def _greedy_targets(
    model: nn.Module,
    entries: Sequence[Any],
    cheapest: Callable[[Sequence[Unit]], int | None],
    budget: int,
    method: str,
    head_in_budget: bool,
) -> tuple[list[tuple[Any, list[Unit]]], list[str]]:
    """The ranked target sets (with their Linear units) whose cheapest configuration fits ``budget`` together, in
    ranking order; when not even the first fits whole, as many of its units as fit (last blocks first). Also the
    note that says so."""
    chosen: list[tuple[Any, list[Unit]]] = []
    units_so_far: list[Unit] = []
    for e in entries:
        units = [u for u in resolve_targets(model, e.units) if u.is_linear]
        cost = cheapest(units_so_far + units)
        if cost is not None and cost <= budget:
            chosen.append((e, units))
            units_so_far += units
    if chosen:
        return chosen, []
    top = entries[0]
    units = sorted([u for u in resolve_targets(model, top.units) if u.is_linear], key=lambda u: -u.block)
    partial: list[Unit] = []
    for u in units:
        cost = cheapest(partial + [u])
        if cost is not None and cost <= budget:
            partial.append(u)
    if not partial:
        minimum = cheapest(units[:1])
        raise PetlError(
            f"budget {budget:,} is below the smallest valid {method} plan ({minimum:,} trainable parameters"
            f"{' incl. head' if head_in_budget else ' excl. head'}: one unit of {top.target}, rank 1)"
        )
    note = f"budget too small for all of {top.target}: adapting {len(partial)} of its {len(units)} units"
    return [(top, sorted(partial, key=lambda u: u.block))], [note]


def _largest_config(
    model: nn.Module, method: str, base: dict[str, Any], units: Sequence[Unit], budget: int, head_in_budget: bool
) -> tuple[int, MethodConfig, ParamCount]:
    """``(used, config, count)`` of the configuration on ``units`` that uses the most of ``budget`` (ties: the
    larger n, then the smaller rank)."""
    best: tuple[int, MethodConfig, ParamCount] | None = None
    for ladder in _rank_ladders(_configs(method, base, units, cheapest_only=False)):
        found = _largest_fitting(ladder, lambda cfg: _count(model, cfg), budget, head_in_budget)
        if found is None:
            continue
        key = (found[0], getattr(found[1], "n", 0), -found[1].rank)
        if best is None or key > (best[0], getattr(best[1], "n", 0), -best[1].rank):
            best = found
    assert best is not None  # the cheapest config fitted when the targets were chosen
    return best


def _rank_ladders(configs: Sequence[MethodConfig]) -> list[list[MethodConfig]]:
    """``configs`` grouped by everything but the rank (KAdaptation's n), each group in ascending rank."""
    ladders: dict[Any, list[MethodConfig]] = {}
    for cfg in configs:
        ladders.setdefault(getattr(cfg, "n", None), []).append(cfg)
    return [sorted(ladder, key=lambda c: c.rank) for ladder in ladders.values()]


def _largest_fitting(
    ladder: Sequence[MethodConfig], count: Callable[[MethodConfig], ParamCount], budget: int, head_in_budget: bool
) -> tuple[int, MethodConfig, ParamCount] | None:
    """``(used, config, count)`` of the highest rank on ``ladder`` within ``budget``, by bisection: a rank more
    never trains fewer parameters, so a ladder is sorted by cost (counting every rung walks the model each time,
    minutes on a 22M-parameter backbone over a validation's hundred plans)."""
    found: tuple[int, MethodConfig, ParamCount] | None = None
    lo, hi = 0, len(ladder) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        c = count(ladder[mid])
        used = _used(c, head_in_budget)
        if used <= budget:
            found, lo = (used, ladder[mid], c), mid + 1
        else:
            hi = mid - 1
    return found


def _planned_target(entry: Any, units: Sequence[Unit], selector: str) -> PlannedTarget:
    """A chosen ranked set as the plan records it, with why (its rank, and its d90 for a d90 selector)."""
    if entry.d90 is not None:
        why = f" (d90 {entry.d90:.0f})"
    else:
        why = " (d90 not reached)" if selector.startswith("d90") else ""
    return PlannedTarget(
        target=entry.target,
        units=[u.name for u in units],
        rank=entry.rank,
        d90=entry.d90,
        reason=f"rank {entry.rank} by {selector}{why}",
    )


def fixed_plan(
    model: nn.Module,
    targets: Sequence[str],
    budget: BudgetLike,
    *,
    method: str = "kadaptation",
    model_spec: ModelSpec,
    head_in_budget: bool = False,
    method_options: dict[str, Any] | None = None,
    label: str = "fixed",
) -> Plan:
    """A plan on fixed targets (e.g. the paper's q, v of every block) sized to the budget by the same policy."""
    from ..select import RankedTarget

    units = resolve_targets(model, list(targets))
    entry = RankedTarget(
        target=",".join(targets), units=[u.name for u in units], D=sum(u.numel for u in units), rank=1, score=None
    )
    ranking = Ranking(selector=label, model=model_spec, data=None, entries=[entry])
    return plan_for_budget(
        ranking,
        model,
        budget,
        method=method,
        model_spec=model_spec,
        head_in_budget=head_in_budget,
        method_options=method_options,
        variant="fixed",
    )


def reverse_ranking(ranking: Ranking) -> Ranking:
    """The worst-first ranking (the control of the sweep: do selected targets beat the worst-ranked ones?)."""
    n = len(ranking.entries)
    entries = [dataclasses.replace(e, rank=n + 1 - e.rank) for e in ranking.entries]
    return dataclasses.replace(ranking, selector=f"{ranking.selector}-reversed", entries=entries)


def smallest_plan_cost(
    model: nn.Module,
    units: Sequence[str],
    *,
    method: str = "kadaptation",
    head_in_budget: bool = False,
    method_options: dict[str, Any] | None = None,
) -> int:
    """Trainable parameters of the cheapest valid ``method`` plan adapting all of ``units`` (rank 1, smallest n):
    the least budget at which :func:`plan_for_budget` takes them whole."""
    if method not in PLANNABLE:
        raise PetlError(f"cannot plan method {method!r}; plannable methods: {', '.join(PLANNABLE)}")
    resolved = [u for u in resolve_targets(model, list(units)) if u.is_linear]
    cost = _cheapest(model, method, _base_options(method_options), resolved, head_in_budget)
    if cost is None:
        raise PetlError(f"no Linear unit to adapt among {', '.join(units)}")
    return cost


#: :func:`greedy_plan_shares` stops exact enumeration after this many budget checks (1-5 ms each on the bundled
#: model) and samples :data:`SAMPLED_ORDERS` orders instead. Every distinct plan is trained over the judge's seeds,
#: so the sample is small: 24 per-block sets under a budget that fits several give nearly one plan per order.
MAX_EXACT_CHECKS = 5_000
SAMPLED_ORDERS = 32


@dataclass
class PlanShares:
    """:func:`greedy_plan_shares`'s answer: ``{order: share}``, one order per distinct plan (its chosen sets first,
    in the catalogue's order: feed it to :func:`plan_for_budget`), shares summing to 1; ``how``: ``exact``, or how
    the orders were sampled (the shares then carry Monte Carlo error)."""

    shares: dict[tuple[str, ...], float]
    how: str = "exact"
    n_orders: int = 0  # orders sampled (0: exact)


def greedy_plan_shares(
    groups: Sequence[Sequence[str]],
    units: dict[str, list[str]],
    model: nn.Module,
    budget: int,
    *,
    method: str = "kadaptation",
    head_in_budget: bool = False,
    method_options: dict[str, Any] | None = None,
    max_checks: int = MAX_EXACT_CHECKS,
    seed: int = 0,
) -> PlanShares:
    """Which plans :func:`plan_for_budget` makes over all orders consistent with ``groups`` (tie classes, best
    first; every order within a class equally likely), and each one's share of those orders.

    Why it is exact without listing the orders: the greedy planner adds a set when it still fits beside the sets
    chosen so far, and a set that does not fit never fits later (the chosen sets only grow and so does their cost).
    So in a uniformly random order of a class only the sets that still fit matter, and the first of them is equally
    likely to be any one: a recursion over (chosen sets, sets still fitting) that visits each state once. One class
    holding every set is the uniform random order (the regret's random floor). Past ``max_checks`` budget checks
    (per-block sets under a large budget) it samples :data:`SAMPLED_ORDERS` orders with ``seed`` instead, and says
    so in ``how``.
    """
    catalogue = list(units)
    base = _base_options(method_options)
    linear = {t: [u for u in resolve_targets(model, us) if u.is_linear] for t, us in units.items()}
    linear = {t: us for t, us in linear.items() if us}
    cost_cache: dict[frozenset[str], bool] = {}
    limit = [max_checks]

    def fits(chosen: frozenset[str]) -> bool:
        if chosen not in cost_cache:
            if len(cost_cache) >= limit[0]:
                raise _TooManyStates
            cost = _cheapest(
                model, method, base, [u for t in catalogue if t in chosen for u in linear[t]], head_in_budget
            )
            cost_cache[chosen] = cost is not None and cost <= budget
        return cost_cache[chosen]

    memo: dict[tuple[frozenset[str], frozenset[str]], dict[frozenset[str], float]] = {}

    def within(chosen: frozenset[str], pool: frozenset[str]) -> dict[frozenset[str], float]:
        still = frozenset(t for t in pool if fits(chosen | {t}))
        if not still:
            return {chosen: 1.0}
        key = (chosen, still)
        if key not in memo:
            out: dict[frozenset[str], float] = {}
            for t in sorted(still):  # not the set's hash order: the shares' float sums and order are reproducible
                for final, p in within(chosen | {t}, still - {t}).items():
                    out[final] = out.get(final, 0.0) + p / len(still)
            memo[key] = out
        return memo[key]

    classes = [[t for t in g if t in linear] for g in groups]
    classes = [g for g in classes if g]
    how = "exact"
    dist: dict[frozenset[str], float] = {frozenset(): 1.0}
    try:
        for g in classes:
            nxt: dict[frozenset[str], float] = {}
            for chosen, p in dist.items():
                for final, q in within(chosen, frozenset(g)).items():
                    nxt[final] = nxt.get(final, 0.0) + p * q
            dist = nxt
    except _TooManyStates:
        limit[0] = len(cost_cache) + 1_000_000  # sampling reuses the checks made so far
        rng = np.random.default_rng(seed)
        dist = {}
        for _ in range(SAMPLED_ORDERS):
            chosen: frozenset[str] = frozenset()
            for g in classes:
                for i in rng.permutation(len(g)):
                    if fits(chosen | {g[i]}):
                        chosen = chosen | {g[i]}
            dist[chosen] = dist.get(chosen, 0.0) + 1.0 / SAMPLED_ORDERS
        how = (
            f"sampled: {SAMPLED_ORDERS} orders (numpy seed {seed}), exact enumeration passed {max_checks:,} "
            f"budget checks; the shares carry Monte Carlo error"
        )

    def order_for(first: Sequence[str]) -> tuple[str, ...]:
        return tuple(first) + tuple(t for t in catalogue if t not in first)

    if set(dist) == {frozenset()} and classes:
        # Nothing fits whole: the planner adapts part of the order's first set, equally likely any of the first class.
        return PlanShares({order_for([t]): 1.0 / len(classes[0]) for t in classes[0]})
    return PlanShares(
        dict(sorted((order_for([t for t in catalogue if t in chosen]), p) for chosen, p in dist.items())),
        how,
        0 if how == "exact" else SAMPLED_ORDERS,
    )


class _TooManyStates(Exception):
    """Internal: :func:`greedy_plan_shares` stops enumerating."""
