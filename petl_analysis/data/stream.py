"""Image folders of any size: an index of files (no pixels) and a dataset that decodes them lazily, per batch.

:class:`ImageFiles` is what :func:`open_dataset` returns for a folder: paths and labels only, so splitting and
sampling (``make_splits``) work on it as on an in-memory :class:`ImageDataset` while memory stays independent of the
number of images. :class:`StreamingImages` is a map-style ``torch.utils.data.Dataset`` over one split: each item is
read from disk and passed through the transforms timm resolves for the model (``resolve_model_data_config`` +
``create_transform``: resize, centre crop, interpolation, mean/std; RandomResizedCrop, flip and colour jitter with
``augment=True``), in DataLoader worker processes (:mod:`petl_analysis.engine.batches`).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..errors import PetlError
from .dataset import PredefinedSplits
from .folder import _read, drop_bad_images, find_bad_images, scan_folder
from .sources import DatasetItems

#: Environment variable overriding the number of DataLoader worker processes for streamed data.
WORKERS_ENV = "PETL_ANALYSIS_WORKERS"
#: Stored images up to this many pixels decode in the training process: measured on 2 cores
#: (``benchmarks/bench_loader_workers.py``, two runs), workers made a trial 1.4-2.6x slower at 32-96 px and 1.0-1.5x
#: at 224 px, since each pass over a split starts them anew and a small image decodes in well under a millisecond.
SMALL_IMAGE_PIXELS = 96 * 96
#: With this many CPU cores or fewer, a worker process takes a core from training: decode in the process.
FEW_CORES = 2


def default_num_workers(image_pixels: int | None = None) -> int:
    """DataLoader workers for streamed data: ``$PETL_ANALYSIS_WORKERS``; else 0 (decode in the training process)
    for small images (``image_pixels`` up to :data:`SMALL_IMAGE_PIXELS`, the stored size) or few cores (up to
    :data:`FEW_CORES`); else ``min(4, cpus - 1)``.

    Always 0 inside a child process: a daemonic one may not start children, and a trial worker (loky's processes
    cannot start DataLoader workers) already is the parallelism, one trial per core.
    """
    if multiprocessing.current_process().daemon or multiprocessing.parent_process() is not None:
        return 0
    env = os.environ.get(WORKERS_ENV)
    if env is not None:
        try:
            return max(0, int(env))
        except ValueError:
            raise PetlError(f"${WORKERS_ENV}={env!r} is not an integer; expected a number of workers") from None
    cpus = os.cpu_count() or 1
    if cpus <= FEW_CORES or (image_pixels is not None and image_pixels <= SMALL_IMAGE_PIXELS):
        return 0
    return min(4, cpus - 1)


@dataclass
class ImageFiles:
    """A labelled image folder as a list of files, in the same class / file-name order as ``load_image_folder``.

    Attributes:
        paths: absolute file paths, length N.
        labels: ``int64`` tensor ``(N,)`` in ``[0, num_classes)``.
        classes: class names (the subfolder names, sorted).
        name: ``"folder:<absolute path>"``.
        skipped: entries of class folders left out because they could not be read as images
            (``skip_bad_images=True``).
        predefined: the split of each file, for a folder with ``train/``, ``val/``, ``test/`` split folders; None
            otherwise (the splits are drawn).
    """

    paths: list[str]
    labels: torch.Tensor
    classes: list[str]
    name: str
    skipped: list[str] = field(default_factory=list)
    predefined: PredefinedSplits | None = None

    def __post_init__(self) -> None:
        if self.labels.dtype != torch.int64 or self.labels.shape != (len(self.paths),):
            raise PetlError(f"dataset {self.name!r}: labels must be int64 of shape ({len(self.paths)},)")
        if self.predefined is not None and tuple(self.predefined.codes.shape) != (len(self.paths),):
            raise PetlError(f"dataset {self.name!r}: predefined split codes must have shape ({len(self.paths)},)")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def subset(self, idx: torch.Tensor | np.ndarray | Sequence[int]) -> ImageFiles:
        """The files at integer indices ``idx`` (or a boolean mask); same classes and name."""
        idx = np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx)
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64).reshape(-1)
        return ImageFiles(
            [self.paths[i] for i in idx],
            self.labels[torch.from_numpy(idx)],
            list(self.classes),
            self.name,
            list(self.skipped),
            self.predefined.subset(idx) if self.predefined is not None else None,
        )

    def content_hashes(self) -> list[bytes]:
        """A digest of each file's bytes, in order (for deduplication: identical files, identical digests); read in
        threads, kept in the cache index with each file's size and mtime (a trial that opens the folder again reads
        none of them), and memoised on this index."""
        cached = self.__dict__.get("_content_hashes")
        if cached is None or len(cached) != len(self.paths):
            from ..features import cached_digests

            root = Path(self.name[len("folder:") :]) if self.name.startswith("folder:") else Path(self.name)
            cached = cached_digests(root, list(self.paths), _digest_files)
            self.__dict__["_content_hashes"] = cached
        return list(cached)

    def image(self, i: int) -> Any:
        """File ``i`` decoded as a PIL image (PetlError naming the file if it broke since the folder was opened)."""
        from PIL import Image

        return Image.fromarray(_read(Path(self.paths[i])))

    def fingerprint(self) -> str:
        """Hash of the file list with each file's size and modification time: a feature-cache key part."""
        h = hashlib.sha1()
        for p, y in zip(self.paths, self.labels.tolist()):
            st = os.stat(p)
            h.update(f"{p}\0{y}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"ImageFiles(name={self.name!r}, n={len(self)}, classes={self.num_classes})"


def _file_digest(path: str) -> bytes:
    """blake2b (16 bytes) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError as e:
        raise PetlError(f"cannot read image {path}: {e.strerror or e}; expected a readable file") from None
    return h.digest()


def _digest_files(paths: list[str]) -> list[bytes]:
    """:func:`_file_digest` of each path, in threads for many files."""
    if len(paths) < 64:
        return [_file_digest(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(_file_digest, paths, chunksize=64))


def open_image_files(path: str | Path, skip_bad_images: bool = False) -> ImageFiles:
    """Index ``path/<class>/<image>`` without keeping pixels (rules: :mod:`petl_analysis.data.folder`).

    Every file is decoded once (threads), so a broken file is reported before any training starts, all broken
    files in one message; with ``skip_bad_images`` they are left out with a warning listing them. The verdicts are
    cached with each file's size and mtime (:func:`petl_analysis.features.checked_files`): opening the folder again
    only stats unchanged files.
    """
    from ..features import checked_files

    root = Path(path).expanduser().resolve()
    scan = scan_folder(root)
    bad = scan.rejected + list(checked_files(root, [p for fs in scan.files for p in fs], find_bad_images))
    kept = drop_bad_images(root, scan.groups, scan.files, skip_bad_images, bad=bad)
    skipped = sorted(str(p) for p, _ in bad)
    return ImageFiles(
        [str(p) for fs in kept for p in fs],
        torch.from_numpy(scan.labels(kept)),
        scan.classes,
        f"folder:{root}",
        skipped,
        scan.predefined(kept),
    )


def model_data_config(model: nn.Module) -> dict[str, Any]:
    """timm's data config for ``model`` (``resolve_model_data_config``), with the input size, channels, mean and std
    the model actually has: timm keeps the pretrained ``input_size`` when a model is built with another ``img_size``.
    """
    from timm.data import resolve_model_data_config

    from ..models import model_input_config

    cfg = dict(resolve_model_data_config(model))
    own = model_input_config(model)
    cfg["input_size"] = (own["in_chans"], own["img_size"], own["img_size"])
    cfg["mean"], cfg["std"] = tuple(own["mean"]), tuple(own["std"])
    return cfg


def model_transform(model: nn.Module, augment: bool = False) -> Callable[[Any], torch.Tensor]:
    """timm's eval transform for ``model`` (resize to ``size / crop_pct``, centre crop, normalise), or its training
    transform with ``augment=True``. Takes a PIL image in the model's mode (``L`` for 1 channel, else ``RGB``)."""
    from timm.data import create_transform

    return create_transform(**model_data_config(model), is_training=augment)


class StreamingImages(Dataset):
    """One split of an image folder for one model: item ``i`` is ``(x, y)``, ``x`` float32 ``(C, H, W)`` normalised.

    Args:
        files: the split's files (:class:`ImageFiles`), or items of other datasets
            (:class:`~petl_analysis.data.sources.DatasetItems`).
        transform: PIL image -> tensor (:func:`model_transform`).
        in_chans: 1 (images converted to ``L``, BT.601 luma) or 3 (``RGB``).
        num_workers: DataLoader worker processes that decode it (``None``: :func:`default_num_workers` for the size
            of the first image).
        transform_id: what identifies the preprocessing, for the feature cache.
    """

    def __init__(
        self,
        files: ImageFiles | DatasetItems,
        transform: Callable[[Any], torch.Tensor],
        in_chans: int,
        num_workers: int | None = None,
        transform_id: str = "",
    ) -> None:
        if in_chans not in (1, 3):
            raise PetlError(f"in_chans must be 1 or 3; got {in_chans}")
        self.files = files
        self.transform = transform
        self.mode = "L" if in_chans == 1 else "RGB"
        self.num_workers = default_num_workers(_stored_pixels(files)) if num_workers is None else int(num_workers)
        self.transform_id = transform_id or repr(transform)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def labels(self) -> torch.Tensor:
        return self.files.labels

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.files.image(i)
        if img.mode != self.mode:
            img = img.convert(self.mode)
        return self.transform(img), int(self.files.labels[i])

    def cache_key(self) -> str | None:
        """Identifies the split's pixels as the model sees them (files, sizes, mtimes, preprocessing); None for
        items of other datasets (nothing to key a cache on)."""
        fingerprint = self.files.fingerprint()
        if fingerprint is None:
            return None
        return hashlib.sha1(f"{fingerprint}|{self.mode}|{self.transform_id}".encode()).hexdigest()


def _stored_pixels(files: ImageFiles | DatasetItems) -> int | None:
    """Pixels of the first image (a file's header only), standing for the dataset's size; None if there is none."""
    from PIL import Image

    if not len(files):
        return None
    try:
        if isinstance(files, DatasetItems):
            width, height = files.image(0).size
            return width * height
        with Image.open(files.paths[0]) as img:
            return img.width * img.height
    except Exception:
        return None


def stream_split(
    files: ImageFiles | DatasetItems, model: nn.Module, augment: bool = False, num_workers: int | None = None
) -> StreamingImages:
    """A :class:`StreamingImages` over ``files`` with ``model``'s timm transforms."""
    transform = model_transform(model, augment=augment)
    in_chans = model_data_config(model)["input_size"][0]
    return StreamingImages(files, transform, in_chans, num_workers=num_workers, transform_id=repr(transform))
