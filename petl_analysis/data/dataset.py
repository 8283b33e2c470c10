"""The in-memory image dataset every stage works on, and its conversion to model input.

An :class:`ImageDataset` holds raw ``uint8`` pixels, so it is small, exact and independent of any model; the model's
resolution, channel count and normalisation are applied only by :func:`to_model_input`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from ..errors import PetlError

# ITU-R BT.601 luma, the weights PIL uses for convert("L"), so folder images and converted tensors agree.
_LUMA = (0.299, 0.587, 0.114)
# Images converted per interpolate call: bounds the float32 intermediate (4096 x 3 x 224 x 224 is ~2.5 GB).
_CHUNK = 4096


#: The three splits, in the order a dataset lists them; :attr:`PredefinedSplits.codes` indexes this.
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class PredefinedSplits:
    """The split each image of a dataset is given by its source (an image folder's ``train/``, ``val/``, ``test/``
    subfolders, datasets given per split), kept by :func:`~petl_analysis.data.make_splits` instead of a random split.

    Attributes:
        codes: ``int64`` tensor ``(N,)``, each an index into :data:`SPLIT_NAMES` (0 train, 1 val, 2 test).
        source: where the splits come from, in words (``folder /data/x``, ``timm torch/mnist in /data``,
            ``Python datasets``).
        names: each given split's name in the source (``{"train": "train800", "val": "val200", "test": "test"}``);
            a split it lacks is absent (drawn from train by the split's fractions).
    """

    codes: torch.Tensor
    source: str
    names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "train" not in self.names or not set(self.names) <= set(SPLIT_NAMES) or len(self.names) < 2:
            raise PetlError(
                f"predefined splits of {self.source}: got {', '.join(self.names) or 'none'}; expected train and at "
                f"least one of val, test"
            )

    def subset(self, idx: torch.Tensor | np.ndarray | Sequence[int] | slice) -> PredefinedSplits:
        """The codes of the images at ``idx`` (as :meth:`ImageDataset.subset` indexes)."""
        if not isinstance(idx, slice):
            idx = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx)
            if idx.dtype != torch.bool:
                idx = idx.to(torch.int64).reshape(-1)
        return PredefinedSplits(self.codes[idx], self.source, dict(self.names))


@dataclass
class ImageDataset:
    """A labelled image set held in memory.

    Attributes:
        images: ``uint8`` tensor of shape ``(N, C, H, W)`` with ``C`` in ``{1, 3}`` (1 = grayscale).
        labels: ``int64`` tensor of shape ``(N,)``, values in ``[0, num_classes)``.
        classes: class names; ``labels == i`` means ``classes[i]``.
        name: where the data came from, e.g. ``"digits"`` or ``"folder:/abs/path"``; :func:`load_dataset` accepts it
            back.
        predefined: the split of each image, when the source gives them (a folder with ``train/`` and ``test/``
            subfolders); None: :func:`~petl_analysis.data.make_splits` draws them.

    Built-in loaders return fresh tensors on every call, so in-place edits never leak into a cache.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    predefined: PredefinedSplits | None = None

    def __post_init__(self) -> None:
        im, lb = self.images, self.labels
        if not isinstance(im, torch.Tensor) or im.dtype != torch.uint8 or im.ndim != 4 or im.shape[1] not in (1, 3):
            got = f"{getattr(im, 'dtype', type(im).__name__)} {tuple(getattr(im, 'shape', ()))}"
            raise PetlError(
                f"dataset {self.name!r}: images must be a uint8 tensor (N, C, H, W) with C in {{1, 3}}; got {got}"
            )
        if not isinstance(lb, torch.Tensor) or lb.dtype != torch.int64 or lb.shape != (im.shape[0],):
            got = f"{getattr(lb, 'dtype', type(lb).__name__)} {tuple(getattr(lb, 'shape', ()))}"
            raise PetlError(
                f"dataset {self.name!r}: labels must be an int64 tensor of shape ({im.shape[0]},); got {got}"
            )
        self.classes = [str(c) for c in self.classes]
        if self.predefined is not None and tuple(self.predefined.codes.shape) != (im.shape[0],):
            raise PetlError(
                f"dataset {self.name!r}: predefined split codes must have shape ({im.shape[0]},); got "
                f"{tuple(self.predefined.codes.shape)}"
            )
        if len(lb) and (int(lb.min()) < 0 or int(lb.max()) >= len(self.classes)):
            raise PetlError(
                f"dataset {self.name!r}: labels must lie in [0, {len(self.classes)}) for {len(self.classes)} classes; "
                f"got range [{int(lb.min())}, {int(lb.max())}]"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the stored images."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def class_counts(self) -> list[int]:
        """Images per class, length ``num_classes`` (zeros included)."""
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def subset(self, idx: torch.Tensor | np.ndarray | Sequence[int] | slice) -> ImageDataset:
        """The images at ``idx`` (integer indices, a boolean mask of length N, or a slice); same classes and name.

        The result owns its tensors (advanced indexing copies), except for a slice, which is a view.
        """
        if not isinstance(idx, slice):
            idx = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx)
            if idx.dtype != torch.bool:
                idx = idx.to(torch.int64).reshape(-1)
        predefined = self.predefined.subset(idx) if self.predefined is not None else None
        return ImageDataset(self.images[idx], self.labels[idx], list(self.classes), self.name, predefined)

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return f"ImageDataset(name={self.name!r}, n={n}, channels={c}, size={h}x{w}, classes={self.num_classes})"


def _per_channel(values: Sequence[float], in_chans: int, what: str) -> torch.Tensor:
    vals = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(vals) == 1:
        vals = vals * in_chans
    if len(vals) != in_chans:
        raise PetlError(f"{what} has {len(vals)} values; expected 1 or in_chans={in_chans}")
    return torch.tensor(vals, dtype=torch.float32).view(1, in_chans, 1, 1)


def convert_channels(x: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Float ``(N, C, H, W)`` -> ``(N, in_chans, H, W)``: gray->RGB repeats, RGB->gray takes BT.601 luminance."""
    c = x.shape[1]
    if c == in_chans:
        return x
    if c == 1 and in_chans == 3:
        return x.expand(-1, 3, -1, -1)
    if c == 3 and in_chans == 1:
        w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True)
    raise PetlError(f"cannot convert {c}-channel images to in_chans={in_chans}; expected in_chans 1 or 3")


def to_model_input(
    ds: ImageDataset,
    img_size: int,
    in_chans: int,
    mean: Sequence[float] = (0.5,),
    std: Sequence[float] = (0.5,),
) -> TensorDataset:
    """Turn raw pixels into normalised model input.

    Steps: ``uint8 -> [0, 1]``, channel conversion (see :func:`convert_channels`), bilinear resize with antialias to
    ``img_size x img_size`` (skipped when already that size), then ``(x - mean) / std`` per channel.

    Args:
        ds: the dataset; not modified.
        img_size: output side length in pixels.
        in_chans: 1 or 3.
        mean, std: length ``in_chans``, or length 1 to broadcast.

    Returns:
        ``TensorDataset(x, y)`` with ``x`` float32 ``(N, in_chans, img_size, img_size)`` and ``y`` int64 ``(N,)``.
        Pure and deterministic: same input, same output.
    """
    if int(img_size) < 1:
        raise PetlError(f"img_size must be a positive integer; got {img_size}")
    if in_chans not in (1, 3):
        raise PetlError(f"in_chans must be 1 or 3; got {in_chans}")
    m = _per_channel(mean, in_chans, "mean")
    s = _per_channel(std, in_chans, "std")
    if bool((s <= 0).any()):
        raise PetlError(f"std must be positive; got {tuple(s.flatten().tolist())}")
    n = len(ds)
    out = torch.empty((n, in_chans, img_size, img_size), dtype=torch.float32)
    for start in range(0, n, _CHUNK):
        x = ds.images[start : start + _CHUNK].to(torch.float32).div_(255.0)
        # Resize on the fewer channels: both steps are linear per pixel, so the order does not change the result.
        if x.shape[1] > in_chans:
            x = convert_channels(x, in_chans)
        if x.shape[-2:] != (img_size, img_size):
            x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False, antialias=True)
        x = convert_channels(x, in_chans)
        out[start : start + _CHUNK] = (x - m) / s
    return TensorDataset(out, ds.labels.clone())
