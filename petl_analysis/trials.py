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

import contextvars
import dataclasses
import hashlib
import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_args, get_type_hints

from .artefacts import _is_union, from_jsonable, persisted_fields, to_jsonable
from .errors import PetlError
from .io import JsonlLog, MemoryLog

S = TypeVar("S")
logger = logging.getLogger("petl_analysis")

STATUS_OK = "ok"
STATUS_FAILED = "failed"

#: Where a stage's trial log lives by default: beside its artefact (``probe.json`` -> ``probe.json.trials.jsonl``).
LOG_SUFFIX = ".trials.jsonl"


def trial_log_path(out: str | os.PathLike | None, log_path: str | os.PathLike | None = None) -> Path | None:
    """The trial log of a stage writing ``out``: ``log_path`` when given, else ``<out>.trials.jsonl`` (None: none)."""
    if log_path:
        return Path(log_path)
    return Path(str(out) + LOG_SUFFIX) if out else None


def open_trial_log(path: Path | None) -> JsonlLog | MemoryLog:
    """The log at ``path``, or an in-memory one when there is no file (library use, tests)."""
    return JsonlLog(path) if path else MemoryLog()


# --------------------------------------------------------------------------------------------------- encoding


def key_json(obj: Any) -> str:
    """Canonical JSON of ``obj`` for trial keys: fields a dataclass names in ``KEY_OMIT_IF_DEFAULT`` are left out
    while they hold their default, so adding such a field keeps the keys of existing trial logs (resume still works).
    Loading fills them back in with the default. Fields a dataclass names in ``LEGACY_VALUES`` are left out while
    they hold that value (the one every older record implies), and loading fills them back in with it. Fields named
    in ``KEY_OMIT`` (records, e.g. ``ModelSpec.load``) are always left out."""
    return json.dumps(_key_object(obj), sort_keys=True)


def _key_object(obj: Any) -> Any:
    """``obj`` as plain JSON values, less the ``KEY_OMIT_IF_DEFAULT`` fields that hold their default."""
    return _without_new_defaults(to_jsonable(obj), obj)


def _without_new_defaults(value: Any, obj: Any) -> Any:
    if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        return value
    omit = getattr(type(obj), "KEY_OMIT_IF_DEFAULT", ())
    legacy = getattr(type(obj), "LEGACY_VALUES", {})
    out = {}
    for f in persisted_fields(obj):
        if f.name in getattr(type(obj), "KEY_OMIT", ()):  # a record of what happened, not what to do
            continue
        v = getattr(obj, f.name)
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        )
        if f.name in omit and v == default:
            continue
        if f.name in legacy and v == legacy[f.name]:  # what every key made before the field existed implied
            continue
        out[f.name] = _without_new_defaults(value[f.name], v)
    return out


def trial_payload(spec: Any) -> dict[str, Any]:
    """The JSON payload of a trial spec (a dataclass): nested dataclasses and dicts as JSON objects (less their
    ``KEY_OMIT_IF_DEFAULT`` fields at default), other values as they are, fields holding None left out.
    :func:`spec_from_payload` reverses it."""
    out = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if value is None:
            continue
        nested = isinstance(value, dict) or (dataclasses.is_dataclass(value) and not isinstance(value, type))
        out[f.name] = _key_object(value) if nested else to_jsonable(value)
    return out


def payload_key(kind: str, payload: dict[str, Any]) -> str:
    """The trial key: a hash of the kind and the payload, each object-valued field hashed as its canonical JSON text.

    The logs written before payloads held objects stored those fields as that text (JSON inside JSON), and their
    keys were made from it; hashing the same text keeps every existing log resumable."""
    flat = {name: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for name, v in payload.items()}
    blob = json.dumps({"kind": kind, **flat}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _objects(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload with every field that older logs stored as JSON text (an object inside a string) decoded."""
    out = {}
    for name, value in payload.items():
        if isinstance(value, str) and value.startswith("{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[name] = value
    return out


def spec_from_payload(cls: Any, payload: dict[str, Any]) -> Any:
    """The typed trial spec ``cls`` of a :func:`trial_payload` (a field left out takes its default; nested specs
    as objects, or as the JSON text older logs hold)."""
    hints = get_type_hints(cls)
    body = {}
    for name, value in payload.items():
        tp = hints.get(name, Any)
        args = [a for a in get_args(tp) if a is not type(None)] if _is_union(tp) else [tp]
        nested = any(dataclasses.is_dataclass(a) or getattr(a, "__origin__", None) is dict or a is dict for a in args)
        body[name] = json.loads(value) if nested and isinstance(value, str) else value
    return from_jsonable(cls, body, cls.__name__)


@dataclass(frozen=True)
class Trial:
    """One unit of work. ``payload`` must be JSON-serialisable (it also defines the key); :meth:`of` makes it from a
    typed spec and :meth:`spec` reads that spec back in the worker."""

    kind: str
    payload: dict[str, Any] = field(hash=False)
    #: Where the worker puts its by-products (e.g. ``{"adapter_dir": ...}``): not part of the key, nor logged, so
    #: asking for them does not make logged trials run again.
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def of(cls, kind: str, spec: Any, **options: Any) -> Trial:
        """The trial of a spec dataclass (:func:`trial_payload`), with worker ``options`` outside its key."""
        return cls(kind, trial_payload(spec), options)

    def spec(self, spec_class: type[S]) -> S:
        """The payload as the spec it was made from (:func:`spec_from_payload`)."""
        return spec_from_payload(spec_class, self.payload)

    @property
    def key(self) -> str:
        return payload_key(self.kind, self.payload)


# --------------------------------------------------------------------------------------------------- records


@dataclass
class TrialRecord:
    """One finished trial, as the log holds it (one JSON line).

    Attributes:
        key, kind, payload: the :class:`Trial` (the payload's nested specs as objects).
        status: :data:`STATUS_OK` or :data:`STATUS_FAILED`.
        result: what the worker returned (``ok`` only).
        error: the last error's first line (``failed`` only); ``errors``: one per attempt; ``traceback``: the last.
        attempts: how many times it ran (a failure is retried).
        wall_time_s: seconds of the successful attempt; ``worker``: ``host:pid`` that ran it (debugging a cluster).
    """

    key: str
    kind: str
    status: str
    payload: dict[str, Any]
    result: dict[str, Any] | None = None
    error: str | None = None
    errors: list[str] | None = None
    traceback: str | None = None
    attempts: int | None = None
    wall_time_s: float | None = None
    worker: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def trial(self) -> Trial:
        return Trial(self.kind, self.payload)

    def to_json(self) -> dict[str, Any]:
        """The log line's object, fields in the order the logs have always had; unset fields left out."""
        order = (
            ("key", "kind", "status", "attempts", "payload", "result", "wall_time_s", "worker")
            if self.ok
            else ("key", "kind", "status", "attempts", "payload", "error", "errors", "traceback", "worker")
        )
        return {name: getattr(self, name) for name in order if getattr(self, name) is not None}

    @classmethod
    def from_json(cls, record: Any, where: str) -> TrialRecord:
        """A record read from a log; a malformed one is a one-line :class:`PetlError` prefixed by ``where``."""
        if not isinstance(record, dict):
            raise PetlError(f"{where}: not a trial record (expected a JSON object, got {type(record).__name__})")
        check_record(record, where)
        known = {f.name for f in dataclasses.fields(cls)}
        body = {k: v for k, v in record.items() if k in known}
        body["payload"] = _objects(record["payload"])
        return cls(**body)


_RUNNING: contextvars.ContextVar[Trial | None] = contextvars.ContextVar("petl_analysis_running_trial", default=None)


def running_trial() -> Trial | None:
    """The trial this process (thread) is running now, if any: e.g. for a progress display that names what an
    epoch belongs to."""
    return _RUNNING.get()


def _execute(fn: Callable[[Trial], dict[str, Any]], trial: Trial, retries: int) -> TrialRecord:
    """Run one trial in a worker; never raises (errors become a failed record) except for a :class:`PetlError`."""
    token = _RUNNING.set(trial)
    try:
        return _attempts(fn, trial, retries)
    finally:
        _RUNNING.reset(token)


def _attempts(fn: Callable[[Trial], dict[str, Any]], trial: Trial, retries: int) -> TrialRecord:
    errors: list[str] = []
    worker = f"{socket.gethostname()}:{os.getpid()}"  # which process ran it: for debugging a cluster run
    for attempt in range(retries + 1):
        start = time.perf_counter()
        try:
            result = fn(trial)
            return TrialRecord(
                trial.key,
                trial.kind,
                STATUS_OK,
                trial.payload,
                result=result,
                attempts=attempt + 1,
                wall_time_s=time.perf_counter() - start,
                worker=worker,
            )
        except PetlError:
            raise  # bad configuration: retrying cannot help, stop the study with the one-line message
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}".splitlines()[0])
            last_tb = traceback.format_exc(limit=3)
    return TrialRecord(
        trial.key,
        trial.kind,
        STATUS_FAILED,
        trial.payload,
        error=errors[-1],
        errors=errors,
        traceback=last_tb,
        attempts=retries + 1,
        worker=worker,
    )


#: Fields every log record must have, with their JSON types (a hand-edited or foreign line fails with its number).
_RECORD_FIELDS: dict[str, tuple[type, str]] = {
    "key": (str, "a string"),
    "kind": (str, "a string"),
    "status": (str, "a string"),
    "payload": (dict, "an object"),
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


def read_records(log: JsonlLog | MemoryLog) -> Iterator[TrialRecord]:
    """The log's records in order, each checked (see :func:`check_record`)."""
    for i, r in log.iter_numbered():
        yield TrialRecord.from_json(r, log.where(i))


def unique_train_time(
    records: Iterable[TrialRecord], seconds: Callable[[TrialRecord], float | None] | None = None
) -> float:
    """Seconds of training behind ``records``, each trial key counted once (failed trials add nothing).

    A training that several selectors, stages or sweeps share is one trial: summing it once per user overstates the
    cost (issue 25: 6,085 s published for 2,419 s trained). ``seconds`` reads a record's time (default: its
    ``wall_time_s``)."""
    seen: dict[str, float] = {}
    for r in records:
        if r.ok and r.key not in seen:
            seen[r.key] = float((seconds(r) if seconds else r.wall_time_s) or 0.0)
    return float(sum(seen.values()))


def trial_cost(records: Iterable[TrialRecord]) -> tuple[int, float]:
    """(trainings, seconds) of the finished trials in ``records``, each trial key counted once (a key appended twice,
    e.g. by a resumed run, is one training). Every trial given counts: prune a log's stale trials first
    (:mod:`petl_analysis.stale`) to cost one artefact alone."""
    finished = [r for r in records if r.ok]
    return len({r.key for r in finished}), unique_train_time(finished)


def _finished(log: JsonlLog | MemoryLog) -> dict[str, TrialRecord]:
    """``key -> record`` of the log's finished trials."""
    return {r.key: r for r in read_records(log)}


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
            client = (
                Client(scheduler)
                if scheduler
                else Client(processes=True, n_workers=max(1, n_jobs), threads_per_worker=1, dashboard_address=None)
            )
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
    log: JsonlLog | MemoryLog,
    *,
    n_jobs: int = 1,
    retries: int = 1,
    on_record: Callable[[TrialRecord, bool], None] | None = None,
    backend: str = "loky",
    scheduler: str | None = None,
) -> dict[str, TrialRecord]:
    """Run the trials not yet in ``log`` and return ``key -> record`` for every trial asked for.

    ``on_record(record, cached)`` is called once per trial (``cached`` when it came from the log), e.g. to
    advance a progress bar. Results stream back in completion order and are appended by this (driver) process
    only. ``backend``/``scheduler`` select where trials run (see :func:`backend_context`). When ``on_record`` has an
    ``expect(n)`` attribute, it is first told how many trials this call holds, so a progress bar can show its total.
    """

    if scheduler and backend != "dask":
        raise PetlError(f"a scheduler address ({scheduler}) needs --backend dask, not {backend!r}")
    done = _finished(log)
    unique: dict[str, Trial] = {}
    for t in trials:
        unique.setdefault(t.key, t)
    if (expect := getattr(on_record, "expect", None)) is not None:
        expect(len(unique))
    out: dict[str, TrialRecord] = {}
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
    _warn_other_threads(todo, done)
    if backend == "loky" and n_jobs == 1:
        results = (_execute(fn, t, retries) for t in todo)  # in-process: no pickling, easy to debug
        _collect(results, log, out, on_record)
        return out
    with backend_context(backend, scheduler, n_jobs):
        _run_parallel(todo, fn, log, out, on_record, n_jobs=n_jobs if backend != "dask" else -1, retries=retries)
    return out


def _warn_other_threads(todo: Sequence[Trial], done: dict[str, TrialRecord]) -> None:
    """Say when trials about to train are in the log but for their torch threads per worker: the threads are part of
    a trial's key (float sums in another order move the last bits), so a rerun with another ``--jobs`` or
    ``--threads`` trains finished work again, which nothing else would tell the user."""
    logged = {r.payload["threads"] for r in done.values() if isinstance(r.payload.get("threads"), int)}
    matched: dict[int, int] = {}
    for t in todo:
        mine = t.payload.get("threads")
        for n in sorted(logged - {mine}) if isinstance(mine, int) else ():
            if payload_key(t.kind, {**t.payload, "threads": n}) in done:
                matched[n] = matched.get(n, 0) + 1
                break
    if matched:
        n = max(matched, key=matched.__getitem__)  # the count most of them were trained with
        logger.warning(
            f"{sum(matched.values())} of the {len(todo)} trials to train are in the trial log with another number of "
            f"torch threads per worker ({n}; this run: {todo[0].payload['threads']}), which is part of a trial's "
            f"key: they train again; stop and rerun with the --jobs/--threads that gave {n} to reuse them"
        )


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
            pending.pop(record.key, None)

    for _ in range(retries + 1):
        try:
            drain(list(pending.values()), n_jobs)
            return
        except PetlError:
            raise
        except Exception:
            continue
    for t in list(pending.values()):
        try:
            drain([t], max(2, n_jobs) if n_jobs > 0 else n_jobs)  # n_jobs=1 would run it in the driver itself
        except PetlError:
            raise
        except Exception as e:
            detail = str(e).splitlines()[0] if str(e) else ""
            error = f"worker lost ({type(e).__name__}{': ' + detail if detail else ''})"
            record = TrialRecord(
                t.key, t.kind, STATUS_FAILED, t.payload, error=error, errors=[error], attempts=retries + 2
            )
            _collect([record], log, out, on_record)
            pending.pop(t.key, None)


def _collect(results, log, out: dict[str, TrialRecord], on_record) -> None:
    for record in results:
        log.append(record.to_json())
        out[record.key] = record
        if on_record:
            on_record(record, False)
