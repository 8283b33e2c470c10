"""Scale-out: one tiny probe run in-process, on loky (2 processes) and on a 2-worker dask LocalCluster gives the
same per-trial accuracies; the workers honour the trials' device and thread settings; the CLI passes
``--backend dask --scheduler`` through; a bad scheduler or backend is a one-line error."""

from __future__ import annotations

import dataclasses
import json
import os
import socket

import distributed  # noqa: F401 - in the [test] extra: a missing install fails here, it is not skipped
import pytest
import torch
from helpers import without_times
from typer.testing import CliRunner

from petl_analysis.cli.main import app
from petl_analysis.data import SplitSpec
from petl_analysis.errors import PetlError
from petl_analysis.io import MemoryLog
from petl_analysis.models import ModelSpec
from petl_analysis.probe import ProbeConfig, default_probe_recipe, run_probe
from petl_analysis.task import DataSpec
from petl_analysis.trials import Trial, run_trials

TARGETS = ["attn.v", "blocks.3.mlp.fc1"]
DIMS = [4, 16]
MAX_TRAIN = 100


def _args() -> tuple[ModelSpec, DataSpec, ProbeConfig]:
    recipe = dataclasses.replace(default_probe_recipe(), epochs=1, eval_batch_size=1024)
    config = ProbeConfig(targets=TARGETS, dims=DIMS, seeds=1, recipe=recipe)
    return ModelSpec("petl_vit_tiny", weights="random"), DataSpec("digits", SplitSpec(max_train=MAX_TRAIN)), config


def _accuracies(result) -> dict:
    return {
        "baselines": {k: b.val_per_seed for k, b in result.baselines.items()},
        "targets": {t.target: t.val_per_seed for t in result.targets},
    }


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as c:
        with Client(c) as client:
            pids = set(client.run(os.getpid).values())
        yield c, pids


@pytest.fixture(scope="module")
def in_process():
    torch.set_num_threads(1)
    records: list = []
    return run_probe(*_args(), threads_per_job=1, on_trial=_collect(records), device="cpu"), records


def _collect(into: list):
    return lambda record, cached: into.append(record)


def test_dask_loky_and_in_process_give_the_same_trials(cluster, in_process):
    c, worker_pids = cluster
    seq, seq_records = in_process
    dask_records: list[dict] = []
    on_dask = run_probe(
        *_args(),
        threads_per_job=1,
        backend="dask",
        scheduler=c.scheduler_address,
        device="cpu",
        on_trial=_collect(dask_records),
    )
    on_loky = run_probe(*_args(), threads_per_job=1, n_jobs=2, backend="loky", device="cpu")
    on_sequential = run_probe(*_args(), threads_per_job=1, n_jobs=2, backend="sequential", device="cpu")
    expected = _accuracies(seq)
    assert expected["targets"].keys() == set(TARGETS)
    for other in (on_dask, on_loky, on_sequential):
        assert _accuracies(other) == expected
        assert other.failed_trials == 0 and other.failed == []
        assert other.trials_total == seq.trials_total == 3 + len(TARGETS) * len(DIMS)
        assert without_times(other.to_dict()) == without_times(seq.to_dict())
    # Every trial ran on a cluster worker (not in this driver), with the device and thread count it was given.
    assert len(dask_records) == seq.trials_total
    ran_on = {int(r.worker.rsplit(":", 1)[1]) for r in dask_records}
    assert ran_on <= worker_pids and os.getpid() not in ran_on
    for r in dask_records:
        assert r.ok and r.payload["threads"] == 1 and r.payload["device"] == "cpu"
        assert r.result["threads"] == 1 and r.result["device"] == "cpu"
    assert {r.key for r in dask_records} == {r.key for r in seq_records}


def test_trials_are_self_contained_and_picklable(in_process):
    import pickle

    _, records = in_process
    for r in records:
        trial = r.trial()
        assert pickle.loads(pickle.dumps(trial)).key == trial.key == r.key
        p = r.payload
        # model (name + weights), data (dataset + split), recipe and seed travel as JSON objects; no live objects.
        assert p["model"]["weights"] == "random" and p["data"]["dataset"] == "digits"
        assert "epochs" in p["recipe"] and isinstance(p["seed"], int)
        json.dumps(p)


def test_cli_probe_on_a_dask_scheduler(cluster, in_process, tmp_path):
    c, _ = cluster
    seq, _ = in_process
    args = [
        "probe",
        "--weights",
        "random",
        "--dataset",
        "digits",
        "--max-train",
        str(MAX_TRAIN),
        "--targets",
        ",".join(TARGETS),
        "--dims",
        ",".join(map(str, DIMS)),
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--backend",
        "dask",
        "--scheduler",
        c.scheduler_address,
        "--out",
        str(tmp_path / "probe.json"),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "probe.json").read_text())
    assert {t["target"]: t["val_per_seed"] for t in saved["targets"]} == _accuracies(seq)["targets"]
    records = [json.loads(line) for line in (tmp_path / "probe.json.trials.jsonl").read_text().splitlines()]
    assert len(records) == seq.trials_total and all(r["result"]["threads"] == 1 for r in records)


def _square(trial: Trial) -> dict:
    return {"y": trial.payload["x"] ** 2}


def test_unreachable_scheduler_is_a_one_line_error():
    import dask

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(PetlError, match=f"cannot connect to the dask scheduler '{address}'") as e,
    ):
        run_trials([Trial("t", {"x": 1})], _square, MemoryLog(), backend="dask", scheduler=address)
    assert "\n" not in str(e.value)


def test_scheduler_without_dask_backend_and_unknown_backend_are_errors():
    with pytest.raises(PetlError, match="needs --backend dask"):
        run_trials([Trial("t", {"x": 1})], _square, MemoryLog(), backend="loky", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(PetlError, match="unknown backend 'spark'"):
        run_trials([Trial("t", {"x": 1})], _square, MemoryLog(), n_jobs=2, backend="spark")
