"""Datasets that are not image folders: timm's dataset sources and ``torch.utils.data.Dataset`` objects from Python.

Both become a :class:`DatasetItems`: an index of ``(split dataset, item)`` pairs with their labels, which splits,
samples and deduplicates like an image folder's :class:`~petl_analysis.data.stream.ImageFiles` and streams through
the model's timm transforms (:class:`~petl_analysis.data.stream.StreamingImages`). Each given split is kept
(:class:`~petl_analysis.data.dataset.PredefinedSplits`); a split the source lacks is drawn from its train split.

* **timm sources** (``torch/NAME``, ``hfds/NAME``, ``wds/NAME``): opened with timm's ``create_dataset`` from a data
  dir, never downloading (``download=False``; Hugging Face reads run offline). :data:`TORCH_SPLITS` lists the
  torchvision datasets and the splits each has; ``hfds/`` and ``wds/`` read the splits ``train``, ``validation`` and
  ``test`` that exist. A ``wds/`` source is iterable only, so it is read into memory once.
* **Python datasets**: :func:`register_datasets` (``DataSpec.from_datasets``) names map-style datasets given per
  split for this process; the stages open them by that name (``python:NAME``). Trials in worker processes cannot
  open them, so a study on them runs in-process (``n_jobs=1``, the loky backend).

Items may be PIL images, image tensors ``(C, H, W)`` (``uint8``, or float in ``[0, 1]``) or arrays
``(H, W[, C])``; labels are read from a ``targets`` attribute (torchvision), timm's reader, or the items.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from ..errors import PetlError
from .dataset import SPLIT_NAMES, PredefinedSplits

#: The prefixes of timm's ``create_dataset`` sources this package accepts as dataset names.
TIMM_PREFIXES = ("torch/", "hfds/", "wds/")
#: The prefix of datasets registered from Python (:func:`register_datasets`).
PYTHON_PREFIX = "python:"
#: torchvision datasets timm's ``create_dataset`` opens (``torch/NAME``), with the split name timm takes for each
#: split they have; the others are drawn from train.
TORCH_SPLITS: dict[str, dict[str, str]] = {
    **{n: {"train": "train", "test": "test"} for n in ("cifar10", "cifar100", "mnist", "kmnist", "fashion_mnist")},
    "qmnist": {"train": "train", "test": "test"},
    "imagenet": {"train": "train", "val": "validation"},
    "places365": {"train": "train", "val": "validation"},
    "inaturalist": {"train": "train", "val": "validation"},
    "inat": {"train": "train", "val": "validation"},
}
#: The splits an ``hfds/`` or ``wds/`` source is asked for (those it lacks are drawn from train).
_HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}
#: The package each source prefix needs beside timm.
_NEEDS = {
    "hfds/": ("datasets", "the Hugging Face datasets package (pip install datasets)"),
    "wds/": ("webdataset", "the webdataset package (pip install webdataset)"),
}


def is_timm_source(name: str) -> bool:
    """Whether ``name`` names a timm dataset source (``torch/...``, ``hfds/...``, ``wds/...``; the prefix in any
    case)."""
    return str(name).lower().startswith(TIMM_PREFIXES)


def is_python_dataset(name: str) -> bool:
    """Whether ``name`` names datasets registered from Python (``python:NAME``)."""
    return str(name).startswith(PYTHON_PREFIX)


@dataclass
class DatasetItems:
    """Labelled map-style datasets (one per given split) as an index: which item of which dataset, and its label.

    Attributes:
        sources: the datasets, one per given split, in ``SPLIT_NAMES`` order.
        refs: ``int64`` ``(N, 2)``: each item's dataset (index into ``sources``) and its index there.
        labels: ``int64`` tensor ``(N,)`` in ``[0, num_classes)``.
        classes: class names.
        name: the dataset's name (``torch/mnist``, ``python:mine``).
        predefined: the split of each item (None: the source gave train only; splits are drawn).
    """

    sources: list[Dataset]
    refs: np.ndarray
    labels: torch.Tensor
    classes: list[str]
    name: str
    predefined: PredefinedSplits | None = None
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.labels.dtype != torch.int64 or self.labels.shape != (len(self.refs),):
            raise PetlError(f"dataset {self.name!r}: labels must be int64 of shape ({len(self.refs)},)")

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def subset(self, idx: torch.Tensor | np.ndarray | Sequence[int]) -> DatasetItems:
        """The items at integer indices ``idx`` (or a boolean mask); same datasets, classes and name."""
        idx = np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx)
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64).reshape(-1)
        out = DatasetItems(
            self.sources,
            self.refs[idx],
            self.labels[torch.from_numpy(idx)],
            list(self.classes),
            self.name,
            self.predefined.subset(idx) if self.predefined is not None else None,
        )
        hashes = self.__dict__.get("_content_hashes")
        if hashes is not None:
            out.__dict__["_content_hashes"] = [hashes[i] for i in idx]
        return out

    def image(self, i: int) -> Any:
        """Item ``i`` as a PIL image (PetlError naming the item if it is not an image)."""
        s, j = (int(v) for v in self.refs[i])
        item = self.sources[s][j]
        return to_pil(item[0] if isinstance(item, (tuple, list)) else item, f"item {j} of dataset {self.name!r}")

    def content_hashes(self) -> list[bytes]:
        """A digest of each item's decoded pixels (mode, size and bytes), in order; every item is decoded once, and
        the digests are memoised on this index (and handed to its subsets)."""
        cached = self.__dict__.get("_content_hashes")
        if cached is None:
            cached = []
            for i in range(len(self)):
                img = self.image(i)
                head = f"{img.mode}{img.size}".encode()
                cached.append(hashlib.blake2b(head + img.tobytes(), digest_size=16).digest())
            self.__dict__["_content_hashes"] = cached
        return list(cached)

    def fingerprint(self) -> None:
        """None: items of arbitrary datasets have no file to key a feature cache on (features are computed anew)."""
        return None

    def __repr__(self) -> str:
        return f"DatasetItems(name={self.name!r}, n={len(self)}, classes={self.num_classes})"


def to_pil(x: Any, what: str) -> Any:
    """A PIL image from a PIL image, an image tensor ``(C, H, W)`` / ``(H, W)`` (``uint8``, or float in ``[0, 1]``)
    or an array ``(H, W[, C])``."""
    from PIL import Image

    if isinstance(x, Image.Image):
        return x
    if isinstance(x, (torch.Tensor, np.ndarray)) and x.ndim in (2, 3):
        from torchvision.transforms.functional import to_pil_image

        try:
            return to_pil_image(x)
        except (TypeError, ValueError) as e:
            raise PetlError(f"{what}: cannot make an image of {type(x).__name__} {tuple(x.shape)} ({e})") from None
    shape = f" {tuple(x.shape)}" if hasattr(x, "shape") else ""
    raise PetlError(
        f"{what} is a {type(x).__name__}{shape}; expected a PIL image, an image tensor (C, H, W) or an array "
        f"(H, W[, C])"
    )


def _labels_of(ds: Dataset, what: str) -> np.ndarray:
    """All labels of ``ds``: its ``targets`` (torchvision), its timm reader's, or read item by item."""
    targets = getattr(ds, "targets", None)
    reader = getattr(ds, "reader", None)
    if targets is None and reader is not None:
        if hasattr(reader, "samples"):
            targets = [t for _, t in reader.samples]
        elif hasattr(reader, "iter_targets"):
            targets = list(reader.iter_targets())
    if targets is None:
        items = (ds[i] for i in range(len(ds)))  # type: ignore[arg-type]
        targets = [item[1] if isinstance(item, (tuple, list)) and len(item) > 1 else None for item in items]
    try:
        labels = np.asarray(torch.as_tensor(targets), dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise PetlError(
            f"{what}: its items are not (image, integer label) pairs; expected map-style items (x, y)"
        ) from None
    if len(labels) != len(ds):  # type: ignore[arg-type]
        raise PetlError(f"{what}: {len(labels)} labels for {len(ds)} items; expected one label per item")  # type: ignore[arg-type]
    return labels


def _class_names(ds: Dataset, n: int) -> list[str] | None:
    """The class names ``ds`` declares (torchvision's ``classes``, timm's ``class_to_idx``), or None."""
    classes = getattr(ds, "classes", None)
    if classes is None:
        mapping = getattr(getattr(ds, "reader", None), "class_to_idx", None)
        if mapping:
            classes = [name for name, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
    return [str(c) for c in classes] if classes is not None and len(classes) >= n else None


def dataset_items(
    name: str,
    splits: dict[str, Dataset],
    classes: Sequence[str] | None = None,
    source: str = "",
    given: dict[str, str] | None = None,
) -> DatasetItems:
    """Index map-style datasets given per split (``{"train": ..., "val": ..., "test": ...}``; train needed).

    Args:
        classes: class names (default: the train dataset's ``classes``, else ``"0"``, ``"1"``, ...).
        source: the splits' source in words, for the record (default: ``Python datasets``).
        given: each split's name in the source (default: the split names).

    Raises:
        PetlError: no train split, an unknown split, a label out of range, class names that differ between
            splits, or a class a given split lacks (naming the split and the class).
    """
    unknown = sorted(set(splits) - set(SPLIT_NAMES))
    if unknown or "train" not in splits:
        raise PetlError(
            f"dataset {name!r}: got split(s) {', '.join(splits) or 'none'}; expected train, and val and test "
            f"optionally"
        )
    order = [s for s in SPLIT_NAMES if s in splits]
    labels = {s: _labels_of(splits[s], f"dataset {name!r}, split {s!r}") for s in order}
    n_classes = int(max((int(y.max()) for y in labels.values() if len(y)), default=-1)) + 1
    names = list(classes) if classes is not None else _class_names(splits["train"], n_classes)
    names = [str(c) for c in names] if names is not None else [str(i) for i in range(n_classes)]
    for s in order:
        declared = _class_names(splits[s], 0)
        if classes is None and declared is not None and declared != names:
            raise PetlError(
                f"dataset {name!r}: split {s!r} names its classes differently from train ({declared[:3]}... vs "
                f"{names[:3]}...); expected the same classes in every split"
            )
        y = labels[s]
        if len(y) == 0:
            raise PetlError(f"dataset {name!r}: split {s!r} is empty; expected images of every class")
        if int(y.min()) < 0 or int(y.max()) >= len(names):
            raise PetlError(
                f"dataset {name!r}: split {s!r} has label {int(y.min()) if y.min() < 0 else int(y.max())}; expected "
                f"labels in [0, {len(names)}) for the {len(names)} classes"
            )
        counts = np.bincount(y, minlength=len(names))
        if len(order) > 1 and (counts == 0).any():
            c = int(np.flatnonzero(counts == 0)[0])
            raise PetlError(
                f"dataset {name!r}: split {s!r} has no images of class {names[c]!r}; expected every class in every "
                f"given split"
            )
    if len(names) < 2:
        raise PetlError(f"dataset {name!r} has {len(names)} class; expected at least 2")
    refs = np.concatenate(
        [np.stack([np.full(len(labels[s]), i), np.arange(len(labels[s]))], axis=1) for i, s in enumerate(order)]
    ).astype(np.int64)
    codes = np.concatenate([np.full(len(labels[s]), SPLIT_NAMES.index(s)) for s in order]).astype(np.int64)
    predefined = None
    if len(order) > 1:
        names_in_source = given or {s: s for s in order}
        predefined = PredefinedSplits(
            torch.from_numpy(codes), source or "Python datasets", {s: names_in_source[s] for s in order}
        )
    y_all = torch.from_numpy(np.concatenate([labels[s] for s in order]))
    return DatasetItems([splits[s] for s in order], refs, y_all, names, name, predefined)


# ------------------------------------------------------------------------------------------- Python datasets

_REGISTERED: dict[str, DatasetItems] = {}


def register_datasets(
    name: str,
    train: Dataset,
    val: Dataset | None = None,
    test: Dataset | None = None,
    classes: Sequence[str] | None = None,
) -> str:
    """Name map-style datasets for this process: the stages open ``python:NAME`` (:func:`open_registered`).

    The name stands for the data in trial logs (a study resumed under the same name reuses its trials) and in the
    in-process caches of the trial workers: registering the same datasets again is a no-op, other datasets under a
    registered name are refused. Returns the dataset name, ``python:NAME``.
    """
    if not isinstance(name, str) or not name or name.startswith(PYTHON_PREFIX) or "/" in name:
        raise PetlError(f"a Python dataset's name must be a non-empty string without '/' or a prefix; got {name!r}")
    splits = {s: d for s, d in (("train", train), ("val", val), ("test", test)) if d is not None}
    for s, d in splits.items():
        if isinstance(d, IterableDataset) or not hasattr(d, "__getitem__") or not hasattr(d, "__len__"):
            raise PetlError(
                f"Python dataset {name!r}: {s} is a {type(d).__name__}; expected a map-style "
                f"torch.utils.data.Dataset (with __len__ and __getitem__)"
            )
    full = PYTHON_PREFIX + name
    if full in _REGISTERED:
        known = _REGISTERED[full]
        same = len(known.sources) == len(splits) and all(a is b for a, b in zip(known.sources, splits.values()))
        if same and (classes is None or list(classes) == known.classes):
            return full
        raise PetlError(
            f"Python dataset {name!r} is registered already, with other datasets; give the new data another name "
            f"(the name stands for the data in trial logs and in the trial caches of this process)"
        )
    _REGISTERED[full] = dataset_items(full, splits, classes)
    return full


def open_registered(name: str) -> DatasetItems:
    """The datasets registered as ``name`` (``python:NAME``) in this process."""
    if name not in _REGISTERED:
        raise PetlError(
            f"dataset {name!r} is not registered in this process; Python datasets (DataSpec.from_datasets) are "
            f"opened in the process that registered them only: run the study there with n_jobs=1 and the loky "
            f"backend"
        )
    return _REGISTERED[name]


# ---------------------------------------------------------------------------------------------- timm sources


def source_splits(name: str) -> dict[str, str]:
    """The splits timm is asked for, per split (``{"train": "train", "test": "test"}``), for source ``name``.

    Raises:
        PetlError: a ``torch/`` name timm does not open, or a name with nothing after the prefix.
    """
    prefix, _, rest = str(name).partition("/")
    if not rest:
        raise PetlError(f"dataset {name!r} names no dataset after {prefix}/; expected e.g. torch/cifar10")
    if prefix.lower() != "torch":
        return dict(_HUB_SPLITS)
    key = rest.lower()
    if key in ("folder", "image_folder"):
        raise PetlError(
            f"dataset {name!r}: give an image folder's path as the dataset instead (its train/, val/ and test/ "
            f"subfolders are kept)"
        )
    if key not in TORCH_SPLITS:
        raise PetlError(
            f"dataset {name!r} is not a torchvision dataset timm opens; expected one of "
            f"{', '.join('torch/' + n for n in TORCH_SPLITS)}"
        )
    return dict(TORCH_SPLITS[key])


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Hugging Face reads from the local cache only, for the time of the block."""
    keys = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _InMemory(Dataset):
    """Items read once from an iterable dataset (a ``wds/`` source), as a map-style dataset."""

    def __init__(self, items: list[tuple[Any, int]]) -> None:
        self.items = items
        self.targets = [int(y) for _, y in items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.items[i]


def _create(name: str, data_dir: str | None, split: str) -> Dataset:
    from timm.data import create_dataset

    with _offline():
        ds = create_dataset(name, root=data_dir, split=split, download=False, is_training=False)
    if isinstance(ds, IterableDataset):
        with _offline():
            ds = _InMemory([(x, int(y)) for x, y in ds])
    return ds


def open_timm_source(name: str, data_dir: str | os.PathLike | None) -> DatasetItems:
    """Open a timm dataset source from ``data_dir`` (module docstring), never downloading.

    Raises:
        PetlError: a name timm does not open, no data dir (``torch/``, ``wds/``), a missing package, or the train
            split not found (the message names the data dir and timm's reason).
    """
    splits = source_splits(name)
    prefix = str(name).split("/", 1)[0].lower() + "/"
    if prefix in _NEEDS and importlib.util.find_spec(_NEEDS[prefix][0]) is None:
        raise PetlError(f"dataset {name!r} needs {_NEEDS[prefix][1]}")
    if data_dir is None and prefix != "hfds/":
        raise PetlError(f"dataset {name!r} is read from a local data dir; give it with --data-dir (DataSpec.data_dir)")
    root = str(os.path.abspath(os.path.expanduser(data_dir))) if data_dir is not None else None
    if root is not None and not os.path.isdir(root):
        raise PetlError(f"data dir {root} of dataset {name!r} does not exist; expected the dataset's files there")
    opened: dict[str, Dataset] = {}
    for split, timm_split in splits.items():
        try:
            opened[split] = _create(name, root, timm_split)
        except Exception as e:  # torchvision, datasets and webdataset each raise their own kind
            if split == "train":
                reason = " ".join(str(e).split()) or type(e).__name__
                raise PetlError(
                    f"dataset {name!r}: cannot open its {timm_split} split in {root or 'the Hugging Face cache'} "
                    f"({type(e).__name__}: {reason}); expected its files there (nothing is downloaded at run time)"
                ) from None
            # an optional split the source lacks: drawn from train (the record says so)
    where = f"timm {name} in {root}" if root else f"timm {name}"
    return dataset_items(str(name), opened, source=where, given={s: splits[s] for s in opened})
