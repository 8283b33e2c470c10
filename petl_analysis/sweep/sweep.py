"""Budget sweeps: every (method, budget) point trained over seeds, resumable and parallel.

Points of a sweep:

- ``kadaptation`` and ``lora`` at each budget with targets chosen by the ranking (``selected``), plus KAdaptation on
  the paper's fixed targets (``fixed``: q and v of every block) and on the worst-ranked targets (``worst``), sized
  by the same planner so the three differ only in *which* units they adapt;
- ``adapter``, ``compacter`` and ``vpt`` sized to each budget by their own knob (bottleneck width, prompts);
- ``bitfit``, ``layernorm``, ``linear`` and ``full``, whose size is fixed, once each.

Each (point, seed) is one trial in the JSON-lines log beside the output, so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..artefacts import Artefact, from_jsonable, key_json, to_jsonable
from ..data import open_dataset
from ..engine import Recipe
from ..errors import PetlError
from ..io import JsonlLog, MemoryLog
from ..models import ModelSpec
from ..plan import PLANNABLE, Plan, fixed_plan, plan_for_budget, reverse_ranking
from ..select import Ranking
from ..task import DataSpec, InputConversion, announce, input_conversion, prepare_model
from ..train.run import RunResult, SeedRun, default_train_recipe, summarise, train_one_seed
from ..trials import STATUS_OK, Trial, run_trials
from ..tuners import METHODS, config_from_dict, get_method

if TYPE_CHECKING:
    from torch import nn

FIXED_SIZE = ("linear", "full", "bitfit", "layernorm")
#: Methods sized to a budget by one integer knob: (knob, candidate values).
KNOBS: dict[str, tuple[str, list[int]]] = {
    "adapter": ("bottleneck", [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]),
    "compacter": ("bottleneck", [4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]),
    "vpt": ("num_prompts", [1, 2, 4, 8, 16, 32, 64, 128]),
}
PAPER_TARGETS = ("attn.q", "attn.v")
DEFAULT_METHODS = ("kadaptation", "lora", "bitfit", "adapter", "compacter", "vpt", "linear", "full")


@dataclass
class SweepPoint:
    """One trained configuration: ``variant`` is ``selected``, ``fixed``, ``worst`` (planned methods), ``sized``
    (knob-sized baselines) or ``fixed-size`` (linear, full, bitfit, layernorm); ``budget`` is None for the last.

    ``same_as`` names an earlier point (``label@budget``) with exactly this configuration (same units, same
    hyper-parameters): it was trained once, and the two are one result, not two that happen to be level.
    """

    label: str
    method: str
    variant: str
    budget: int | None
    run: RunResult
    plan: dict[str, Any] | None = None
    same_as: str | None = None


@dataclass
class SweepResult(Artefact):
    """Output of ``petl-analyze sweep`` (``sweep.json``): every point's RunResult."""

    SCHEMA = "sweep_result"
    VERSION = 1

    model: ModelSpec
    data: DataSpec
    recipe: Recipe
    seeds: list[int]
    budgets: list[int]
    methods: list[str]
    head_in_budget: bool
    points: list[SweepPoint]
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ranking_source: str = ""
    wall_time_s: float = 0.0
    command: str = ""
    #: How the dataset's images were converted for the model (channels, size).
    input_conversion: InputConversion | None = None

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for p in sorted(self.points, key=lambda p: (p.run.trainable["total_incl_head"], p.label)):
            s = p.run.summary()
            rows.append({"label": p.label, "budget": p.budget, "trainable": s["trainable"],
                         "excl. head": s["trainable_excl_head"], "test acc": s["test_acc"], "± std": s["test_std"],
                         "last-epoch acc": s["last_test_acc"], "seeds": s["seeds"]})
        return rows


def _size_to_budget(method: str, model, budget: int, head_in_budget: bool, options: dict[str, Any]):
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


def plan_sweep(
    model_spec: ModelSpec,
    data: DataSpec,
    budgets: Sequence[int],
    methods: Sequence[str] = DEFAULT_METHODS,
    ranking: Ranking | None = None,
    *,
    head_in_budget: bool = False,
    method_options: dict[str, dict[str, Any]] | None = None,
    net: nn.Module | None = None,
) -> tuple[list[tuple[str, str, str, int | None, dict[str, Any], Plan | None]], list[str]]:
    """The sweep's points: ``(label, method, variant, budget, config dict, plan)``, and what was skipped and why.

    ``net``: the model built from ``model_spec`` with the dataset's head, when the caller has it already."""
    for m in methods:
        METHODS.get(m)
    options = method_options or {}
    if net is None:
        net = prepare_model(model_spec, open_dataset(data.dataset, skip_bad_images=data.skip_bad_images).num_classes)
    model = net
    points, skipped = [], []
    for m in methods:
        if m in FIXED_SIZE:
            cfg = config_from_dict({"method": m, **options.get(m, {})})
            points.append((m, m, "fixed-size", None, cfg.to_dict(), None))
    for budget in sorted(budgets):
        for m in methods:
            opts = options.get(m, {})
            try:
                if m in PLANNABLE:
                    variants: list[tuple[str, Plan]] = []
                    if ranking is not None:
                        variants.append(("selected", plan_for_budget(ranking, model, budget, method=m,
                                                                     model_spec=model_spec, head_in_budget=head_in_budget,
                                                                     method_options=opts)))
                    if m == "kadaptation":
                        variants.append(("fixed", fixed_plan(model, PAPER_TARGETS, budget, method=m, model_spec=model_spec,
                                                             head_in_budget=head_in_budget, method_options=opts)))
                        if ranking is not None and len(ranking.entries) > 1:
                            variants.append(("worst", plan_for_budget(reverse_ranking(ranking), model, budget, method=m,
                                                                      model_spec=model_spec,
                                                                      head_in_budget=head_in_budget, method_options=opts)))
                    elif ranking is None:
                        variants.append(("fixed", fixed_plan(model, PAPER_TARGETS, budget, method=m, model_spec=model_spec,
                                                             head_in_budget=head_in_budget, method_options=opts)))
                    for variant, plan in variants:
                        points.append((f"{m}@{variant}", m, variant, budget, plan.config, plan))
                elif m in KNOBS:
                    cfg = _size_to_budget(m, model, budget, head_in_budget, opts)
                    if cfg is None:
                        skipped.append(f"{m} at budget {budget}: its smallest configuration exceeds the budget")
                    else:
                        points.append((m, m, "sized", budget, cfg.to_dict(), None))
            except PetlError as e:
                skipped.append(f"{m} at budget {budget}: {e}")
    # Identical configurations at several budgets (a knob or plan that saturates) are trained once.
    unique, seen = [], set()
    for p in points:
        key = (p[0], json.dumps(p[4], sort_keys=True))
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, skipped


def sweep_trial(trial: Trial) -> dict[str, Any]:
    """Worker: train one (configuration, seed)."""
    import torch

    p = trial.payload
    torch.set_num_threads(max(1, int(p.get("threads", torch.get_num_threads()))))
    model = from_jsonable(ModelSpec, json.loads(p["model"]))
    data = from_jsonable(DataSpec, json.loads(p["data"]))
    recipe = from_jsonable(Recipe, json.loads(p["recipe"]))
    config = config_from_dict(json.loads(p["config"]))
    run, trainable = train_one_seed(model, data, config, recipe, int(p["seed"]), head_init=p["head_init"],
                                    device=p["device"])
    return {"seed_run": to_jsonable(run), "trainable": trainable, "device": str(p["device"]),
            "threads": torch.get_num_threads()}


def run_sweep(
    model: ModelSpec,
    data: DataSpec,
    budgets: Sequence[int],
    methods: Sequence[str] = DEFAULT_METHODS,
    ranking: Ranking | None = None,
    *,
    seeds: int = 3,
    recipe: Recipe | None = None,
    head_init: str = "lp",
    head_in_budget: bool = False,
    method_options: dict[str, dict[str, Any]] | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    n_jobs: int = 1,
    backend: str = "loky",
    scheduler: str | None = None,
    on_trial: Callable[[dict[str, Any], bool], None] | None = None,
    ranking_source: str = "",
    command: str = "",
) -> SweepResult:
    """Train every point of :func:`plan_sweep` over ``seeds``; save ``out`` atomically (trials logged beside it)."""
    start = time.perf_counter()
    recipe = recipe or default_train_recipe()
    if any(b <= 0 for b in budgets):
        raise PetlError(f"budgets must be positive numbers of parameters, got {list(budgets)}")
    ds = open_dataset(data.dataset, skip_bad_images=data.skip_bad_images)
    net = prepare_model(model, ds.num_classes, seed=0)
    conversion = input_conversion(ds, net)
    announce(conversion, data.dataset)
    points, skipped = plan_sweep(model, data, budgets, methods, ranking, head_in_budget=head_in_budget,
                                 method_options=method_options, net=net)
    import torch

    threads = max(1, torch.get_num_threads() // max(1, n_jobs))
    common = {"model": json.dumps(to_jsonable(model), sort_keys=True),
              "recipe": key_json(recipe),
              "head_init": head_init, "device": device, "threads": threads}

    def trial(config: dict[str, Any], seed: int) -> Trial:
        return Trial("run", {**common, "data": key_json(data.for_seed(seed)),
                             "config": json.dumps(config, sort_keys=True), "seed": seed})

    seed_list = list(range(seeds))
    trials = [trial(cfg, s) for (_, _, _, _, cfg, _) in points for s in seed_list]
    log = JsonlLog(Path(str(out) + ".trials.jsonl")) if out else MemoryLog()
    records = run_trials(trials, sweep_trial, log, n_jobs=n_jobs, on_record=on_trial, backend=backend,
                         scheduler=scheduler)
    result_points, failed = [], []
    first_of: dict[str, str] = {}
    for label, method, variant, budget, cfg, plan in points:
        me = f"{label}@{budget}"
        first = first_of.setdefault(json.dumps(cfg, sort_keys=True), me)
        same_as = first if first != me else None
        recs = [records[trial(cfg, s).key] for s in seed_list]
        ok = [r for r in recs if r["status"] == STATUS_OK]
        failed += [{"label": label, "budget": budget, "seed": r["payload"]["seed"], "error": r.get("error")}
                   for r in recs if r["status"] != STATUS_OK]
        if not ok:
            continue
        runs = [from_jsonable(SeedRun, r["result"]["seed_run"]) for r in ok]
        run = summarise(method, cfg, model, data, recipe, head_init, ok[0]["result"]["trainable"], runs,
                        sum(r.wall_time_s for r in runs), label=label, input_conversion=conversion)
        result_points.append(SweepPoint(label, method, variant, budget, run, plan.to_dict() if plan else None,
                                        same_as=same_as))
    result = SweepResult(model=model, data=data, recipe=recipe, seeds=seed_list, budgets=sorted(budgets),
                         methods=list(methods), head_in_budget=head_in_budget, points=result_points, failed=failed,
                         skipped=skipped, ranking_source=ranking_source, wall_time_s=time.perf_counter() - start,
                         command=command, input_conversion=conversion)
    if out:
        result.save(out)
    return result
