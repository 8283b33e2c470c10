"""Trial workers spread over the visible GPUs: with ``--device cuda`` (no index), worker i trains on
``cuda:(i % n_gpus)``; an explicit ``cuda:N`` or ``cpu`` is kept. No GPU is needed: the device count is patched."""

from __future__ import annotations

import multiprocessing
import os
import time
from types import SimpleNamespace

import pytest
import torch

from petl_analysis import device as device_module
from petl_analysis.device import use_worker_device, worker_device, worker_index
from petl_analysis.errors import PetlError


def _gpus(monkeypatch, n: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


def test_workers_spread_over_the_gpus(monkeypatch):
    _gpus(monkeypatch, 3)
    assert [str(worker_device("cuda", worker=i)) for i in range(7)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:0",
    ]
    assert str(worker_device("cuda:2", worker=1)) == "cuda:2"  # asked for one GPU: every worker on it
    assert str(worker_device("cpu", worker=1)) == "cpu"
    assert str(worker_device("auto", worker=4)) == "cuda:1"
    _gpus(monkeypatch, 1)
    assert {str(worker_device("cuda", worker=i)) for i in range(4)} == {"cuda:0"}


def test_the_worker_index_is_the_pool_number_of_the_process(monkeypatch):
    _gpus(monkeypatch, 2)
    for identity, expected in (((), 0), ((1,), 0), ((2,), 1), ((5,), 4)):
        monkeypatch.setattr(multiprocessing, "current_process", lambda i=identity: SimpleNamespace(_identity=i))
        assert worker_index() == expected
        assert worker_device("cuda") == torch.device("cuda", expected % 2)


def test_a_worker_makes_its_gpu_current(monkeypatch):
    _gpus(monkeypatch, 2)
    current = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setattr(multiprocessing, "current_process", lambda: SimpleNamespace(_identity=(2,)))
    assert use_worker_device("cuda") == torch.device("cuda", 1) and current == [torch.device("cuda", 1)]
    assert use_worker_device("cpu") == torch.device("cpu") and len(current) == 1


def test_no_gpu_is_still_a_one_line_error(monkeypatch):
    _gpus(monkeypatch, 0)
    with pytest.raises(PetlError, match="no CUDA GPU is available"):
        worker_device("cuda", worker=0)


def _pretend_two_gpus(_: int) -> tuple[int, str]:
    """In a loky worker: two GPUs, and which one this worker takes."""
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 2
    time.sleep(0.3)  # hold the worker, so that every worker of the pool takes a trial
    return os.getpid(), str(device_module.worker_device("cuda"))


def test_a_pool_of_workers_puts_each_on_one_gpu_and_uses_both():
    # A fresh loky pool (the executor joblib runs trials on), so the test does not depend on earlier tests' pools.
    from joblib.externals.loky import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=2) as pool:
        got = list(pool.map(_pretend_two_gpus, range(6)))
    by_worker: dict[int, set[str]] = {}
    for pid, dev in got:
        by_worker.setdefault(pid, set()).add(dev)
    assert all(len(devs) == 1 for devs in by_worker.values())  # a worker stays on its GPU
    assert {d for devs in by_worker.values() for d in devs} == {"cuda:0", "cuda:1"}
