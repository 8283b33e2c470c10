"""Data layer: offline built-in datasets, image folders, splits and conversion to model input.

>>> from petl_analysis.data import load_dataset, make_splits, SplitSpec, to_model_input
>>> ds = load_dataset("digits")                      # or "mnist5k", "animals", "glyphs", or a folder path
>>> splits = make_splits(ds, SplitSpec(shots=10))   # test set fixed by split_seed alone
>>> train = to_model_input(splits.train, img_size=16, in_chans=1, mean=(0.5,), std=(0.5,))

Image folders of any size: ``open_dataset(path)`` indexes the files (:class:`ImageFiles`, no pixels), and
:func:`stream_split` decodes one split lazily with the model's timm transforms. A folder with ``train/``, ``val/``,
``test/`` split folders keeps its splits (:class:`PredefinedSplits`); timm's sources (``torch/NAME``, ...) and
``Dataset`` objects from Python are indexed as :class:`DatasetItems` (:mod:`.sources`).
"""

from .builtin import ANIMAL_CLASSES, DATASETS, builtin_names, load_dataset, open_dataset
from .dataset import SPLIT_NAMES, ImageDataset, PredefinedSplits, convert_channels, to_model_input
from .folder import (
    IMAGE_EXTENSIONS,
    SPLIT_FOLDERS,
    BadImagesWarning,
    find_bad_images,
    load_image_folder,
    write_image_folder,
)
from .glyphs import glyph_bank, glyph_classes, glyph_fonts, render_glyphs
from .sources import DatasetItems, register_datasets
from .splits import SplitRecord, Splits, SplitSpec, make_splits, sample_k_shot
from .stream import ImageFiles, StreamingImages, model_data_config, model_transform, open_image_files, stream_split

__all__ = [
    "ANIMAL_CLASSES",
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "SPLIT_FOLDERS",
    "SPLIT_NAMES",
    "BadImagesWarning",
    "DatasetItems",
    "ImageDataset",
    "ImageFiles",
    "PredefinedSplits",
    "SplitRecord",
    "SplitSpec",
    "Splits",
    "StreamingImages",
    "builtin_names",
    "convert_channels",
    "find_bad_images",
    "glyph_bank",
    "glyph_classes",
    "glyph_fonts",
    "load_dataset",
    "load_image_folder",
    "make_splits",
    "model_data_config",
    "model_transform",
    "open_dataset",
    "open_image_files",
    "register_datasets",
    "render_glyphs",
    "sample_k_shot",
    "stream_split",
    "to_model_input",
    "write_image_folder",
]
