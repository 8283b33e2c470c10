"""A *task*: a dataset split for a given model, ready for the engine.

``DataSpec`` (serialisable: dataset name + split protocol) and ``ModelSpec`` identify a run; :func:`build_task`
turns them into train/val/test data shaped for the model, and :func:`prepare_model` builds the backbone with a
fresh classifier for the task's classes. Linear probing (the head trained on features extracted once) is
:mod:`petl_analysis.linear_probe`; its names still import from here.

Built-in datasets become in-memory ``TensorDataset`` splits (:func:`~petl_analysis.data.to_model_input`); an image
folder becomes streamed splits (:class:`~petl_analysis.data.StreamingImages`, timm's transforms for the model),
whose frozen features are cached on disk (:mod:`petl_analysis.features`); so do a timm source and Python datasets
(:mod:`petl_analysis.data.sources`), uncached. The engine takes either.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from .constraints import Unset, validate_fields
from .data import (
    ImageDataset,
    ImageFiles,
    SplitSpec,
    StreamingImages,
    make_splits,
    open_dataset,
    stream_split,
    to_model_input,
)
from .data.sources import DatasetItems, is_python_dataset, is_timm_source
from .data.splits import SplitRecord
from .engine import Examples, seed_everything
from .errors import PetlError
from .linear_probe import extract_features, fit_linear_probe  # noqa: F401 - moved; importable from here as before
from .models import ModelSpec, create_model, model_input_config

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch.utils.data import Dataset


@dataclass
class DataSpec:
    """A dataset and the split protocol (stored in every artefact).

    ``dataset``: a built-in name, an image-folder path (with or without ``train/``, ``val/``, ``test/`` split
    folders), a timm source (``torch/NAME``, ``hfds/NAME``, ``wds/NAME``) read from ``data_dir``, or Python datasets
    registered by :meth:`from_datasets` (``python:NAME``).
    ``skip_bad_images``: leave out a folder's undecodable files (with a warning naming them) instead of failing.
    ``data_dir``: where a timm source's files are (``--data-dir``); None for other datasets.
    ``removed``: what deduplication left out before splitting (``{"groups", "duplicates", "conflicting"}``, see
    :func:`~petl_analysis.data.splits.deduplicate`), filled by :func:`data_record` for artefacts; None in a spec not
    yet opened, with ``split.dedup`` off, and in artefacts written before it was recorded.
    ``split_record``: which split was used (predefined by the dataset or random, where from, the counts:
    :class:`~petl_analysis.data.splits.SplitRecord`), filled by :func:`data_record`; None in a spec not yet opened
    and in artefacts written before it was recorded. ``removed`` and ``split_record`` are records, not inputs: trial
    keys and equality leave them out.
    """

    dataset: str = "digits"
    split: SplitSpec = field(default_factory=SplitSpec)
    skip_bad_images: bool = False
    removed: dict[str, int] | None = field(default=None, compare=False)
    data_dir: str | None = None
    split_record: SplitRecord | None = field(default=None, compare=False)

    #: Added after trial logs existed: left out of trial keys at its default (see ``trials.key_json``).
    KEY_OMIT_IF_DEFAULT: ClassVar[tuple[str, ...]] = ("skip_bad_images", "data_dir")
    #: Left out of trial keys: a record of what opening the data did, not which data to use.
    KEY_OMIT: ClassVar[tuple[str, ...]] = ("removed", "split_record")
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "dataset": [str, os.PathLike],
        "split": [SplitSpec],
        "skip_bad_images": ["boolean"],
        "removed": [dict, Unset("not recorded")],
        "data_dir": [str, os.PathLike, Unset("a dataset that is not a timm source")],
        "split_record": [SplitRecord, Unset("not recorded")],
    }

    def __post_init__(self) -> None:
        validate_fields(self)

    @classmethod
    def from_datasets(
        cls,
        train: Dataset,
        val: Dataset | None = None,
        test: Dataset | None = None,
        *,
        name: str,
        classes: Sequence[str] | None = None,
        split: SplitSpec | None = None,
    ) -> DataSpec:
        """A spec of map-style ``torch.utils.data.Dataset`` objects given per split, for stages run in this process.

        Items are ``(image, label)``: a PIL image, an image tensor ``(C, H, W)`` or an array ``(H, W[, C])``, and an
        integer label. The given splits are kept; a missing val or test is drawn from ``train`` by ``split``'s
        fractions and seed. The datasets are registered under ``python:<name>``
        (:func:`~petl_analysis.data.sources.register_datasets`): trials in worker processes cannot open them, so a
        :class:`~petl_analysis.study.Study` on them refuses ``n_jobs > 1`` and the dask backend. ``name`` stands
        for the data in trial logs: give other data another name.

        Args:
            classes: class names (default: ``train.classes`` if it has them, else ``"0"``, ``"1"``, ...).
        """
        from .data.sources import register_datasets

        return cls(register_datasets(name, train, val, test, classes), split if split is not None else SplitSpec())

    def for_seed(self, seed: int) -> DataSpec:
        """The data of one seed: each seed draws its own k-shot sample (``shot_seed = seed``); val and test stay."""
        if self.split.shots is None:
            return self
        return dataclasses.replace(self, split=dataclasses.replace(self.split, shot_seed=seed))


#: Notes for the user (an input conversion); the CLI prints them, a library user may attach a handler.
logger = logging.getLogger("petl_analysis")
_CHANNEL_NAMES = {1: "grayscale", 3: "RGB"}


@dataclass
class InputConversion:
    """How a dataset's stored images become a model's input (recorded in the probe, run and sweep artefacts).

    Attributes:
        source_channels, source_size: channels and ``[H, W]`` of the stored images.
        model_channels, model_size: channels and ``[H, W]`` the model takes (``in_chans``, ``img_size``).
        skipped_images: entries of an image folder left out because they could not be read as images
            (``skip_bad_images``): the report names them.
    """

    source_channels: int
    source_size: list[int]
    model_channels: int
    model_size: list[int]
    skipped_images: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.source_channels != self.model_channels or list(self.source_size) != list(self.model_size)

    @property
    def lossy(self) -> bool:
        """Colour dropped or pixels lost (a downscale): what a user should hear about before a run."""
        return self.model_channels < self.source_channels or any(
            m < src for m, src in zip(self.model_size, self.source_size)
        )

    def describe(self) -> str:
        """One line, e.g. ``3x32x32 RGB images -> 1x16x16 grayscale for the model (RGB to luma, resized)``."""

        def shape(c: int, hw: list[int]) -> str:
            return f"{c}x{hw[0]}x{hw[1]} {_CHANNEL_NAMES.get(c, f'{c}-channel')}"

        src, dst = shape(self.source_channels, self.source_size), shape(self.model_channels, self.model_size)
        if not self.changed:
            return f"{src} images, as the model takes them"
        how = []
        if self.source_channels != self.model_channels:
            how.append("RGB to BT.601 luma" if self.model_channels == 1 else "gray repeated to RGB")
        if list(self.source_size) != list(self.model_size):
            how.append("bilinear resize")
        return f"{src} images -> {dst} for the model ({', '.join(how)})"


#: PIL modes that hold one channel.
_GRAY_MODES = ("1", "L", "I", "I;16", "F")


def input_conversion(ds: ImageDataset | ImageFiles | DatasetItems, model: nn.Module) -> InputConversion:
    """The conversion :func:`build_task` applies to ``ds`` for ``model``."""
    cfg = model_input_config(model)
    if isinstance(ds, DatasetItems):  # streamed items: the first one stands for the dataset
        img = ds.image(0)
        channels, size = (1 if img.mode in _GRAY_MODES else 3), [img.height, img.width]
    elif isinstance(ds, ImageFiles):  # streamed: files may differ, so the first one stands for the folder
        from PIL import Image

        with Image.open(ds.paths[0]) as img:
            channels, size = (1 if img.mode in _GRAY_MODES else 3), [img.height, img.width]
    else:
        channels, size = ds.channels, list(ds.image_size)
    return InputConversion(
        channels, size, int(cfg["in_chans"]), [int(cfg["img_size"])] * 2, list(getattr(ds, "skipped", []))
    )


def announce(conversion: InputConversion, dataset: str) -> None:
    """Log a conversion that loses colour or pixels (INFO on the ``petl_analysis`` logger; the CLI prints it).

    An upscale or gray repeated to RGB loses nothing and is only recorded (artefact, report).
    """
    if conversion.lossy:
        logger.info(
            "dataset %r: %s; set in_chans / img_size (--in-chans / --img-size) to change this",
            dataset,
            conversion.describe(),
        )


def data_record(data: DataSpec, ds: ImageDataset | ImageFiles | DatasetItems) -> DataSpec:
    """``data`` with the records of what deduplication removes from ``ds`` and of the split it makes (the form
    artefacts store)."""
    splits = make_splits(ds, data.split)
    return dataclasses.replace(data, removed=splits.removed if data.split.dedup else None, split_record=splits.record)


def announce_split(data: DataSpec) -> None:
    """Log (INFO, the CLI prints it) the split in use when the dataset gave it (predefined splits are kept, so a user
    sees which folders became which split)."""
    record = data.split_record
    if record is not None and record.kind == "predefined":
        logger.info("dataset %r: %s", data.dataset, record.describe(data.split))


def announce_removed(data: DataSpec) -> None:
    """Log (INFO, the CLI prints it) a one-line note when deduplication removed images before splitting, and when
    predefined splits share identical images (they are kept where the dataset puts them)."""
    shared = data.split_record.shared if data.split_record is not None else {}
    if shared:
        pairs = ", ".join(f"{n:,} between {pair.replace('/', ' and ')}" for pair, n in shared.items())
        logger.info(
            "dataset %r: identical images in two of its predefined splits (%s); kept where the dataset puts them",
            data.dataset,
            pairs,
        )
    r = data.removed
    if r and (r.get("duplicates") or r.get("conflicting")):
        conflicting = f" and {r['conflicting']:,} whose copies carry different labels" if r.get("conflicting") else ""
        logger.info(
            "dataset %r: removed %s duplicate image(s) (%s identical groups)%s before splitting; "
            "--keep-duplicates (SplitSpec(dedup=False)) keeps them",
            data.dataset,
            f"{r.get('duplicates', 0):,}",
            f"{r.get('groups', 0):,}",
            conflicting,
        )


def dataset_identity(name: str) -> str:
    """What a dataset name refers to: a built-in name as is, an image folder as its absolute path."""
    from .data.builtin import DATASETS

    name = str(name)
    if name in DATASETS or is_timm_source(name) or is_python_dataset(name):
        return name
    path = name[len("folder:") :] if name.startswith("folder:") else name
    return f"folder:{Path(path).expanduser().resolve()}"


def same_dataset(a: str, b: str) -> bool:
    """Whether two dataset names (``digits``, ``./imgs``, ``folder:/abs/imgs``) refer to the same data."""
    return dataset_identity(a) == dataset_identity(b)


#: The fields that decide which network, with which weights, a spec builds (the head size and the load record aside).
_MODEL_IDENTITY = ("name", "weights", "img_size", "in_chans", "patch_size", "kwargs")


def _model_text(spec: ModelSpec) -> str:
    """``name (weights=..., img_size=...)``: the identity fields that are set."""
    set_fields = [f"{k}={getattr(spec, k)}" for k in _MODEL_IDENTITY[1:] if getattr(spec, k) not in (None, {})]
    return f"{spec.name} ({', '.join(set_fields)})"


def same_model(a: ModelSpec, b: ModelSpec) -> bool:
    """Whether two specs build the same network with the same weights (the head size aside): what a ranking or a
    plan measured on one model says nothing about another."""
    return all(getattr(a, k) == getattr(b, k) for k in _MODEL_IDENTITY)


def require_same_model(made_on: ModelSpec, given: ModelSpec, what: str, advice: str) -> None:
    """Refuse ``given`` unless it is the model ``what`` (e.g. ``"ranking 'r.json'"``) was made on."""
    if not same_model(made_on, given):
        raise PetlError(f"{what} was made on model {_model_text(made_on)}, not {_model_text(given)}; {advice}")


@dataclass
class Task:
    """Train/val/test data for one model (inputs resized, channel-converted and normalised).

    Each split is an in-memory ``TensorDataset`` (built-ins) or a :class:`StreamingImages` (folders, timm sources,
    Python datasets).
    ``train_plain`` is the training split without augmentation, for frozen features (``None``: ``train``).
    """

    train: Examples
    val: Examples
    test: Examples
    classes: list[str]
    data: DataSpec
    conversion: InputConversion | None = None
    train_plain: Examples | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def open_data(data: DataSpec) -> ImageDataset | ImageFiles | DatasetItems:
    """The dataset ``data`` names, opened (:func:`~petl_analysis.data.open_dataset` with its options)."""
    return open_dataset(data.dataset, skip_bad_images=data.skip_bad_images, data_dir=data.data_dir)


def build_task(
    data: DataSpec,
    model: nn.Module,
    dataset: ImageDataset | ImageFiles | DatasetItems | None = None,
    *,
    augment: bool = False,
    num_workers: int | None = None,
) -> Task:
    """Open (or take) the dataset, split it by ``data.split``, and prepare each split for ``model``.

    Args:
        dataset: the opened dataset (default: :func:`open_data`). An :class:`ImageFiles` or a
            :class:`~petl_analysis.data.sources.DatasetItems` is streamed.
        augment: timm's training augmentation on a streamed training split (in-memory data is never augmented).
        num_workers: DataLoader workers of streamed splits (default: ``default_num_workers()``).
    """
    ds = dataset if dataset is not None else open_data(data)
    splits = make_splits(ds, data.split)
    if isinstance(ds, (ImageFiles, DatasetItems)):

        def stream(files: ImageFiles | DatasetItems, aug: bool = False) -> StreamingImages:
            return stream_split(files, model, augment=aug, num_workers=num_workers)

        plain = stream(splits.train)
        train = stream(splits.train, True) if augment else plain
        return Task(
            train,
            stream(splits.val),
            stream(splits.test),
            list(ds.classes),
            data,
            conversion=input_conversion(ds, model),
            train_plain=plain if augment else None,
        )
    cfg = model_input_config(model)
    convert = lambda d: to_model_input(d, cfg["img_size"], cfg["in_chans"], cfg["mean"], cfg["std"])  # noqa: E731
    return Task(
        convert(splits.train),
        convert(splits.val),
        convert(splits.test),
        list(ds.classes),
        data,
        input_conversion(ds, model),
    )


def prepare_model(spec: ModelSpec, num_classes: int, seed: int = 0) -> nn.Module:
    """Create the backbone with a freshly initialised ``num_classes`` head (seeded, so runs are reproducible)."""
    seed_everything(seed)
    return create_model(spec, num_classes=num_classes)
