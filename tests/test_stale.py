"""Training time over unique trial keys, and stale trials moved out of a log (issue 25, item 9)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from petl_analysis.errors import PetlError
from petl_analysis.stale import prune_log, used_keys
from petl_analysis.trials import STATUS_FAILED, STATUS_OK, TrialRecord, read_records, unique_train_time
from petl_analysis.validate import ValidationResult

ROOT = Path(__file__).resolve().parents[1]
#: The animals validation of the demo as committed before issue 25 (version 1: judged on the probe's own data), kept
#: as a fixture: the published training time and the stale trials of its log are what these tests check.
ANIMALS = ROOT / "tests" / "data" / "legacy_validation_v1"


def _seed_run_seconds(r: TrialRecord) -> float:
    return r.result["seed_run"]["wall_time_s"]


def test_unique_train_time_counts_each_key_once_and_no_failure():
    a = TrialRecord("a", "run", STATUS_OK, {}, result={}, wall_time_s=2.0)
    b = TrialRecord("b", "run", STATUS_OK, {}, result={}, wall_time_s=3.0)
    bad = TrialRecord("c", "run", STATUS_FAILED, {}, error="x", wall_time_s=7.0)
    assert unique_train_time([a, b, a, a, bad]) == 5.0
    assert unique_train_time([a, b], seconds=lambda r: 1.0) == 2.0


def test_committed_animals_validation_trained_2419_s_not_6085(tmp_path):
    # The published figure summed a training once per selector and stage that shared it, and the log holds 18
    # trials of an older study. Over the unique keys the artefact uses, training took 2,419 s.
    log = tmp_path / "validation.json.trials.jsonl"
    shutil.copy(ANIMALS / "validation.json.trials.jsonl", log)
    v = ValidationResult.load(ANIMALS / "validation.json")
    dry = prune_log(log, [v], dry_run=True)
    assert (len(dry.kept), len(dry.stale)) == (63, 18) and not dry.written
    assert len(dry.kept) == len(v.seeds) * len({str(e.config) for e in v.oracle} | {str(p.config) for p in v.plans})
    assert round(v.train_time_s) == 6085
    assert round(unique_train_time(dry.kept, seconds=_seed_run_seconds)) == 2419
    assert log.read_bytes() == (ANIMALS / "validation.json.trials.jsonl").read_bytes()  # a dry run changes nothing


def test_prune_moves_stale_lines_verbatim_and_keeps_the_log_resumable(tmp_path):
    log = tmp_path / "validation.json.trials.jsonl"
    shutil.copy(ANIMALS / "validation.json.trials.jsonl", log)
    original = log.read_text().splitlines()
    result = prune_log(log, [ValidationResult.load(ANIMALS / "validation.json")])
    kept, stale = log.read_text().splitlines(), result.stale_path.read_text().splitlines()
    assert result.written and result.stale_path == Path(str(log) + ".stale.jsonl")
    assert (len(kept), len(stale)) == (63, 18)
    assert sorted(kept + stale) == sorted(original)  # nothing lost, nothing rewritten
    assert kept == [line for line in original if line in set(kept)]  # order kept
    again = prune_log(log, [ValidationResult.load(ANIMALS / "validation.json")])
    assert not again.stale and not again.written  # idempotent


def test_prune_needs_an_artefact_and_a_log(tmp_path):
    with pytest.raises(PetlError, match="does not exist"):
        prune_log(tmp_path / "missing.jsonl", [])
    log = tmp_path / "x.trials.jsonl"
    shutil.copy(ROOT / "reports" / "demo" / "animals" / "sweep.json.trials.jsonl", log)
    with pytest.raises(PetlError, match="at least one artefact"):
        prune_log(log, [])


def test_prune_refuses_a_log_the_artefact_uses_none_of(tmp_path):
    # The legacy validation's log against a probe of another study: every record would be stale, which is what a
    # wrong artefact looks like; refused, the log untouched.
    from petl_analysis.probe import ProbeResult

    log = tmp_path / "validation.json.trials.jsonl"
    shutil.copy(ANIMALS / "validation.json.trials.jsonl", log)
    before = log.read_bytes()
    probe = ProbeResult.load(ROOT / "reports" / "validation" / "animals" / "probe.json")
    with pytest.raises(PetlError, match=r"none of the 81 records .* is used by the artefact"):
        prune_log(log, [probe])
    assert log.read_bytes() == before and not Path(str(log) + ".stale.jsonl").exists()


def test_committed_split_b_validations_use_every_record_of_their_logs():
    # The judge's trials carry the probe's data as also_val: a reading of the log that missed it called them all
    # stale. Every record of a committed study's log is used (each trial logged once).
    for study in ("animals", "digits", "per_block", "glyph_folder"):
        root = ROOT / "reports" / "validation" / study
        v = ValidationResult.load(root / "validation.json")
        dry = prune_log(root / "validation.json.trials.jsonl", [v], dry_run=True)
        assert dry.kept and not dry.stale, study
        assert len({r.key for r in dry.kept}) == len(v.seeds) * len(
            {str(e.config) for e in v.oracle} | {str(p.config) for p in v.plans}
        )


def test_a_probe_uses_only_the_trials_of_its_own_learning_rate_search():
    # The DINOv2 study's log holds its calibration rounds: the default step (33x the one it kept) and a 0.3x
    # multiplier since dropped from its grid. They are not the probe's: 89 of the 101 records are (probe.json's count).
    import math

    from petl_analysis.probe import ProbeResult
    from petl_analysis.trials import open_trial_log

    root = Path(__file__).resolve().parents[1] / "reports" / "dinov2" / "animals"
    probe = ProbeResult.load(root / "probe.json")
    records = list(read_records(open_trial_log(root / "probe.json.trials.jsonl")))
    used = used_keys(records, [probe])
    assert (len(records), len(used), probe.trials_total) == (101, 89, 89)
    left = {round(r.payload["lr"] * math.sqrt(r.payload["d"]) / 0.03, 2) for r in records if r.key not in used}
    assert left == {0.3, 33.33}
    # with extension, the steps beyond the grid are the probe's too; with screens, the screens' shorter recipe
    extended = dataclasses.replace(probe.config, lr_grid_extend=1)
    assert extended.searches_lr(0.03 * 90 / math.sqrt(10_000), 10_000)
    assert not probe.config.searches_lr(0.03 * 90 / math.sqrt(10_000), 10_000)
