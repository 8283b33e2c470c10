"""Data layer: built-in datasets, glyph generator, image folders, splits, k-shot sampling, model-input conversion."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from petl_analysis.data import (
    ANIMAL_CLASSES,
    DATASETS,
    ImageDataset,
    SplitSpec,
    glyph_bank,
    glyph_classes,
    glyph_fonts,
    load_dataset,
    load_image_folder,
    make_splits,
    sample_k_shot,
    to_model_input,
)
from petl_analysis.errors import PetlError


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Built-ins must never download: any connection attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data layer tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def one_line_error(excinfo: pytest.ExceptionInfo[PetlError]) -> str:
    msg = str(excinfo.value)
    assert excinfo.type is PetlError and "\n" not in msg and msg
    return msg


def toy(counts: list[int], size: int = 4, channels: int = 1) -> ImageDataset:
    """A dataset whose image i has every pixel = i % 256, with ``counts[c]`` images of class c."""
    labels = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])
    images = (torch.arange(len(labels)) % 256).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, channels, size, size)
    return ImageDataset(images.contiguous(), labels, [f"c{c}" for c in range(len(counts))], "toy")


# ---------------------------------------------------------------- built-ins

BUILTINS = {
    # name: (kwargs, N, (C, H, W), classes, per-class counts)
    "digits": ({}, 1797, (1, 8, 8), [str(i) for i in range(10)], [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]),
    "mnist5k": ({}, 5000, (1, 28, 28), [str(i) for i in range(10)], [500] * 10),
    "animals": ({}, 10000, (1, 28, 28), ANIMAL_CLASSES, [1000] * 10),
    "glyphs": ({"n": 620}, 620, (1, 28, 28), glyph_classes(False), [10] * 62),
}


def test_registry_holds_the_builtins() -> None:
    assert DATASETS.names() == sorted(BUILTINS)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_shape_classes_dtype_counts(name: str) -> None:
    kwargs, n, chw, classes, counts = BUILTINS[name]
    ds = load_dataset(name, **kwargs)
    assert ds.name == name and len(ds) == n and ds.num_classes == len(classes)
    assert tuple(ds.images.shape) == (n, *chw)
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    assert ds.classes == classes
    assert ds.class_counts() == counts
    assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0  # full 0..255 range, black background


def test_animal_classes_in_label_order() -> None:
    assert ANIMAL_CLASSES == ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]


def test_builtins_return_fresh_copies() -> None:
    a = load_dataset("mnist5k")
    a.images.zero_()
    a.labels.fill_(3)
    b = load_dataset("mnist5k")
    assert int(b.images.max()) == 255 and b.class_counts() == [500] * 10
    g = load_dataset("glyphs", n=62)
    g.images.zero_()
    assert int(load_dataset("glyphs", n=62).images.max()) > 0


def test_digits_fast_read_matches_sklearn() -> None:
    from sklearn.datasets import load_digits

    ref = load_digits()
    ds = load_dataset("digits")
    assert torch.equal(ds.labels, torch.from_numpy(ref.target.astype(np.int64)))
    expected = np.rint(ref.images * 255 / 16).astype(np.uint8)
    assert np.array_equal(ds.images[:, 0].numpy(), expected)


def test_builtin_rejects_unknown_option() -> None:
    with pytest.raises(PetlError) as e:
        load_dataset("digits", n=5)
    assert "'digits'" in one_line_error(e) and "n" in str(e.value)


def test_unknown_dataset_name_lists_builtins_and_folders() -> None:
    with pytest.raises(PetlError) as e:
        load_dataset("mnist")
    msg = one_line_error(e)
    assert "'mnist'" in msg and all(n in msg for n in BUILTINS) and "folder" in msg


# ---------------------------------------------------------------- glyphs


def test_glyph_bank_fonts_render_all_62_distinct() -> None:
    fonts = glyph_fonts()
    bank = glyph_bank()
    assert len(fonts) == 22 and "cmsy10" not in fonts and "cmex10" not in fonts
    assert tuple(bank.shape) == (22, 62, 64, 64) and bank.dtype == torch.uint8
    ink = bank.flatten(2).amax(-1)
    assert bool((ink > 0).all())  # no empty glyph
    flat = bank.flatten(2)
    for f in range(len(fonts)):
        assert len({bytes(g.numpy()) for g in flat[f]}) == 62


def test_glyphs_deterministic_by_seed() -> None:
    a = load_dataset("glyphs", n=300, seed=7)
    b = load_dataset("glyphs", n=300, seed=7)
    c = load_dataset("glyphs", n=300, seed=8)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    from petl_analysis.data.glyphs import render_glyphs  # uncached path gives the same tensor as the cached one

    x, y = render_glyphs(n=300, seed=7)
    assert torch.equal(x, a.images) and torch.equal(y, a.labels)


def test_glyphs_options() -> None:
    small = load_dataset("glyphs", n=72, seed=1, size=16, case_fold=True)
    assert tuple(small.images.shape) == (72, 1, 16, 16) and small.num_classes == 36
    assert small.classes[:11] == [*"0123456789", "Aa"] and small.class_counts() == [2] * 36
    one_font = load_dataset("glyphs", n=62, fonts=["cmr10"])
    two_fonts = load_dataset("glyphs", n=62, fonts=["cmr10", "DejaVuSans"])
    assert torch.equal(load_dataset("glyphs", n=62, fonts="cmr10, DejaVuSans").images, two_fonts.images)
    assert not torch.equal(one_font.images, two_fonts.images)
    with pytest.raises(PetlError) as e:
        load_dataset("glyphs", n=10, fonts=["Comic Sans"])
    assert "'Comic Sans'" in one_line_error(e)


# ---------------------------------------------------------------- to_model_input


def test_to_model_input_gray_to_rgb_and_normalisation() -> None:
    ds = toy([3, 3], size=8)
    td = to_model_input(ds, img_size=16, in_chans=3, mean=(0.5,), std=(0.25,))
    x, y = td.tensors
    assert tuple(x.shape) == (6, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(y, ds.labels)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    # a constant image stays constant under bilinear resize: pixel value i/255 -> (i/255 - 0.5) / 0.25
    expected = (torch.arange(6, dtype=torch.float32) / 255 - 0.5) / 0.25
    assert torch.allclose(x.mean(dim=(1, 2, 3)), expected, atol=1e-6)


def test_to_model_input_rgb_to_gray_uses_luminance_and_is_pure() -> None:
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    images[0, 0] = 255  # pure red
    images[1, 1] = 255  # pure green
    ds = ImageDataset(images, torch.tensor([0, 1]), ["r", "g"], "rgb")
    before = ds.images.clone()
    x = to_model_input(ds, img_size=4, in_chans=1, mean=(0.0,), std=(1.0,)).tensors[0]
    assert tuple(x.shape) == (2, 1, 4, 4)
    assert torch.allclose(x[0], torch.full((1, 4, 4), 0.299)) and torch.allclose(x[1], torch.full((1, 4, 4), 0.587))
    assert torch.equal(ds.images, before)
    again = to_model_input(ds, img_size=4, in_chans=1, mean=(0.0,), std=(1.0,)).tensors[0]
    assert torch.equal(x, again)


def test_to_model_input_per_channel_stats_and_bad_lengths() -> None:
    ds = toy([2, 2], size=4, channels=3)
    x = to_model_input(ds, 4, 3, mean=(0.0, 0.5, 1.0), std=(1.0, 0.5, 0.25)).tensors[0]
    v = torch.arange(4, dtype=torch.float32) / 255
    assert torch.allclose(x[:, 1, 0, 0], (v - 0.5) / 0.5) and torch.allclose(x[:, 2, 0, 0], (v - 1.0) / 0.25)
    with pytest.raises(PetlError) as e:
        to_model_input(ds, 4, 3, mean=(0.5, 0.5), std=(0.5,))
    assert "mean" in one_line_error(e)
    with pytest.raises(PetlError):
        to_model_input(ds, 4, 2, mean=(0.5,), std=(0.5,))


def test_downsampling_is_antialiased() -> None:
    # A 1-pixel checkerboard shrunk 4x must average to mid-gray, not alias to black or white.
    board = ((torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2 * 255).to(torch.uint8)
    ds = ImageDataset(board.view(1, 1, 32, 32).clone(), torch.tensor([0]), ["a"], "board")
    x = to_model_input(ds, 8, 1, mean=(0.0,), std=(1.0,)).tensors[0]
    assert torch.allclose(x, torch.full_like(x, 0.5), atol=0.02)


# ---------------------------------------------------------------- k-shot and splits


def test_sample_k_shot_balanced_deterministic_nested() -> None:
    labels = np.repeat(np.arange(5), [10, 12, 7, 30, 9])
    a = sample_k_shot(labels, 4, seed=3)
    assert np.array_equal(a, sample_k_shot(torch.from_numpy(labels), 4, seed=3))
    assert np.bincount(labels[a]).tolist() == [4] * 5 and len(set(a.tolist())) == 20
    assert not np.array_equal(a, sample_k_shot(labels, 4, seed=4))
    assert set(sample_k_shot(labels, 3, seed=3)) <= set(a.tolist())  # nested in k for one seed


def test_sample_k_shot_too_few_names_class() -> None:
    labels = np.repeat(np.arange(3), [10, 5, 10])
    with pytest.raises(PetlError) as e:
        sample_k_shot(labels, 6, seed=0, classes=["cat", "dog", "eel"])
    msg = one_line_error(e)
    assert "'dog'" in msg and "5" in msg and "k=6" in msg


def test_make_splits_disjoint_stratified_complete() -> None:
    ds = load_dataset("digits")
    s = make_splits(ds, SplitSpec(val_fraction=0.15, test_fraction=0.25, split_seed=0))
    idx = {k: set(v.tolist()) for k, v in s.indices.items()}
    assert not (idx["train"] & idx["val"]) and not (idx["train"] & idx["test"]) and not (idx["val"] & idx["test"])
    assert len(idx["train"] | idx["val"] | idx["test"]) == len(ds)
    for part, frac in ((s.test, 0.25), (s.val, 0.15)):
        for c, n in enumerate(part.class_counts()):
            assert n == round(frac * ds.class_counts()[c])
    assert s.train.classes == ds.classes and s.test.name == "digits"
    assert torch.equal(s.test.images, ds.images[torch.from_numpy(s.indices["test"])])


def test_split_parts_halve_the_pools_per_class_and_keep_test() -> None:
    ds = load_dataset("digits")
    whole = make_splits(ds, SplitSpec(split_seed=3))
    a, b = (make_splits(ds, SplitSpec(split_seed=3, part=p)) for p in ("A", "B"))
    for k in ("train", "val"):
        assert not set(a.indices[k]) & set(b.indices[k])  # disjoint halves ...
        assert sorted(set(a.indices[k]) | set(b.indices[k])) == sorted(whole.indices[k])  # ... of the whole pool
        for c, (na, nb) in enumerate(zip(getattr(a, k).class_counts(), getattr(b, k).class_counts())):
            assert 0 <= na - nb <= 1, c  # class-stratified: A gets the extra image of an odd count
    assert np.array_equal(a.indices["test"], whole.indices["test"]) and np.array_equal(
        b.indices["test"], whole.indices["test"]
    )
    # shots, max_train and val_shots apply inside the part
    few = make_splits(ds, SplitSpec(split_seed=3, part="B", shots=4, max_train=50))
    assert set(few.indices["train"]) <= set(b.indices["train"]) and set(few.indices["val"]) <= set(b.indices["val"])
    assert few.train.class_counts() == [4] * 10
    with pytest.raises(PetlError, match="part"):
        SplitSpec(part="a")


def test_test_set_fixed_by_split_seed_only() -> None:
    ds = load_dataset("mnist5k")
    runs = [make_splits(ds, SplitSpec(shots=5, shot_seed=seed)) for seed in range(3)]
    full = make_splits(ds, SplitSpec(max_train=200))
    for r in runs[1:] + [full]:
        assert np.array_equal(r.indices["test"], runs[0].indices["test"])
    assert not np.array_equal(runs[0].indices["train"], runs[1].indices["train"])
    other = make_splits(ds, SplitSpec(shots=5, split_seed=1))
    assert not np.array_equal(other.indices["test"], runs[0].indices["test"])


def test_k_shot_splits_and_val_shots() -> None:
    ds = load_dataset("digits")
    s = make_splits(ds, SplitSpec(shots=10, shot_seed=2))
    assert s.train.class_counts() == [10] * 10 and s.val.class_counts() == [10] * 10
    assert make_splits(ds, SplitSpec(shots=10, shot_seed=2)).indices["train"].tolist() == s.indices["train"].tolist()
    s2 = make_splits(ds, SplitSpec(shots=10, val_shots=3))
    assert s2.val.class_counts() == [3] * 10
    # default val_shots is capped by the smallest val pool (26 on digits) instead of failing
    big = make_splits(ds, SplitSpec(shots=50))
    assert big.train.class_counts() == [50] * 10 and big.val.class_counts() == [26] * 10
    with pytest.raises(PetlError) as e:
        make_splits(ds, SplitSpec(shots=200))
    msg = one_line_error(e)
    assert "class 0 ('0')" in msg and "k=200" in msg and "train pool" in msg
    with pytest.raises(PetlError) as e:
        make_splits(ds, SplitSpec(shots=5, val_shots=100))
    assert "val pool" in one_line_error(e)


def test_max_train_caps_stratified() -> None:
    ds = load_dataset("animals")
    s = make_splits(ds, SplitSpec(max_train=300, dedup=False))  # equal classes (dedup leaves them unequal)
    assert len(s.train) == 300 and s.train.class_counts() == [30] * 10
    assert len(make_splits(ds, SplitSpec(max_train=300)).train) == 300
    bigger = make_splits(ds, SplitSpec(max_train=500, dedup=False))
    assert set(s.indices["train"].tolist()) <= set(bigger.indices["train"].tolist())


def test_small_classes_get_one_per_split() -> None:
    ds = toy([3, 4, 2, 1, 20])
    s = make_splits(ds, SplitSpec(val_fraction=0.1, test_fraction=0.1))
    assert s.train.class_counts()[:2] == [1, 2] and s.val.class_counts()[:2] == [1, 1]
    assert s.test.class_counts()[:2] == [1, 1]
    assert (s.train.class_counts()[2], s.test.class_counts()[2], s.val.class_counts()[2]) == (1, 1, 0)
    assert (s.train.class_counts()[3], s.test.class_counts()[3]) == (1, 0)
    assert sum(s.sizes().values()) == len(ds)


def test_split_spec_validation_and_round_trip() -> None:
    spec = SplitSpec(shots=4, shot_seed=1, max_train=100)
    assert SplitSpec.from_dict(spec.to_dict()) == spec
    bad_specs = (
        dict(test_fraction=1.2),
        dict(val_fraction=0.6, test_fraction=0.4),
        dict(shots=0),
        dict(split_seed=-2),
    )
    for bad in bad_specs:
        with pytest.raises(PetlError) as e:
            SplitSpec(**bad)
        one_line_error(e)


# ---------------------------------------------------------------- image folders


def save(path: Path, size: tuple[int, int] = (10, 12), color: object = 128, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder_loads_gray_and_color(tmp_path: Path) -> None:
    save(tmp_path / "b_dog" / "1.png")
    save(tmp_path / "b_dog" / "2.jpg", color=(200, 10, 10), mode="RGB")
    save(tmp_path / "a_cat" / "x.bmp", size=(20, 24))
    save(tmp_path / "a_cat" / "y.PNG", color=(0, 255, 0, 0), mode="RGBA")  # fully transparent -> black
    (tmp_path / "a_cat" / ".DS_Store").write_bytes(b"\x00junk")  # hidden files are skipped
    (tmp_path / "README.txt").write_text("top-level files are ignored")
    ds = load_dataset(str(tmp_path))
    assert ds.classes == ["a_cat", "b_dog"] and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.name == f"folder:{tmp_path.resolve()}" and ds.channels == 3  # one colour image -> RGB
    assert tuple(ds.images.shape) == (4, 3, 12, 10)  # most common size (H, W) = (12, 10)
    assert int(ds.images[1].max()) == 0
    gray = load_image_folder(tmp_path, image_size=16, mode="L")
    assert tuple(gray.images.shape) == (4, 1, 16, 16)
    assert load_dataset(ds.name, image_size=8).images.shape[-1] == 8  # the recorded name loads again
    with pytest.raises(PetlError) as e:
        load_dataset(str(tmp_path), n=3)
    assert "image_size" in one_line_error(e)


def test_image_folder_gray_when_no_colour(tmp_path: Path) -> None:
    save(tmp_path / "a" / "1.png", mode="RGB", color=(90, 90, 90))  # RGB file holding gray pixels
    save(tmp_path / "b" / "1.png")
    ds = load_image_folder(tmp_path)
    assert ds.channels == 1 and ds.images[:, 0, 0, 0].tolist() == [90, 128]


def test_image_folder_errors(tmp_path: Path) -> None:
    def err(path: Path, **kw: object) -> str:
        with pytest.raises(PetlError) as e:
            load_image_folder(path, **kw)
        return one_line_error(e)

    assert "does not exist" in err(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"x")
    assert "not a directory" in err(tmp_path / "file.png")
    (tmp_path / "empty").mkdir()
    assert "no class subfolders" in err(tmp_path / "empty")

    one = tmp_path / "one"
    save(one / "only" / "a.png")
    assert "need at least 2 classes" in err(one)

    no_img = tmp_path / "no_img"
    save(no_img / "a" / "1.png")
    (no_img / "b").mkdir()
    assert "b has no images" in err(no_img)

    corrupt = tmp_path / "corrupt"
    save(corrupt / "a" / "1.png")
    save(corrupt / "b" / "1.png")
    (corrupt / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert "broken.png" in err(corrupt)

    other = tmp_path / "other"
    save(other / "a" / "1.png")
    save(other / "b" / "1.png")
    (other / "b" / "notes.txt").write_text("hi")
    msg = err(other)
    assert "notes.txt" in msg and "not an image" in msg

    nested = tmp_path / "nested"
    save(nested / "a" / "1.png")
    save(nested / "b" / "sub" / "1.png")
    assert "sub" in err(nested)
    assert "mode" in err(nested, mode="CMYK")


def test_load_dataset_path_that_is_missing(tmp_path: Path) -> None:
    with pytest.raises(PetlError) as e:
        load_dataset(str(tmp_path / "nope"))
    assert "does not exist" in one_line_error(e)
