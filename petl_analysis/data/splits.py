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
from .dataset import ImageDataset

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
class Splits:
    """The three datasets (in memory, or file indexes of a folder) and the spec that made them.

    ``indices`` maps ``"train" | "val" | "test"`` to int64 indices into the source dataset (sorted), for audit.
    ``removed`` is what deduplication left out before splitting (:func:`deduplicate`; empty with ``dedup=False``).
    """

    train: ImageDataset | ImageFiles
    val: ImageDataset | ImageFiles
    test: ImageDataset | ImageFiles
    spec: SplitSpec
    indices: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    removed: dict[str, int] = field(default_factory=dict)

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


def deduplicate(ds: ImageDataset | ImageFiles) -> tuple[np.ndarray, dict[str, int]]:
    """:func:`duplicate_mask` of ``ds`` (content by :func:`content_hashes`): the images ``make_splits`` keeps."""
    return duplicate_mask(content_hashes(ds), ds.labels.numpy())


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
    rng = np.random.default_rng(spec.split_seed)
    test_idx, val_idx, pool_by_class = [], [], []
    for c in range(k):
        idx = np.flatnonzero(y == c) if keep is None else np.flatnonzero((y == c) & keep)
        idx = idx[rng.permutation(len(idx))]
        n_test, n_val = _split_counts(len(idx), spec.val_fraction, spec.test_fraction)
        test_idx.append(idx[:n_test])
        val_idx.append(idx[n_test : n_test + n_val])
        pool_by_class.append(idx[n_test + n_val :])
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
    return Splits(
        train=ds.subset(indices["train"]),
        val=ds.subset(indices["val"]),
        test=ds.subset(indices["test"]),
        spec=spec,
        indices=indices,
        removed=removed,
    )
