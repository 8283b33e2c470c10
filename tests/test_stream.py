"""Streamed image folders: same results as in memory, the feature cache, bad files, the step cap."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny
from PIL import Image
from torch.utils.data import TensorDataset
from typer.testing import CliRunner

from petl_analysis.cli.main import app
from petl_analysis.data import (
    BadImagesWarning,
    ImageFiles,
    SplitSpec,
    StreamingImages,
    load_image_folder,
    model_data_config,
    open_dataset,
    stream_split,
)
from petl_analysis.engine import Recipe, fit
from petl_analysis.errors import PetlError
from petl_analysis.linear_probe import extract_features, fit_linear_probe
from petl_analysis.task import DataSpec, build_task

SPLIT = SplitSpec(val_fraction=0.25, test_fraction=0.25)


def one_line_error(excinfo: pytest.ExceptionInfo[PetlError]) -> str:
    msg = str(excinfo.value)
    assert excinfo.type is PetlError and "\n" not in msg and msg
    return msg


def make_folder(root: Path, classes: int = 3, per_class: int = 8, size: tuple[int, int] = (20, 24)) -> Path:
    """Colour images whose dominant channel is the class: learnable by a tiny model in a few steps."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 90, (*size, 3), dtype=np.uint8)
            arr[..., c] += 160
            Image.fromarray(arr).save(d / f"{i:02d}.{'png' if i % 2 else 'jpg'}")
    return root


def in_memory(data: StreamingImages) -> TensorDataset:
    """The same split, decoded up front with the same preprocessing."""
    items = [data[i] for i in range(len(data))]
    return TensorDataset(torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items]))


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETL_ANALYSIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PETL_ANALYSIS_WORKERS", "1")  # exercise a real DataLoader worker process


def test_open_dataset_indexes_folder_and_keeps_builtins_in_memory(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f")
    files = open_dataset(str(root))
    assert isinstance(files, ImageFiles) and len(files) == 24 and files.classes == ["class0", "class1", "class2"]
    assert files.labels.tolist() == load_image_folder(root).labels.tolist()  # same order as the in-memory loader
    assert not isinstance(open_dataset("digits"), ImageFiles)


def test_timm_transform_resolved_from_the_model(tmp_path: Path) -> None:
    model = make_tiny("vit", num_classes=3)
    cfg = model_data_config(model)
    assert cfg["input_size"] == (3, 32, 32) and cfg["interpolation"] == "bicubic"  # timm's own config, our size
    split = stream_split(open_dataset(str(make_folder(tmp_path / "f"))), model)
    x, y = split[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 0


def test_streaming_and_in_memory_train_identically(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f")
    model = make_tiny("vit", num_classes=3)
    task = build_task(DataSpec(str(root), SPLIT), model, num_workers=1)  # through a DataLoader worker
    assert isinstance(task.train, StreamingImages) and task.train.num_workers == 1
    recipe = Recipe(epochs=2, batch_size=4, lr=1e-3, eval_batch_size=5)
    streamed, memory = copy.deepcopy(model), copy.deepcopy(model)
    a = fit(streamed, task.train, task.val, recipe, test=task.test, seed=3)
    b = fit(memory, in_memory(task.train), in_memory(task.val), recipe, test=in_memory(task.test), seed=3)
    assert (a.val_acc, a.test_acc, a.train_loss, a.steps) == (b.val_acc, b.test_acc, b.train_loss, b.steps)
    for p, q in zip(streamed.parameters(), memory.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_a_fit_starts_its_dataloader_workers_once_not_every_epoch(tmp_path: Path, monkeypatch) -> None:
    import petl_analysis.engine.batches as batches

    made = []

    class Counted(torch.utils.data.DataLoader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(batches, "DataLoader", Counted)
    model = make_tiny("vit", num_classes=3)
    task = build_task(DataSpec(str(make_folder(tmp_path / "f")), SPLIT), model, num_workers=1)
    res = fit(model, task.train, task.val, Recipe(epochs=3, batch_size=4, lr=1e-3), test=task.test, seed=0)
    assert res.epochs_run == 3 and len(res.val_curve) == 3
    assert len(made) == 3  # train, val and test: one each for the whole fit
    assert all(loader.persistent_workers and loader.num_workers == 1 for loader in made)


def test_linear_probe_streamed_equals_in_memory_and_caches(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f")
    model = make_tiny("vit", num_classes=3)
    task = build_task(DataSpec(str(root), SPLIT), model)
    recipe = Recipe(epochs=5, lr=1e-2, weight_decay=0.0)
    mem_task = copy.copy(task)
    mem_task.train, mem_task.val, mem_task.test = (in_memory(d) for d in (task.train, task.val, task.test))
    a = fit_linear_probe(copy.deepcopy(model), task, recipe, cache_dir=tmp_path / "c")
    b = fit_linear_probe(copy.deepcopy(model), mem_task, recipe)
    assert (a.val_acc, a.test_acc) == (b.val_acc, b.test_acc)
    assert len(list((tmp_path / "c" / "features").glob("*.npy"))) == 3  # one file per split
    # Without scoring test (the proxies' starting head): the test split is never read, and the head is the same.
    c_model, d_model = copy.deepcopy(model), copy.deepcopy(model)
    fit_linear_probe(c_model, task, recipe, cache_dir=tmp_path / "c")
    d = fit_linear_probe(d_model, task, recipe, cache_dir=tmp_path / "d", score_test=False)
    assert d.test_acc is None and d.val_acc == a.val_acc
    assert len(list((tmp_path / "d" / "features").glob("*.npy"))) == 2  # train and val only
    for p, q in zip(c_model.head.parameters(), d_model.head.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_feature_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_tiny("vit", num_classes=3)
    split = stream_split(open_dataset(str(make_folder(tmp_path / "f"))), model)
    first = extract_features(model, split, cache_dir=tmp_path / "c", batch_size=7)
    (path,) = (tmp_path / "c" / "features").glob("*.npy")
    assert np.load(path).shape == (24, model.num_features) and not list(path.parent.glob(".*.tmp"))
    torch.testing.assert_close(first.tensors[0], extract_features(model, in_memory(split)).tensors[0])

    def no_forward(*args: object, **kwargs: object) -> None:
        raise AssertionError("features should come from the cache")

    monkeypatch.setattr(model, "forward_features", no_forward)
    again = extract_features(model, split, cache_dir=tmp_path / "c")
    assert torch.equal(again.tensors[0], first.tensors[0]) and torch.equal(again.tensors[1], first.tensors[1])
    monkeypatch.undo()
    with torch.no_grad():
        model.blocks[0].mlp.fc1.weight.add_(1.0)  # another backbone: another cache entry
    extract_features(model, split, cache_dir=tmp_path / "c")
    assert len(list((tmp_path / "c" / "features").glob("*.npy"))) == 2


def _break(root: Path, names: list[str]) -> None:
    for n in names:
        (root / "class1" / n).write_bytes(b"\x89PNG\r\n\x1a\n not really an image")


def test_bad_images_one_error_naming_all_of_them(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f")
    _break(root, ["broken_a.png", "broken_b.jpg"])
    for load in (lambda: open_dataset(str(root)), lambda: load_image_folder(root)):
        with pytest.raises(PetlError) as e:
            load()
        msg = one_line_error(e)
        assert "2 of 26 images" in msg and "broken_a.png" in msg and "broken_b.jpg" in msg
        assert "--skip-bad-images" in msg


def test_single_corrupt_file_error_names_it(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f")
    _break(root, ["broken.png"])
    with pytest.raises(PetlError) as e:
        open_dataset(str(root))
    assert "broken.png" in one_line_error(e) and "cannot read image" in one_line_error(e)


def test_skip_bad_images_warns_and_leaves_them_out(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f")
    _break(root, ["broken_a.png", "broken_b.jpg"])
    with pytest.warns(BadImagesWarning, match="broken_a.png.*broken_b.jpg|broken_b.jpg.*broken_a.png"):
        files = open_dataset(str(root), skip_bad_images=True)
    assert len(files) == 24 and sorted(Path(p).name for p in files.skipped) == ["broken_a.png", "broken_b.jpg"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImagesWarning)
        assert len(load_image_folder(root, skip_bad_images=True)) == 24
    _break(root, [f"{i:02d}.{'png' if i % 2 else 'jpg'}" for i in range(8)])  # a whole class broken
    with pytest.raises(PetlError) as e, warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImagesWarning)
        open_dataset(str(root), skip_bad_images=True)
    assert "class1" in one_line_error(e) and "no decodable images" in one_line_error(e)


def test_cli_bad_image_exit_2_then_skip(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f")
    _break(root, ["broken.png"])
    args = ["linear-probe", "--dataset", str(root), "--seeds", "1", "--epochs", "1", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "broken.png" in result.output
    result = CliRunner().invoke(app, args + ["--skip-bad-images"])
    assert result.exit_code == 0, result.output


def test_max_steps_caps_training_and_is_validated() -> None:
    x, y = torch.randn(40, 3, 32, 32), torch.arange(40) % 3
    data = TensorDataset(x, y)
    res = fit(make_tiny("vit", num_classes=3), data, data, Recipe(epochs=5, batch_size=8, max_steps=7))
    assert res.steps == 7 and res.epochs_run == 2 and len(res.val_curve) == 2
    with pytest.raises(PetlError):
        Recipe(max_steps=0)


def test_new_fields_stay_out_of_trial_keys_at_their_defaults() -> None:
    from petl_analysis.trials import key_json

    assert "max_steps" not in key_json(Recipe()) and "augment" not in key_json(Recipe())  # old trial logs resume
    assert '"max_steps": 3' in key_json(Recipe(max_steps=3))
    assert "skip_bad_images" not in key_json(DataSpec("digits"))
    assert '"skip_bad_images": true' in key_json(DataSpec("x", skip_bad_images=True))


def test_augmentation_is_seeded_and_kept_out_of_the_linear_probe(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f")
    model = make_tiny("vit", num_classes=3)
    task = build_task(DataSpec(str(root), SPLIT), model, augment=True)
    assert task.train_plain is not None and repr(task.train.transform) != repr(task.train_plain.transform)
    recipe = Recipe(epochs=1, batch_size=4, lr=1e-3)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    fit(a, task.train, None, recipe, seed=1)
    fit(b, task.train, None, recipe, seed=1)
    for p, q in zip(a.parameters(), b.parameters()):  # same seed, same random crops in the workers
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    fit_linear_probe(copy.deepcopy(model), task, recipe, cache_dir=tmp_path / "c")
    plain_key = task.train_plain.cache_key()
    assert plain_key != task.train.cache_key()
    assert extract_features(model, task.train_plain, cache_dir=tmp_path / "c") is not None
    assert len(list((tmp_path / "c" / "features").glob("*.npy"))) == 3  # plain train, val, test; never augmented


def test_take_and_probe_on_a_streamed_folder(tmp_path: Path) -> None:
    from petl_analysis.engine import take
    from petl_analysis.models import ModelSpec
    from petl_analysis.probe import ProbeConfig, run_probe

    root = make_folder(tmp_path / "f")
    split = stream_split(open_dataset(str(root)), make_tiny("vit", num_classes=3))
    x, y = take(split, torch.tensor([3, 0]))
    mem = in_memory(split)
    assert torch.equal(x, mem.tensors[0][[3, 0]]) and y.tolist() == mem.tensors[1][[3, 0]].tolist()
    recipe = Recipe(epochs=1, batch_size=4, lr=1e-2, max_steps=2)
    result = run_probe(
        ModelSpec("petl_vit_tiny"),
        DataSpec(str(root), SPLIT),
        ProbeConfig(targets=["attn.v"], dims=[8], seeds=1, recipe=recipe),
    )
    assert result.failed_trials == 0 and result.config.recipe.max_steps == 2 and result.targets[0].dims == [8]


def test_decode_check_is_cached_until_a_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import petl_analysis.data.stream as stream

    root = make_folder(tmp_path / "f")
    open_dataset(str(root))
    checked: list[int] = []
    real = stream.find_bad_images
    monkeypatch.setattr(stream, "find_bad_images", lambda paths: checked.append(len(paths)) or real(paths))
    assert len(open_dataset(str(root))) == 24 and checked == []  # unchanged files: only stat'ed
    (root / "class2" / "03.png").write_bytes(b"truncated")  # size and mtime change: decoded again
    with pytest.raises(PetlError) as e:
        open_dataset(str(root))
    assert "03.png" in one_line_error(e) and checked == [1]


def test_file_broken_after_opening_is_one_line_naming_it(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f")
    model = make_tiny("vit", num_classes=3)
    task = build_task(DataSpec(str(root), SPLIT), model)
    Path(task.train.files.paths[0]).write_bytes(b"gone bad")
    with pytest.raises(PetlError) as e:
        fit(model, task.train, None, Recipe(epochs=1, batch_size=4))
    msg = one_line_error(e)
    assert msg.startswith("cannot read image") and Path(task.train.files.paths[0]).name in msg
    assert "Traceback" not in msg


def _workers_in_child() -> int:
    from petl_analysis.data.stream import default_num_workers

    return default_num_workers()


def test_trial_workers_decode_in_process(monkeypatch):
    """A loky trial worker cannot start DataLoader workers ('Process' object has no attribute 'env'): inside any
    child process the streamed data is decoded in the process, even when the environment asks for workers."""
    from joblib import Parallel, delayed

    from petl_analysis.data.stream import WORKERS_ENV, default_num_workers

    monkeypatch.setenv(WORKERS_ENV, "3")
    assert default_num_workers() == 3
    assert Parallel(n_jobs=2, backend="loky")(delayed(_workers_in_child)() for _ in range(2)) == [0, 0]


def test_small_images_or_few_cores_decode_in_process(monkeypatch, tmp_path: Path):
    """The default worker count follows benchmarks/bench_loader_workers.py: DataLoader workers made small-image trials
    1.4-2.6x slower on 2 cores; large images on more cores keep them. $PETL_ANALYSIS_WORKERS still decides."""
    from petl_analysis.data import stream
    from petl_analysis.data.stream import SMALL_IMAGE_PIXELS, WORKERS_ENV, default_num_workers

    monkeypatch.delenv(WORKERS_ENV, raising=False)
    monkeypatch.setattr(stream.os, "cpu_count", lambda: 8)
    assert default_num_workers(SMALL_IMAGE_PIXELS) == 0 and default_num_workers(224 * 224) == 4
    monkeypatch.setattr(stream.os, "cpu_count", lambda: 2)
    assert default_num_workers(224 * 224) == 0
    monkeypatch.setenv(WORKERS_ENV, "2")
    assert default_num_workers(32 * 32) == 2
    monkeypatch.delenv(WORKERS_ENV)
    monkeypatch.setattr(stream.os, "cpu_count", lambda: 8)
    split = stream_split(open_dataset(str(make_folder(tmp_path / "f"))), make_tiny("vit", num_classes=3))
    assert split.num_workers == 0  # the folder's images are small
