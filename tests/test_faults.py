"""Fault tolerance: failing and diverging trials, a driver killed with SIGKILL mid-study, corrupted results files.

- A trial that raises is retried once, then recorded as failed with its error; the other trials complete and the
  probe / sweep result lists the failed ones (so does the report).
- A NaN / infinite loss or parameter raises ``TrainingDiverged`` inside the trial, so it is recorded as failed
  rather than scored.
- ``kill -9`` of a running ``petl-analyze probe`` / ``sweep``, then the same command again: no finished trial lost
  or redone, and the final artefact equals that of an uninterrupted run (wall times aside).
- A garbled line or a non-record line in a trials log, or a truncated / garbled artefact, is a one-line error that
  names the file (and the line); the CLI exits 2 with that line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import run_cli, synthetic_probe, without_times
from torch import nn
from torch.utils.data import TensorDataset

from petl_analysis.data import SplitSpec
from petl_analysis.engine import Recipe, TrainingDiverged, fit
from petl_analysis.errors import PetlError
from petl_analysis.io import JsonlLog
from petl_analysis.models import ModelSpec
from petl_analysis.probe import ProbeConfig, ProbeResult, default_probe_recipe, run_probe
from petl_analysis.probe import search as probe_module
from petl_analysis.select import rank_from_probe
from petl_analysis.sweep import run_sweep
from petl_analysis.sweep import sweep as sweep_module
from petl_analysis.sweep.sweep import RunTrial
from petl_analysis.task import DataSpec, prepare_model
from petl_analysis.trials import STATUS_FAILED, STATUS_OK, Trial, run_trials

torch.set_num_threads(1)

# --------------------------------------------------------------------------------------------------- failing trials

ATTEMPTS: dict[int, int] = {}


def _fails_on_two(trial: Trial) -> dict:
    x = trial.payload["x"]
    ATTEMPTS[x] = ATTEMPTS.get(x, 0) + 1
    if x == 2:
        raise RuntimeError(f"boom on x={x}, attempt {ATTEMPTS[x]}")
    return {"y": x * x}


def _must_not_run(trial: Trial) -> dict:
    raise AssertionError(f"trial {trial.payload} ran again although it is in the log")


def test_a_raising_trial_is_retried_once_then_recorded_and_the_others_complete(tmp_path):
    ATTEMPTS.clear()
    log = JsonlLog(tmp_path / "t.trials.jsonl")
    trials = [Trial("sq", {"x": x}) for x in range(5)]
    out = run_trials(trials, _fails_on_two, log)
    assert ATTEMPTS == {0: 1, 1: 1, 2: 2, 3: 1, 4: 1}
    failed = out[trials[2].key]
    assert failed.status == STATUS_FAILED and failed.attempts == 2
    assert failed.error == "RuntimeError: boom on x=2, attempt 2"
    assert failed.errors == ["RuntimeError: boom on x=2, attempt 1", "RuntimeError: boom on x=2, attempt 2"]
    assert "RuntimeError" in failed.traceback and failed.result is None
    for t in trials[:2] + trials[3:]:
        assert out[t.key].status == STATUS_OK and out[t.key].result == {"y": t.payload["x"] ** 2}
        assert out[t.key].attempts == 1
    assert [r["key"] for r in log.read()] == [t.key for t in trials]  # in order (in-process), each once
    # The failed record is a finished trial: a rerun reads it back instead of retrying (delete its line to retry).
    again = run_trials(trials, _must_not_run, log)
    assert again[trials[2].key].status == STATUS_FAILED and len(log.read()) == 5


def _bad_config(trial: Trial) -> dict:
    ATTEMPTS[trial.payload["x"]] = ATTEMPTS.get(trial.payload["x"], 0) + 1
    raise PetlError("unknown method 'nope'")


def test_a_petl_error_in_a_trial_stops_the_study_at_once(tmp_path):
    ATTEMPTS.clear()
    log = JsonlLog(tmp_path / "t.trials.jsonl")
    with pytest.raises(PetlError, match="unknown method 'nope'"):
        run_trials([Trial("sq", {"x": 7})], _bad_config, log)
    assert ATTEMPTS == {7: 1} and log.read() == []  # bad configuration: neither retried nor recorded


def test_a_trial_that_kills_its_worker_is_recorded_as_lost_and_the_others_complete(tmp_path):
    # Defined here so that it is pickled by value: workers then need not import this (heavy) test module.
    def _kills_worker_on_two(trial: Trial) -> dict:
        if trial.payload["x"] == 2:
            os._exit(3)  # the worker process dies, as on a segfault or an out-of-memory kill
        return {"y": trial.payload["x"] ** 2}

    log = JsonlLog(tmp_path / "t.trials.jsonl")
    trials = [Trial("sq", {"x": x}) for x in range(4)]
    out = run_trials(trials, _kills_worker_on_two, log, n_jobs=2)
    lost = out[trials[2].key]
    assert lost.status == STATUS_FAILED and lost.error.startswith("worker lost")
    for t in trials[:2] + trials[3:]:
        assert out[t.key].status == STATUS_OK and out[t.key].result == {"y": t.payload["x"] ** 2}
    keys = [r["key"] for r in log.read()]
    assert sorted(keys) == sorted(t.key for t in trials)  # each trial recorded exactly once


def _linear_task(seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 8, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long())


def _train_linear(trial: Trial) -> dict:
    """A real training trial through the engine: a linear classifier with the payload's learning rate."""
    torch.manual_seed(0)
    data = _linear_task()
    recipe = Recipe(
        epochs=int(trial.payload.get("epochs", 2)), batch_size=32, lr=float(trial.payload["lr"]), warmup_epochs=0.0
    )
    res = fit(nn.Linear(8, 2), data, data, recipe, test=data, seed=0)
    return {"test_acc": res.test_acc}


@pytest.mark.parametrize("epochs", [1, 3])
def test_diverging_training_is_a_failed_trial_not_a_result(tmp_path, epochs):
    trials = [Trial("lin", {"lr": lr, "epochs": epochs}) for lr in (1e-2, 1e30, 3e-2)]
    out = run_trials(trials, _train_linear, JsonlLog(tmp_path / "t.trials.jsonl"))
    bad = out[trials[1].key]
    assert bad.status == STATUS_FAILED and bad.attempts == 2
    # One epoch of two steps: the loss was finite at both, the parameters overflowed at the second.
    assert re.match(
        r"TrainingDiverged: (loss became (nan|inf)|parameter \S+ became non-finite) at epoch \d+", bad.error
    ), bad.error
    for t in (trials[0], trials[2]):
        assert out[t.key].status == STATUS_OK and 0.5 <= out[t.key].result["test_acc"] <= 1.0


def test_nan_loss_raises_training_diverged_with_where_it_happened():
    torch.manual_seed(0)
    model = nn.Linear(8, 2)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    data = _linear_task()
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 1"):
        fit(model, data, data, Recipe(epochs=1, batch_size=32, lr=1e-2))


PROBE_TARGETS = ["attn.v", "blocks.3.mlp.fc1"]
PROBE_DIMS = [4, 16]


def _tiny_probe_args() -> tuple[ModelSpec, DataSpec, ProbeConfig]:
    recipe = dataclasses.replace(default_probe_recipe(), epochs=1, eval_batch_size=1024)
    return (
        ModelSpec("petl_vit_tiny", weights="random"),
        DataSpec("digits", SplitSpec(max_train=100)),
        ProbeConfig(targets=PROBE_TARGETS, dims=PROBE_DIMS, seeds=1, recipe=recipe),
    )


def test_probe_result_lists_failed_trials_and_the_report_shows_them(tmp_path, monkeypatch):
    real = probe_module.probe_trial
    v_units = None

    def flaky(trial: Trial) -> dict:
        if trial.kind == "subspace" and trial.payload["d"] == 16 and trial.payload["units"] == v_units:
            raise RuntimeError("injected failure")
        return real(trial)

    model, data, config = _tiny_probe_args()
    v_units = probe_module.expand_targets(prepare_model(model, 10, seed=0), ["attn.v"], False)["attn.v"]
    monkeypatch.setattr(probe_module, "probe_trial", flaky)
    result = run_probe(model, data, config, out=tmp_path / "probe.json", threads_per_job=1)
    failed = dict(result.failed[0])
    assert len(result.failed) == 1 and failed.pop("lr") == pytest.approx(1.0 / math.sqrt(16))
    assert failed == {"target": "attn.v", "d": 16, "seed": 0, "error": "RuntimeError: injected failure", "attempts": 2}
    assert result.failed_trials == 1 and result.trials_total == 3 + len(PROBE_TARGETS) * len(PROBE_DIMS)
    by_target = {t.target: t for t in result.targets}
    v, fc1 = by_target["attn.v"], by_target["blocks.3.mlp.fc1"]
    assert v.failed_trials == 1 and v.val_per_seed[0][0] == v.val_per_seed[0][0]  # d=4 ran
    assert v.val_per_seed[1][0] != v.val_per_seed[1][0]  # d=16 failed: NaN
    assert fc1.failed_trials == 0 and all(a[0] == a[0] for a in fc1.val_per_seed)
    loaded = ProbeResult.load(tmp_path / "probe.json")
    assert loaded.failed == result.failed

    from petl_analysis.report import write_report

    files = write_report(None, loaded, tmp_path / "report", dpi=40)
    md = files.markdown.read_text()
    assert "probe: 1 of 7 trials failed" in md
    assert "probe failed: `attn.v` at d = 16, seed 0: RuntimeError: injected failure" in md


def test_sweep_result_lists_failed_trials(tmp_path, monkeypatch):
    real = sweep_module.sweep_trial

    def flaky(trial: Trial) -> dict:
        if trial.spec(RunTrial).config["method"] == "bitfit":
            raise RuntimeError("injected failure")
        return real(trial)

    monkeypatch.setattr(sweep_module, "sweep_trial", flaky)
    result = run_sweep(
        ModelSpec("petl_vit_tiny", weights="random"),
        DataSpec("digits", SplitSpec(shots=5)),
        [2000],
        ["linear", "bitfit"],
        seeds=1,
        recipe=Recipe(epochs=1, batch_size=64, lr=1e-2),
        out=tmp_path / "sweep.json",
    )
    assert result.failed == [{"label": "bitfit", "budget": None, "seed": 0, "error": "RuntimeError: injected failure"}]
    assert [p.label for p in result.points] == ["linear"]


# --------------------------------------------------------------------------------------------------- kill -9

CLI = [sys.executable, "-m", "petl_analysis.cli.main"]
# Tiny studies whose trials take about a second each on a busy 2-core machine (one torch thread).
PROBE_ARGS = [
    "probe",
    "--weights",
    "random",
    "--dataset",
    "digits",
    "--max-train",
    "200",
    "--targets",
    "attn.v",
    "--dims",
    "4,8,16",
    "--seeds",
    "1",
    "--epochs",
    "4",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--out",
    "probe.json",
]
SWEEP_ARGS = [
    "sweep",
    "--budgets",
    "2k",
    "--methods",
    "bitfit,layernorm,linear,lora,adapter",
    "--ranking",
    "ranking.json",
    "--weights",
    "random",
    "--dataset",
    "digits",
    "--shots",
    "10",
    "--seeds",
    "1",
    "--epochs",
    "10",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--out",
    "sweep.json",
]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def _complete_lines(path: Path) -> list[bytes]:
    if not path.exists():
        return []
    data = path.read_bytes()
    return data[: data.rfind(b"\n") + 1].splitlines(keepends=True)


def _kill_when_logged(args: list[str], cwd: Path, out: str, min_records: int, timeout_s: float = 45.0) -> list[bytes]:
    """Start the command, SIGKILL it once ``min_records`` trials are logged (before the artefact); the log's
    complete lines after the kill."""
    log = cwd / f"{out}.trials.jsonl"
    with open(cwd / "killed.stderr", "wb") as err:
        proc = subprocess.Popen(CLI + args, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout_s
        try:
            while len(_complete_lines(log)) < min_records:
                assert proc.poll() is None, f"exited ({proc.returncode}) early: {(cwd / 'killed.stderr').read_text()}"
                assert time.monotonic() < deadline, "no trial was logged in time"
                time.sleep(0.05)
            assert not (cwd / out).exists(), "the study finished before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None and time.monotonic() >= deadline:
                proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (cwd / out).exists()
    return _complete_lines(log)


def _run_to_completion(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    res = subprocess.run(CLI + args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=90, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _check_resumed(
    tmp_path: Path, args: list[str], out: str, n_trials: int, min_records: int, setup=lambda d: None
) -> None:
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    for d in (killed, fresh):
        d.mkdir()
        setup(d)
    before = _kill_when_logged(args, killed, out, min_records)
    assert min_records <= len(before) < n_trials
    resumed = _run_to_completion(args, killed)
    _run_to_completion(args, fresh)

    lines = _complete_lines(killed / f"{out}.trials.jsonl")
    assert (killed / f"{out}.trials.jsonl").read_bytes() == b"".join(lines)  # no torn tail left
    assert lines[: len(before)] == before  # nothing finished before the kill was lost or rewritten
    records = [json.loads(line) for line in lines]
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == n_trials  # none redone, none missing
    assert all(r["status"] == STATUS_OK for r in records)
    assert resumed.stderr.count(": cached") == len(before)
    # The same trials with the same results as an uninterrupted run, and the same final artefact.
    reference = {r["key"]: r for r in map(json.loads, _complete_lines(fresh / f"{out}.trials.jsonl"))}
    assert set(reference) == set(keys)
    for r in records:
        assert without_times(r["result"]) == without_times(reference[r["key"]]["result"]), r["kind"]
    got = json.loads((killed / out).read_text())
    want = json.loads((fresh / out).read_text())
    assert without_times(got) == without_times(want)


def test_probe_killed_with_sigkill_resumes_without_losing_or_redoing_trials(tmp_path):
    # 3 baselines + 3 dims: killed while the first subspace trial runs (after the baselines are logged).
    _check_resumed(tmp_path, PROBE_ARGS, "probe.json", n_trials=6, min_records=3)


def test_sweep_killed_with_sigkill_resumes_without_losing_or_redoing_trials(tmp_path):
    ranking = rank_from_probe(synthetic_probe())
    _check_resumed(
        tmp_path, SWEEP_ARGS, "sweep.json", n_trials=5, min_records=1, setup=lambda d: ranking.save(d / "ranking.json")
    )


# --------------------------------------------------------------------------------------------------- corrupted files


def _square(trial: Trial) -> dict:
    return {"y": trial.payload["x"] ** 2}


def _logged(tmp_path: Path, n: int = 3) -> tuple[JsonlLog, list[Trial]]:
    log = JsonlLog(tmp_path / "probe.json.trials.jsonl")
    trials = [Trial("sq", {"x": x}) for x in range(n)]
    run_trials(trials, _square, log)
    return log, trials


def _replace_line(path: Path, lineno: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_torn_last_line_is_dropped_and_only_that_trial_reruns(tmp_path):
    log, trials = _logged(tmp_path)
    first_two = b"".join(log.path.read_bytes().splitlines(keepends=True)[:2])
    log.path.write_bytes(log.path.read_bytes()[:-25])  # killed while writing the third record
    ran = []

    def square(trial):
        ran.append(trial.payload["x"])
        return _square(trial)

    out = run_trials(trials, square, log)
    assert ran == [2] and len(out) == 3
    assert log.path.read_bytes().startswith(first_two)
    assert [r["key"] for r in log.read()] == [t.key for t in trials]


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"key": "abc", "kind": "sq", "status": "ok", "payl', "line 2 is not valid JSON"),
        ("garbage", "line 2 is not valid JSON"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
        ('{"hello": 1}', "line 2: not a trial record (no 'key' field)"),
        (
            '{"key": 5, "kind": "sq", "status": "ok", "payload": {}, "result": {}}',
            "line 2: not a trial record ('key' must",
        ),
        ('{"key": "k", "kind": "sq", "status": "ok", "payload": [], "result": {}}', "'payload' must be an object"),
        ('{"key": "k", "kind": "sq", "status": "done", "payload": {}}', "line 2: unknown trial status 'done'"),
        ('{"key": "k", "kind": "sq", "status": "ok", "payload": {}}', "line 2: a trial record with status 'ok' needs"),
    ],
)
def test_corrupted_middle_line_is_a_one_line_error_naming_file_and_line(tmp_path, line, message):
    log, trials = _logged(tmp_path)
    _replace_line(log.path, 2, line)
    with pytest.raises(PetlError) as e:
        run_trials(trials, _must_not_run, log)
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"results file {str(log.path)!r} line 2")
    assert message in text


def _cli(args: list[str], cwd: Path) -> tuple[int, list[str]]:
    code, output = run_cli(args, cwd)
    return code, [line for line in output.splitlines() if line.strip()]


def test_cli_probe_with_a_garbled_trials_log_exits_2_with_one_line(tmp_path):
    log, _ = _logged(tmp_path)
    _replace_line(log.path, 2, '{"key": "x", "kind": "lp", "status": "ok", "payload": {"seed": 0}, "result": {],')
    before = log.path.read_bytes()
    code, lines = _cli(PROBE_ARGS, tmp_path)
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: results file 'probe.json.trials.jsonl' line 2 is not valid JSON ("), lines
    assert log.path.read_bytes() == before and not (tmp_path / "probe.json").exists()


@pytest.mark.parametrize("garble", ["truncated", "empty", "bad number", "binary"])
def test_cli_select_with_a_corrupted_probe_artefact_exits_2_naming_the_file(tmp_path, garble):
    good = synthetic_probe().to_dict()
    text = json.dumps(good, indent=2)
    path = tmp_path / "probe.json"
    if garble == "truncated":
        path.write_text(text[: len(text) // 2])
    elif garble == "empty":
        path.write_text("")
    elif garble == "bad number":
        targets = [{**good["targets"][0], "val_mean": ["0.5x"] * 5}] + good["targets"][1:]
        path.write_text(json.dumps({**good, "targets": targets}))
    else:
        path.write_bytes(b"\xff\xfe\x00{garbage")
    code, lines = _cli(["select", "--probe", "probe.json", "--proxies", "", "--out", "ranking.json"], tmp_path)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error:") and "'probe.json'" in lines[0]
    assert not (tmp_path / "ranking.json").exists()
