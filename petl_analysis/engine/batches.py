"""One data interface for the engine: batches from an in-memory ``TensorDataset`` or from a streamed dataset.

Anything the engine trains or evaluates on is :data:`Examples`: a ``TensorDataset(x, y)`` (built-in data, cached
features) or a map-style ``torch.utils.data.Dataset`` whose items are ``(x, y)`` (e.g.
:class:`~petl_analysis.data.stream.StreamingImages`; its ``num_workers`` attribute, if any, sets the DataLoader
workers). :func:`iter_batches` yields ``(x, y)`` on the device in a given order for both:

- a ``TensorDataset`` is indexed exactly as before this interface existed (``x[idx]`` for an order, ``x[i:j]``
  in sequence), so in-memory results are bit-identical;
- a streamed dataset goes through a ``DataLoader`` whose sampler is the same order, so the same seed visits the
  same images in the same batches; decoding happens in worker processes, one batch ahead. A fit builds one
  :class:`Batches` per split, so the DataLoader and its workers live for the whole fit, not one epoch.

On CUDA, CPU batches are pinned and copied with ``non_blocking=True``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Union

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..errors import PetlError

#: What the engine accepts as data.
Examples = Union[TensorDataset, Dataset]


def num_examples(data: Examples | None) -> int:
    return 0 if data is None else len(data)  # type: ignore[arg-type]


def is_in_memory(data: Examples) -> bool:
    return isinstance(data, TensorDataset)


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda" and t.device.type == "cpu":
        t = t.pin_memory()  # page-locked, so the copy below can overlap with compute
    return t.to(device, non_blocking=True)


def labels_of(data: Examples) -> torch.Tensor:
    """All labels ``(N,)`` without touching the inputs (a streamed dataset must expose ``labels``)."""
    if isinstance(data, TensorDataset):
        return data.tensors[1]
    labels = getattr(data, "labels", None)
    if labels is None:
        return torch.as_tensor([int(data[i][1]) for i in range(len(data))], dtype=torch.int64)
    return torch.as_tensor(labels)


class _Order(torch.utils.data.Sampler[int]):
    """A sampler whose order is set before each pass (so one DataLoader, and its workers, serves every epoch)."""

    def __init__(self, n: int) -> None:
        self.order: list[int] = list(range(n))

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class Batches:
    """Batches of one dataset over many passes (every epoch of a fit): built once, its DataLoader too.

    A streamed dataset's DataLoader and its worker processes persist across passes (``persistent_workers``), each
    pass's order set on its sampler: workers are started once per fit, not once per epoch. The workers' RNGs are
    seeded once, from ``seed``, so random augmentation repeats from run to run. In-memory data is indexed directly.

    Args:
        data: the examples; ``batch_size``: per batch (the last, smaller batch is kept); ``device``: where batches go.
        seed: seeds a streamed dataset's worker RNGs; the global torch RNG is not consumed.
    """

    def __init__(self, data: Examples, batch_size: int, *, device: torch.device, seed: int = 0) -> None:
        self.data, self.batch_size, self.device = data, batch_size, device
        self.loader: DataLoader | None = None
        if isinstance(data, TensorDataset):
            return
        workers = int(getattr(data, "num_workers", 0))
        self._order = _Order(len(data))  # type: ignore[arg-type]
        self.loader = DataLoader(
            data,
            batch_size=batch_size,
            sampler=self._order,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
            prefetch_factor=2 if workers else None,
            persistent_workers=workers > 0,
        )

    def __call__(self, order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass: ``(x, y)`` on the device, in ``order`` (int64 permutation of the indices; None: index order)."""
        n = len(self.data)  # type: ignore[arg-type]
        if self.loader is None:
            x_all, y_all = self.data.tensors  # type: ignore[union-attr]
            for i in range(0, n, self.batch_size):
                if order is None:
                    x, y = x_all[i : i + self.batch_size], y_all[i : i + self.batch_size]
                else:
                    idx = order[i : i + self.batch_size]
                    x, y = x_all[idx], y_all[idx]
                yield _to(x, self.device), _to(y, self.device)
            return
        self._order.order = order.tolist() if order is not None else list(range(n))
        try:
            for x, y in self.loader:
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        except PetlError as e:
            # A worker's error comes back with its traceback folded into the message; keep the one line it raised
            # (e.g. a file that broke after the folder was opened).
            raise PetlError(str(e).rsplit("PetlError: ", 1)[-1]) from None


def iter_batches(
    data: Examples,
    batch_size: int,
    *,
    device: torch.device,
    order: torch.Tensor | None = None,
    seed: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches of ``data`` on ``device``: one pass of :class:`Batches` (whose DataLoader is for
    this pass only; a fit makes one :class:`Batches` per split instead).

    Args:
        order: int64 permutation of ``range(len(data))`` (training); ``None`` goes in index order (evaluation).
        seed: seeds the DataLoader workers' RNGs (random augmentation) of a streamed dataset, so runs repeat; the
            global torch RNG is not consumed.
    """
    return Batches(data, batch_size, device=device, seed=seed)(order)


def take(data: Examples, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples at ``idx`` as CPU tensors ``(x, y)`` (in-memory: plain indexing)."""
    if isinstance(data, TensorDataset):
        x_all, y_all = data.tensors
        return x_all[idx], y_all[idx]
    items = [data[int(i)] for i in idx]
    return torch.stack([x for x, _ in items]), torch.as_tensor([int(y) for _, y in items], dtype=torch.int64)
