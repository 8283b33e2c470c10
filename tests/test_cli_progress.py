"""Progress you can plan around: lines with their total and ETA, epochs inside a training (-v), nothing under -q,
--version, shell completion and --log-to from the command line."""

from __future__ import annotations

import csv
import re

import pytest
from typer.testing import CliRunner

from petl_analysis import __version__
from petl_analysis.cli._common import _eta
from petl_analysis.cli.main import app

runner = CliRunner()
TRAIN = [
    "train",
    "--dataset",
    "digits",
    "--shots",
    "2",
    "--seeds",
    "2",
    "--epochs",
    "2",
    "--weights",
    "random",
    "--img-size",
    "8",
    "--patch-size",
    "4",
    "--method",
    "lora",
    "--device",
    "cpu",
    "--no-adapter",
]


def test_version_and_conflicting_verbosity():
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and out.output.strip() == f"petl-analyze {__version__}"
    out = runner.invoke(app, ["-q", "-v", "datasets"])
    assert out.exit_code == 2 and "give -q or -v, not both" in out.output


def test_shell_completion_is_on():
    assert "--install-completion" in runner.invoke(app, ["--help"], terminal_width=200).output
    env = {"_PETL_ANALYZE_COMPLETE": "complete_bash", "COMP_WORDS": "petl-analyze pro", "COMP_CWORD": "1"}
    out = runner.invoke(app, [], env=env, prog_name="petl-analyze")
    assert out.output.split() == ["probe"]
    env["COMP_WORDS"], env["COMP_CWORD"] = "petl-analyze sweep --grad-ch", "2"
    assert runner.invoke(app, [], env=env, prog_name="petl-analyze").output.split() == ["--grad-checkpointing"]


def test_eta_is_the_pace_of_the_steps_that_worked():
    assert _eta(done=3, total=12, fresh=2, busy_s=20.0) == " (ETA 1:30)"  # 10 s a step, 9 left
    assert _eta(done=12, total=12, fresh=2, busy_s=20.0) == ""  # done
    assert _eta(done=5, total=None, fresh=2, busy_s=20.0) == ""  # total not known
    assert _eta(done=5, total=9, fresh=0, busy_s=0.0) == ""  # only cached steps so far


@pytest.mark.usefixtures("single_thread")
def test_train_lines_epochs_quiet_and_csv_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(app, ["-v", *TRAIN, "--out", "run.json", "--log-to", "csv:epochs.csv"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert re.search(r"^\[1/2\] seed 0: test \S+ \(last \S+\) \(ETA \d+:\d\d\)$", "\n".join(lines), re.M)
    assert any(re.fullmatch(r"  seed 1: epoch 2/2: loss \d\.\d{4}, val \d\.\d{3} \(\d+ s\)", line) for line in lines)
    with open("epochs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["seed"], r["epoch"]) for r in rows] == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")]

    quiet = runner.invoke(app, ["-q", *TRAIN, "--out", "quiet.json", "--amp", "off", "--grad-checkpointing"])
    assert quiet.exit_code == 0, quiet.output
    assert "recipe:" not in quiet.output and not re.search(r"^\[\d+/\d+\]|epoch \d", quiet.output, re.M)
    assert "test accuracy" in quiet.output  # the results still print
    bad = runner.invoke(app, [*TRAIN, "--out", "bad.json", "--amp", "fp8"])
    assert bad.exit_code == 2 and "error: Recipe.amp must be one of 'auto', 'bf16', 'fp16', 'off'" in bad.output
    assert "got 'fp8'" in bad.output
    plain = runner.invoke(app, [*TRAIN, "--out", "plain.json"])
    assert "[2/2] seed 1" in plain.output and "epoch 1/2" not in plain.output
