"""Load a user's image folder: one subfolder per class, the torchvision ``ImageFolder`` layout.

Rules (each violation is a one-line :class:`PetlError` naming the path):

* classes are the subfolders of ``path``, sorted by name; at least 2 are needed, and each must hold at least one image;
* images: ``.png .jpg .jpeg .bmp .gif .webp .tif .tiff`` (any case), read with PIL (first frame of animations);
* hidden entries (names starting with ``.``, e.g. ``.DS_Store``, ``.ipynb_checkpoints``) and the OS thumbnail files
  ``Thumbs.db`` / ``desktop.ini`` are skipped everywhere; regular files directly inside ``path`` (a README, a
  licence) are ignored;
* a bad entry of a class folder (a file that is not an image by its extension, a folder, a file that PIL cannot
  decode) is an error: one message with the number of bad entries and the first few names (all of them are found
  first, so one run reports them all); with ``skip_bad_images=True`` they are left out with a
  :class:`BadImagesWarning` listing them instead;
* transparency is composited onto black; 16-bit images are scaled to 8 bits;
* ``mode=None`` keeps colour only when needed: ``"RGB"`` if any image has differing R, G, B values, else ``"L"``;
* ``image_size=None`` keeps the images' size when they all share one, otherwise resizes every image to the most
  common size; an integer resizes every image to ``image_size x image_size`` (PIL bilinear, antialiased when
  shrinking; the aspect ratio is not kept).

**Predefined splits.** A folder whose subfolders are split folders, each with the class subfolders inside
(``path/train/<class>/``, ``path/val/<class>/``, ``path/test/<class>/``), keeps those splits (:data:`SPLIT_FOLDERS`
lists the names, any case: ``train``/``training``/``train800``, ``val``/``valid``/``validation``/``val200``,
``test``/``testing``). ``train`` and at least one of ``val``, ``test`` are needed; a missing one is drawn from train
by :func:`~petl_analysis.data.make_splits`. Every split folder must hold the same class folders (one error naming
the split and the class otherwise); other folders beside the split folders are an error, except VTAB-1k's
``train800val200`` (the union of ``train800`` and ``val200``), which is ignored beside them and is the train folder
without them. Labels follow the train folder's classes; images are in split, then class, then file-name order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from ..errors import PetlError
from ..io import current_umask, ensure_writable_dir
from .dataset import SPLIT_NAMES, ImageDataset, PredefinedSplits

if TYPE_CHECKING:
    from ..artefacts import Artefact

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
# Bad files named in full in an error or warning; the rest are counted.
_NAMES_SHOWN = 5


class BadImagesWarning(UserWarning):
    """Some files of an image folder could not be decoded and were left out (``skip_bad_images=True``)."""


def _skipped(p: Path) -> bool:
    return p.name.startswith(".") or p.name.lower() in _IGNORED_NAMES


def _scan(root: Path) -> tuple[list[str], list[list[Path]], list[tuple[Path, str]]]:
    """Class names (sorted subfolder names), per class its image files (sorted), and the entries of class folders
    that are not image files, with the reason (for :func:`drop_bad_images`, with the undecodable ones)."""
    if not root.exists():
        raise PetlError(f"image folder {root} does not exist; expected a folder with one subfolder per class")
    if not root.is_dir():
        raise PetlError(f"image folder {root} is not a directory; expected a folder with one subfolder per class")
    class_dirs = sorted((p for p in root.iterdir() if p.is_dir() and not _skipped(p)), key=lambda p: p.name)
    if not class_dirs:
        raise PetlError(f"image folder {root} has no class subfolders; expected one subfolder per class of images")
    if len(class_dirs) < 2:
        raise PetlError(
            f"image folder {root} has only one class ({class_dirs[0].name!r}); need at least 2 classes, "
            f"one subfolder each"
        )
    files: list[list[Path]] = []
    rejected: list[tuple[Path, str]] = []
    for d in class_dirs:
        found, others = [], len(rejected)
        for p in sorted(d.iterdir(), key=lambda p: p.name):
            if _skipped(p):
                continue
            if p.is_dir():
                rejected.append(
                    (p, f"{p} is a folder inside class folder {d.name!r}; expected only image files there")
                )
            elif p.suffix.lower() not in IMAGE_EXTENSIONS:
                rejected.append((p, f"{p} is not an image file; expected one of {' '.join(IMAGE_EXTENSIONS)}"))
            else:
                found.append(p)
        if not found and len(rejected) == others:
            raise PetlError(f"class folder {d} has no images; expected at least one {'/'.join(IMAGE_EXTENSIONS)} file")
        files.append(found)
    return [d.name for d in class_dirs], files, rejected


#: The subfolder names (any case) that make a folder one with predefined splits: torchvision / ImageNet style, and
#: VTAB-1k's ``train800`` / ``val200``.
SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {
    "train": ("train", "training", "train800"),
    "val": ("val", "valid", "validation", "val200"),
    "test": ("test", "testing"),
}
#: VTAB-1k's union of ``train800`` and ``val200``: ignored beside ``train800``, the train folder without it.
UNION_FOLDER = "train800val200"


@dataclass
class FolderScan:
    """The files of an image folder, found by :func:`scan_folder` (no image decoded yet).

    Attributes:
        root: the folder (absolute).
        classes: class names (the class subfolders, sorted; the train folder's when the folder has splits).
        groups: each group's folder relative to ``root`` (``cat``, or ``train/cat`` with splits), for messages.
        group_class: the class index of each group.
        group_split: the split of each group (an index into ``SPLIT_NAMES``); None for a folder without splits.
        files: the image files of each group, sorted by name.
        rejected: ``(path, reason)`` of the entries of class folders that are not image files.
        split_folders: each given split's subfolder name (``{"train": "train", "test": "test"}``); empty without
            splits.
    """

    root: Path
    classes: list[str]
    groups: list[str]
    group_class: list[int]
    group_split: list[int] | None
    files: list[list[Path]]
    rejected: list[tuple[Path, str]]
    split_folders: dict[str, str] = field(default_factory=dict)

    def predefined(self, files: list[list[Path]]) -> PredefinedSplits | None:
        """The split codes of ``files`` (the groups after bad images were dropped), or None without splits."""
        if self.group_split is None:
            return None
        codes = np.concatenate([np.full(len(fs), s, dtype=np.int64) for s, fs in zip(self.group_split, files)])
        return PredefinedSplits(torch.from_numpy(codes), f"folder {self.root}", dict(self.split_folders))

    def labels(self, files: list[list[Path]]) -> np.ndarray:
        """The labels of ``files`` (the groups after bad images were dropped), in order."""
        return np.concatenate([np.full(len(fs), c, dtype=np.int64) for c, fs in zip(self.group_class, files)])


def _split_folders(root: Path) -> dict[str, Path]:
    """The split subfolders of ``root`` (``{"train": root/"train", ...}``); empty when ``root`` is a folder of class
    folders. A folder counts as one with splits when a train folder holds folders itself.

    Raises:
        PetlError: two folders for one split, folders beside the split folders, or no val and no test folder.
    """
    subdirs = sorted((p for p in root.iterdir() if p.is_dir() and not _skipped(p)), key=lambda p: p.name)
    by_split = {split: [d for d in subdirs if d.name.lower() in names] for split, names in SPLIT_FOLDERS.items()}
    union = [d for d in subdirs if d.name.lower() == UNION_FOLDER]
    if union and not by_split["train"]:
        by_split["train"] = union
    train = by_split["train"]
    if not train or not any(p.is_dir() and not _skipped(p) for p in train[0].iterdir()):
        return {}
    for split, found in by_split.items():
        if len(found) > 1:
            raise PetlError(
                f"image folder {root} has {len(found)} folders for the {split} split "
                f"({', '.join(d.name for d in found)}); expected one"
            )
    used = {d for found in by_split.values() for d in found} | set(union)
    others = [d.name for d in subdirs if d not in used]
    if others:
        raise PetlError(
            f"image folder {root} has split folders ({', '.join(d.name for f in by_split.values() for d in f)}) "
            f"and other folders beside them ({', '.join(others)}); expected only train/, val/ and test/ split "
            f"folders, each with one subfolder per class"
        )
    if not by_split["val"] and not by_split["test"]:
        raise PetlError(
            f"image folder {root} has a {train[0].name}/ split folder but neither a val/ nor a test/ one; expected "
            f"val/ and/or test/ beside it (a missing one is drawn from train), or give {train[0]} as the dataset"
        )
    return {split: found[0] for split, found in by_split.items() if found}


def scan_folder(root: Path) -> FolderScan:
    """Find the classes and image files of ``root``, with or without predefined splits (module docstring).

    Raises:
        PetlError: a folder that breaks a rule, or split folders whose class folders differ (naming the split and
            the class).
    """
    if root.is_dir():
        splits = _split_folders(root)
    else:
        splits = {}
    if not splits:
        classes, files, rejected = _scan(root)
        return FolderScan(root, classes, list(classes), list(range(len(classes))), None, files, rejected)
    scanned = {split: _scan(folder) for split, folder in splits.items()}
    classes = scanned["train"][0]
    train_name = splits["train"].name
    for split, (names, _, _) in scanned.items():
        missing = [c for c in classes if c not in names]
        extra = [c for c in names if c not in classes]
        if missing or extra:
            which = (
                f"has no class folder {missing[0]!r}, which" if missing else f"has class folder {extra[0]!r}, which"
            )
            more = len(missing) + len(extra) - 1
            raise PetlError(
                f"image folder {root}: split folder {splits[split].name!r} {which} {train_name!r} "
                f"{'has' if missing else 'has not'}{f' ({more} more differ)' if more else ''}; expected the same "
                f"class folders in every split"
            )
    groups, group_class, group_split, files, rejected = [], [], [], [], []
    for split in SPLIT_NAMES:
        if split not in scanned:
            continue
        names, split_files, split_rejected = scanned[split]
        for c, fs in zip(names, split_files):
            groups.append(f"{splits[split].name}/{c}")
            group_class.append(classes.index(c))
            group_split.append(SPLIT_NAMES.index(split))
            files.append(fs)
        rejected += split_rejected
    folders = {split: folder.name for split, folder in splits.items()}
    return FolderScan(root, classes, groups, group_class, group_split, files, rejected, folders)


def _read(path: Path) -> np.ndarray:
    """Decode one file to ``uint8`` ``(H, W)`` (gray) or ``(H, W, 3)`` (colour)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("1", "L"):
                return np.asarray(img.convert("L"))
            if mode.startswith("I") or mode == "F":
                arr = np.asarray(img, dtype=np.float64)
                top = 1.0 if mode == "F" and arr.max() <= 1.0 else 65535.0 if arr.max() > 255 else 255.0
                return np.rint(np.clip(arr * (255.0 / top), 0, 255)).astype(np.uint8)
            has_alpha = "A" in mode or (mode == "P" and "transparency" in img.info)
            if has_alpha:
                rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)
                rgb = rgba[..., :3] * (rgba[..., 3:] / 255.0)  # composite onto black
                return np.rint(rgb).astype(np.uint8)
            return np.asarray(img.convert("RGB"))
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, EOFError... for broken files
        raise PetlError(f"cannot read image {path}: {type(e).__name__}: {e}; expected a valid image file") from None


def _try_read(path: Path) -> np.ndarray | str:
    """The decoded image, or the one-line reason it cannot be decoded (full decode: truncated files fail here)."""
    try:
        return _read(path)
    except PetlError as e:
        return str(e)


def _decode_error(path: Path) -> str | None:
    out = _try_read(path)
    return out if isinstance(out, str) else None


def find_bad_images(paths: Sequence[Path], workers: int | None = None) -> list[tuple[Path, str]]:
    """Decode every file (threads: PIL releases the GIL while decoding); ``(path, reason)`` of those that fail."""
    workers = workers or min(8, os.cpu_count() or 1)
    if workers == 1 or len(paths) < 64:
        errors = [_decode_error(p) for p in paths]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            errors = list(pool.map(_decode_error, paths, chunksize=64))
    return [(p, e) for p, e in zip(paths, errors) if e is not None]


def _list_bad(bad: Sequence[tuple[Path, str]], root: Path) -> str:
    names = ", ".join(str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p, _ in bad[:_NAMES_SHOWN])
    more = f" and {len(bad) - _NAMES_SHOWN:,} more" if len(bad) > _NAMES_SHOWN else ""
    return names + more


def drop_bad_images(
    root: Path,
    groups: list[str],
    files: list[list[Path]],
    skip_bad_images: bool,
    bad: Sequence[tuple[Path, str]] | None = None,
) -> list[list[Path]]:
    """Drop bad entries (undecodable files, and the non-image entries :func:`_scan` rejected) with a
    :class:`BadImagesWarning`, or raise one error naming them all.

    Args:
        groups: the folder of each group of ``files``, relative to ``root`` (a class, or ``split/class``).
        bad: ``(path, reason)`` already found; ``None`` decodes every file to find them (:func:`find_bad_images`).
            Entries not in ``files`` (a non-image file) count too.

    Raises:
        PetlError: bad files and ``skip_bad_images=False`` (their count, the first names and the first reason), or
            a class left without images after skipping.
    """
    bad = find_bad_images([p for fs in files for p in fs]) if bad is None else list(bad)
    if not bad:
        return files
    listed = {p for fs in files for p in fs}
    total = len(listed) + sum(p not in listed for p, _ in bad)
    if not skip_bad_images:
        if len(bad) == 1:
            raise PetlError(f"{bad[0][1]}; or skip it with --skip-bad-images (skip_bad_images=True)")
        raise PetlError(
            f"{len(bad):,} of {total:,} images in {root} cannot be read as images: {_list_bad(bad, root)}; first "
            f"error: {bad[0][1]}; fix or remove them, or skip them with --skip-bad-images (skip_bad_images=True)"
        )
    warnings.warn(
        f"skipped {len(bad):,} of {total:,} images in {root} that cannot be read as images: {_list_bad(bad, root)}",
        BadImagesWarning,
        stacklevel=3,
    )
    dropped = {p for p, _ in bad}
    kept = [[p for p in fs if p not in dropped] for fs in files]
    for name, fs in zip(groups, kept):
        if not fs:
            raise PetlError(f"class folder {root / name} has no decodable images; expected at least one")
    return kept


def _is_colour(arr: np.ndarray) -> bool:
    return arr.ndim == 3 and not (arr == arr[..., :1]).all()


def _to_mode_and_size(arr: np.ndarray, mode: str, size: tuple[int, int]) -> np.ndarray:
    """``(H, W[, 3])`` uint8 -> ``(C, h, w)`` uint8 in ``mode`` at ``size = (h, w)``."""
    from PIL import Image

    img = Image.fromarray(arr)
    if img.mode != mode:
        img = img.convert(mode)  # L -> RGB repeats; RGB -> L is BT.601 luma, as in to_model_input
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    out = np.asarray(img)
    return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)


def load_image_folder(
    path: str | Path,
    image_size: int | None = None,
    mode: Literal["L", "RGB"] | None = None,
    skip_bad_images: bool = False,
) -> ImageDataset:
    """Load ``path/<class>/<image>`` files into memory (rules in the module docstring).

    Args:
        path: the root folder.
        image_size: resize every image to ``image_size x image_size``; None keeps a shared size, or uses the most
            common one when sizes differ.
        mode: ``"L"`` (1 channel), ``"RGB"`` (3 channels) or None (RGB only if some image has colour).
        skip_bad_images: leave out files that cannot be decoded (with a :class:`BadImagesWarning` naming them)
            instead of raising one error that names them.

    Returns:
        ``ImageDataset`` with images uint8 ``(N, C, H, W)``, labels int64 ``(N,)`` in class order then file-name
        order (split first for a folder with splits), ``classes`` the subfolder names, ``name``
        ``"folder:<absolute path>"`` and ``predefined`` the split of each image (a folder with splits) or None.
    """
    if mode not in (None, "L", "RGB"):
        raise PetlError(f"image mode {mode!r} is not supported; expected 'L', 'RGB' or None")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise PetlError(f"image_size must be a positive integer or None; got {image_size!r}")
    root = Path(path).expanduser().resolve()
    scan = scan_folder(root)
    decoded = {p: _try_read(p) for fs in scan.files for p in fs}
    bad = scan.rejected + [(p, out) for p, out in decoded.items() if isinstance(out, str)]
    files = drop_bad_images(root, scan.groups, scan.files, skip_bad_images, bad=bad)
    arrays = [[decoded[p] for p in fs] for fs in files]
    flat = [a for per_class in arrays for a in per_class]
    if mode is None:
        mode = "RGB" if any(_is_colour(a) for a in flat) else "L"
    if image_size is not None:
        size = (image_size, image_size)
    else:
        counts = Counter(a.shape[:2] for a in flat)
        # Most common size; ties go to the larger image so that no information is thrown away needlessly.
        size = max(counts, key=lambda hw: (counts[hw], hw[0] * hw[1], hw))
    images = np.stack([_to_mode_and_size(a, mode, size) for a in flat])
    labels = torch.from_numpy(scan.labels(files))
    return ImageDataset(torch.from_numpy(images), labels, scan.classes, f"folder:{root}", scan.predefined(files))


def class_folder_names(classes: list[str]) -> list[str]:
    """Sub-folder names that the folder reader sorts back into ``classes``' order (prefixed by index if not)."""
    safe = all(c and c == c.strip() and "/" not in c and "\\" not in c and not c.startswith(".") for c in classes)
    if safe and sorted(classes) == list(classes) and len(set(classes)) == len(classes):
        return list(classes)
    width = len(str(len(classes) - 1))
    return [f"{i:0{width}d}" for i in range(len(classes))]


def write_image_folder(
    ds: ImageDataset,
    path: str | Path,
    *,
    metadata: Artefact | None = None,
    metadata_file: str = "dataset.json",
    overwrite: bool = False,
) -> Path:
    """Write ``ds`` as ``path/<class>/<index>.png`` (plus the artefact ``metadata`` saved as ``path/<metadata_file>``).

    Written into a temporary sibling folder and renamed into place, so ``path`` is either absent, the old folder or
    the complete new one. A dataset with predefined splits is written as ``path/<split>/<class>/<index>.png`` (its
    split folders' names), so reading it back keeps them. Reading it back (``load_dataset(path)``) gives identical ``uint8`` pixels and labels in
    class-then-index order; the reader ignores regular files in the root, so the metadata travels with the images.
    Class folders keep the class names when the reader's name sort keeps their order, else they are ``0``, ``1``...
    (:func:`class_folder_names`; a metadata artefact records the names, e.g. the planted task's ``classes``).

    Raises:
        PetlError: ``path`` exists and ``overwrite`` is False.
    """
    from PIL import Image

    root = Path(path).expanduser().absolute()
    if root.exists() and not overwrite:
        raise PetlError(f"{root} already exists; remove it or pass overwrite=True")
    parent = ensure_writable_dir(root.parent)
    names = class_folder_names(ds.classes)
    width = len(str(max(0, len(ds) - 1)))
    given = ds.predefined
    codes = given.codes.tolist() if given is not None else [None] * len(ds)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=parent))
    try:
        for split in given.names.values() if given is not None else [""]:
            for name in names:
                (tmp / split / name).mkdir(parents=True)
        images = ds.images.numpy()
        for i, (img, y, code) in enumerate(zip(images, ds.labels.tolist(), codes)):
            arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
            split = given.names[SPLIT_NAMES[code]] if given is not None else ""
            Image.fromarray(np.ascontiguousarray(arr), mode="L" if img.shape[0] == 1 else "RGB").save(
                tmp / split / names[y] / f"{i:0{width}d}.png"
            )
        if metadata is not None:
            metadata.save(tmp / metadata_file)
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0o700
        old = None
        if root.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=parent))
            os.replace(root, old / "x")
        os.replace(tmp, root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
