"""The validate stage: does a selector's ranking predict what adapting each target set achieves?

For a probe's target sets (each type grouped across blocks, or each block's unit in per-block mode):

1. **Oracle.** Each set is adapted alone at one matched trainable budget, with each method (KAdaptation and LoRA
   by default), over seeds, scored on validation. Its order (best validation accuracy first) is the oracle order.
2. **Agreement.** Every selector (d90 and d90+acc from the probe, the proxy selectors computed on the same sets,
   the constant order) is compared with each method's oracle: Spearman and Kendall correlation on midranks (the ties
   a selector declares are kept) with their seed span, upper- and lower-tail permutation tests under those ties,
   Holm-corrected over the selectors, top-k overlap, the top-1 regret, and what the selector's order cost.
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
from ..select import PROBE_SELECTORS, SELECTORS, RankedTarget, Ranking, proxy_rankings, rank_by_proxy, rank_from_probe
from ..train.run import default_train_recipe
from ..trials import TrialRecord, open_trial_log, read_records, trial_cost, trial_log_path, unique_train_time
from .agreement import agreement_stats, holm, oracle_order, random_null, regret, smallest_p, top_k_overlap
from .result import Agreement, Cost, OracleEntry, PlanOutcome, ValidationResult

if TYPE_CHECKING:
    from ..study import Study

DEFAULT_SELECTORS = ("d90", "d90+acc", "rgn", "fisher", "kappa", "gps", "spt", "apla", "constant")
DEFAULT_METHODS = ("kadaptation", "lora")
#: The matched budget is this many times the largest smallest-plan cost over sets and methods, so that every set
#: gets a few ranks of room, not just its cheapest configuration.
BUDGET_HEADROOM = 3
SIGNIFICANCE = 0.05
TIED = "sets tied"
CANNOT_TELL = "cannot tell"


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


def agreement_verdict(p_better: float, p_worse: float, spearman: float, smallest: float = 0.0) -> str:
    """The verdict from Holm-corrected permutation p-values: ``better than random`` (upper tail < 0.05), ``worse
    than random`` (lower tail < 0.05), else ``no better than random``; ``cannot tell`` when rho is undefined (too
    few sets, every set tied in the oracle or in the prediction) or when even the best outcome the declared ties
    allow (``smallest``, :func:`~petl_analysis.validate.agreement.smallest_p`) could not reach 0.05."""
    if not math.isfinite(spearman) or not smallest < SIGNIFICANCE:
        return CANNOT_TELL
    if p_better < SIGNIFICANCE:
        return "better than random"
    if p_worse < SIGNIFICANCE:
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
        selectors: probe selectors (``d90``, ``d90+acc``) and/or registered proxy selectors (``constant`` among them;
            ``random`` is always the floor, not listed here).
        methods: plannable methods for the oracle; the first also trains the regret plans.
        seeds: training seeds per configuration (the seed span enumerates their resamples).
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
    oracle_costs = oracle_cost(oracle_plans, fit.last_runs)
    costs = selector_costs(rankings, probe_source)
    agreement, random_summary, orders = agreement_stage(oracle, rankings, list(sets), methods, probe.n_val, costs)
    planners = {"oracle": _order_ranking(orders[methods[0]], sets, study.model, "oracle"), **rankings, **draws}
    plans = regret_stage(study, fit, planners, budgets, methods[0], notes)
    return ValidationResult(
        model=spec_with_load(study.model, study.template), data=study.data_record, recipe=recipe, head_init=head_init,
        seeds=list(range(seeds)), methods=list(methods), sets=list(sets), per_block=probe.config.per_block,
        budget=int(budget), oracle=oracle, agreement=agreement, random=random_summary, budgets=list(budgets),
        regret_method=methods[0], random_draws=random_draws, plans=plans, selectors=list(rankings), notes=notes,
        n_val=probe.n_val, failed=fit.failed, probe_source=probe_source, wall_time_s=time.perf_counter() - start,
        train_time_s=fit.train_time_s, command=command, input_conversion=conversion, oracle_cost=oracle_costs)


def _check_validate(probe: ProbeResult, selectors: Sequence[str], methods: Sequence[str],
                    seeds: int) -> dict[str, list[str]]:
    """The probe's target sets (label -> units), after refusing unknown selectors and methods, or no seed."""
    for name in selectors:
        if name not in PROBE_SELECTORS:
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
    """d90 and d90+acc from the probe, proxies on the same sets (validation-free: gradients and weights only), in the
    order of ``selectors``."""
    rankings: dict[str, Ranking] = {name: PROBE_SELECTORS.get(name)(probe) for name in selectors
                                     if name in PROBE_SELECTORS}
    proxies = [s for s in selectors if s not in PROBE_SELECTORS]
    if proxies:
        rankings.update(proxy_rankings(proxies, study.model, study.data, sets, n_batches=n_batches,
                                       device=study.device, study=study))
    return {name: rankings[name] for name in selectors}  # in the order asked for


def oracle_cost(oracle_plans: list[tuple[str, str, Plan]], runs: list[Any]) -> dict[str, Cost]:
    """Per method, the oracle's own cost: its trainings (one per finished seed of each distinct configuration) and
    their summed seconds. ``runs``: the trained runs of ``oracle_plans``, in order."""
    costs: dict[str, Cost] = {}
    seen: set[str] = set()
    for (_, method, plan), run in zip(oracle_plans, runs):
        key = json.dumps([method, plan.config], sort_keys=True, default=str)
        c = costs.setdefault(method, Cost())
        if run is None or key in seen:
            continue
        seen.add(key)
        c.trainings += len(run.seeds)
        c.seconds += float(sum(s.wall_time_s for s in run.seeds))
    return costs


def selector_costs(rankings: dict[str, Ranking], probe_source: str = "") -> dict[str, Cost]:
    """What each selector's order cost. Probe selectors (d90, d90+acc): the probe's trainings, read from its trial
    log beside ``probe_source`` (each trial key once; nan seconds when the log is not found). Proxies: no training,
    their measured compute seconds (``details["compute_s"]``); a data-free order costs nothing."""
    probe_cost: Cost | None = None
    out: dict[str, Cost] = {}
    for name, r in rankings.items():
        if name in PROBE_SELECTORS:
            if probe_cost is None:
                probe_cost = _probe_cost(probe_source)
            out[name] = probe_cost
        else:
            out[name] = Cost(0, float(r.details.get("compute_s", 0.0)))
    return out


def _probe_cost(probe_source: str) -> Cost:
    log = trial_log_path(probe_source) if probe_source else None
    if log is None or not log.is_file():
        return Cost(0, math.nan, source="probe trial log not found")
    trainings, seconds = trial_cost(read_records(open_trial_log(log)))
    return Cost(trainings, seconds, source=str(log))


def agreement_stage(oracle: list[OracleEntry], rankings: dict[str, Ranking], labels: list[str],
                    methods: Sequence[str], n_val: int, costs: dict[str, Cost] | None = None,
                    ) -> tuple[list[Agreement], dict[str, Any], dict[str, list[str]]]:
    """Each selector against each method's oracle order (correlations on midranks, permutation tests under the
    declared ties, Holm-corrected over the selectors per method and tail, top-k, top-1 regret, verdict, cost); what
    random orders achieve; and each method's oracle order."""
    agreement: list[Agreement] = []
    random_summary: dict[str, Any] = {}
    ks = list(range(1, min(3, len(labels)) + 1))
    orders: dict[str, list[str]] = {}
    costs = costs or {}
    for m in methods:
        acc = np.array([next(e for e in oracle if e.method == m and e.target == t).val_per_seed for t in labels])
        best_order = orders[m] = oracle_order(labels, acc)
        mean = dict(zip(labels, acc.mean(axis=1)))
        best = max(mean.values())
        # Sets less than 2 validation images apart adapt equally well: an order of near-ties gets no verdict.
        tied = n_val > 0 and images_apart(best, min(mean.values()), n_val) < RESOLVED_IMAGES
        rows = []
        for name, r in rankings.items():
            classes = r.tie_groups()
            corr = agreement_stats(classes, labels, acc)
            rows.append(Agreement(
                selector=name, method=m, order=r.order(), tie_classes=classes, spearman=corr.spearman,
                kendall=corr.kendall, spearman_span=corr.spearman_span, kendall_span=corr.kendall_span,
                p_better=corr.test.p_better, p_worse=corr.test.p_worse, permutations=corr.test.permutations,
                exact=corr.test.exact, top_k=[top_k_overlap(r.order(), best_order, k) for k in ks],
                top1_regret=regret(best, mean[r.order()[0]]), verdict="",
                n_measured=r.details.get("n_measured") if name in PROBE_SELECTORS else None, cost=costs.get(name)))
        for a, pb, pw in zip(rows, holm([a.p_better for a in rows]), holm([a.p_worse for a in rows])):
            a.p_better_holm, a.p_worse_holm = pb, pw
            a.verdict = TIED if tied else agreement_verdict(pb, pw, a.spearman, smallest_p(a.tie_classes))
        agreement += rows
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
        self.last_runs: list[Any] = []  # the last call's run per plan (None: not trained), for the cost figures

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
        self.last_runs = [runs.get(id(plan)) for plan in plans]
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
