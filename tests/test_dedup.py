"""Deduplication before splitting (issue 25, item 6): identical images land in one split at most, a content seen
under two labels is dropped, ``dedup=False`` keeps the old split exactly; in memory and for image folders."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from petl_analysis.artefacts import from_jsonable
from petl_analysis.data import ImageDataset, SplitSpec, make_splits, write_image_folder
from petl_analysis.data.splits import content_hashes, duplicate_mask
from petl_analysis.data.stream import open_image_files
from petl_analysis.task import DataSpec, data_record
from petl_analysis.trials import key_json


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Folder digests are cached; keep them out of the user's cache."""
    monkeypatch.setenv("PETL_ANALYSIS_CACHE", str(tmp_path / "cache"))


def planted(n_per_class: int = 30, classes: int = 3, seed: int = 0) -> tuple[ImageDataset, dict[str, list[int]]]:
    """Distinct random 6x6 images, then copies planted: 4 groups of same-label copies (one of 3 copies) and one
    content under two labels. Returns the dataset and the planted index groups."""
    g = torch.Generator().manual_seed(seed)
    n = n_per_class * classes
    images = torch.randint(0, 256, (n, 1, 6, 6), generator=g, dtype=torch.int64).to(torch.uint8)
    labels = torch.arange(n) // n_per_class
    same = [[0, 5], [1, 7], [31, 40, 55], [62, 89]]  # within a class
    conflict = [10, 45]  # class 0 and class 1
    for group in [*same, conflict]:
        images[group[1:]] = images[group[0]].clone()
    ds = ImageDataset(images.contiguous(), labels.to(torch.int64), [f"c{c}" for c in range(classes)], "planted")
    return ds, {"same": same, "conflict": conflict}


def _where(splits) -> dict[bytes, set[str]]:
    """For each content, the splits holding it."""
    out: dict[bytes, set[str]] = {}
    for part in ("train", "val", "test"):
        for h in content_hashes(getattr(splits, part)):
            out.setdefault(h, set()).add(part)
    return out


def test_duplicate_mask_keeps_the_first_copy_and_drops_conflicting_labels() -> None:
    hashes = [b"a", b"b", b"a", b"c", b"b", b"a", b"d", b"d"]
    labels = np.array([0, 1, 0, 1, 2, 0, 3, 3])
    keep, removed = duplicate_mask(hashes, labels)
    assert keep.tolist() == [True, False, False, True, False, False, True, False]
    assert removed == {"groups": 3, "duplicates": 3, "conflicting": 2}


@pytest.mark.parametrize("split_seed", [0, 1, 2])
def test_planted_duplicates_land_nowhere_twice(split_seed: int) -> None:
    ds, groups = planted()
    s = make_splits(ds, SplitSpec(split_seed=split_seed))
    assert s.removed == {"groups": 5, "duplicates": 5, "conflicting": 2}
    assert sum(s.sizes().values()) == len(ds) - 5 - 2
    kept = set(np.concatenate(list(s.indices.values())).tolist())
    for group in groups["same"]:
        assert len(kept & set(group)) == 1  # one copy of each, in one split
    assert not kept & set(groups["conflict"])  # both labels dropped
    assert all(len(parts) == 1 for parts in _where(s).values())
    # without dedup some planted copy crosses splits for these seeds: the test above can fail
    if split_seed == 0:
        old = make_splits(ds, SplitSpec(split_seed=split_seed, dedup=False))
        assert any(len(parts) > 1 for parts in _where(old).values())


def test_dedup_off_keeps_the_old_split_exactly() -> None:
    ds, _ = planted()
    old = make_splits(ds, SplitSpec(dedup=False, shots=3))
    # the split of a dataset with no copies is the same either way, and dedup=False is the old code path
    assert old.removed == {} and sum(len(v) for v in old.indices.values()) == 3 * 3 + 3 * 3 + len(old.test)
    distinct = ds.subset(np.array([i for i in range(len(ds)) if i not in (5, 7, 40, 55, 89, 45)]))
    a, b = make_splits(distinct, SplitSpec()), make_splits(distinct, SplitSpec(dedup=False))
    assert all(np.array_equal(a.indices[k], b.indices[k]) for k in ("train", "val", "test"))
    assert a.removed == {"groups": 0, "duplicates": 0, "conflicting": 0}


def test_animals_old_split_indices_are_unchanged_with_dedup_off() -> None:
    # The committed artefacts were made before deduplication: dedup=False must reproduce their split bit for bit
    # (pinned: the sizes and a checksum of the indices of the default split with max_train=300).
    from petl_analysis.data import load_dataset

    s = make_splits(load_dataset("animals"), SplitSpec(max_train=300, dedup=False))
    assert s.sizes() == {"train": 300, "val": 1500, "test": 2500}
    assert [int(v.sum()) for v in (s.indices["train"], s.indices["val"], s.indices["test"])] == ANIMALS_OLD_SUMS


#: Sums of the train / val / test indices of animals under SplitSpec(max_train=300) before deduplication existed
#: (computed on main 956b9ab).
ANIMALS_OLD_SUMS = [1501709, 7511148, 12495864]


def test_folder_duplicates_by_file_bytes(tmp_path: Path) -> None:
    ds, groups = planted()
    folder = write_image_folder(ds, tmp_path / "imgs")
    files = open_image_files(folder)
    s = make_splits(files, SplitSpec())
    assert s.removed == {"groups": 5, "duplicates": 5, "conflicting": 2}
    assert all(len(parts) == 1 for parts in _where(s).values())
    names = {Path(p).name for part in (s.train, s.val, s.test) for p in part.paths}
    width = len(str(len(ds) - 1))
    assert not names & {f"{i:0{width}d}.png" for i in groups["conflict"]}
    assert make_splits(files, SplitSpec(dedup=False)).removed == {}


def test_the_record_reaches_the_data_spec_and_stays_out_of_keys() -> None:
    ds, _ = planted()
    data = DataSpec("planted")
    record = data_record(data, ds)
    assert record.removed == {"groups": 5, "duplicates": 5, "conflicting": 2}
    assert record == data and key_json(record) == key_json(data)  # a record, not an input
    assert data_record(DataSpec("planted", SplitSpec(dedup=False)), ds).removed is None
    # dedup is in the key when on; off, the key is the one every log written before it holds
    off = DataSpec("planted", SplitSpec(dedup=False))
    assert '"dedup": true' in key_json(data) and "dedup" not in key_json(off)
    # a stored record without the field was made without deduplication
    old = from_jsonable(DataSpec, {"dataset": "animals", "split": {"max_train": 300}})
    assert old.split.dedup is False and old.removed is None
    assert from_jsonable(DataSpec, dataclasses.asdict(data)).split.dedup is True


def test_the_report_says_what_was_removed():
    from petl_analysis.report.render import _setup_section
    from petl_analysis.sweep import SweepResult

    committed = SweepResult.load(Path(__file__).resolve().parents[1] / "reports" / "demo" / "animals" / "sweep.json")
    rows = dict(_setup_section(committed, None, None, [], 1, True)[1].rows)
    assert rows["duplicates"] == "284 duplicate image(s) of 284 identical group(s) removed before splitting"
    # an artefact made before deduplication says nothing about it
    split = dataclasses.replace(committed.data.split, dedup=False)
    legacy = dataclasses.replace(committed, data=dataclasses.replace(committed.data, split=split, removed=None))
    rows = dict(_setup_section(legacy, None, None, [], 1, True)[1].rows)
    assert "duplicates" not in rows and "identical" not in rows["split protocol"]
    split = dataclasses.replace(committed.data.split, dedup=True)
    data = dataclasses.replace(committed.data, split=split, removed={"groups": 3, "duplicates": 2, "conflicting": 2})
    rows = dict(_setup_section(dataclasses.replace(committed, data=data), None, None, [], 1, True)[1].rows)
    assert rows["duplicates"] == (
        "2 duplicate image(s) of 3 identical group(s) removed before splitting, and 2 whose "
        "copies carry different labels"
    )
    assert rows["split protocol"].endswith("identical images kept once before splitting")


def test_folder_digests_are_read_once_then_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from petl_analysis.data import stream

    ds, _ = planted()
    folder = write_image_folder(ds, tmp_path / "imgs")
    read = []
    real = stream._file_digest
    monkeypatch.setattr(stream, "_file_digest", lambda p: read.append(p) or real(p))
    first = make_splits(open_image_files(folder), SplitSpec())
    assert len(read) == len(ds)
    again = make_splits(open_image_files(folder), SplitSpec())  # a new index, as each trial opens the folder
    assert len(read) == len(ds) and again.removed == first.removed
    changed = sorted(folder.glob("c0/*.png"))[3]
    changed.write_bytes((folder / "c1" / sorted(p.name for p in (folder / "c1").iterdir())[0]).read_bytes())
    third = make_splits(open_image_files(folder), SplitSpec())
    assert read[len(ds) :] == [str(changed)]  # only the changed file is read again
    assert third.removed["conflicting"] == first.removed["conflicting"] + 2
