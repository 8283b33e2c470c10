"""Every plan a study trains, and the plans folder the sweep reads them from.

A study (``petl-analyze run``, or ``sweep`` without ``--plans``) trains, per budget:

- ``kadaptation`` and ``lora`` on the targets the ranking chose (``selected``), plus KAdaptation on the paper's fixed
  targets (``fixed``: q and v of every block) and on the worst-ranked targets (``worst``), sized by the same greedy
  policy so the three differ only in *which* units they adapt (without a ranking, both on the fixed targets);
- ``adapter``, ``compacter`` and ``vpt`` sized to the budget by their own knob (``sized``: bottleneck width,
  prompts);

and once each, without a budget, ``bitfit``, ``layernorm``, ``linear`` and ``full`` (``fixed-size``).

Each is a :class:`~petl_analysis.plan.Plan` with its variant; :func:`write_plans` saves one file per plan and
:func:`read_plans` reads a folder back in study order: what the folder holds is what the sweep trains.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..accounting import classifier
from ..errors import PetlError
from ..io import ensure_writable_dir
from ..models import ModelSpec, spec_with_load
from ..select import Ranking
from ..tuners import FIXED, METHODS, Knob, MethodConfig, config_from_dict, get_method, methods_sized
from .budgets import Budget, BudgetLike, backbone_parameters, resolve_budgets
from .plan import FIXED_SIZE, PLANNED_VARIANTS, SIZED, Plan
from .planner import PLANNABLE, fixed_plan, plan_for_budget, reverse_ranking

#: The methods of a study unless told otherwise, in the order a study lists them.
DEFAULT_METHODS: tuple[str, ...] = ("kadaptation", "lora", "bitfit", "adapter", "compacter", "vpt", "linear", "full")
#: Methods whose size is fixed: trained once, without a budget (as each method registered its sizing).
FIXED_SIZE_METHODS: tuple[str, ...] = tuple(methods_sized(FIXED))
#: Methods sized to a budget by one integer knob: (knob, candidate values), as each method registered it.
KNOBS: dict[str, tuple[str, list[int]]] = {
    name: (METHODS.get(name).sizing.option, list(METHODS.get(name).sizing.values)) for name in methods_sized(Knob)
}
#: The KAdaptation paper's targets: q and v of every block.
PAPER_TARGETS: tuple[str, ...] = ("attn.q", "attn.v")
_METHOD_ORDER = (*DEFAULT_METHODS, "layernorm")


def config_plan(
    model: nn.Module,
    config: MethodConfig,
    *,
    variant: str,
    budget: Budget | int | None,
    model_spec: ModelSpec,
    head_in_budget: bool = False,
    notes: Sequence[str] = (),
) -> Plan:
    """The plan of a configuration the planner does not choose targets for (a baseline), with its exact count."""
    count = get_method(config).expected_count(model)
    used = count.total if head_in_budget else count.total_excl_head
    request = Budget(budget, str(budget)) if isinstance(budget, int) else budget
    params = None if request is None else request.params
    return Plan(
        model=spec_with_load(model_spec, model),
        num_classes=int(classifier(model).out_features),
        budget=params,
        head_in_budget=head_in_budget,
        method=config.method,
        config=config.to_dict(),
        targets=[],
        trainable=count.as_dict(),
        used=int(used),
        used_fraction=None if params is None else used / params,
        policy="knob" if variant == SIZED else "fixed",
        notes=list(notes),
        variant=variant,
        budget_requested=None if request is None else request.requested,
        backbone_params=backbone_parameters(model),
    )


def size_to_budget(
    method: str, model: nn.Module, budget: int, head_in_budget: bool, options: dict[str, Any]
) -> MethodConfig | None:
    """The largest value of ``method``'s knob whose count fits ``budget``; None when even the smallest exceeds it."""
    knob, values = KNOBS[method]
    best, refusals = None, []
    for v in values:
        try:
            cfg = config_from_dict({"method": method, **options, knob: v})
            count = get_method(cfg).expected_count(model)
        except PetlError as e:
            refusals.append(e)
            continue  # e.g. a compacter bottleneck that n does not divide
        used = count.total if head_in_budget else count.total_excl_head
        if used <= budget and (best is None or used > best[0]):
            best = (used, cfg)
    if len(refusals) == len(values):  # the method refuses this model at every size: say why, not "too big"
        raise refusals[0]
    return None if best is None else best[1]


def _planned(method: str, model: nn.Module, budget: Budget, ranking: Ranking | None, **kw: Any) -> list[Plan]:
    plans = []
    if ranking is not None:
        plans.append(plan_for_budget(ranking, model, budget, method=method, **kw))
    if method == "kadaptation" or ranking is None:
        kw = {k: v for k, v in kw.items() if k != "source"}
        plans.append(fixed_plan(model, PAPER_TARGETS, budget, method=method, **kw))
    if method == "kadaptation" and ranking is not None and len(ranking.entries) > 1:
        plans.append(plan_for_budget(reverse_ranking(ranking), model, budget, method=method, variant="worst", **kw))
    return plans


def plan_study(
    model_spec: ModelSpec,
    model: nn.Module,
    budgets: str | Sequence[BudgetLike] | None,
    methods: Sequence[str] = DEFAULT_METHODS,
    ranking: Ranking | None = None,
    *,
    head_in_budget: bool = False,
    method_options: dict[str, dict[str, Any]] | None = None,
    ranking_source: str = "",
) -> tuple[list[Plan], list[str]]:
    """Every plan of a study (see the module docstring) in study order, and what was skipped and why.

    ``model`` is built from ``model_spec`` with the dataset's head. ``budgets``: any form
    :func:`~petl_analysis.plan.budgets.resolve_budgets` reads (``"2k,0.05%"``); None: the model's defaults. A
    configuration that repeats at several budgets (a knob or plan that saturates) is planned once, at the smallest
    budget."""
    for m in methods:
        METHODS.get(m)
    if not isinstance(budgets, str) and budgets is not None and any(isinstance(b, int) and b <= 0 for b in budgets):
        raise PetlError(f"budgets must be positive numbers of parameters, got {list(budgets)}")
    resolved = resolve_budgets(budgets, model, methods=methods, head_in_budget=head_in_budget)
    options = method_options or {}
    common = {"model_spec": model_spec, "head_in_budget": head_in_budget}
    plans: list[Plan] = [
        config_plan(
            model, config_from_dict({"method": m, **options.get(m, {})}), variant=FIXED_SIZE, budget=None, **common
        )
        for m in methods
        if m in FIXED_SIZE_METHODS
    ]
    skipped: list[str] = []
    for budget in resolved:
        for m in methods:
            opts = options.get(m, {})
            try:
                if m in PLANNABLE:
                    plans += _planned(m, model, budget, ranking, method_options=opts, source=ranking_source, **common)
                elif m in KNOBS:
                    cfg = size_to_budget(m, model, budget.params, head_in_budget, opts)
                    if cfg is None:
                        skipped.append(f"{m} at budget {budget.params}: its smallest configuration exceeds the budget")
                    else:
                        plans.append(config_plan(model, cfg, variant=SIZED, budget=budget, **common))
            except PetlError as e:
                skipped.append(f"{m} at budget {budget.params}: {e}")
    return study_order(plans), skipped


def _config_key(plan: Plan) -> str:
    return json.dumps(plan.config, sort_keys=True)


def study_order(plans: Iterable[Plan]) -> list[Plan]:
    """Fixed-size baselines first, then by budget, method and variant; a (label, configuration) already listed at a
    smaller budget is dropped (it is one configuration, trained once)."""

    def key(p: Plan) -> tuple:
        method = _METHOD_ORDER.index(p.method) if p.method in _METHOD_ORDER else len(_METHOD_ORDER)
        variant = PLANNED_VARIANTS.index(p.variant) if p.variant in PLANNED_VARIANTS else len(PLANNED_VARIANTS)
        return (p.budget is not None, p.budget or 0, method, p.method, variant)

    out, seen = [], set()
    for p in sorted(plans, key=key):
        if (p.label, _config_key(p)) not in seen:
            seen.add((p.label, _config_key(p)))
            out.append(p)
    return out


def plan_file_name(plan: Plan) -> str:
    """``plan_4000_kadaptation-selected.json``, ``plan_4000_adapter-sized.json``, ``plan_linear.json``."""
    if plan.budget is None:
        return f"plan_{plan.method}.json"
    return f"plan_{plan.budget}_{plan.method}-{plan.variant}.json"


def write_plans(plans: Sequence[Plan], folder: str | Path, dataset: str | None = None) -> list[Path]:
    """Save each plan into ``folder`` unless its file is there already (an edited plan is kept: it is what the sweep
    trains); returns the files, in the order of ``plans``. ``dataset``: recorded in each plan written (the one a
    sweep of the folder trains on)."""
    out = ensure_writable_dir(folder)
    paths = []
    for plan in plans:
        path = out / plan_file_name(plan)
        if not path.exists():
            (plan.for_dataset(dataset) if dataset is not None else plan).save(path)
        paths.append(path)
    return paths


def plan_files(folder: str | Path) -> list[Path]:
    """The plan files of a folder (``*.json`` but the ``*.peft.json`` exports)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PetlError(f"plans folder {str(folder)!r} does not exist; write one with `petl-analyze plan` or `run`")
    files = sorted(p for p in folder.glob("*.json") if not p.name.endswith(".peft.json"))
    if not files:
        raise PetlError(f"plans folder {str(folder)!r} holds no plan files (*.json)")
    return files


def plans_dataset(plans: Sequence[Plan], dataset: str | None = None, source: str = "the plans") -> str:
    """The dataset a sweep of ``plans`` trains on: the one they record. ``dataset`` (``--dataset``) must name the
    same one; it is needed only when no plan records its dataset (plan files of version 1).

    Raises:
        PetlError: plans of several datasets, ``dataset`` another one, or no dataset known."""
    from ..task import same_dataset

    recorded = sorted({p.dataset for p in plans if p.dataset is not None})
    if len(recorded) > 1:
        raise PetlError(f"{source}: made for {len(recorded)} datasets ({', '.join(recorded)}); a sweep trains one")
    if not recorded:
        if dataset is None:
            raise PetlError(f"{source}: no dataset recorded (plan files of version 1); give it with --dataset")
        return dataset
    if dataset is not None and not same_dataset(dataset, recorded[0]):
        raise PetlError(
            f"{source}: made for dataset {recorded[0]!r}, not {dataset!r}; drop --dataset to train on "
            f"{recorded[0]!r}, or plan for {dataset!r} first"
        )
    return dataset if dataset is not None else recorded[0]


def read_plans(source: str | Path | Sequence[str | Path]) -> list[Plan]:
    """Plans from a folder (every plan file in it) or from a list of files, in study order (see :func:`study_order`)."""
    paths = plan_files(source) if isinstance(source, (str, Path)) else [Path(p) for p in source]
    return study_order(Plan.load(p) for p in paths)
