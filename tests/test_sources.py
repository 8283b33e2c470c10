"""Datasets that are not image folders: timm sources read from a data dir (never downloaded), Dataset objects."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny
from PIL import Image
from torch.utils.data import Dataset
from typer.testing import CliRunner

from petl_analysis.cli.main import app
from petl_analysis.data import SplitSpec, make_splits, open_dataset
from petl_analysis.data.sources import DatasetItems, open_timm_source, source_splits
from petl_analysis.engine import Recipe
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec
from petl_analysis.study import Study
from petl_analysis.task import DataSpec, build_task, dataset_identity


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETL_ANALYSIS_CACHE", str(tmp_path / "cache"))


def one_line_error(excinfo: pytest.ExceptionInfo[PetlError]) -> str:
    msg = str(excinfo.value)
    assert excinfo.type is PetlError and "\n" not in msg and msg
    return msg


def _idx(path: Path, arr: np.ndarray) -> None:
    """An MNIST idx file (big-endian magic: uint8, ``ndim`` dimensions; then the sizes and the bytes)."""
    header = struct.pack(">I", 0x0800 + arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def fake_mnist(root: Path, n_train: int = 40, n_test: int = 20) -> Path:
    """torchvision's MNIST files, tiny and local: what ``torch/mnist`` reads with ``download=False``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        images[np.arange(n), labels, :] = 250  # the class is a bright row
        _idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


# ------------------------------------------------------------------------------------------------ timm sources


def test_torch_mnist_from_local_files_keeps_its_test_split_and_draws_val(tmp_path: Path) -> None:
    root = fake_mnist(tmp_path / "data")
    items = open_dataset("torch/mnist", data_dir=str(root))
    assert isinstance(items, DatasetItems) and len(items) == 60 and items.num_classes == 10
    assert items.classes[0] == "0 - zero"  # torchvision's class names
    s = make_splits(items, SplitSpec(val_fraction=0.25))
    assert s.sizes() == {"train": 30, "val": 10, "test": 20}  # 1 of each class's 4 train images to val
    assert set(s.test.refs[:, 0].tolist()) == {1} and set(s.val.refs[:, 0].tolist()) == {0}  # test is t10k
    assert s.record.kind == "predefined" and s.record.drawn == ["val"]
    assert s.record.describe(s.spec).startswith(
        f"predefined: train/test from timm torch/mnist in {root} (train 30 / val 10 / test 20 images); val drawn"
    )
    img = s.test.image(0)
    assert img.size == (28, 28) and img.mode == "L"
    assert dataset_identity("torch/mnist") == "torch/mnist"  # a source name, not a relative path


def test_a_probe_trains_on_a_timm_source(tmp_path: Path) -> None:
    from petl_analysis.probe import ProbeConfig, run_probe

    root = fake_mnist(tmp_path / "data")
    recipe = Recipe(epochs=1, batch_size=8, lr=1e-2, max_steps=2)
    data = DataSpec("torch/mnist", SplitSpec(shots=2), data_dir=str(root))
    result = run_probe(
        ModelSpec("petl_vit_tiny"), data, ProbeConfig(targets=["attn.v"], dims=[4], seeds=1, recipe=recipe)
    )
    assert result.failed_trials == 0 and result.data.data_dir == str(root)
    assert result.data.split_record.source == f"timm torch/mnist in {root}"
    assert result.data.split_record.counts == {"train": 20, "val": 10, "test": 20}


def test_a_source_that_is_not_there_is_one_line_and_nothing_is_downloaded(tmp_path: Path, monkeypatch) -> None:
    import socket

    tried = []

    def no_network(*args, **kwargs):
        tried.append(args)  # recorded: the source's own error handling would swallow an exception
        raise OSError("no network in tests")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: no_network(*a))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PetlError) as e:
        open_dataset("torch/cifar10", data_dir=str(empty))
    msg = one_line_error(e)
    assert f"dataset 'torch/cifar10': cannot open its train split in {empty}" in msg
    assert "nothing is downloaded at run time" in msg and not tried
    with pytest.raises(PetlError) as e:
        open_dataset("torch/mnist")
    assert "give it with --data-dir" in one_line_error(e)
    with pytest.raises(PetlError) as e:
        open_dataset("torch/mnist", data_dir=str(tmp_path / "nowhere"))
    assert "does not exist" in one_line_error(e)


def test_source_names_are_parsed_and_checked() -> None:
    assert source_splits("torch/CIFAR10") == {"train": "train", "test": "test"}
    assert source_splits("torch/imagenet") == {"train": "train", "val": "validation"}
    assert source_splits("hfds/user/beans") == {"train": "train", "val": "validation", "test": "test"}
    assert source_splits("wds/vtab") == {"train": "train", "val": "validation", "test": "test"}
    for name, expected in (
        ("torch/svhnx", "is not a torchvision dataset timm opens; expected one of torch/cifar10"),
        ("torch/folder", "give an image folder's path as the dataset instead"),
        ("hfds/", "names no dataset after hfds/"),
    ):
        with pytest.raises(PetlError) as e:
            source_splits(name)
        assert expected in one_line_error(e)


@pytest.mark.parametrize(("name", "package"), [("hfds/user/beans", "datasets"), ("wds/shards", "webdataset")])
def test_a_source_whose_package_is_missing_says_which(name, package, tmp_path, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == package else real(n, *a))
    with pytest.raises(PetlError) as e:
        open_timm_source(name, tmp_path)
    assert f"pip install {package}" in one_line_error(e)


def test_an_iterable_source_is_read_once_into_memory(tmp_path: Path, monkeypatch) -> None:
    import timm.data
    from torch.utils.data import IterableDataset

    import petl_analysis.data.sources as sources

    class Shards(IterableDataset):  # what timm's create_dataset gives for wds/: iterable only
        def __init__(self, split: str) -> None:
            self.n = {"train": 12, "test": 6}.get(split)
            if self.n is None:
                raise RuntimeError(f"split {split} not found in info")

        def __iter__(self):
            for i in range(self.n):
                yield Image.new("L", (8, 8), 40 * (i % 3)), i % 3

    monkeypatch.setattr(timm.data, "create_dataset", lambda name, root, split, **kw: Shards(split))
    monkeypatch.setitem(sources._NEEDS, "wds/", ("torch", "torch"))  # the package is there
    items = open_timm_source("wds/shards", tmp_path)
    assert len(items) == 18 and items.predefined.names == {"train": "train", "test": "test"}
    assert items.labels.tolist()[:4] == [0, 1, 2, 0] and items.image(13).getpixel((0, 0)) == 40


# ---------------------------------------------------------------------------------------------- Python datasets


class Pictures(Dataset):
    """A user's dataset: ``(x, label)`` with ``x`` a PIL image, a uint8 tensor (C, H, W) or a float array (H, W)."""

    def __init__(self, n: int, kind: str = "pil", offset: int = 0, classes: int = 3) -> None:
        self.n, self.kind, self.offset, self.k = n, kind, offset, classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        y = i % self.k
        arr = np.full((8, 8), 60 * y, dtype=np.uint8)
        arr[0, 0] = i + self.offset  # every image its own
        if self.kind == "tensor":
            return torch.from_numpy(arr)[None], y
        if self.kind == "array":
            return arr.astype(np.float32) / 255.0, y
        return Image.fromarray(arr), y


def test_datasets_given_per_split_are_kept_and_streamed(tmp_path: Path) -> None:
    data = DataSpec.from_datasets(
        Pictures(12), Pictures(6, "tensor", 100), Pictures(6, "array", 200), name="pictures", split=SplitSpec(shots=2)
    )
    assert data.dataset == "python:pictures"
    items = open_dataset(data.dataset)
    assert items.classes == ["0", "1", "2"] and len(items) == 24
    s = make_splits(items, data.split)
    assert set(s.train.refs[:, 0].tolist()) == {0} and s.sizes() == {"train": 6, "val": 6, "test": 6}
    assert s.record.source == "Python datasets" and s.record.given == {"train": "train", "val": "val", "test": "test"}
    task = build_task(data, make_tiny("vit", num_classes=3), dataset=items)
    x, y = task.val[0]
    assert x.shape == (3, 32, 32) and y == 0  # the model's transform (gray to RGB, resized) on a tensor item
    assert task.test[1][1] == 1


def test_a_study_on_python_datasets_trains_in_process_and_refuses_workers(tmp_path: Path) -> None:
    from petl_analysis.probe import ProbeConfig

    data = DataSpec.from_datasets(Pictures(12), test=Pictures(6, offset=50), name="pics", classes=["a", "b", "c"])
    recipe = Recipe(epochs=1, batch_size=4, lr=1e-2, max_steps=2)
    study = Study(ModelSpec("petl_vit_tiny"), data, out_dir=tmp_path / "out")
    result = study.probe(ProbeConfig(targets=["attn.v"], dims=[4], seeds=1, recipe=recipe))
    assert result.failed_trials == 0 and result.data.split_record.drawn == ["val"]
    assert (tmp_path / "out" / "probe.json").is_file()
    for options in ({"n_jobs": 2}, {"backend": "dask"}):
        with pytest.raises(PetlError) as e:
            Study(ModelSpec("petl_vit_tiny"), data, **options)
        assert "trials in worker processes cannot open" in one_line_error(e)
    with pytest.raises(PetlError) as e:
        open_dataset("python:never-registered")
    assert "is not registered in this process" in one_line_error(e)


def test_a_registered_name_takes_its_datasets_again_and_refuses_others() -> None:
    train, test = Pictures(9), Pictures(6, offset=50)
    first = DataSpec.from_datasets(train, test=test, name="again")
    assert DataSpec.from_datasets(train, test=test, name="again") == first  # the same objects: a no-op
    with pytest.raises(PetlError) as e:
        DataSpec.from_datasets(Pictures(9), test=test, name="again")
    assert "is registered already, with other datasets; give the new data another name" in one_line_error(e)


def test_python_datasets_whose_classes_disagree_name_the_split_and_the_class() -> None:
    with pytest.raises(PetlError) as e:
        DataSpec.from_datasets(Pictures(12), Pictures(4, classes=2), name="short", classes=["a", "b", "c"])
    assert "split 'val' has no images of class 'c'" in one_line_error(e)
    with pytest.raises(PetlError) as e:
        DataSpec.from_datasets(Pictures(12), test=Pictures(8, classes=4), name="extra", classes=["a", "b", "c"])
    assert "split 'test' has label 3; expected labels in [0, 3)" in one_line_error(e)
    with pytest.raises(PetlError) as e:
        DataSpec.from_datasets([1, 2, 3], name="list")
    assert "items are not (image, integer label) pairs" in one_line_error(e)


def test_cli_reads_a_timm_source_from_its_data_dir(tmp_path: Path) -> None:
    root = fake_mnist(tmp_path / "data")
    args = ["linear-probe", "--dataset", "torch/mnist", "--data-dir", str(root), "--seeds", "1", "--epochs", "1"]
    result = CliRunner().invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["linear-probe", "--dataset", "torch/mnist", "--device", "cpu"])
    assert result.exit_code != 0 and "error: dataset 'torch/mnist' is read from a local data dir" in result.output
