"""Device selection shared by every stage (``--device auto|cpu|cuda[:N]``)."""

from __future__ import annotations

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
