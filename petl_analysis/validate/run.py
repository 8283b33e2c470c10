"""The validate stage: does a selector's ranking predict what adapting each target set achieves?

The probe and every selector decide on split A of the data (``SplitSpec.part = "A"``); the judge trains and scores
on split B of the same dataset and ``split_seed`` (disjoint train and validation images, the same test images),
with seeds offset by :data:`JUDGE_SEED_OFFSET` from the probe's, on a fixed schedule (the last epoch is scored).
A probe on the whole pools is refused unless ``allow_shared_data`` (then every verdict says it was judged on the
probe's own data).

For a probe's target sets (each type grouped across blocks, or each block's unit in per-block mode):

1. **Oracle.** Each set is adapted alone at one matched trainable budget, with each method (KAdaptation and LoRA
   by default), over seeds, scored on split B's validation images. Its order is the oracle order.
2. **Agreement.** Every selector (d90 and d90+acc from the probe, the proxy selectors computed on split A, the
   constant order) is compared with each method's oracle: Spearman and Kendall correlation on midranks (the ties
   a selector declares are kept) with their seed span, upper- and lower-tail permutation tests under those ties,
   Holm-corrected over the selectors, top-k overlap, the top-1 regret, and what the selector's order cost.
3. **Regret.** At each budget, every distinct greedy plan that an order of the sets gives is trained (the first
   method) on split B and scored on split B's and split A's validation images. The reference plan is the best on
   split A; a selector's regret is the reference's split-B accuracy minus its plan's (the expectation over the orders
   its declared ties allow), paired per seed; the random floor is the exact expectation over all orders
   (:mod:`.regret`). Budgets where every order gives the same plan are left out.

Every (configuration, seed) is one trial of the JSON-lines log beside the output, so a killed run resumes, and a
configuration that two selectors share is trained once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from ..constraints import Interval, ListOf, Options, Unset, validate_fields
from ..data import make_splits
from ..engine import Recipe, unpack_correct
from ..errors import PetlError
from ..models import spec_with_load
from ..plan import PLANNABLE, Plan, fixed_plan, plan_for_budget, smallest_plan_cost
from ..plan.budgets import Budget, BudgetLike, BudgetSpec, as_budget, parse_budgets, resolve_budgets
from ..plan.planner import greedy_plan_shares
from ..probe import RESOLVED_IMAGES, ProbeResult
from ..probe.result import images_apart
from ..select import PROBE_SELECTORS, SELECTORS, RankedTarget, Ranking, proxy_rankings
from ..stale import used_keys
from ..sweep.sweep import SEEDS_CONSTRAINTS, SEEDS_MEANING
from ..task import DataSpec
from ..train.run import HEAD_INITS, default_train_recipe
from ..trials import TrialRecord, open_trial_log, read_records, trial_cost, trial_log_path, unique_train_time
from .agreement import (
    agreement_stats,
    holm,
    image_bootstrap,
    oracle_order,
    random_null,
    regret,
    smallest_p,
    top_k_overlap,
)
from .regret import expected_per_seed, paired_difference, reference_index
from .result import (
    JUDGED_ON_B,
    JUDGED_ON_OWN,
    Agreement,
    Cost,
    OracleEntry,
    PlanOutcome,
    SelectorRegret,
    ValidationResult,
)

if TYPE_CHECKING:
    from ..study import Study

DEFAULT_SELECTORS = (
    "d90",
    "d90+acc",
    "direct",
    "rgn",
    "fisher",
    "kappa",
    "gps",
    "spt",
    "gid",
    "page",
    "residual",
    "apla",
    "constant",
)


def default_selectors(probe: ProbeResult) -> list[str]:
    """The :data:`DEFAULT_SELECTORS` that ``probe`` can give: ``direct`` reads every set's d = D training, which the
    lean search always has and the adaptive search only for the sets that needed it."""
    has_direct = all(t.D in t.dims for t in probe.targets)
    return [name for name in DEFAULT_SELECTORS if name != "direct" or has_direct]


DEFAULT_METHODS = ("kadaptation", "lora")
#: The matched budget is this many times the largest smallest-plan cost over sets and methods, so that every set
#: gets a few ranks of room, not just its cheapest configuration.
BUDGET_HEADROOM = 3
SIGNIFICANCE = 0.05
TIED = "sets tied"
CANNOT_TELL = "cannot tell"
#: The judge's seeds start here: the probe's trainings use seeds 0, 1, ..., so no judge training repeats a probe's
#: initialisation or batch order.
JUDGE_SEED_OFFSET = 1000


def matched_budget(net, sets: dict[str, list[str]], methods: Sequence[str], *, head_in_budget: bool = False) -> int:
    """The default oracle budget: :data:`BUDGET_HEADROOM` x the largest cheapest plan over sets and methods."""
    return BUDGET_HEADROOM * max(
        smallest_plan_cost(net, units, method=m, head_in_budget=head_in_budget)
        for units in sets.values()
        for m in methods
    )


def default_judge_recipe() -> Recipe:
    """The oracle's and the regret's recipe: the sweep's (so oracle points compare with sweep points) on a fixed
    schedule (the last epoch is scored, never the best on the images reported)."""
    return dataclasses.replace(default_train_recipe(), epoch_selection="last")


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
    compile: bool = False,
    grad_checkpointing: bool = False,
    log_to: str | None = None,
    on_trial: Callable[[TrialRecord, bool], None] | None = None,
    **options: Any,
) -> ValidationResult:
    """Validate selectors on ``probe``'s target sets against the oracle (see the module docstring); save ``out``.

    Builds a :class:`~petl_analysis.study.Study` on the probe's model and data with these execution options (trials
    logged beside ``out``) and calls :func:`validate_probe` with ``options``."""
    from ..study import Study

    study = Study(
        probe.model,
        probe.data,
        device=device,
        n_jobs=n_jobs,
        backend=backend,
        scheduler=scheduler,
        compile=compile,
        grad_checkpointing=grad_checkpointing,
        log_to=log_to,
        on_trial=on_trial,
    )
    return study.validate(probe, out=out, **options)


@dataclass
class ValidateConfig:
    """What the validate stage judges and how (``petl-analyze validate``'s options; ``PipelineConfig.validation``).

    Args:
        selectors: probe selectors (``d90``, ``d90+acc``, ``direct``) and/or registered proxy selectors (``constant``
            among them; ``random`` is always the floor, not listed here); None: :func:`default_selectors`.
        methods: plannable methods for the oracle; the first also trains the regret plans.
        seeds: training seeds per configuration (the seed span enumerates their resamples).
        budget: trainable parameters (head excluded) of every oracle configuration, or a share of the backbone
            (``"0.05%"``, :mod:`~petl_analysis.plan.budgets`); default :func:`matched_budget`.
        budgets: budgets of the regret plans, in the same forms; default :func:`default_budgets` of ``budget``.
        random_draws: kept for old callers; the random floor is exact (every order), this is recorded only.
        recipe: training recipe (default: the sweep's on a fixed schedule, ``epoch_selection="last"``, so no score
            is a maximum over the epochs of the images it reports).
        n_batches: batches the gradient proxies read.
        head_init: how each trained model's head starts (:func:`~petl_analysis.sweep.sweep.train_plans`).
        allow_shared_data: judge a probe made on the whole pools (or on split B) on its own data; every verdict
            then says so. Without it such a probe is refused.
    """

    selectors: Sequence[str] | None = None
    methods: Sequence[str] = DEFAULT_METHODS
    seeds: int = 3
    budget: BudgetLike | None = None
    budgets: str | Sequence[BudgetLike] | None = None
    random_draws: int = 0
    recipe: Recipe | None = None
    n_batches: int = 5
    head_init: str = "lp"
    allow_shared_data: bool = False

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "selectors": [ListOf(str, non_empty=True, what="selector names"), Unset("the default selectors")],
        "methods": [
            ListOf(Options(str, PLANNABLE), non_empty=True, what=f"plannable methods ({', '.join(PLANNABLE)})")
        ],
        **SEEDS_CONSTRAINTS,
        "budget": [Interval(Integral, 1, None, closed="left"), str, BudgetSpec, Budget, Unset("the matched budget")],
        "budgets": [
            ListOf([int, str, BudgetSpec, Budget], non_empty=True, what="budgets"),
            str,
            Unset("a quarter, one and four times the oracle budget"),
        ],
        "random_draws": [Interval(Integral, 0, None, closed="left")],
        "recipe": [Recipe, Unset("the judge's recipe (default_judge_recipe)")],
        "n_batches": [Interval(Integral, 1, None, closed="left")],
        "head_init": [Options(str, HEAD_INITS)],
        "allow_shared_data": ["boolean"],
    }
    _field_meanings: ClassVar[dict[str, str]] = SEEDS_MEANING

    def __post_init__(self) -> None:
        validate_fields(self)


def validate_probe(
    study: Study,
    probe: ProbeResult,
    config: ValidateConfig | None = None,
    *,
    log: Path | None = None,
    probe_source: str = "",
    command: str = "",
    **options: Any,
) -> ValidationResult:
    """The validate stage on ``study`` (the probe's model and data): oracle, agreement, regret; trials in ``log``.
    ``config`` (or its fields as ``options``, not both): :class:`ValidateConfig`."""
    if config is not None and options:
        raise PetlError(f"validate_probe takes a ValidateConfig or its fields, not both (got {sorted(options)})")
    c = config or ValidateConfig(**options)
    start = time.perf_counter()
    recipe = c.recipe or default_judge_recipe()
    selectors = list(c.selectors) if c.selectors is not None else default_selectors(probe)
    sets = _check_validate(probe, selectors)
    judge_data, judged_on = judge_split(study.data, c.allow_shared_data, probe_source)
    judge = study.with_data(judge_data)
    budget, budgets = _validate_budgets(study.template, sets, c.methods, c.budget, c.budgets)
    oracle_plans, notes = plan_oracle(study, sets, c.methods, budget)
    if recipe.epoch_selection == "val":
        notes.append(EPOCH_SELECTION_NOTE)
    rankings = selector_rankings(study, probe, sets, selectors, c.n_batches)  # split A: the probe's data
    also_val = study.data if judged_on == JUDGED_ON_B else None
    kw = dict(seeds=c.seeds, recipe=recipe, head_init=c.head_init, first_seed=JUDGE_SEED_OFFSET, also_val=also_val)
    fit = _PlanTrainer(judge, log, **kw)
    oracle = oracle_stage(fit, oracle_plans, sets, c.seeds)
    oracle_costs = oracle_cost(oracle_plans, fit.last_runs)  # before the regret's trainings replace last_runs
    costs = selector_costs(rankings, probe_source, probe)
    n_val = judge_n_val(judge)
    agreement, random_summary, orders = agreement_stage(oracle, rankings, list(sets), c.methods, n_val, costs)
    planners = {"oracle": _order_ranking(orders[c.methods[0]], sets, study.model, "oracle"), **rankings}
    plans, regrets, left_out = regret_stage(judge, fit, planners, sets, budgets, c.methods[0], notes)
    judged = dict(
        data=judge.data_record,
        recipe=recipe,
        sets=list(sets),
        budget=int(budget),
        budgets=list(budgets),
        oracle=oracle,
        oracle_cost=oracle_costs,
        agreement=agreement,
        random=random_summary,
        selectors=list(rankings),
        plans=plans,
        regrets=regrets,
        regret_left_out=left_out,
        notes=notes,
        n_val=n_val,
        failed=fit.failed,
        train_time_s=fit.train_time_s,
        judged_on=judged_on,
    )
    return _validation_result(study, probe, c, judged, probe_source, command, time.perf_counter() - start)


#: Said in the notes of a judge whose recipe keeps the best epoch on the images it reports.
EPOCH_SELECTION_NOTE = (
    "the recipe keeps each training's best epoch on the judge's validation images: every score is "
    "a maximum over the epochs of the images it reports (epoch_selection='last' avoids it)"
)


def _validation_result(
    study: Study,
    probe: ProbeResult,
    c: ValidateConfig,
    judged: dict[str, Any],
    probe_source: str,
    command: str,
    wall_time_s: float,
) -> ValidationResult:
    """The artefact: what the judge measured (``judged``) with the settings that made it."""
    return ValidationResult(
        model=spec_with_load(study.model, study.template),
        head_init=c.head_init,
        seeds=[JUDGE_SEED_OFFSET + s for s in range(c.seeds)],
        methods=list(c.methods),
        per_block=probe.config.per_block,
        regret_method=c.methods[0],
        random_draws=c.random_draws,
        probe_source=probe_source,
        wall_time_s=wall_time_s,
        command=command,
        input_conversion=study.conversion,
        probe_data=study.data_record,
        seed_offset=JUDGE_SEED_OFFSET,
        **judged,
    )


def judge_split(probe_data: DataSpec, allow_shared_data: bool, source: str = "") -> tuple[DataSpec, str]:
    """The judge's data for a probe's: split B of the same dataset and ``split_seed`` for a probe on split A;
    the probe's own data only with ``allow_shared_data`` (a probe on the whole pools or on split B)."""
    part = probe_data.split.part
    if part == "A":
        return dataclasses.replace(probe_data, split=dataclasses.replace(probe_data.split, part="B")), JUDGED_ON_B
    if not allow_shared_data:
        raise PetlError(
            f"{source or 'the probe'}: data.split.part is {part!r}; validate judges a probe made on "
            f"split A (probe with --split-part A) on split B, or give --allow-shared-data to judge it "
            f"on its own data"
        )
    return probe_data, JUDGED_ON_OWN


def judge_n_val(judge: Study) -> int:
    """Validation images the judge scores on (per seed)."""
    return len(make_splits(judge.dataset, judge.data.split).val)


def _check_validate(probe: ProbeResult, selectors: Sequence[str]) -> dict[str, list[str]]:
    """The probe's target sets (label -> units), after refusing unknown selectors (methods and seeds:
    :class:`ValidateConfig`) or fewer than two sets."""
    for name in selectors:
        if name not in PROBE_SELECTORS:
            SELECTORS.get(name)
    sets = {t.target: list(t.units) for t in probe.targets}
    if len(sets) < 2:
        raise PetlError(f"the probe has {len(sets)} target set(s); validating a ranking needs at least 2")
    return sets


def _validate_budgets(
    net,
    sets: dict[str, list[str]],
    methods: Sequence[str],
    budget: BudgetLike | None,
    budgets: str | Sequence[BudgetLike] | None,
) -> tuple[int, list[int]]:
    """The oracle budget (default :func:`matched_budget`) and the regret budgets (default :func:`default_budgets`)."""
    if budget is None:
        budget = matched_budget(net, sets, methods)
    elif isinstance(budget, int) and budget <= 0:
        raise PetlError(f"budget must be a positive number of parameters, got {budget}")
    else:
        budget = as_budget(budget, net, "--oracle-budget").params
    if not isinstance(budgets, str) and budgets and any(isinstance(b, int) and b <= 0 for b in budgets):
        raise PetlError(f"budgets must be positive numbers of parameters, got {list(budgets)}")
    budgets = (
        [b.params for b in resolve_budgets(budgets, net, option="--budgets")]
        if parse_budgets(budgets)
        else default_budgets(budget)
    )
    return budget, budgets


def plan_oracle(
    study: Study, sets: dict[str, list[str]], methods: Sequence[str], budget: int
) -> tuple[list[tuple[str, str, Plan]], list[str]]:
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
                raise PetlError(
                    f"oracle budget {budget:,} fits only part of {label} with {m}; give a larger --oracle-budget"
                )
            oracle_plans.append((label, m, plan))
    used = [p.used for _, _, p in oracle_plans]
    return oracle_plans, [
        f"oracle budget {budget:,} trainable parameters (head excluded); the plans use "
        f"{min(used):,}-{max(used):,} of it"
    ]


def oracle_stage(
    fit: _PlanTrainer, oracle_plans: list[tuple[str, str, Plan]], sets: dict[str, list[str]], seeds: int
) -> list[OracleEntry]:
    """Phase 1, the oracle: the (set, method) plans of :func:`plan_oracle` trained over seeds, scored on
    validation. A failed training is refused (the oracle order needs every set)."""
    scored = fit([p for _, _, p in oracle_plans])
    oracle = [
        OracleEntry(
            target=label,
            units=sets[label],
            method=m,
            config=plan.config,
            used=plan.used,
            val_per_seed=s.val,
            test_per_seed=s.test,
            val_correct=s.val_correct,
        )
        for (label, m, plan), s in zip(oracle_plans, scored)
    ]
    failed = [e.target for e in oracle if len(e.val_per_seed) < seeds]
    if failed:
        raise PetlError(
            f"oracle trainings failed for {', '.join(sorted(set(failed)))}; see the trial log "
            f"{fit.log_path or '(in memory)'}"
        )
    return oracle


def selector_rankings(
    study: Study, probe: ProbeResult, sets: dict[str, list[str]], selectors: Sequence[str], n_batches: int
) -> dict[str, Ranking]:
    """d90 and d90+acc from the probe, proxies on the same sets (validation-free: gradients and weights only), in the
    order of ``selectors``."""
    rankings: dict[str, Ranking] = {
        name: PROBE_SELECTORS.get(name)(probe) for name in selectors if name in PROBE_SELECTORS
    }
    proxies = [s for s in selectors if s not in PROBE_SELECTORS]
    if proxies:
        rankings.update(
            proxy_rankings(
                proxies, study.model, study.data, sets, n_batches=n_batches, device=study.device, study=study
            )
        )
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


def selector_costs(
    rankings: dict[str, Ranking], probe_source: str = "", probe: ProbeResult | None = None
) -> dict[str, Cost]:
    """What each selector's order cost. Probe selectors (d90, d90+acc): the probe's trainings, read from its trial
    log beside ``probe_source`` (each trial key once; with ``probe``, only the trials it uses: a log also keeps
    those of earlier probes under the same name; nan seconds when the log is not found). Proxies: no training,
    their measured compute seconds (``details["compute_s"]``); a data-free order costs nothing."""
    probe_cost: Cost | None = None
    out: dict[str, Cost] = {}
    for name, r in rankings.items():
        if name == "direct":
            out[name] = _probe_cost(probe_source, probe, top_only=True)
        elif name in PROBE_SELECTORS:
            if probe_cost is None:
                probe_cost = _probe_cost(probe_source, probe)
            out[name] = probe_cost
        else:
            out[name] = Cost(0, float(r.details.get("compute_s", 0.0)))
    return out


def _probe_cost(probe_source: str, probe: ProbeResult | None, *, top_only: bool = False) -> Cost:
    """The probe's trainings and seconds from its log; ``top_only``: only each set's d = D trainings (what the
    ``direct`` selector reads)."""
    log = trial_log_path(probe_source) if probe_source else None
    if log is None or not log.is_file():
        return Cost(0, math.nan, source="probe trial log not found")
    records = list(read_records(open_trial_log(log)))
    if probe is not None:
        used = used_keys(records, [probe])
        records = [r for r in records if r.key in used]
        if top_only:
            D_of = {tuple(t.units): t.D for t in probe.targets}
            records = [
                r
                for r in records
                if r.kind == "subspace" and r.payload.get("d") == D_of.get(tuple(r.payload.get("units") or ()))
            ]
    trainings, seconds = trial_cost(records)
    return Cost(trainings, seconds, source=str(log))


def agreement_stage(
    oracle: list[OracleEntry],
    rankings: dict[str, Ranking],
    labels: list[str],
    methods: Sequence[str],
    n_val: int,
    costs: dict[str, Cost] | None = None,
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
        rows = [
            _agreement(name, r, m, labels, acc, best_order, ks, regret(best, mean[r.order()[0]]), costs.get(name))
            for name, r in rankings.items()
        ]
        correct = _oracle_correct(oracle, m, labels, n_val)
        if correct is not None:
            for a in rows:
                a.spearman_images = image_bootstrap(a.tie_classes, labels, correct)
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


def _agreement(
    name: str,
    r: Ranking,
    method: str,
    labels: list[str],
    acc: np.ndarray,
    best_order: list[str],
    ks: list[int],
    top1_regret: float,
    cost: Cost | None,
) -> Agreement:
    """One selector against one method's oracle (accuracies ``acc``: sets x seeds), before Holm and the verdict."""
    classes = r.tie_groups()
    corr = agreement_stats(classes, labels, acc)
    return Agreement(
        selector=name,
        method=method,
        order=r.order(),
        tie_classes=classes,
        spearman=corr.spearman,
        kendall=corr.kendall,
        spearman_span=corr.spearman_span,
        kendall_span=corr.kendall_span,
        p_better=corr.test.p_better,
        p_worse=corr.test.p_worse,
        permutations=corr.test.permutations,
        exact=corr.test.exact,
        top_k=[top_k_overlap(r.order(), best_order, k) for k in ks],
        top1_regret=top1_regret,
        verdict="",
        n_measured=r.details.get("n_measured") if name in PROBE_SELECTORS else None,
        cost=cost,
    )


def _oracle_correct(oracle: list[OracleEntry], method: str, labels: list[str], n_val: int) -> np.ndarray | None:
    """``correct[set, seed, image]`` of ``method``'s oracle for the image bootstrap; None when a training's
    per-image scores were not recorded (a trial read back from an older log) or the seeds differ in number."""
    entries = [next(e for e in oracle if e.method == method and e.target == t) for t in labels]
    n_seeds = len(entries[0].val_per_seed)
    if n_val <= 0 or any(len(e.val_correct) != n_seeds or len(e.val_per_seed) != n_seeds for e in entries):
        return None
    return np.array([[unpack_correct(c, n_val) for c in e.val_correct] for e in entries])


def regret_stage(
    judge: Study,
    fit: _PlanTrainer,
    planners: dict[str, Ranking],
    sets: dict[str, list[str]],
    budgets: Sequence[int],
    method: str,
    notes: list[str],
) -> tuple[list[PlanOutcome], list[SelectorRegret], list[int]]:
    """Phase 2 (module docstring, 3.): every distinct plan of every order at each budget, trained on the judge's
    data and also scored on the probe's validation images; the reference per budget chosen on those; each planner's
    regret (and the random floor's) against it, paired per seed. Returns the plans, the regrets and the budgets left
    out (every order gives the same plan); a budget that cannot be planned is a note (appended to ``notes``)."""
    sampled: dict[tuple[int, str], tuple[str, int]] = {}  # (budget, planner) -> (how, orders) when not exact
    planned: list[_Planned] = []
    left_out: list[int] = []
    for b in budgets:
        try:
            by_key = _distinct_plans(judge, planners, sets, b, method, sampled)
        except PetlError as e:
            notes.append(f"budget {b:,}: {e}")
            continue
        if len(by_key) == 1:
            left_out.append(b)
            notes.append(f"budget {b:,}: every order of the sets gives the same plan; left out of the regret")
            continue
        planned += [_Planned(b, plan, of) for plan, of in by_key.values()]
    scored = fit([p.plan for p in planned]) if planned else []  # every budget left out: nothing to train
    plans = [_outcome(p, method, planners, val, test, a_val) for p, (val, test, a_val, _) in zip(planned, scored)]
    regrets: list[SelectorRegret] = []
    for b in dict.fromkeys(p.budget for p in planned):
        idx = [i for i, p in enumerate(planned) if p.budget == b]
        if any(
            not plans[i].val_per_seed or len(plans[i].val_per_seed) != len(plans[idx[0]].val_per_seed) for i in idx
        ):
            notes.append(f"budget {b:,}: a plan's training failed; no regret")
            continue
        regrets += _budget_regrets(b, idx, planned, plans, planners, sampled)
    return plans, regrets, left_out


class _Planned(NamedTuple):
    """One distinct plan of the regret at one budget, and the share of each planner's orders that give it."""

    budget: int
    plan: Plan
    shares: dict[str, float]


def _distinct_plans(
    judge: Study,
    planners: dict[str, Ranking],
    sets: dict[str, list[str]],
    b: int,
    method: str,
    sampled: dict[tuple[int, str], tuple[str, int]],
) -> dict[str, tuple[Plan, dict[str, float]]]:
    """Every distinct plan (by config) that an order of ``random`` or a planner gives at budget ``b``, with the share
    of each one's orders that gives it."""
    shares = {
        name: _order_shares(r.tie_groups() if r is not None else None, sets, judge, b, method, sampled, (b, name))
        for name, r in [("random", None), *planners.items()]
    }
    by_key: dict[str, tuple[Plan, dict[str, float]]] = {}
    for name, of_orders in shares.items():
        for order, share in of_orders.items():
            ranking = _order_ranking(order, sets, judge.model, name)
            plan = plan_for_budget(ranking, judge.template, b, method=method, model_spec=judge.model)
            entry = by_key.setdefault(json.dumps(plan.config, sort_keys=True), (plan, {}))
            entry[1][name] = entry[1].get(name, 0.0) + share
    return by_key


def _outcome(
    p: _Planned, method: str, planners: dict[str, Ranking], val: list[float], test: list[float], a_val: list[float]
) -> PlanOutcome:
    """What one regret plan scored, named after the first planner whose orders give it."""
    return PlanOutcome(
        budget=p.budget,
        selector=next((n for n in planners if n in p.shares), "random"),
        method=method,
        targets=[t.target for t in p.plan.targets],
        units=[u for t in p.plan.targets for u in t.units],
        config=p.plan.config,
        used=p.plan.used,
        val_per_seed=val,
        test_per_seed=test,
        a_val_per_seed=a_val,
        floor_share=p.shares.get("random", 0.0),
    )


def _budget_regrets(
    b: int,
    idx: list[int],
    planned: list[_Planned],
    plans: list[PlanOutcome],
    planners: dict[str, Ranking],
    sampled: dict[tuple[int, str], tuple[str, int]],
) -> list[SelectorRegret]:
    """At budget ``b`` (its plans ``idx``): the reference chosen on split A, then each planner's and the random
    floor's expected plan against it, paired per seed (marks the reference and sets each plan's regret)."""
    # The reference is chosen on split A (the probe's validation images; the judge's own with shared data).
    choose = [plans[i].a_val_mean if plans[i].a_val_per_seed else plans[i].val_mean for i in idx]
    ref = plans[idx[reference_index(choose, [json.dumps(plans[i].config, sort_keys=True) for i in idx])]]
    ref.reference = True
    for i in idx:
        plans[i].regret = regret(ref.val_mean, plans[i].val_mean)
    regrets = []
    for name in ["random", *planners]:
        mine = [(i, planned[i].shares[name]) for i in idx if name in planned[i].shares]
        values = expected_per_seed([w for _, w in mine], [plans[i].val_per_seed for i, _ in mine])
        diff = paired_difference(values, ref.val_per_seed)
        orders = "exact"
        if (b, name) in sampled:
            how, n = sampled[(b, name)]
            orders = f"{how}; Monte Carlo standard error {100 * _sampling_error(mine, plans, n):.2f} pts"
        regrets.append(
            SelectorRegret(
                budget=b,
                selector=name,
                plan_shares={str(i): w for i, w in mine},
                val_per_seed=values,
                diff_per_seed=diff.per_seed,
                diff_mean=diff.mean,
                diff_interval=diff.interval,
                interval_kind=diff.interval_kind,
                orders=orders,
            )
        )
    return regrets


def _sampling_error(mine: list[tuple[int, float]], plans: list[PlanOutcome], n_orders: int) -> float:
    """Standard error of a mean over ``n_orders`` sampled orders of the plans' seed-mean accuracy (shares ``mine``)."""
    x = np.array([plans[i].val_mean for i, _ in mine])
    w = np.array([share for _, share in mine])
    mean = float((w * x).sum())
    return math.sqrt(float((w * (x - mean) ** 2).sum()) / max(1, n_orders - 1))


def _order_shares(
    groups: list[list[str]] | None,
    sets: dict[str, list[str]],
    judge: Study,
    budget: int,
    method: str,
    sampled: dict[tuple[int, str], tuple[str, int]],
    key: tuple[int, str],
) -> dict[tuple[str, ...], float]:
    """Orders (one per distinct plan) and their shares among the orders consistent with ``groups`` (None: all
    orders), by :func:`~petl_analysis.plan.planner.greedy_plan_shares`; how they were counted when not exactly is
    recorded in ``sampled[key]``. A budget below every plan is refused (the planner's one-line error)."""
    found = greedy_plan_shares(
        groups if groups is not None else [list(sets)], sets, judge.template, budget, method=method, seed=len(sampled)
    )
    plan_for_budget(
        _order_ranking(next(iter(found.shares)), sets, judge.model, "check"),
        judge.template,
        budget,
        method=method,
        model_spec=judge.model,
    )
    if found.how != "exact":
        sampled[key] = (found.how, found.n_orders)
    return found.shares


class Scored(NamedTuple):
    """One plan's scores per finished seed: validation and test accuracy, the ``also_val`` accuracy (empty without
    it) and which validation images each seed got right (packed; empty when a trial read back predates them)."""

    val: list[float]
    test: list[float]
    also_val: list[float]
    val_correct: list[str]


class _PlanTrainer:
    """Trains lists of plans with the study's sweep (:meth:`~petl_analysis.study.Study.sweep`), all in one resumable
    trial log; a configuration trained here and in a sweep with the same recipe is the same trial."""

    def __init__(self, study: Study, log_path: Path | None, **kw: Any) -> None:
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

    def __call__(self, plans: list[Plan]) -> list[Scored]:
        """What each plan scored per finished seed, in order."""
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
            kept = [r for r in seeds if r.val_acc is not None]
            out.append(
                Scored(
                    [float(r.val_acc) for r in kept],
                    [float(r.test_acc) for r in seeds if r.test_acc is not None],
                    [float(r.also_val_acc) for r in seeds if r.also_val_acc is not None],
                    [r.val_correct for r in kept] if all(r.val_correct for r in kept) else [],
                )
            )
        return out


def _seed_run_seconds(record: TrialRecord) -> float | None:
    """The training's own seconds of a sweep trial (its seed run), as the sweep's points count them."""
    run = (record.result or {}).get("seed_run") or {}
    return run.get("wall_time_s", record.wall_time_s)
