"""Resumable, parallel execution of independent trials (probe trainings, sweep runs).

Each trial is a small picklable :class:`Trial` (a key and a JSON payload) run by a module-level function in a
worker process. The driver alone appends finished records to a JSON-lines log, so:

- rerunning the same command skips every trial whose key is already in the log;
- a killed driver loses only the trials in flight (the log is fsync'ed per record, a torn last line is dropped);
- a trial that raises is retried once, then recorded with its error, and the study goes on.

Parallelism goes through joblib, so any joblib backend works: ``loky`` (local processes, default), ``sequential``,
or ``dask`` (an existing cluster; see :func:`backend_context`).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, TypeVar

from .artefacts import spec_from_payload, trial_payload
from .errors import PetlError
from .io import JsonlLog

S = TypeVar("S")

STATUS_OK = "ok"
STATUS_FAILED = "failed"


@dataclass(frozen=True)
class Trial:
    """One unit of work. ``payload`` must be JSON-serialisable (it also defines the key); :meth:`of` makes it from a
    typed spec and :meth:`spec` reads that spec back in the worker."""

    kind: str
    payload: dict[str, Any] = field(hash=False)

    @classmethod
    def of(cls, kind: str, spec: Any) -> "Trial":
        """The trial of a spec dataclass (:func:`~petl_analysis.artefacts.trial_payload`)."""
        return cls(kind, trial_payload(spec))

    def spec(self, spec_class: type[S]) -> S:
        """The payload as the spec it was made from (:func:`~petl_analysis.artefacts.spec_from_payload`)."""
        return spec_from_payload(spec_class, self.payload)

    @property
    def key(self) -> str:
        blob = json.dumps({"kind": self.kind, **self.payload}, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _execute(fn: Callable[[Trial], dict[str, Any]], trial: Trial, retries: int) -> dict[str, Any]:
    """Run one trial in a worker; never raises (errors become a failed record) except for a :class:`PetlError`."""
    errors: list[str] = []
    worker = f"{socket.gethostname()}:{os.getpid()}"  # which process ran it: for debugging a cluster run
    for attempt in range(retries + 1):
        start = time.perf_counter()
        try:
            result = fn(trial)
            return {"key": trial.key, "kind": trial.kind, "status": STATUS_OK, "attempts": attempt + 1,
                    "payload": trial.payload, "result": result, "wall_time_s": time.perf_counter() - start,
                    "worker": worker}
        except PetlError:
            raise  # bad configuration: retrying cannot help, stop the study with the one-line message
        except Exception as e:  # noqa: BLE001 - recorded, the study goes on
            errors.append(f"{type(e).__name__}: {e}".splitlines()[0])
            last_tb = traceback.format_exc(limit=3)
    return {"key": trial.key, "kind": trial.kind, "status": STATUS_FAILED, "attempts": retries + 1,
            "payload": trial.payload, "error": errors[-1], "errors": errors, "traceback": last_tb, "worker": worker}


#: Fields every log record must have, with their JSON types (a hand-edited or foreign line fails with its number).
_RECORD_FIELDS: dict[str, tuple[type, str]] = {
    "key": (str, "a string"), "kind": (str, "a string"), "status": (str, "a string"), "payload": (dict, "an object"),
}


def check_record(record: dict[str, Any], where: str) -> dict[str, Any]:
    """Raise a one-line :class:`PetlError` (prefixed by ``where``) unless ``record`` is a well-formed trial record."""
    for name, (tp, what) in _RECORD_FIELDS.items():
        if name not in record:
            raise PetlError(f"{where}: not a trial record (no {name!r} field)")
        if not isinstance(record[name], tp):
            raise PetlError(f"{where}: not a trial record ({name!r} must be {what}, got {record[name]!r:.40})")
    status = record["status"]
    if status not in (STATUS_OK, STATUS_FAILED):
        raise PetlError(f"{where}: unknown trial status {status!r}; expected {STATUS_OK!r} or {STATUS_FAILED!r}")
    if status == STATUS_OK and not isinstance(record.get("result"), dict):
        raise PetlError(f"{where}: a trial record with status 'ok' needs a 'result' object")
    return record


def _finished(log: Any) -> dict[str, dict[str, Any]]:
    """``key -> record`` of the log's finished trials, every record checked (see :func:`check_record`)."""
    numbered = log.iter_numbered() if hasattr(log, "iter_numbered") else enumerate(log.read(), start=1)
    where = getattr(log, "where", lambda i: f"results record {i}")
    return {r["key"]: r for i, r in numbered if check_record(r, where(i))}


@contextmanager
def backend_context(backend: str = "loky", scheduler: str | None = None, n_jobs: int = 1) -> Iterator[None]:
    """joblib backend configuration: ``loky``/``threading``/``sequential``, or ``dask`` with a scheduler address."""
    import joblib

    if backend == "dask":
        try:
            from distributed import Client
        except ImportError:
            raise PetlError("--backend dask needs the optional extra: pip install 'petl-analysis[dask]'") from None
        try:
            client = (Client(scheduler) if scheduler
                      else Client(processes=True, n_workers=max(1, n_jobs), threads_per_worker=1, dashboard_address=None))
        except (OSError, TimeoutError) as e:  # unreachable scheduler: a one-line error, not a traceback
            where = f"the dask scheduler {scheduler!r}" if scheduler else "a local dask cluster"
            raise PetlError(f"cannot connect to {where}: {(str(e) or type(e).__name__).splitlines()[0]}") from None
        try:
            with joblib.parallel_config(backend="dask"):
                yield
        finally:
            client.close()
    elif backend in ("loky", "threading", "sequential", "multiprocessing"):
        with joblib.parallel_config(backend=backend):
            yield
    else:
        raise PetlError(f"unknown backend {backend!r}; expected loky, dask, threading or sequential")


def run_trials(
    trials: Sequence[Trial],
    fn: Callable[[Trial], dict[str, Any]],
    log: JsonlLog,
    *,
    n_jobs: int = 1,
    retries: int = 1,
    on_record: Callable[[dict[str, Any], bool], None] | None = None,
    backend: str = "loky",
    scheduler: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the trials not yet in ``log`` and return ``key -> record`` for every trial asked for.

    ``on_record(record, cached)`` is called once per trial (``cached`` when it came from the log), e.g. to
    advance a progress bar. Results stream back in completion order and are appended by this (driver) process
    only. ``backend``/``scheduler`` select where trials run (see :func:`backend_context`).
    """

    if scheduler and backend != "dask":
        raise PetlError(f"a scheduler address ({scheduler}) needs --backend dask, not {backend!r}")
    done = _finished(log)
    unique: dict[str, Trial] = {}
    for t in trials:
        unique.setdefault(t.key, t)
    out: dict[str, dict[str, Any]] = {}
    todo: list[Trial] = []
    for key, t in unique.items():
        if key in done:
            out[key] = done[key]
            if on_record:
                on_record(done[key], True)
        else:
            todo.append(t)
    if not todo:
        return out
    if backend == "loky" and n_jobs == 1:
        results = (_execute(fn, t, retries) for t in todo)  # in-process: no pickling, easy to debug
        _collect(results, log, out, on_record)
        return out
    with backend_context(backend, scheduler, n_jobs):
        _run_parallel(todo, fn, log, out, on_record, n_jobs=n_jobs if backend != "dask" else -1, retries=retries)
    return out


def _parallel(trials: Sequence[Trial], fn, n_jobs: int, retries: int):
    import joblib

    # batch_size=1: each finished trial comes back (and is logged) at once; joblib's automatic batching would
    # group short trials, and a killed driver would then lose finished trials waiting for their batch.
    # Under dask, n_jobs=-1 lets joblib use every worker thread of the cluster.
    return joblib.Parallel(n_jobs=n_jobs, batch_size=1, return_as="generator_unordered")(
        joblib.delayed(_execute)(fn, t, retries) for t in trials
    )


def _run_parallel(todo: list[Trial], fn, log, out, on_record, *, n_jobs: int, retries: int) -> None:
    """Run ``todo`` in worker processes, surviving lost workers.

    A worker that dies (segfault, out-of-memory kill, lost node) aborts joblib's whole batch, and it cannot say which
    trial killed it. So: rerun what is unfinished up to ``retries`` times; if workers still die, run each remaining
    trial alone (still in a worker, so the driver survives) and record one that loses its worker again as failed.
    """
    pending = {t.key: t for t in todo}

    def drain(trials: Sequence[Trial], jobs: int) -> None:
        for record in _parallel(trials, fn, jobs, retries):
            _collect([record], log, out, on_record)
            pending.pop(record["key"], None)

    for _ in range(retries + 1):
        try:
            drain(list(pending.values()), n_jobs)
            return
        except PetlError:
            raise
        except Exception:  # noqa: BLE001 - a lost worker; finished trials are already logged
            continue
    for t in list(pending.values()):
        try:
            drain([t], max(2, n_jobs) if n_jobs > 0 else n_jobs)  # n_jobs=1 would run it in the driver itself
        except PetlError:
            raise
        except Exception as e:  # noqa: BLE001
            detail = str(e).splitlines()[0] if str(e) else ""
            error = f"worker lost ({type(e).__name__}{': ' + detail if detail else ''})"
            record = {"key": t.key, "kind": t.kind, "status": STATUS_FAILED, "attempts": retries + 2,
                      "payload": t.payload, "error": error, "errors": [error]}
            _collect([record], log, out, on_record)
            pending.pop(t.key, None)


def _collect(results, log, out: dict[str, dict[str, Any]], on_record) -> None:
    for record in results:
        log.append(record)
        out[record["key"]] = record
        if on_record:
            on_record(record, False)
