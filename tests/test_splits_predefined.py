"""Image folders with predefined splits (train/, val/, test/): kept, recorded, checked, sampled from train only."""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from petl_analysis.artefacts import from_jsonable, to_jsonable
from petl_analysis.data import BadImagesWarning, SplitSpec, load_dataset, make_splits, open_dataset
from petl_analysis.data.splits import SplitRecord, shared_across_splits
from petl_analysis.errors import PetlError
from petl_analysis.task import DataSpec, announce_removed, data_record
from petl_analysis.trials import key_json


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETL_ANALYSIS_CACHE", str(tmp_path / "cache"))


def one_line_error(excinfo: pytest.ExceptionInfo[PetlError]) -> str:
    msg = str(excinfo.value)
    assert excinfo.type is PetlError and "\n" not in msg and msg
    return msg


def split_folder(root: Path, counts: dict[str, int], classes: tuple[str, ...] = ("ant", "bee", "cat")) -> Path:
    """``root/<split>/<class>/<i>.png``: 8x8 images, each one different (the split and index are in the pixels)."""
    for s, (split, n) in enumerate(counts.items()):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = np.full((8, 8), 20 * c, dtype=np.uint8)
                arr[0, 0], arr[0, 1], arr[0, 2] = s, i, 7
                Image.fromarray(arr).save(root / split / name / f"{i:02d}.png")
    return root


def split_of(paths: list[str], root: Path) -> set[str]:
    """The split folders the files come from."""
    return {Path(p).relative_to(root).parts[0] for p in paths}


def test_train_val_test_folders_are_kept(tmp_path: Path) -> None:
    root = split_folder(tmp_path / "d", {"train": 6, "val": 3, "test": 4})
    files = open_dataset(str(root))
    assert files.classes == ["ant", "bee", "cat"] and len(files) == 3 * 13
    s = make_splits(files, SplitSpec())
    assert [split_of(part.paths, root) for part in (s.train, s.val, s.test)] == [{"train"}, {"val"}, {"test"}]
    assert s.sizes() == {"train": 18, "val": 9, "test": 12}  # every image of each folder, nothing drawn
    assert s.record == SplitRecord(
        "predefined",
        counts={"train": 18, "val": 9, "test": 12},
        source=f"folder {root.resolve()}",
        given={"train": "train", "val": "val", "test": "test"},
    )
    assert s.record.describe(s.spec) == (
        f"predefined: train/val/test from folder {root.resolve()} (train 18 / val 9 / test 12 images)"
    )
    # the split seed and the fractions do not move a given split; labels follow the class folders
    again = make_splits(files, SplitSpec(split_seed=5, val_fraction=0.5))
    assert all(np.array_equal(s.indices[k], again.indices[k]) for k in s.indices)
    for part in (s.train, s.val, s.test):
        assert [files.classes[y] for y in part.labels.tolist()] == [Path(p).parent.name for p in part.paths]
    # the in-memory loader gives the same splits
    mem = make_splits(load_dataset(str(root)), SplitSpec())
    assert all(np.array_equal(s.indices[k], mem.indices[k]) for k in s.indices)


def test_a_folder_with_splits_is_written_back_with_its_splits(tmp_path: Path) -> None:
    from petl_analysis.data import write_image_folder

    ds = load_dataset(str(split_folder(tmp_path / "d", {"train": 3, "val": 2, "test": 2})))
    back = load_dataset(str(write_image_folder(ds, tmp_path / "copy")))
    assert back.predefined.names == {"train": "train", "val": "val", "test": "test"}
    assert back.predefined.codes.tolist() == ds.predefined.codes.tolist()
    assert back.labels.tolist() == ds.labels.tolist() and bool((back.images == ds.images).all())


def test_a_class_folder_without_splits_is_split_at_random_as_before(tmp_path: Path) -> None:
    root = split_folder(tmp_path / "d", {"train": 8})  # train/ alone would be one class: use its classes
    s = make_splits(open_dataset(str(root / "train")), SplitSpec())
    assert s.record.kind == "random" and s.record.counts == s.sizes()
    assert s.record.describe(s.spec) == "random: val 0.15 / test 0.25 of each class, split seed 0 " + (
        f"(train {s.sizes()['train']} / val {s.sizes()['val']} / test {s.sizes()['test']} images)"
    )


def test_a_missing_val_is_drawn_from_train_and_recorded(tmp_path: Path) -> None:
    root = split_folder(tmp_path / "d", {"train": 10, "test": 4})
    files = open_dataset(str(root))
    s = make_splits(files, SplitSpec(val_fraction=0.2))
    assert split_of(s.val.paths, root) == {"train"} and split_of(s.test.paths, root) == {"test"}
    assert s.sizes() == {"train": 24, "val": 6, "test": 12}  # 2 of each class's 10 train images
    assert set(s.train.paths).isdisjoint(s.val.paths)
    assert s.record.drawn == ["val"] and s.record.given == {"train": "train", "test": "test"}
    assert "; val drawn from train (0.2 of each class, split seed 0)" in s.record.describe(s.spec)
    other = make_splits(files, SplitSpec(val_fraction=0.2, split_seed=1))
    assert not np.array_equal(s.indices["val"], other.indices["val"])  # drawn by the split seed
    assert np.array_equal(s.indices["test"], other.indices["test"])  # the given test stays


def test_a_missing_test_is_drawn_from_train(tmp_path: Path) -> None:
    root = split_folder(tmp_path / "d", {"train": 8, "val": 2})
    s = make_splits(open_dataset(str(root)), SplitSpec(test_fraction=0.25))
    assert split_of(s.test.paths, root) == {"train"} and split_of(s.val.paths, root) == {"val"}
    assert s.sizes() == {"train": 18, "val": 6, "test": 6} and s.record.drawn == ["test"]


def test_vtab_names_are_split_folders_and_their_union_is_ignored(tmp_path: Path) -> None:
    root = split_folder(tmp_path / "d", {"train800": 4, "val200": 2, "test": 3, "train800val200": 6})
    s = make_splits(open_dataset(str(root)), SplitSpec())
    assert [split_of(p.paths, root) for p in (s.train, s.val, s.test)] == [{"train800"}, {"val200"}, {"test"}]
    assert s.record.given == {"train": "train800", "val": "val200", "test": "test"}
    assert s.record.describe(s.spec).startswith("predefined: train800/val200/test from folder")
    # the union alone is the train folder
    alone = split_folder(tmp_path / "u", {"train800val200": 5, "test": 2})
    assert make_splits(open_dataset(str(alone)), SplitSpec()).record.given["train"] == "train800val200"


def test_shots_draw_from_train_only(tmp_path: Path) -> None:
    root = split_folder(tmp_path / "d", {"train": 6, "val": 4, "test": 3})
    files = open_dataset(str(root))
    for seed in range(4):
        s = make_splits(files, SplitSpec(shots=2, shot_seed=seed))
        assert split_of(s.train.paths, root) == {"train"} and s.train.class_counts() == [2, 2, 2]
        assert split_of(s.val.paths, root) == {"val"} and s.val.class_counts() == [2, 2, 2]
        assert s.sizes()["test"] == 9 and s.record.counts == {"train": 6, "val": 6, "test": 9}
    draws = {tuple(make_splits(files, SplitSpec(shots=2, shot_seed=k)).indices["train"]) for k in range(4)}
    assert len(draws) > 1  # each seed its own sample
    s = make_splits(files, SplitSpec(max_train=4))
    assert split_of(s.train.paths, root) == {"train"} and s.sizes()["train"] == 4
    with pytest.raises(PetlError) as e:
        make_splits(files, SplitSpec(shots=7))
    assert "has 6 images in the train pool" in one_line_error(e)


def test_parts_a_and_b_halve_the_given_train_and_val(tmp_path: Path) -> None:
    root = split_folder(tmp_path / "d", {"train": 6, "val": 4, "test": 3})
    files = open_dataset(str(root))
    whole = make_splits(files, SplitSpec())
    a, b = (make_splits(files, SplitSpec(part=p)) for p in ("A", "B"))
    for split in ("train", "val"):
        assert set(a.indices[split]).isdisjoint(b.indices[split])
        assert sorted([*a.indices[split], *b.indices[split]]) == whole.indices[split].tolist()
    assert np.array_equal(a.indices["test"], whole.indices["test"]) and np.array_equal(
        b.indices["test"], whole.indices["test"]
    )
    assert split_of(a.train.paths, root) == {"train"} and split_of(b.val.paths, root) == {"val"}
    assert "part A: one half of each class's train and val images" in a.record.describe(a.spec)


def test_split_folders_with_different_classes_name_the_split_and_the_class(tmp_path: Path) -> None:
    root = split_folder(tmp_path / "d", {"train": 3, "val": 2, "test": 2})
    for p in (root / "val" / "bee").iterdir():
        p.unlink()
    (root / "val" / "bee").rmdir()
    with pytest.raises(PetlError) as e:
        open_dataset(str(root))
    msg = one_line_error(e)
    assert "split folder 'val' has no class folder 'bee', which 'train' has" in msg and str(root.resolve()) in msg
    extra = split_folder(tmp_path / "x", {"train": 3, "test": 2})
    split_folder(tmp_path / "x", {"test": 2}, classes=("dog",))
    with pytest.raises(PetlError) as e:
        load_dataset(str(extra))
    assert "split folder 'test' has class folder 'dog', which 'train' has not" in one_line_error(e)


def test_split_layout_errors_are_one_line(tmp_path: Path) -> None:
    only_train = split_folder(tmp_path / "t", {"train": 3})
    with pytest.raises(PetlError) as e:
        open_dataset(str(only_train))
    assert "has a train/ split folder but neither a val/ nor a test/ one" in one_line_error(e)
    mixed = split_folder(tmp_path / "m", {"train": 3, "test": 2, "extra": 1})
    with pytest.raises(PetlError) as e:
        open_dataset(str(mixed))
    assert "other folders beside them (extra)" in one_line_error(e)
    twice = split_folder(tmp_path / "w", {"train": 3, "val": 2, "validation": 2})
    with pytest.raises(PetlError) as e:
        open_dataset(str(twice))
    assert "2 folders for the val split (val, validation)" in one_line_error(e)


def test_bad_entries_of_every_split_are_found_in_one_pass(tmp_path: Path) -> None:
    root = split_folder(tmp_path / "d", {"train": 4, "val": 2, "test": 2})
    (root / "test" / "bee" / "broken.png").write_bytes(b"not a png")
    (root / "val" / "ant" / "notes.txt").write_text("hello")
    with pytest.raises(PetlError) as e:
        open_dataset(str(root))
    msg = one_line_error(e)
    assert "2 of 26 images" in msg and "test/bee/broken.png" in msg and "val/ant/notes.txt" in msg
    with pytest.warns(BadImagesWarning, match="skipped 2 of 26"):
        files = open_dataset(str(root), skip_bad_images=True)
    assert len(files) == 24 and len(files.skipped) == 2
    s = make_splits(files, SplitSpec())
    assert s.sizes() == {"train": 12, "val": 6, "test": 6}
    # a class of one split left with no decodable image is named with its split
    for p in (root / "val" / "cat").iterdir():
        p.write_bytes(b"broken")
    with pytest.raises(PetlError) as e, warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImagesWarning)
        open_dataset(str(root), skip_bad_images=True)
    assert f"class folder {root.resolve() / 'val' / 'cat'} has no decodable images" in one_line_error(e)


def test_duplicates_inside_a_split_are_removed_and_across_splits_reported(tmp_path: Path, caplog) -> None:
    root = split_folder(tmp_path / "d", {"train": 4, "val": 2, "test": 3})
    (root / "train" / "ant" / "dup.png").write_bytes((root / "train" / "ant" / "00.png").read_bytes())
    (root / "test" / "bee" / "leak.png").write_bytes((root / "train" / "bee" / "01.png").read_bytes())
    files = open_dataset(str(root))
    s = make_splits(files, SplitSpec())
    assert s.removed == {"groups": 1, "duplicates": 1, "conflicting": 0}  # the copy inside train
    assert str(root / "test" / "bee" / "leak.png") in {str(Path(p)) for p in s.test.paths}  # not moved
    assert s.record.shared == {"train/test": 1}
    assert "1 image(s) of test identical to train images, kept in both" in s.record.describe(s.spec)
    record = data_record(DataSpec(str(root)), files)
    with caplog.at_level(logging.INFO, logger="petl_analysis"):
        announce_removed(record)
    assert "identical images in two of its predefined splits (1 between train and test)" in caplog.text
    kept = make_splits(files, SplitSpec(dedup=False))
    assert kept.removed == {} and kept.record.shared == {} and kept.sizes()["train"] == 13
    assert shared_across_splits([b"x", b"x", b"y", b"y"], np.array([0, 2, 1, 2]), np.array([1, 1, 1, 0], bool)) == {
        "train/test": 1
    }


def test_the_record_travels_in_the_data_spec_and_stays_out_of_keys(tmp_path: Path) -> None:
    root = split_folder(tmp_path / "d", {"train": 4, "test": 2})
    data = DataSpec(str(root), SplitSpec(shots=2))
    record = data_record(data, open_dataset(str(root)))
    assert record.split_record.kind == "predefined" and record.split_record.counts["train"] == 6
    assert record == data and key_json(record) == key_json(data)  # a record, not an input
    assert "split_record" not in key_json(record) and "data_dir" not in key_json(record)
    back = from_jsonable(DataSpec, json.loads(json.dumps(to_jsonable(record))))
    assert back.split_record == record.split_record
    # artefacts written before it was recorded read as None, and show the old protocol line
    old = from_jsonable(DataSpec, {"dataset": "digits", "split": {}})
    assert old.split_record is None and old.data_dir is None


def test_the_report_shows_the_split_in_use(tmp_path: Path) -> None:
    from petl_analysis.report.render import _setup_section
    from petl_analysis.sweep import SweepResult

    committed = SweepResult.load(Path(__file__).resolve().parents[1] / "reports" / "demo" / "digits" / "sweep.json")
    rows = dict(_setup_section(committed, None, None, [], 1, True)[1].rows)
    assert rows["split protocol"].startswith("val 0.15 / test 0.25 of each class")  # recorded before: as it was
    root = split_folder(tmp_path / "d", {"train": 4, "val": 2, "test": 2})
    data = data_record(DataSpec(str(root), SplitSpec(shots=2)), open_dataset(str(root)))
    rows = dict(_setup_section(dataclasses.replace(committed, data=data), None, None, [], 1, True)[1].rows)
    assert rows["split protocol"].startswith(
        f"predefined: train/val/test from folder {root.resolve()} (train 6 / val 6 / test 6 images); train: 2-shot"
    )
    data = data_record(DataSpec("digits"), load_dataset("digits"))
    rows = dict(_setup_section(dataclasses.replace(committed, data=data), None, None, [], 1, True)[1].rows)
    assert rows["split protocol"].startswith("random: val 0.15 / test 0.25 of each class, split seed 0 (train ")
