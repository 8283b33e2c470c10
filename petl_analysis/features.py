"""A disk cache for streamed data: frozen-backbone features (memory-mapped ``.npy`` files) and which files decode.

The linear probe and every stage that starts from it (probe baselines, the ``lp`` head init of ``train``, the
selectors) need the pre-logit features of the frozen backbone on each split. For an image folder these are computed
once per (backbone weights, files, preprocessing) and written as ``float32 (N, num_features)`` to
``<cache dir>/<key>.npy`` (atomically: a temporary file, then ``os.replace``); later calls, in this or any other
process, map the file instead of decoding images again. Opening a folder decodes each file once to find broken
ones; the verdicts are kept per folder in ``<cache dir>/index/`` with each file's size and mtime, so a later stage
re-decodes only new or changed files. The cache directory is ``$PETL_ANALYSIS_CACHE`` or ``~/.cache/petl-analysis``;
deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .accounting import classifier
from .errors import PetlError

CACHE_ENV = "PETL_ANALYSIS_CACHE"


def feature_cache_dir(path: str | os.PathLike | None = None, kind: str = "features") -> Path:
    """``path``, else ``$PETL_ANALYSIS_CACHE``, else ``~/.cache/petl-analysis``, with a ``kind`` subfolder."""
    default = Path.home() / ".cache" / "petl-analysis"
    root = Path(path) if path is not None else Path(os.environ.get(CACHE_ENV) or default)
    out = root.expanduser() / kind
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PetlError(f"cannot create the feature cache {str(out)!r}: {e.strerror or e}; set ${CACHE_ENV}") from None
    return out


def backbone_fingerprint(model: nn.Module) -> str:
    """Hash of every parameter and buffer except the classifier's (pre-logit features do not depend on it)."""
    head = classifier(model)
    head_ids = {id(t) for t in head.parameters()} if head is not None else set()
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


def checked_files(root: Path, paths: list[Path], find_bad) -> list[tuple[Path, str]]:
    """``find_bad(paths)`` (``-> [(path, reason)]``) for the files not already checked with this size and mtime.

    The verdicts live in ``<cache dir>/index/<hash of root>.json``, rewritten atomically when something changed;
    an unreadable or foreign index file is ignored and replaced.
    """
    from .io import atomic_write_json

    try:
        index_file = feature_cache_dir(kind="index") / f"{hashlib.sha1(str(root).encode()).hexdigest()}.json"
    except PetlError:
        return find_bad(paths)  # no writable cache: check everything, as without one
    try:
        import json

        known = json.loads(index_file.read_text()).get("files", {}) if index_file.is_file() else {}
    except (OSError, ValueError, AttributeError):
        known = {}
    stamps = {}
    for p in paths:
        st = os.stat(p)
        stamps[str(p)] = [st.st_size, st.st_mtime_ns]
    todo = [p for p in paths if list(known.get(str(p), [None, None])[:2]) != stamps[str(p)]]
    found = dict(find_bad(todo)) if todo else {}
    fresh = set(todo)
    verdicts = {str(p): stamps[str(p)] + [found.get(p) if p in fresh else known[str(p)][2]] for p in paths}
    if todo or set(known) != set(verdicts):
        try:
            atomic_write_json(index_file, {"root": str(root), "files": verdicts})
        except (OSError, PetlError):
            pass  # a cache that cannot be written only costs time
    return [(p, verdicts[str(p)][2]) for p in paths if verdicts[str(p)][2] is not None]


def cached_digests(root: Path, paths: list[str], digest_all) -> list[bytes]:
    """``digest_all(paths)`` (``-> [bytes]``, one content digest per file) for the files not already digested with
    this size and mtime: an image folder is read in full once for deduplication, not once per trial.

    The digests live in ``<cache dir>/index/<hash of root>.digests.json`` (as :func:`checked_files` keeps its
    verdicts); without a writable cache every file is read.
    """
    from .io import atomic_write_json

    try:
        index_file = feature_cache_dir(kind="index") / f"{hashlib.sha1(str(root).encode()).hexdigest()}.digests.json"
    except PetlError:
        return digest_all(paths)
    try:
        import json

        known = json.loads(index_file.read_text()).get("files", {}) if index_file.is_file() else {}
    except (OSError, ValueError, AttributeError):
        known = {}
    stamps = {}
    for p in paths:
        st = os.stat(p)
        stamps[p] = [st.st_size, st.st_mtime_ns]
    todo = [p for p in paths if not isinstance(known.get(p), list) or list(known[p][:2]) != stamps[p]]
    fresh = dict(zip(todo, (d.hex() for d in digest_all(todo)), strict=True)) if todo else {}
    entries = {p: stamps[p] + [fresh[p] if p in fresh else known[p][2]] for p in paths}
    if todo or set(known) != set(entries):
        try:
            atomic_write_json(index_file, {"root": str(root), "files": entries})
        except (OSError, PetlError):
            pass  # a cache that cannot be written only costs time
    return [bytes.fromhex(entries[p][2]) for p in paths]
