#!/usr/bin/env python
"""Re-analyse a committed ``validation.json`` with the agreement statistics of the issue-25 protocol, without training:
declared ties kept (midranks), upper- and lower-tail permutation p-values under those ties, Holm over the selectors
per oracle method, seed spans, and each selector's cost beside the oracle's (unique trial keys of the trial logs).

The oracle accuracies are the file's own; only the statistics change. A version-1 file was written under the old
protocol (probe and oracle trained on the same images and seeds): its re-analysis says what those numbers support,
not what a protocol with an independent judge would find.

    python scripts/reanalyse_validation.py tests/data/legacy_validation_v1/validation.json

Tie classes: d90 and d90+acc from the probe (``probe_source``); apla and constant recomputed (data-free rules, on a
randomly initialised model of the same architecture: only the unit names are read); gradient proxies from the stored
order, tied where ``--ranking``'s stored scores are exactly equal (else strict). Proxy compute seconds are not in a
version-1 file: shown ``-``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from petl_analysis.models import ModelSpec, create_model
from petl_analysis.probe import ProbeResult
from petl_analysis.select import PROBE_SELECTORS, Ranking, rank_by_proxy
from petl_analysis.trials import open_trial_log, read_records, trial_cost, trial_log_path
from petl_analysis.validate import ValidationResult
from petl_analysis.validate.agreement import agreement_stats, holm, smallest_p
from petl_analysis.validate.result import Cost, format_classes, format_correlation, format_p
from petl_analysis.validate.run import agreement_verdict

DATA_FREE = ("apla", "constant")


def _classes_from_scores(order: list[str], scores: dict[str, float] | None) -> list[list[str]]:
    classes: list[list[str]] = []
    for t in order:
        if classes and scores and t in scores and scores.get(classes[-1][0]) == scores[t]:
            classes[-1].append(t)
        else:
            classes.append([t])
    return classes


def _oracle_cost(v: ValidationResult, log: Path) -> dict[str, Cost]:
    """Per method: trainings and seconds of the log's trials whose configuration is one of the oracle's."""
    configs = {m: [e.config for e in v.oracle if e.method == m] for m in v.methods}
    records = {r.key: r for r in read_records(open_trial_log(log)) if r.ok}
    out = {}
    for m, wanted in configs.items():
        mine = (
            [r for r in records.values() if json.loads(r.payload["config"]) in wanted]
            if isinstance(next(iter(records.values())).payload.get("config"), str)
            else [r for r in records.values() if r.payload.get("config") in wanted]
        )
        out[m] = Cost(len(mine), float(sum(r.wall_time_s or 0.0 for r in mine)), source=str(log))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("validation")
    ap.add_argument("--ranking", default=None, help="ranking.json whose stored proxy scores reveal exact ties")
    args = ap.parse_args()
    path = Path(args.validation)
    version = json.loads(path.read_text())["version"]
    v = ValidationResult.load(path)
    probe = ProbeResult.load(v.probe_source)
    stored = Ranking.load(args.ranking).details.get("proxies", {}) if args.ranking else {}
    net = create_model(ModelSpec(v.model.name, weights="random", num_classes=2))
    sets = {t.target: list(t.units) for t in probe.targets}
    probe_log = trial_log_path(v.probe_source)
    probe_cost = Cost(*trial_cost(read_records(open_trial_log(probe_log))), source=str(probe_log))
    oracle_cost = _oracle_cost(v, trial_log_path(path))
    val_log_trainings, val_log_s = trial_cost(read_records(open_trial_log(trial_log_path(path))))

    names = [s for s in v.selectors if s != "d90"]
    print(
        f"# {path} (version {version}{': the OLD protocol, probe and oracle on the same images and seeds' if version == 1 else ''})"
    )
    print(
        f"probe cost: {probe_cost.text()} ({probe_log}: unique trial keys); validate log: "
        f"{val_log_trainings} trainings, {val_log_s:,.0f} s in all (oracle and regret plans)"
    )
    for m in v.methods:
        labels = list(v.sets)
        acc = np.array([next(e.val_per_seed for e in v.oracle if e.method == m and e.target == t) for t in labels])
        rows = []
        for name in ["d90", "d90+acc", *names, *(["constant"] if "constant" not in names else [])]:
            if name in PROBE_SELECTORS:
                r = PROBE_SELECTORS.get(name)(probe)
                classes, cost, measured = r.tie_groups(), probe_cost, r.details["n_measured"]
            elif name in DATA_FREE:
                r = rank_by_proxy(name, net, None, sets, model_spec=v.model)
                classes, cost, measured = r.tie_groups(), Cost(0, 0.0), None
            else:
                a = next(a for a in v.agreement if a.selector == name and a.method == m)
                scores = stored.get(name, {}).get("scores") if stored.get(name, {}).get("order") == a.order else None
                classes, cost, measured = _classes_from_scores(a.order, scores), Cost(0, math.nan), None
            rows.append((name, classes, agreement_stats(classes, labels, acc), cost, measured))
        hb = holm([c.test.p_better for _, _, c, _, _ in rows])
        hw = holm([c.test.p_worse for _, _, c, _, _ in rows])
        print(f"\n## oracle {m}: {oracle_cost[m].text()} (its own trainings); Holm over {len(rows)} selectors\n")
        print(
            "| selector | tie classes | d90 measured | Spearman ρ [seed span] | Kendall τ [seed span] | p better (Holm) "
            "| p worse (Holm) | permutations | cost | verdict |"
        )
        print("|---|---|---:|---|---|---|---|---:|---|---|")
        for (name, classes, c, cost, measured), pb, pw in zip(rows, hb, hw):
            verdict = agreement_verdict(pb, pw, c.spearman, smallest_p(classes))
            print(
                f"| `{name}` | {format_classes(classes)} | {'-' if measured is None else measured} | "
                f"{format_correlation(c.spearman, c.spearman_span)} | {format_correlation(c.kendall, c.kendall_span)} | "
                f"{format_p(c.test.p_better, pb)} | {format_p(c.test.p_worse, pw)} | "
                f"{c.test.permutations:,}{'' if c.test.exact else ' drawn'} | "
                f"{cost.text() if math.isfinite(cost.seconds) else 'no training, - s'} | {verdict} |"
            )


if __name__ == "__main__":
    sys.exit(main())
