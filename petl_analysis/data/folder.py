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
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from ..errors import PetlError
from ..io import current_umask, ensure_writable_dir
from .dataset import ImageDataset

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
    classes: list[str],
    files: list[list[Path]],
    skip_bad_images: bool,
    bad: Sequence[tuple[Path, str]] | None = None,
) -> list[list[Path]]:
    """Drop bad entries (undecodable files, and the non-image entries :func:`_scan` rejected) with a
    :class:`BadImagesWarning`, or raise one error naming them all.

    Args:
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
    for name, fs in zip(classes, kept):
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
        order, ``classes`` the subfolder names and ``name`` ``"folder:<absolute path>"``.
    """
    if mode not in (None, "L", "RGB"):
        raise PetlError(f"image mode {mode!r} is not supported; expected 'L', 'RGB' or None")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise PetlError(f"image_size must be a positive integer or None; got {image_size!r}")
    root = Path(path).expanduser().resolve()
    classes, files, rejected = _scan(root)
    decoded = {p: _try_read(p) for fs in files for p in fs}
    bad = rejected + [(p, out) for p, out in decoded.items() if isinstance(out, str)]
    files = drop_bad_images(root, classes, files, skip_bad_images, bad=bad)
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
    labels = np.concatenate([np.full(len(fs), i, dtype=np.int64) for i, fs in enumerate(files)])
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), classes, f"folder:{root}")


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
    the complete new one. Reading it back (``load_dataset(path)``) gives identical ``uint8`` pixels and labels in
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=parent))
    try:
        for name in names:
            (tmp / name).mkdir()
        images = ds.images.numpy()
        for i, (img, y) in enumerate(zip(images, ds.labels.tolist())):
            arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
            Image.fromarray(np.ascontiguousarray(arr), mode="L" if img.shape[0] == 1 else "RGB").save(
                tmp / names[y] / f"{i:0{width}d}.png"
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
