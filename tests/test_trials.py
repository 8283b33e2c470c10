"""Trial records: typed, their payloads hold objects, their keys are those of every log already written, and
appending one costs the same at the ten-thousandth record as at the first."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from petl_analysis.errors import PetlError
from petl_analysis.io import JsonlLog, MemoryLog
from petl_analysis.trials import (
    STATUS_FAILED,
    STATUS_OK,
    Trial,
    TrialRecord,
    key_json,
    read_records,
    run_trials,
    trial_log_path,
)

ROOT = Path(__file__).resolve().parents[1]
#: Every trial log committed with the project (probe, sweep, validation; the probe-lr study).
COMMITTED_LOGS = sorted([*ROOT.glob("reports/**/*.trials.jsonl"), ROOT / "docs" / "probe_lr" / "trials.jsonl"])


def test_the_committed_logs_are_all_found():
    assert len(COMMITTED_LOGS) >= 10 and all(p.is_file() for p in COMMITTED_LOGS)


@pytest.mark.parametrize("path", COMMITTED_LOGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_records_keep_their_keys_with_payloads_as_objects(path):
    # The old logs hold nested specs as JSON text inside the payload; read, they are objects, and the key a trial
    # made from those objects gets is the one in the log: every committed log still resumes without retraining.
    records = list(read_records(JsonlLog(path)))
    assert records
    for r in records:
        assert isinstance(r, TrialRecord) and r.status in (STATUS_OK, STATUS_FAILED)
        assert not any(isinstance(v, str) and v.startswith("{") for v in r.payload.values())
        assert r.trial().key == r.key, (r.kind, r.key)


@pytest.mark.parametrize("path", COMMITTED_LOGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_records_keep_their_keys_through_their_typed_specs(path):
    # Read as the worker reads it (a ProbeTrial or RunTrial, its recipe's amp flag now the mode "auto") and made
    # again by Trial.of, as a resumed study makes it, each trial has the key in the log.
    from petl_analysis.probe.trial import ProbeTrial
    from petl_analysis.sweep.sweep import RunTrial

    for r in read_records(JsonlLog(path)):
        spec = r.trial().spec(RunTrial if r.kind == "run" else ProbeTrial)
        assert spec.recipe.amp in ("auto", "off")
        assert Trial.of(r.kind, spec).key == r.key, (r.kind, r.key)


@dataclass
class _Inner:
    a: int = 1
    b: list[float] = field(default_factory=lambda: [0.5])


@dataclass
class _Spec:
    inner: _Inner
    config: dict
    seed: int
    note: str | None = None


def _double(trial: Trial) -> dict:
    spec = trial.spec(_Spec)
    return {"y": spec.inner.a * 2 + spec.seed}


def test_a_new_log_line_holds_the_config_as_an_object_and_reads_back_typed(tmp_path):
    spec = _Spec(_Inner(3), {"method": "lora", "r": 2}, seed=1)
    trial = Trial.of("double", spec)
    log = JsonlLog(tmp_path / "x.trials.jsonl")
    (record,) = run_trials([trial], _double, log).values()
    line = json.loads(log.path.read_text())
    assert line["payload"] == {"inner": {"a": 3, "b": [0.5]}, "config": {"method": "lora", "r": 2}, "seed": 1}
    assert record.result == {"y": 7} and record.ok and record.attempts == 1 and record.worker
    again = next(read_records(log))
    assert again == record and again.trial().spec(_Spec) == spec
    # the key is the one the text form always gave: each nested spec hashed as its canonical JSON
    text_form = {"inner": key_json(spec.inner), "config": key_json(spec.config), "seed": 1}
    assert Trial("double", text_form).key == trial.key
    assert Trial("double", text_form).spec(_Spec) == spec  # an old payload still reads


def test_a_failed_record_round_trips(tmp_path):
    def boom(trial):
        raise RuntimeError("no\nsecond line")

    log = JsonlLog(tmp_path / "x.trials.jsonl")
    (record,) = run_trials([Trial("t", {"x": 1})], boom, log).values()
    assert record.status == STATUS_FAILED and not record.ok and record.error == "RuntimeError: no"
    assert record.attempts == 2 and record.errors == ["RuntimeError: no"] * 2 and record.result is None
    assert next(read_records(log)) == record
    assert list(json.loads(log.path.read_text())) == [
        "key",
        "kind",
        "status",
        "attempts",
        "payload",
        "error",
        "errors",
        "traceback",
        "worker",
    ]


def test_a_record_that_is_not_an_object_is_a_one_line_error():
    with pytest.raises(PetlError, match="line 3: not a trial record"):
        TrialRecord.from_json([1], "line 3")


def test_trial_log_path_is_beside_the_artefact_unless_named():
    assert trial_log_path("out/probe.json") == Path("out/probe.json.trials.jsonl")
    assert trial_log_path("out/probe.json", "elsewhere.jsonl") == Path("elsewhere.jsonl")
    assert trial_log_path(None) is None


def test_append_does_not_read_the_log(tmp_path, monkeypatch):
    # Issue 28: append used to re-read the whole file per record (quadratic over a sweep). Count what it reads.
    log = JsonlLog(tmp_path / "x.trials.jsonl")
    read_bytes = []
    real_open = open

    class Counting:
        def __init__(self, f):
            self.f = f

        def read(self, *a):
            data = self.f.read(*a)
            read_bytes.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    def counting_open(path, mode="r", *args, **kw):
        f = real_open(path, mode, *args, **kw)
        return Counting(f) if "r" in mode and Path(path) == log.path else f

    monkeypatch.setattr("builtins.open", counting_open)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("append read the whole log"))
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: pytest.fail("append read the whole log"))
    for i in range(200):
        log.append({"i": i, "pad": "x" * 100})
    assert sum(read_bytes) <= 200  # at most its last byte per append, whatever the log's size
    monkeypatch.undo()
    assert [r["i"] for r in log.read()] == list(range(200))


def test_memory_and_file_logs_give_the_same_records(tmp_path):
    trials = [Trial("sq", {"x": x}) for x in range(3)]
    square = lambda t: {"y": t.payload["x"] ** 2}  # noqa: E731
    in_memory = run_trials(trials, square, MemoryLog())
    on_disk = run_trials(trials, square, JsonlLog(tmp_path / "t.jsonl"))
    assert {k: (r.status, r.result) for k, r in in_memory.items()} == {
        k: (r.status, r.result) for k, r in on_disk.items()
    }


def test_a_rerun_with_other_threads_says_that_finished_trials_train_again(tmp_path, caplog):
    # The threads per worker are part of a trial's key: a rerun at another --jobs trains every finished trial again,
    # which only this warning tells the user (the DINOv2 sweep once started retraining that way).
    square = lambda t: {"y": t.payload["x"] ** 2}  # noqa: E731
    log = JsonlLog(tmp_path / "t.jsonl")
    run_trials([Trial("sq", {"x": x, "threads": 1}) for x in range(3)], square, log)
    with caplog.at_level("WARNING", logger="petl_analysis"):
        run_trials([Trial("sq", {"x": x, "threads": 1}) for x in range(4)], square, log)  # one new trial
    assert not caplog.records
    with caplog.at_level("WARNING", logger="petl_analysis"):
        run_trials([Trial("sq", {"x": x, "threads": 2}) for x in range(5)], square, log)
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith("4 of the 5 trials to train are in the trial log with another number of torch threads")
    assert "(1; this run: 2)" in message and "--jobs/--threads that gave 1" in message and "\n" not in message


def test_trial_throughput_reads_images_per_second_per_trial_type(tmp_path):
    # scripts/trial_throughput.py: the GPU study's cost table (issue 27 item 4), read from the trial logs.
    import importlib.util

    spec = importlib.util.spec_from_file_location("trial_throughput", ROOT / "scripts" / "trial_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    log = JsonlLog(tmp_path / "x.trials.jsonl")
    probe_fit = {"n_train": 100, "train_loss": [1.0, 0.5], "device": "cuda:0", "threads": 1}
    sweep_run = {"seed_run": {"n_train": 50, "epochs_run": 4}, "device": "cuda:0", "threads": 1}
    records = [
        ("subspace", {"d": 10}, probe_fit, 2.0),  # 200 images in 2 s
        ("subspace", {"d": 20}, probe_fit, 4.0),  # 50/s
        ("run", {"config": {"method": "lora"}, "seed": 0}, sweep_run, 1.0),  # 200/s
        ("run", {"config": {"method": "lora"}, "seed": 1}, None, None),  # failed: left out
    ]
    for kind, payload, result, wall in records:
        t = Trial(kind, payload)
        status = STATUS_OK if result else STATUS_FAILED
        body = {"result": result, "wall_time_s": wall} if result else {"error": "boom"}
        log.append(TrialRecord(key=t.key, kind=kind, status=status, payload=payload, **body).to_json())
    rows = {r["type"]: r for r in module.throughput([log.path])}
    assert rows["subspace"]["trainings"] == 2 and rows["subspace"]["median_train_images_per_s"] == 75.0
    assert rows["lora"] == {
        "type": "lora",
        "device": "cuda:0",
        "threads": 1,
        "trainings": 1,
        "median_train_images_per_s": 200.0,
        "total_wall_s": 1.0,
    }
