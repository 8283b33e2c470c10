"""``run`` (probe -> select -> plan -> sweep -> report) resumes after an interruption without redoing finished work."""

from __future__ import annotations

import dataclasses
import json

import pytest

from petl_analysis.data import SplitSpec
from petl_analysis.engine import Recipe
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec
from petl_analysis.pipeline import PipelineConfig, run_pipeline
from petl_analysis.probe import ProbeConfig, default_probe_recipe
from petl_analysis.probe import search as probe_module
from petl_analysis.sweep import sweep as sweep_module
from petl_analysis.task import DataSpec
from petl_analysis.validate import ValidateConfig

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


def test_the_validate_stage_judges_the_probe_on_split_b_and_joins_the_report(tmp_path):
    # With PipelineConfig.validation, the selectors are judged against the oracle on split B right after the probe
    # (split A), the report carries "Does the ranking predict?", and a rerun reads validation.json back.
    config = dataclasses.replace(
        _config(),
        probe_data=DataSpec("digits", SplitSpec(max_train=100, part="A")),
        validation=ValidateConfig(seeds=1, methods=["kadaptation"], recipe=Recipe(epochs=1, epoch_selection="last")),
    )
    out = tmp_path / "run"
    result = run_pipeline(MODEL, DATA, config, out)
    assert result.validation is not None and result.validation.judged_on == "split B"
    assert result.validation.data.split.part == "B" and set(result.validation.sets) == {"attn.v", "mlp.fc1"}
    assert "Does the ranking predict?" in (out / "report" / "report.md").read_text()
    assert not result.validation.regrets  # two tied sets give one plan per budget: nothing to regret, no crash
    stages: list[tuple[str, bool]] = []
    again = run_pipeline(MODEL, DATA, config, out, on_stage=lambda name, cached: stages.append((name, cached)))
    assert ("validate", True) in stages
    assert [(a.selector, a.order, a.verdict) for a in again.validation.agreement] == [
        (a.selector, a.order, a.verdict) for a in result.validation.agreement
    ]


def test_the_validate_stage_refuses_a_probe_on_the_whole_pools(tmp_path):
    config = dataclasses.replace(_config(), validation=ValidateConfig(seeds=1, methods=["kadaptation"]))
    with pytest.raises(PetlError, match="split"):
        run_pipeline(MODEL, DATA, config, tmp_path / "run")
    assert not (tmp_path / "run" / "validation.json").exists()
