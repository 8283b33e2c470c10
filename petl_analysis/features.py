"""A disk cache of frozen-backbone features for streamed data (memory-mapped ``.npy`` files).

The linear probe and every stage that starts from it (probe baselines, the ``lp`` head init of ``train``, the
selectors) need the pre-logit features of the frozen backbone on each split. For an image folder these are computed
once per (backbone weights, files, preprocessing) and written as ``float32 (N, num_features)`` to
``<cache dir>/<key>.npy`` (atomically: a temporary file, then ``os.replace``); later calls, in this or any other
process, map the file instead of decoding images again. The cache directory is ``$PETL_ANALYSIS_CACHE`` or
``~/.cache/petl-analysis``; deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import PetlError

CACHE_ENV = "PETL_ANALYSIS_CACHE"


def feature_cache_dir(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$PETL_ANALYSIS_CACHE``, else ``~/.cache/petl-analysis``, with a ``features`` subfolder."""
    root = Path(path) if path is not None else Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "petl-analysis")
    out = root.expanduser() / "features"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PetlError(f"cannot create the feature cache {str(out)!r}: {e.strerror or e}; set ${CACHE_ENV}") from None
    return out


def backbone_fingerprint(model: nn.Module) -> str:
    """Hash of every parameter and buffer except the classifier's (pre-logit features do not depend on it)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    head_ids = {id(t) for t in head.parameters()} if isinstance(head, nn.Module) else set()
    h = hashlib.sha1(type(model).__name__.encode())
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    for name, t in tensors:
        if id(t) in head_ids:
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()) if t.numel() else b"")
    return h.hexdigest()


def cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"{key}.npy"


def load_cached(path: Path) -> torch.Tensor | None:
    """The cached features (copy-on-write memory map: pages are read on use, never written back), or None."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, mmap_mode="c")
    except (OSError, ValueError):
        return None  # a foreign or damaged file: recompute and replace it
    return torch.from_numpy(arr)


class FeatureWriter:
    """Fill a ``float32 (n, dim)`` memory-mapped ``.npy`` batch by batch; :meth:`commit` renames it into place."""

    def __init__(self, path: Path, n: int, dim: int) -> None:
        self.path = path
        fd, self._tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        self._arr = np.lib.format.open_memmap(self._tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        self._pos = 0

    def write(self, block: torch.Tensor) -> None:
        k = block.shape[0]
        self._arr[self._pos : self._pos + k] = block.detach().float().cpu().numpy()
        self._pos += k

    def commit(self) -> Path:
        if self._pos != self._arr.shape[0]:
            raise RuntimeError(f"feature cache {self.path}: wrote {self._pos} of {self._arr.shape[0]} rows")
        self._arr.flush()
        del self._arr
        with open(self._tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass
