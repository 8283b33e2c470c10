"""Planner sizing side by side: bisecting each rank ladder (the planner) against counting every configuration.

    python benchmarks/bench_plan.py                  # ViT-S/14 layout (DINOv2-S's, random weights), 5 rounds
    python benchmarks/bench_plan.py --model tiny --rounds 3

One call is :func:`petl_analysis.plan.plan_for_budget` of a six-set ranking (q, k, v, proj, fc1, fc2 of every
block) at each budget of ``--budgets``, KAdaptation and LoRA. A validation plans about a hundred such calls (every
distinct order of every selector and of the random floor, at each regret budget), each sizing counted by walking
the model once per configuration, hence this measurement. The two variants alternate (ABBA) within each round;
the table gives the median seconds per call and the median per-round ratio. Both give the same plans (asserted
here, and in ``tests/test_plan.py``). Nothing else is asserted; the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from petl_analysis.models import ModelSpec, create_model
from petl_analysis.plan import planner
from petl_analysis.plan.planner import plan_for_budget
from petl_analysis.select import RankedTarget, Ranking

MODELS = {
    "vit-s14": ("ViT-S/14 layout (DINOv2-S's: width 384, depth 12), 56 px", "vit_small_patch14_dinov2", 56),
    "tiny": ("petl_vit_tiny (bundled layout)", "petl_vit_tiny", None),
}
TYPES = ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2")


def _exhaustive(model, method, base, units, budget, head_in_budget):
    """The sizing before bisection: count every configuration, keep the one using the most of the budget."""
    best = None
    for cfg in planner._configs(method, base, units, cheapest_only=False):
        count = planner._count(model, cfg)
        used = planner._used(count, head_in_budget)
        if used > budget:
            continue
        key = (used, getattr(cfg, "n", 0), -cfg.rank)
        if best is None or key > (best[0], getattr(best[1], "n", 0), -best[1].rank):
            best = (used, cfg, count)
    assert best is not None
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="vit-s14")
    parser.add_argument("--budgets", type=int, nargs="+", default=[17_000, 69_000, 280_000])
    parser.add_argument("--rounds", type=int, default=5)
    a = parser.parse_args(argv)
    label, name, img_size = MODELS[a.model]
    spec = ModelSpec(name, weights="random", img_size=img_size, num_classes=10)
    model = create_model(spec)
    entries = [
        RankedTarget(
            target=t, units=[f"blocks.{b}.{t}" for b in range(len(model.blocks))], D=0, rank=i + 1, score=None
        )
        for i, t in enumerate(TYPES)
    ]
    ranking = Ranking(selector="bench", model=spec, data=None, entries=entries)
    bisected = planner._largest_config

    def plans(sizing) -> list[dict]:
        planner._largest_config = sizing
        try:
            return [
                plan_for_budget(ranking, model, b, method=m).config for m in ("kadaptation", "lora") for b in a.budgets
            ]
        finally:
            planner._largest_config = bisected

    variants = {"bisected": bisected, "every configuration": _exhaustive}
    calls = 2 * len(a.budgets)
    times: dict[str, list[float]] = {k: [] for k in variants}
    got: dict[str, list[dict]] = {}
    for r in range(a.rounds):
        for key in list(variants) if r % 2 == 0 else list(variants)[::-1]:
            start = time.perf_counter()
            got[key] = plans(variants[key])
            times[key].append((time.perf_counter() - start) / calls)
    assert got["bisected"] == got["every configuration"], "the two sizings chose different plans"
    ratios = [e / b for b, e in zip(times["bisected"], times["every configuration"])]
    print(f"{label}; budgets {', '.join(f'{b:,}' for b in a.budgets)}; KAdaptation and LoRA; {a.rounds} rounds")
    print(f"{'sizing':<22}{'s per plan (median)':>22}")
    for key, ts in times.items():
        print(f"{key:<22}{statistics.median(ts):>22.3f}")
    print(f"every configuration / bisected (median per-round ratio): {statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
