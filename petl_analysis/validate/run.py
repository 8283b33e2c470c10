"""The validate stage: does a selector's ranking predict what adapting each target set achieves?

For a probe's target sets (each type grouped across blocks, or each block's unit in per-block mode):

1. **Oracle.** Each set is adapted alone at one matched trainable budget, with each method (KAdaptation and LoRA
   by default), over seeds, scored on validation. Its order (best validation accuracy first) is the oracle order.
2. **Agreement.** Every selector (d90 from the probe, the proxy selectors computed on the same sets) is compared
   with each method's oracle: Spearman and Kendall correlation with a seed-bootstrap interval, a permutation test
   against random orders, top-k overlap and the top-1 regret.
3. **Regret.** At each budget, each selector's greedy plan is trained (the first method), and its validation
   accuracy is compared with the best plan trained at that budget (the oracle order's plan among them); random
   orders, planned the same way, give the floor.

Every (configuration, seed) is one trial of the JSON-lines log beside the output, so a killed run resumes, and a
configuration that two selectors share is trained once.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..engine import Recipe
from ..errors import PetlError
from ..models import spec_with_load
from ..plan import PLANNABLE, Plan, fixed_plan, plan_for_budget, smallest_plan_cost
from ..plan.budgets import BudgetLike, as_budget, parse_budgets, resolve_budgets
from ..probe import RESOLVED_IMAGES, ProbeResult
from ..probe.result import images_apart
from ..select import SELECTORS, RankedTarget, Ranking, proxy_rankings, rank_by_proxy, rank_from_probe
from ..train.run import default_train_recipe
from ..trials import TrialRecord, unique_train_time
from .agreement import bootstrap_correlation, oracle_order, random_null, regret, top_k_overlap
from .result import Agreement, OracleEntry, PlanOutcome, ValidationResult

if TYPE_CHECKING:
    from ..study import Study

DEFAULT_SELECTORS = ("d90", "rgn", "fisher", "kappa", "gps", "spt", "apla")
DEFAULT_METHODS = ("kadaptation", "lora")
#: The matched budget is this many times the largest smallest-plan cost over sets and methods, so that every set
#: gets a few ranks of room, not just its cheapest configuration.
BUDGET_HEADROOM = 3
SIGNIFICANCE = 0.05
TIED = "sets tied"


def matched_budget(net, sets: dict[str, list[str]], methods: Sequence[str], *, head_in_budget: bool = False) -> int:
    """The default oracle budget: :data:`BUDGET_HEADROOM` x the largest cheapest plan over sets and methods."""
    return BUDGET_HEADROOM * max(smallest_plan_cost(net, units, method=m, head_in_budget=head_in_budget)
                                 for units in sets.values() for m in methods)


def _round2(x: float) -> int:
    """Two significant figures (budgets people can read)."""
    if x <= 0:
        return 0
    digits = int(math.floor(math.log10(x))) - 1
    return int(round(x / 10**digits) * 10**digits)


def default_budgets(budget: int) -> list[int]:
    """Regret budgets around the oracle budget: a quarter of it, it, and four times it."""
    return sorted({_round2(budget / 4), _round2(budget), _round2(4 * budget)})


def agreement_verdict(p_random: float, ci: list[float | None], spearman: float) -> str:
    """``better than random`` when the permutation test says so (p < 0.05) and the seed interval of rho stays
    above 0; ``worse than random`` when rho < 0 with its interval below 0; otherwise ``no better than random``."""
    if not math.isfinite(spearman):
        return "undefined"
    lo, hi = (ci + [None, None])[:2]
    lo = spearman if lo is None else lo
    hi = spearman if hi is None else hi
    if p_random < SIGNIFICANCE and lo > 0:
        return "better than random"
    if spearman < 0 and hi < 0:
        return "worse than random"
    return "no better than random"


def _order_ranking(order: Sequence[str], sets: dict[str, list[str]], model_spec, name: str) -> Ranking:
    entries = [RankedTarget(target=t, units=sets[t], D=0, rank=i + 1, score=None) for i, t in enumerate(order)]
    return Ranking(selector=name, model=model_spec, data=None, entries=entries)


def run_validate(
    probe: ProbeResult,
    *,
    out: str | Path | None = None,
    device: str = "cpu",
    n_jobs: int = 1,
    backend: str = "loky",
    scheduler: str | None = None,
    on_trial: Callable[[TrialRecord, bool], None] | None = None,
    **options: Any,
) -> ValidationResult:
    """Validate selectors on ``probe``'s target sets against the oracle (see the module docstring); save ``out``.

    Builds a :class:`~petl_analysis.study.Study` on the probe's model and data with these execution options (trials
    logged beside ``out``) and calls :func:`validate_probe` with ``options``."""
    from ..study import Study

    study = Study(probe.model, probe.data, device=device, n_jobs=n_jobs, backend=backend, scheduler=scheduler,
                  on_trial=on_trial)
    return study.validate(probe, out=out, **options)


def validate_probe(
    study: "Study",
    probe: ProbeResult,
    *,
    log: Path | None = None,
    selectors: Sequence[str] = DEFAULT_SELECTORS,
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: int = 3,
    budget: BudgetLike | None = None,
    budgets: str | Sequence[BudgetLike] | None = None,
    random_draws: int = 3,
    recipe: Recipe | None = None,
    n_batches: int = 5,
    head_init: str = "lp",
    probe_source: str = "",
    command: str = "",
) -> ValidationResult:
    """The validate stage on ``study`` (the probe's model and data): oracle, agreement, regret; trials in ``log``.

    Args:
        probe: the probe result whose sets (and d90 ranking) are validated.
        selectors: ``d90`` and/or registered proxy selectors (``random`` is always the floor, not listed here).
        methods: plannable methods for the oracle; the first also trains the regret plans.
        seeds: training seeds per configuration (the oracle's bootstrap resamples them).
        budget: trainable parameters (head excluded) of every oracle configuration, or a share of the backbone
            (``"0.05%"``, :mod:`~petl_analysis.plan.budgets`); default :func:`matched_budget`.
        budgets: budgets of the regret plans, in the same forms; default :func:`default_budgets` of ``budget``.
        random_draws: seeded random orders planned and trained at each budget (the regret floor).
        recipe: training recipe (default: the sweep's, so oracle points compare with sweep points).
        n_batches: batches the gradient proxies read.
        head_init: how each trained model's head starts (:func:`~petl_analysis.sweep.sweep.train_plans`).
    """
    start = time.perf_counter()
    recipe = recipe or default_train_recipe()
    sets = _check_validate(probe, selectors, methods, seeds)
    conversion = study.conversion
    budget, budgets = _validate_budgets(study.template, sets, methods, budget, budgets)
    oracle_plans, notes = plan_oracle(study, sets, methods, budget)
    rankings = selector_rankings(study, probe, sets, selectors, n_batches)
    draws = {f"random:{s}": rank_by_proxy("random", study.template, None, sets, model_spec=study.model,
                                          data=study.data, seed=s) for s in range(random_draws)}
    fit = _PlanTrainer(study, log, seeds=seeds, recipe=recipe, head_init=head_init)
    oracle = oracle_stage(fit, oracle_plans, sets, seeds)
    agreement, random_summary, orders = agreement_stage(oracle, rankings, list(sets), methods, probe.n_val)
    planners = {"oracle": _order_ranking(orders[methods[0]], sets, study.model, "oracle"), **rankings, **draws}
    plans = regret_stage(study, fit, planners, budgets, methods[0], notes)
    return ValidationResult(
        model=spec_with_load(study.model, study.template), data=study.data_record, recipe=recipe, head_init=head_init,
        seeds=list(range(seeds)), methods=list(methods), sets=list(sets), per_block=probe.config.per_block,
        budget=int(budget), oracle=oracle, agreement=agreement, random=random_summary, budgets=list(budgets),
        regret_method=methods[0], random_draws=random_draws, plans=plans, selectors=list(rankings), notes=notes,
        n_val=probe.n_val, failed=fit.failed, probe_source=probe_source, wall_time_s=time.perf_counter() - start,
        train_time_s=fit.train_time_s, command=command, input_conversion=conversion)


def _check_validate(probe: ProbeResult, selectors: Sequence[str], methods: Sequence[str],
                    seeds: int) -> dict[str, list[str]]:
    """The probe's target sets (label -> units), after refusing unknown selectors and methods, or no seed."""
    for name in selectors:
        if name != "d90":
            SELECTORS.get(name)
    if not methods:
        raise PetlError("name at least one method for the oracle (kadaptation, lora)")
    for m in methods:
        if m not in PLANNABLE:
            raise PetlError(f"oracle method {m!r} cannot be planned; plannable methods: {', '.join(PLANNABLE)}")
    if seeds < 1:
        raise PetlError(f"seeds must be at least 1, got {seeds}")
    sets = {t.target: list(t.units) for t in probe.targets}
    if len(sets) < 2:
        raise PetlError(f"the probe has {len(sets)} target set(s); validating a ranking needs at least 2")
    return sets


def _validate_budgets(net, sets: dict[str, list[str]], methods: Sequence[str], budget: BudgetLike | None,
                      budgets: str | Sequence[BudgetLike] | None) -> tuple[int, list[int]]:
    """The oracle budget (default :func:`matched_budget`) and the regret budgets (default :func:`default_budgets`)."""
    if budget is None:
        budget = matched_budget(net, sets, methods)
    elif isinstance(budget, int) and budget <= 0:
        raise PetlError(f"budget must be a positive number of parameters, got {budget}")
    else:
        budget = as_budget(budget, net, "--oracle-budget").params
    if not isinstance(budgets, str) and budgets and any(isinstance(b, int) and b <= 0 for b in budgets):
        raise PetlError(f"budgets must be positive numbers of parameters, got {list(budgets)}")
    budgets = ([b.params for b in resolve_budgets(budgets, net, option="--budgets")] if parse_budgets(budgets)
               else default_budgets(budget))
    return budget, budgets


def plan_oracle(study: "Study", sets: dict[str, list[str]], methods: Sequence[str],
                budget: int) -> tuple[list[tuple[str, str, Plan]], list[str]]:
    """Phase 1's plans: every set adapted alone with each method at the matched ``budget`` (a set that does not fit
    is refused), and the note on how much of the budget they use."""
    oracle_plans: list[tuple[str, str, Plan]] = []
    for m in methods:
        for label, units in sets.items():
            try:
                plan = fixed_plan(study.template, units, budget, method=m, model_spec=study.model, label="oracle")
            except PetlError as e:
                raise PetlError(f"oracle budget {budget:,} cannot adapt {label} alone with {m}: {e}") from None
            if len(plan.targets[0].units) < len(units):
                raise PetlError(f"oracle budget {budget:,} fits only part of {label} with {m}; give a larger --oracle-budget")
            oracle_plans.append((label, m, plan))
    used = [p.used for _, _, p in oracle_plans]
    return oracle_plans, [f"oracle budget {budget:,} trainable parameters (head excluded); the plans use "
                          f"{min(used):,}-{max(used):,} of it"]


def oracle_stage(fit: "_PlanTrainer", oracle_plans: list[tuple[str, str, Plan]], sets: dict[str, list[str]],
                 seeds: int) -> list[OracleEntry]:
    """Phase 1, the oracle: the (set, method) plans of :func:`plan_oracle` trained over seeds, scored on
    validation. A failed training is refused (the oracle order needs every set)."""
    scored = fit([p for _, _, p in oracle_plans])
    oracle = [OracleEntry(target=label, units=sets[label], method=m, config=plan.config, used=plan.used,
                          val_per_seed=val, test_per_seed=test)
              for (label, m, plan), (val, test) in zip(oracle_plans, scored)]
    failed = [e.target for e in oracle if len(e.val_per_seed) < seeds]
    if failed:
        raise PetlError(f"oracle trainings failed for {', '.join(sorted(set(failed)))}; see the trial log "
                        f"{fit.log_path or '(in memory)'}")
    return oracle


def selector_rankings(study: "Study", probe: ProbeResult, sets: dict[str, list[str]], selectors: Sequence[str],
                      n_batches: int) -> dict[str, Ranking]:
    """d90 from the probe, proxies on the same sets (validation-free: gradients and weights only)."""
    rankings: dict[str, Ranking] = {}
    if "d90" in selectors:
        rankings["d90"] = rank_from_probe(probe)
    proxies = [s for s in selectors if s != "d90"]
    if proxies:
        rankings.update(proxy_rankings(proxies, study.model, study.data, sets, n_batches=n_batches,
                                       device=study.device, study=study))
    return rankings


def agreement_stage(oracle: list[OracleEntry], rankings: dict[str, Ranking], labels: list[str],
                    methods: Sequence[str], n_val: int) -> tuple[list[Agreement], dict[str, Any], dict[str, list[str]]]:
    """Each selector against each method's oracle order (correlations, top-k, top-1 regret, verdict); what random
    orders achieve; and each method's oracle order."""
    agreement: list[Agreement] = []
    random_summary: dict[str, Any] = {}
    ks = list(range(1, min(3, len(labels)) + 1))
    orders: dict[str, list[str]] = {}
    for m in methods:
        acc = np.array([next(e for e in oracle if e.method == m and e.target == t).val_per_seed for t in labels])
        best_order = orders[m] = oracle_order(labels, acc)
        mean = dict(zip(labels, acc.mean(axis=1)))
        best = max(mean.values())
        # Sets less than 2 validation images apart adapt equally well: an order of near-ties gets no verdict.
        tied = n_val > 0 and images_apart(best, min(mean.values()), n_val) < RESOLVED_IMAGES
        for name, r in rankings.items():
            corr = bootstrap_correlation(r.order(), labels, acc)
            agreement.append(Agreement(
                selector=name, method=m, order=r.order(), spearman=corr.spearman, kendall=corr.kendall,
                spearman_ci=corr.spearman_ci, kendall_ci=corr.kendall_ci, p_random=corr.p_random,
                top_k=[top_k_overlap(r.order(), best_order, k) for k in ks],
                top1_regret=regret(best, mean[r.order()[0]]),
                verdict=TIED if tied else agreement_verdict(corr.p_random, corr.spearman_ci, corr.spearman)))
        null = random_null(len(labels))
        random_summary[m] = {
            "spearman_mean": float(np.nanmean(null)),
            "spearman_95": [float(np.nanpercentile(null, 2.5)), float(np.nanpercentile(null, 97.5))],
            "top_k": [k / len(labels) for k in ks],  # expected overlap of a random k-subset
            "top1_regret": float(np.mean([best - v for v in mean.values()])),
        }
    return agreement, random_summary, orders


def regret_stage(study: "Study", fit: "_PlanTrainer", planners: dict[str, Ranking], budgets: Sequence[int],
                 method: str, notes: list[str]) -> list[PlanOutcome]:
    """Phase 2: each planner's greedy plan at each budget with ``method``, trained, and its regret against the best
    plan at that budget. A plan that cannot be made is a note (appended to ``notes``)."""
    planned: list[tuple[int, str, Plan]] = []
    for b in budgets:
        for name, r in planners.items():
            try:
                planned.append((b, name, plan_for_budget(r, study.template, b, method=method,
                                                         model_spec=study.model)))
            except PetlError as e:
                notes.append(f"{name} at budget {b:,}: {e}")
    scored = fit([p for _, _, p in planned])
    plans: list[PlanOutcome] = []
    first_with: dict[tuple[int, str], str] = {}
    for (b, name, plan), (val, test) in zip(planned, scored):
        key = (b, json.dumps(plan.config, sort_keys=True))
        first = first_with.setdefault(key, name)
        plans.append(PlanOutcome(budget=b, selector=name, method=method, targets=[t.target for t in plan.targets],
                                 units=[u for t in plan.targets for u in t.units], config=plan.config, used=plan.used,
                                 val_per_seed=val, test_per_seed=test, same_as=first if first != name else None))
    for b in budgets:
        at_b = [p for p in plans if p.budget == b and p.val_per_seed]
        if not at_b:
            continue
        best = max(p.val_mean for p in at_b)
        for p in at_b:
            p.regret = regret(best, p.val_mean)
    return plans


class _PlanTrainer:
    """Trains lists of plans with the study's sweep (:meth:`~petl_analysis.study.Study.sweep`), all in one resumable
    trial log; a configuration trained here and in a sweep with the same recipe is the same trial."""

    def __init__(self, study: "Study", log_path: Path | None, **kw: Any) -> None:
        self.study, self.log_path = study, log_path
        self.kw = {**kw, "trials_log": self.log_path}
        self.failed: list[dict[str, Any]] = []
        self.records: dict[str, TrialRecord] = {}  # every trial used (trained now or read back), by key

    @property
    def train_time_s(self) -> float:
        """Training seconds over the unique trials used (:func:`~petl_analysis.trials.unique_train_time`): a
        configuration the oracle, several selectors or random draws share is counted once."""
        return unique_train_time(self.records.values(), seconds=_seed_run_seconds)

    def __call__(self, plans: list[Plan]) -> list[tuple[list[float], list[float]]]:
        """Validation and test accuracy per finished seed, for each plan in order."""
        outer = self.study.on_trial

        def seen(record: TrialRecord, cached: bool) -> None:
            self.records.setdefault(record.key, record)
            if outer is not None:
                outer(record, cached)

        if outer is not None and hasattr(outer, "expect"):
            seen.expect = outer.expect  # type: ignore[attr-defined]
        self.study.on_trial = seen  # the sweep reports each trial it uses, cached or trained, with its key
        try:
            result = self.study.sweep(plans, **self.kw)
        finally:
            self.study.on_trial = outer
        self.failed += result.failed
        runs = {id(p.plan): p.run for p in result.points}
        out = []
        for plan in plans:
            run = runs.get(id(plan))
            seeds = run.seeds if run is not None else []
            out.append(([float(r.val_acc) for r in seeds if r.val_acc is not None],
                        [float(r.test_acc) for r in seeds if r.test_acc is not None]))
        return out


def _seed_run_seconds(record: TrialRecord) -> float | None:
    """The training's own seconds of a sweep trial (its seed run), as the sweep's points count them."""
    run = (record.result or {}).get("seed_run") or {}
    return run.get("wall_time_s", record.wall_time_s)
