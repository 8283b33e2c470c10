"""``run`` (probe -> select -> plan -> sweep -> report) resumes after an interruption without redoing finished work."""

from __future__ import annotations

import dataclasses
import json

import pytest

from petl_analysis.data import SplitSpec
from petl_analysis.engine import Recipe
from petl_analysis.models import ModelSpec
from petl_analysis.pipeline import PipelineConfig, run_pipeline
from petl_analysis.probe import ProbeConfig, default_probe_recipe
from petl_analysis.probe import search as probe_module
from petl_analysis.sweep import sweep as sweep_module
from petl_analysis.task import DataSpec

MODEL = ModelSpec("petl_vit_tiny", weights="random")
DATA = DataSpec("digits", SplitSpec(shots=5))


pytestmark = pytest.mark.usefixtures("single_thread")


def _config() -> PipelineConfig:
    probe_recipe = dataclasses.replace(default_probe_recipe(), epochs=1)
    return PipelineConfig(
        budgets=[2_000],
        methods=["linear", "bitfit", "kadaptation"],
        seeds=1,
        probe=ProbeConfig(targets=["attn.v", "mlp.fc1"], dims=[4], seeds=1, recipe=probe_recipe),
        proxies=["random"],
        recipe=Recipe(epochs=1, batch_size=64, lr=1e-2),
        probe_data=DataSpec("digits", SplitSpec(max_train=100)),
    )


def _counting(monkeypatch, module, name: str) -> list[str]:
    calls: list[str] = []
    real = getattr(module, name)

    def wrapped(trial):
        calls.append(trial.key)
        return real(trial)

    monkeypatch.setattr(module, name, wrapped)
    return calls


def test_run_resumes_after_an_interruption_without_redoing_finished_work(tmp_path, monkeypatch):
    out = tmp_path / "run"
    first = run_pipeline(MODEL, DATA, _config(), out)
    sweep_log = out / "sweep.json.trials.jsonl"
    lines = sweep_log.read_text().splitlines(keepends=True)
    n_sweep = len(lines)
    assert n_sweep >= 3 and (out / "report" / "report.html").is_file()
    # Interrupted in the middle of the sweep: probe, ranking and plans are saved, one sweep trial is logged, the
    # sweep artefact and the report are not written yet.
    (out / "sweep.json").unlink()
    sweep_log.write_text(lines[0])
    for f in (out / "report").iterdir():
        f.unlink()

    probe_calls = _counting(monkeypatch, probe_module, "probe_trial")
    sweep_calls = _counting(monkeypatch, sweep_module, "sweep_trial")
    stages: list[tuple[str, bool]] = []
    again = run_pipeline(MODEL, DATA, _config(), out, on_stage=lambda name, cached: stages.append((name, cached)))

    assert probe_calls == []  # the probe stage is reused as saved
    assert ("probe", True) in stages and ("select", True) in stages and ("sweep", False) in stages
    assert len(sweep_calls) == n_sweep - 1  # only the sweep trials that were not logged
    assert json.loads(lines[0])["key"] not in sweep_calls
    assert len(sweep_log.read_text().splitlines()) == n_sweep
    assert (out / "report" / "report.html").is_file()
    want = {(p.label, p.budget): p.run.test_acc_mean for p in first.sweep.points}
    got = {(p.label, p.budget): p.run.test_acc_mean for p in again.sweep.points}
    assert got == want  # same seeds, same results
