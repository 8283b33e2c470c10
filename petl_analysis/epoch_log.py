"""Per-epoch logs of every training (``--log-to``): a CSV file, TensorBoard or MLflow.

A target is ``csv:PATH``, ``tensorboard:DIR`` or ``mlflow`` / ``mlflow:EXPERIMENT``. It hears the
:func:`~petl_analysis.engine.epoch_listener` of the process that trains, so it works the same for trials run in the
driver and in worker processes: a study hands each trial's worker the target (a string, outside the trial key) and
the worker logs that trial's epochs, tagged with its key, kind and seed (:func:`with_epoch_log`).

- ``csv``: one row per epoch: ``trial, kind, seed, epoch, epochs, train_loss, val_acc, best_val_acc, elapsed_s``.
  The driver writes the header once (:func:`prepare_epoch_log`; rows of an earlier run are kept, so a resumed study
  appends); each worker appends whole lines.
- ``tensorboard``: one run folder per trial (``DIR/<kind>-<key>``, ``DIR/train-seed<N>`` for ``train``), scalars
  ``train_loss``, ``val_acc`` and ``best_val_acc`` against the epoch (``torch.utils.tensorboard``, which needs the
  ``tensorboard`` package).
- ``mlflow``: one MLflow run per trial (in ``EXPERIMENT`` if given; the tracking URI is MLflow's own setting), the
  same metrics with ``step`` the epoch and the tags as parameters.

TensorBoard and MLflow are optional: asking for one that cannot be imported is a one-line error before any work.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .engine.train import EpochLog, epoch_listener
from .errors import PetlError

#: Target kinds and the module each needs.
KINDS = {"csv": None, "tensorboard": "torch.utils.tensorboard", "mlflow": "mlflow"}
#: The CSV's columns: the trial's tags, then the epoch's fields.
CSV_COLUMNS = ("trial", "kind", "seed", "epoch", "epochs", "train_loss", "val_acc", "best_val_acc", "elapsed_s")
_EXTRA = {"tensorboard": "pip install tensorboard", "mlflow": "pip install mlflow"}


def parse_log_target(spec: str) -> tuple[str, str]:
    """``(kind, where)`` of a ``--log-to`` target; a malformed one or a kind whose package cannot be imported is a
    one-line :class:`PetlError`."""
    kind, _, where = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise PetlError(
            f"--log-to {spec!r}: unknown logger {kind!r}; expected csv:PATH, tensorboard:DIR or mlflow[:EXPERIMENT]"
        )
    if kind in ("csv", "tensorboard") and not where:
        raise PetlError(
            f"--log-to {spec!r}: {kind} needs a path, e.g. {kind}:{'epochs.csv' if kind == 'csv' else 'tb'}"
        )
    module = KINDS[kind]
    if module is not None:
        try:
            importlib.import_module(module)
        except ImportError as e:
            detail = (str(e).splitlines() or [type(e).__name__])[0]
            raise PetlError(f"--log-to {kind} needs the {kind} package: {_EXTRA[kind]} ({detail})") from None
    return kind, where


def prepare_epoch_log(spec: str | None) -> None:
    """Check ``spec`` and ready its target before any trial runs: a CSV's folder is made and its header written
    unless the file already has rows (a resumed study appends)."""
    if not spec:
        return
    kind, where = parse_log_target(spec)
    if kind != "csv":
        return
    path = Path(where)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.stat().st_size == 0:
            with open(path, "a", newline="") as f:
                f.write(_csv_line(CSV_COLUMNS))
    except OSError as e:
        raise PetlError(f"--log-to {spec!r}: cannot write {str(path)!r} ({e.strerror or e})") from None


def _csv_line(values: Any) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buf.getvalue()


def _csv_writer(where: str, tags: dict[str, Any]) -> tuple[Callable[[EpochLog], None], Callable[[], None]]:
    def write(log: EpochLog) -> None:
        line = _csv_line(
            [tags.get("trial"), tags.get("kind"), log.seed, log.epoch, log.epochs, log.train_loss, log.val_acc]
            + [log.best_val_acc, round(log.elapsed_s, 3)]
        )
        # One write of one whole line in append mode: lines from several worker processes do not interleave.
        fd = os.open(where, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    return write, lambda: None


def _run_name(tags: dict[str, Any], seed: int | None) -> str:
    trial = tags.get("trial")
    return f"{tags.get('kind')}-{trial}" if trial else f"{tags.get('kind')}-seed{seed}"


def _tensorboard_writer(where: str, tags: dict[str, Any]) -> tuple[Callable[[EpochLog], None], Callable[[], None]]:
    from torch.utils.tensorboard import SummaryWriter

    writers: dict[str, Any] = {}

    def write(log: EpochLog) -> None:
        name = _run_name(tags, log.seed)
        if name not in writers:
            writers[name] = SummaryWriter(log_dir=str(Path(where) / name))
        for metric in ("train_loss", "val_acc", "best_val_acc"):
            value = getattr(log, metric)
            if value is not None:
                writers[name].add_scalar(metric, value, log.epoch)

    def close() -> None:
        for w in writers.values():
            w.close()

    return write, close


def _mlflow_writer(where: str, tags: dict[str, Any]) -> tuple[Callable[[EpochLog], None], Callable[[], None]]:
    import mlflow

    if where:
        mlflow.set_experiment(where)
    runs: dict[str, Any] = {}

    def write(log: EpochLog) -> None:
        name = _run_name(tags, log.seed)
        if name not in runs:
            if runs:  # a new seed of an in-process `train`: one run each
                mlflow.end_run()
            runs[name] = mlflow.start_run(run_name=name)
            mlflow.log_params({k: v for k, v in {**tags, "seed": log.seed}.items() if v is not None})
        metrics = {m: getattr(log, m) for m in ("train_loss", "val_acc", "best_val_acc")}
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None}, step=log.epoch)

    def close() -> None:
        if runs:
            mlflow.end_run()

    return write, close


_WRITERS = {"csv": _csv_writer, "tensorboard": _tensorboard_writer, "mlflow": _mlflow_writer}


@contextlib.contextmanager
def logging_epochs(spec: str | None, **tags: Any) -> Iterator[None]:
    """While open, every epoch of every fit in this process is written to ``spec``'s target (None: nowhere), tagged
    with ``tags`` (``trial``, ``kind``) and the fit's seed."""
    if not spec:
        yield
        return
    kind, where = parse_log_target(spec)
    write, close = _WRITERS[kind](where, tags)
    try:
        with epoch_listener(write):
            yield
    finally:
        close()


def with_epoch_log(worker: Callable[[Any], dict[str, Any]], spec: str, trial: Any) -> dict[str, Any]:
    """Run ``worker(trial)`` logging its epochs to ``spec`` (a study wraps its trial worker in this, with
    ``functools.partial``, so a worker process logs too)."""
    with logging_epochs(spec, trial=trial.key, kind=trial.kind):
        return worker(trial)
