"""The few-shot protocol kept (issue 25, item 7): a k-shot study is probed on the labels a k-shot user has, and a
report whose probe read more says how many more."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from helpers import run_cli

from petl_analysis.probe import ProbeResult
from petl_analysis.report.render import few_shot_labels
from petl_analysis.sweep import SweepResult

ROOT = Path(__file__).resolve().parents[1]
ANIMALS = ROOT / "reports" / "demo" / "animals"


def test_the_report_says_how_many_more_labels_the_probe_read():
    probe, sweep = ProbeResult.load(ANIMALS / "probe.json"), SweepResult.load(ANIMALS / "sweep.json")
    # the committed demo probes on the 5-shot labels: nothing to say
    assert (probe.n_train, probe.n_val) == (50, 50) and few_shot_labels(probe, sweep) is None
    # the demo's probe before issue 25 read 300 training and 1,500 validation images
    text = few_shot_labels(dataclasses.replace(probe, n_train=300, n_val=1_500), sweep)
    assert text.startswith(
        "the probe used 1,800 labelled images (300 train + 1,500 validation); a 5-shot user has "
        "100 (5 train + 5 validation per class)"
    )
    # a probe on the user's own labels: nothing to say
    assert few_shot_labels(dataclasses.replace(probe, n_train=50, n_val=50), sweep) is None
    # a full-data sweep: no k-shot user
    full = dataclasses.replace(
        sweep, data=dataclasses.replace(sweep.data, split=dataclasses.replace(sweep.data.split, shots=None))
    )
    assert few_shot_labels(probe, full) is None


def test_demo_probes_on_the_five_shot_labels():
    from petl_analysis.plan import DEFAULT_METHODS
    from petl_analysis.presets import DEMO, demo_runs

    runs = demo_runs("out")
    assert runs.probe_split.shots == runs.sweep_split.shots == DEMO["shots"] == 5
    assert runs.probe_split.max_train is None and runs.probe_split.val_shots is None
    assert runs.config.methods == list(DEFAULT_METHODS) and runs.config.probe.d_min == 10


@pytest.mark.parametrize(
    "args, probe_shots",
    [
        ([], 5),
        (["--shots", "3"], 3),
        (["--probe-shots", "0"], None),
        (["--probe-shots", "20"], 20),
        (["--shots", "0"], None),
    ],
)
def test_run_probes_on_the_sweeps_shots_unless_told(args, probe_shots, tmp_path, monkeypatch):
    import petl_analysis.cli.main as cli_main

    seen = {}
    monkeypatch.setattr(cli_main, "_run_pipeline", lambda run, *_: seen.setdefault("run", run))
    code, out = run_cli(["run", "--dataset", "digits", *args, "--out", str(tmp_path / "o")], tmp_path)
    assert code == 0, out
    assert seen["run"].probe_split.shots == probe_shots
    assert seen["run"].probe_split.dedup and seen["run"].sweep_split.dedup


def test_keep_duplicates_reaches_both_splits(tmp_path, monkeypatch):
    import petl_analysis.cli.main as cli_main

    seen = {}
    monkeypatch.setattr(cli_main, "_run_pipeline", lambda run, *_: seen.setdefault("run", run))
    code, out = run_cli(["run", "--dataset", "animals", "--keep-duplicates", "--out", str(tmp_path / "o")], tmp_path)
    assert code == 0, out
    assert not seen["run"].probe_split.dedup and not seen["run"].sweep_split.dedup
