"""Device selection shared by every stage (``--device auto|cpu|cuda[:N]``)."""

from __future__ import annotations

import multiprocessing

import torch

from .errors import PetlError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Map ``auto`` to CUDA when available, else CPU; validate explicit requests."""
    if isinstance(spec, torch.device):
        return spec
    s = str(spec).strip().lower()
    if s == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if s == "cpu":
        return torch.device("cpu")
    if s.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PetlError(f"--device {spec!r} requested but no CUDA GPU is available; use --device cpu or auto")
        try:
            dev = torch.device(s)
        except RuntimeError:
            raise PetlError(f"invalid device {spec!r}; expected auto, cpu, cuda or cuda:N") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise PetlError(f"--device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    raise PetlError(f"invalid device {spec!r}; expected auto, cpu, cuda or cuda:N")


def worker_index() -> int:
    """This process's index in its worker pool, from 0; 0 in a process that is no pool's worker (the driver).

    multiprocessing numbers the processes a pool starts 1, 2, ... (``_identity``; loky's workers, the standard
    pools' and dask's nanny-started workers all have one), and a pool that replaces a lost worker gives the new one
    the next number."""
    identity = multiprocessing.current_process()._identity
    return identity[0] - 1 if identity else 0


def worker_device(spec: str | torch.device, worker: int | None = None) -> torch.device:
    """The device a trial worker trains on: ``cuda`` without an index spreads the workers over the visible GPUs,
    worker ``i`` on ``cuda:(i % n_gpus)`` (:func:`worker_index` by default); ``cpu`` or ``cuda:N`` as given.

    The device is per process, not per trial: a worker keeps one CUDA context, on one GPU."""
    device = resolve_device(spec)
    if device.type != "cuda" or device.index is not None:
        return device
    n_gpus = max(1, torch.cuda.device_count())
    return torch.device("cuda", (worker_index() if worker is None else worker) % n_gpus)


def use_worker_device(spec: str | torch.device) -> torch.device:
    """:func:`worker_device`, made this process's current CUDA device (so nothing, e.g. the DataLoader's pinning
    thread, opens a second context on ``cuda:0``)."""
    device = worker_device(spec)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device
