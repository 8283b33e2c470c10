"""Seeded, stratified train / val / test splits and class-balanced k-shot sampling.

The protocol, recorded in every artefact as a :class:`SplitSpec`:

1. Each class's indices are shuffled by ``split_seed`` alone. The first ``round(test_fraction * n_c)`` go to test,
   the next ``round(val_fraction * n_c)`` to val, the rest form the train pool. So the test set never depends on
   ``shots``, ``shot_seed``, ``val_fraction`` or ``max_train``: every run on one dataset and ``split_seed`` is
   scored on the same images.
2. Small classes: with a fraction > 0, a class of at least 3 images gives every split at least one image; with 2
   images, train and test get one each; a single image goes to train.
3. ``max_train`` caps the train pool (per-class quota by largest remainder, a prefix of the same shuffle, so smaller
   caps are subsets of larger ones).
4. ``shots = k`` draws k train images per class from the train pool with ``shot_seed``; val then gets ``val_shots``
   per class from the val pool (default: ``k``, the few-shot protocol, capped at the smallest class's val pool; an
   explicit ``val_shots`` larger than a class's val pool is an error). Draws are nested: with one seed, the k-shot
   set is a subset of the (k+1)-shot set. ``val_shots`` without ``shots`` caps the val set per class.
5. ``part = "A" | "B"`` (the validation protocol: the probe and the selectors decide on A, the judge scores on B):
   each class's train pool and val pool are cut in two by ``split_seed`` on a stream of their own (A gets the
   extra image of an odd count), before rule 3 and 4 apply inside the part. The test split is the same for A, B
   and ``None`` (the whole pools).

Before any of this (``dedup=True``, the default), images with identical content are reduced to one copy, so no image
is in two splits: the content is the decoded pixel array of an in-memory dataset and the file bytes of an image
folder (:func:`content_hashes`). A content seen under two different labels drops every copy. What was removed is
``Splits.removed`` (:func:`deduplicate`).

**Predefined splits.** A dataset whose source gives the splits (``ds.predefined``: an image folder with ``train/``,
``val/``, ``test/`` subfolders, datasets given per split) keeps them instead of rule 1: the train pool is the given
train split (shuffled by ``split_seed``, for ``max_train``), val and test are the given ones. A split the source
lacks is drawn from each class's train images by rules 1-2 with its own fraction (``val_fraction`` or
``test_fraction``; the other is 0). Rules 3-5 then apply unchanged: ``shots`` draws from the train split only, and
parts A and B halve the given train and val splits per class (test is the given one for both). Deduplication works
inside each split; an image found in two given splits stays in both (moving it would change the source's splits)
and is counted in ``SplitRecord.shared`` instead.

What a split used is :attr:`Splits.record` (:class:`SplitRecord`: predefined or random, where from, the counts);
artefacts store it in their data (``DataSpec.split_record``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ..constraints import Interval, Options, Unset, invalid, validate_fields
from ..errors import PetlError
from .dataset import SPLIT_NAMES, ImageDataset

if TYPE_CHECKING:
    from .stream import ImageFiles

# Second stream of shot_seed (numpy SeedSequence entropy [shot_seed, 1]) so val draws are independent of train draws.
_VAL_STREAM = 1
# Stream of split_seed (SeedSequence entropy [split_seed, 2]) that halves the pools into parts A and B.
_PART_STREAM = 2
#: The halves a split can be restricted to (None: the whole pools).
PARTS = ("A", "B")


_FRACTION = Interval(Real, 0, 1, closed="left")
_COUNT = Interval(Integral, 1, None, closed="left")
_SEED = Interval(Integral, 0, None, closed="left")


@dataclass
class SplitSpec:
    """How a dataset is split; JSON-serialisable (plain fields only) and validated on construction."""

    val_fraction: float = 0.15
    test_fraction: float = 0.25
    split_seed: int = 0
    shots: int | None = None  # k-shot per class for train (None = the whole train pool)
    shot_seed: int = 0
    val_shots: int | None = None  # per-class val size; default = shots when shots is set, else the whole val pool
    max_train: int | None = None  # cap on the full train pool (stratified); ignored when shots is set
    dedup: bool = True  # one copy of each identical image before splitting; conflicting labels drop every copy
    part: str | None = None  # "A" | "B": one half of the train and val pools (rule 5); None: the whole pools

    #: Fields added after artefacts and trial logs existed, with the value every record written before implies
    #: (splits were not deduplicated and used the whole pools): a stored record that lacks a field reads it so, and
    #: trial keys leave it out while it holds it (:func:`~petl_analysis.trials.key_json`), so the committed logs keep
    #: their keys.
    LEGACY_VALUES: ClassVar[dict[str, Any]] = {"dedup": False, "part": None}

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "val_fraction": [_FRACTION],
        "test_fraction": [_FRACTION],
        "split_seed": [_SEED],
        "shots": [_COUNT, Unset("the full training set")],
        "shot_seed": [_SEED],
        "val_shots": [_COUNT, Unset("the full validation set")],
        "max_train": [_COUNT, Unset("no cap")],
        "dedup": ["boolean"],
        "part": [Options(str, PARTS), Unset("the whole pools")],
    }
    #: A user sets these by the CLI options of the same names, and reads the message by what the field means (not
    #: ``SplitSpec.shots``).
    _field_meanings: ClassVar[dict[str, str]] = {
        "val_fraction": "the share of each class held out for validation",
        "test_fraction": "the share of each class held out for test",
        "split_seed": "the split's seed",
        "shots": "training images per class",
        "shot_seed": "the seed of the k-shot draw",
        "val_shots": "validation images per class",
        "max_train": "the cap on the training set",
        "dedup": "deduplication",
        "part": "the split's part",
    }

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise invalid(
                "val_fraction + test_fraction", "< 1 to leave a train pool", self.val_fraction + self.test_fraction
            )

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> SplitSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise PetlError(f"SplitSpec: unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(names))}")
        return cls(**d)  # type: ignore[arg-type]


@dataclass
class SplitRecord:
    """Which split a study used: what artefacts record (``DataSpec.split_record``) and reports show.

    Attributes:
        kind: ``"predefined"`` (the dataset's own splits) or ``"random"`` (drawn by the fractions and the seed).
        counts: images in each split in use (``train``, ``val``, ``test``); with ``shots`` the train count is per
            seed (each seed draws its own sample of that size).
        source: predefined: where the splits come from (``folder /data/x``).
        given: predefined: each given split's name in the source (``{"train": "train800", "val": "val200"}``).
        drawn: predefined: the splits the source lacks, drawn from its train split (``val_fraction`` /
            ``test_fraction`` of each class, ``split_seed``).
        shared: predefined, with deduplication: identical images found in two given splits, per pair
            (``{"train/test": 2}``); they stay where the source puts them.
    """

    kind: str
    counts: dict[str, int] = field(default_factory=dict)
    source: str = ""
    given: dict[str, str] = field(default_factory=dict)
    drawn: list[str] = field(default_factory=list)
    shared: dict[str, int] = field(default_factory=dict)

    def describe(self, spec: SplitSpec) -> str:
        """One line: ``predefined: train/val/test from folder /x (train 24 / val 12 / test 12 images)`` or
        ``random: val 0.15 / test 0.25 of each class, split seed 0 (train 1,079 / val 270 / test 448 images)``."""
        counts = " / ".join(f"{s} {self.counts[s]:,}" for s in SPLIT_NAMES if s in self.counts)
        counts = f" ({counts} images)" if counts else ""
        if self.kind != "predefined":
            part = f"; part {spec.part}: one half of each class's train and val pools" if spec.part else ""
            return (
                f"random: val {spec.val_fraction:g} / test {spec.test_fraction:g} of each class, split seed "
                f"{spec.split_seed}{counts}{part}"
            )
        text = f"predefined: {'/'.join(self.given.values())} from {self.source}{counts}"
        for split in self.drawn:
            fraction = spec.val_fraction if split == "val" else spec.test_fraction
            text += f"; {split} drawn from {self.given['train']} ({fraction:g} of each class, split seed {spec.split_seed})"
        for pair, n in self.shared.items():
            a, b = pair.split("/")
            text += f"; {n:,} image(s) of {b} identical to {a} images, kept in both"
        if spec.part is not None:
            text += f"; part {spec.part}: one half of each class's {self.given['train']} and val images"
        return text


@dataclass
class Splits:
    """The three datasets (in memory, or file indexes of a folder) and the spec that made them.

    ``indices`` maps ``"train" | "val" | "test"`` to int64 indices into the source dataset (sorted), for audit.
    ``removed`` is what deduplication left out before splitting (:func:`deduplicate`; empty with ``dedup=False``).
    ``record`` says which split this is (predefined or random, the counts): :class:`SplitRecord`.
    """

    train: ImageDataset | ImageFiles
    val: ImageDataset | ImageFiles
    test: ImageDataset | ImageFiles
    spec: SplitSpec
    indices: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    removed: dict[str, int] = field(default_factory=dict)
    record: SplitRecord | None = None

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _as_numpy_labels(labels: torch.Tensor | np.ndarray | Sequence[int]) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise PetlError(f"labels must be a 1-D integer array; got {arr.dtype} of shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def _class_name(c: int, classes: Sequence[str] | None) -> str:
    return f"class {c} ({classes[c]!r})" if classes is not None and 0 <= c < len(classes) else f"class {c}"


def sample_k_shot(
    labels: torch.Tensor | np.ndarray | Sequence[int],
    k: int,
    seed: int | Sequence[int],
    *,
    classes: Sequence[str] | None = None,
    pool: str = "pool",
) -> np.ndarray:
    """Pick exactly ``k`` indices per class, without replacement.

    Args:
        labels: int labels ``(N,)``.
        k: images per class.
        seed: an int (or a sequence of ints, numpy ``SeedSequence`` style); the same seed gives the same indices,
            and for one seed the k-shot draw is a subset of the (k+1)-shot draw.
        classes: class names; when given, every class ``0..len(classes)-1`` must be present (and errors name it).
        pool: what ``labels`` is, for error messages (e.g. ``"train pool"``).

    Returns:
        Sorted int64 indices into ``labels``, ``k * num_classes`` of them.

    Raises:
        PetlError: a class with fewer than ``k`` images (the message names the class, its size and k).
    """
    y = _as_numpy_labels(labels)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise PetlError(f"k (shots per class) must be a positive integer; got {k!r}")
    present = np.unique(y)
    wanted = np.arange(len(classes)) if classes is not None else present
    counts = np.bincount(y, minlength=int(wanted.max(initial=-1)) + 1) if y.size else np.zeros(len(wanted), int)
    rng = np.random.default_rng(seed)
    picked = []
    for c in wanted:
        n_c = int(counts[c]) if c < len(counts) else 0
        if n_c < k:
            raise PetlError(
                f"{_class_name(int(c), classes)} has {n_c} images in the {pool}; k={k} shots per class "
                f"need at least {k}"
            )
        idx = np.flatnonzero(y == c)
        # A full permutation (not choice(k)) keeps draws nested across k for one seed.
        picked.append(idx[rng.permutation(n_c)[:k]])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def _split_counts(n_c: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(n_test, n_val) for one class of ``n_c`` images; see rule 2 in the module docstring."""
    n_test = int(round(test_fraction * n_c))
    n_val = int(round(val_fraction * n_c))
    if n_c >= 3:
        n_test = max(n_test, 1) if test_fraction > 0 else 0
        n_val = max(n_val, 1) if val_fraction > 0 else 0
        while n_test + n_val > n_c - 1:  # keep at least one for train; shrink the larger split first
            if n_test >= n_val:
                n_test -= 1
            else:
                n_val -= 1
    elif n_c == 2:
        n_test, n_val = (1 if test_fraction > 0 else 0), (1 if val_fraction > 0 and test_fraction == 0 else 0)
    else:
        n_test, n_val = 0, 0
    return n_test, n_val


def _quota(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes proportionally to ``counts`` (largest remainder), never above a class's count."""
    if total >= counts.sum():
        return counts.copy()
    raw = counts * (total / counts.sum())
    q = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - q), kind="stable")
    for c in order[: total - q.sum()]:
        q[c] += 1
    return np.minimum(q, counts)


def content_hashes(ds: ImageDataset | ImageFiles) -> list[bytes]:
    """One digest per image: of its decoded ``uint8`` pixels and their shape (in memory), or of its file's bytes (an
    :class:`~petl_analysis.data.stream.ImageFiles` index, memoised on it). Equal digests mean identical content."""
    if isinstance(ds, ImageDataset):
        x = np.ascontiguousarray(ds.images.numpy())
        shape = repr(x.shape[1:]).encode()
        return [hashlib.blake2b(shape + row.tobytes(), digest_size=16).digest() for row in x]
    return ds.content_hashes()


def duplicate_mask(hashes: Sequence[bytes], labels: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Which images to keep: the first of each group of identical ones, none of a group whose copies carry different
    labels. Pure (hashes and labels in, mask out), so it is tested apart from any dataset.

    Returns:
        A bool mask ``(N,)`` and the counts ``{"groups": contents seen more than once, "duplicates": extra copies
        dropped from groups with one label, "conflicting": images dropped because their group has several labels}``.
    """
    first: dict[bytes, int] = {}
    members: dict[bytes, list[int]] = {}
    for i, h in enumerate(hashes):
        if first.setdefault(h, i) != i:
            members.setdefault(h, [first[h]]).append(i)
    keep = np.ones(len(hashes), dtype=bool)
    duplicates = conflicting = 0
    for group in members.values():
        if len(set(labels[group].tolist())) > 1:
            keep[group] = False
            conflicting += len(group)
        else:
            keep[group[1:]] = False
            duplicates += len(group) - 1
    return keep, {"groups": len(members), "duplicates": duplicates, "conflicting": conflicting}


def _split_codes(ds: ImageDataset | ImageFiles) -> np.ndarray | None:
    predefined = getattr(ds, "predefined", None)
    return predefined.codes.numpy() if predefined is not None else None


def deduplicate(ds: ImageDataset | ImageFiles) -> tuple[np.ndarray, dict[str, int]]:
    """:func:`duplicate_mask` of ``ds`` (content by :func:`content_hashes`): the images ``make_splits`` keeps.

    With predefined splits, inside each split only (an image in two given splits is kept in both:
    :func:`shared_across_splits` counts them)."""
    hashes = content_hashes(ds)
    codes = _split_codes(ds)
    if codes is not None:
        hashes = [h + bytes([int(c)]) for h, c in zip(hashes, codes)]
    return duplicate_mask(hashes, ds.labels.numpy())


def shared_across_splits(hashes: Sequence[bytes], codes: np.ndarray, keep: np.ndarray | None = None) -> dict[str, int]:
    """Identical contents found in two splits, per pair of splits (``{"train/test": 2}``, pairs with none left out):
    of the images ``keep`` marks (all by default). Pure, like :func:`duplicate_mask`."""
    seen: dict[bytes, set[int]] = {}
    for i, (h, c) in enumerate(zip(hashes, codes)):
        if keep is None or keep[i]:
            seen.setdefault(h, set()).add(int(c))
    out: dict[str, int] = {}
    for a in range(len(SPLIT_NAMES)):
        for b in range(a + 1, len(SPLIT_NAMES)):
            n = sum(1 for s in seen.values() if a in s and b in s)
            if n:
                out[f"{SPLIT_NAMES[a]}/{SPLIT_NAMES[b]}"] = n
    return out


def _part_of(
    val_by_class: list[np.ndarray], pool_by_class: list[np.ndarray], spec: SplitSpec
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Rule 5: each class's val pool and train pool cut in two halves by ``split_seed``'s own stream; ``spec.part``'s
    half of each. The cut does not depend on anything but ``split_seed`` and the class's pool, so A and B are
    disjoint and together the whole pools."""
    rng = np.random.default_rng([spec.split_seed, _PART_STREAM])
    first = spec.part == PARTS[0]

    def half(idx: np.ndarray) -> np.ndarray:
        shuffled = idx[rng.permutation(len(idx))]
        cut = (len(idx) + 1) // 2
        return shuffled[:cut] if first else shuffled[cut:]

    return [half(v) for v in val_by_class], [half(p) for p in pool_by_class]


def make_splits(ds: ImageDataset | ImageFiles, spec: SplitSpec | None = None) -> Splits:
    """Split ``ds`` into train / val / test following ``spec`` (protocol in the module docstring).

    Returns:
        :class:`Splits` whose datasets keep ``ds.classes`` and ``ds.name``; the three index sets are disjoint.
    """
    spec = spec if spec is not None else SplitSpec()
    y = ds.labels.numpy()
    k = ds.num_classes
    keep, removed = deduplicate(ds) if spec.dedup else (None, {})
    codes = _split_codes(ds)
    if codes is None:
        rng = np.random.default_rng(spec.split_seed)
        test_idx, val_idx, pool_by_class = [], [], []
        for c in range(k):
            idx = np.flatnonzero(y == c) if keep is None else np.flatnonzero((y == c) & keep)
            idx = idx[rng.permutation(len(idx))]
            n_test, n_val = _split_counts(len(idx), spec.val_fraction, spec.test_fraction)
            test_idx.append(idx[:n_test])
            val_idx.append(idx[n_test : n_test + n_val])
            pool_by_class.append(idx[n_test + n_val :])
        record = SplitRecord("random")
    else:
        test_idx, val_idx, pool_by_class = _given_pools(y, k, codes, keep, ds.predefined.names, spec)
        shared = shared_across_splits(content_hashes(ds), codes, keep) if spec.dedup else {}
        names = ds.predefined.names
        record = SplitRecord(
            "predefined",
            source=ds.predefined.source,
            given={s: names[s] for s in SPLIT_NAMES if s in names},
            drawn=[s for s in SPLIT_NAMES if s not in names],
            shared=shared,
        )
    if spec.part is not None:
        val_idx, pool_by_class = _part_of(val_idx, pool_by_class, spec)

    if spec.shots is not None:
        pool = np.concatenate(pool_by_class)
        train = pool[sample_k_shot(y[pool], spec.shots, spec.shot_seed, classes=ds.classes, pool="train pool")]
    elif spec.max_train is not None:
        quota = _quota(np.array([len(p) for p in pool_by_class], dtype=np.int64), spec.max_train)
        train = np.concatenate([p[:q] for p, q in zip(pool_by_class, quota)])
    else:
        train = np.concatenate(pool_by_class)

    val = np.concatenate(val_idx)
    val_k = spec.val_shots
    if val_k is None and spec.shots is not None:
        # Default few-shot val: k per class, capped by the smallest class's val pool (a 50-shot run on digits has only
        # ~27 val images per class); an explicit val_shots is strict instead.
        val_k = min([spec.shots] + [len(v) for v in val_idx])
        val_k = val_k if val_k > 0 else None
    if val_k is not None:
        val = val[sample_k_shot(y[val], val_k, (spec.shot_seed, _VAL_STREAM), classes=ds.classes, pool="val pool")]

    indices = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(np.concatenate(test_idx))}
    record.counts = {s: len(indices[s]) for s in SPLIT_NAMES}
    return Splits(
        train=ds.subset(indices["train"]),
        val=ds.subset(indices["val"]),
        test=ds.subset(indices["test"]),
        spec=spec,
        indices=indices,
        removed=removed,
        record=record,
    )


def _given_pools(
    y: np.ndarray, k: int, codes: np.ndarray, keep: np.ndarray | None, given: dict[str, str], spec: SplitSpec
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per class: the test split, the val pool and the train pool of predefined splits (module docstring); a split
    the source lacks is drawn from the class's train images with ``split_seed``."""
    rng = np.random.default_rng(spec.split_seed)
    val_fraction = spec.val_fraction if "val" not in given else 0.0
    test_fraction = spec.test_fraction if "test" not in given else 0.0
    test_idx, val_idx, pool_by_class = [], [], []
    for c in range(k):
        in_class = y == c if keep is None else (y == c) & keep
        train, val, test = (np.flatnonzero(in_class & (codes == s)) for s in range(len(SPLIT_NAMES)))
        # Shuffled even when nothing is drawn: max_train takes a prefix of the train pool.
        train = train[rng.permutation(len(train))]
        n_test, n_val = _split_counts(len(train), val_fraction, test_fraction)
        if "test" not in given:
            test = train[:n_test]
        if "val" not in given:
            val = train[n_test : n_test + n_val]
        test_idx.append(test)
        val_idx.append(val)
        pool_by_class.append(train[n_test + n_val :])
    return test_idx, val_idx, pool_by_class
