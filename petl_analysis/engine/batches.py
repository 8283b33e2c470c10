"""One data interface for the engine: batches from an in-memory ``TensorDataset`` or from a streamed dataset.

Anything the engine trains or evaluates on is :data:`Examples`: a ``TensorDataset(x, y)`` (built-in data, cached
features) or a map-style ``torch.utils.data.Dataset`` whose items are ``(x, y)`` (e.g.
:class:`~petl_analysis.data.stream.StreamingImages`; its ``num_workers`` attribute, if any, sets the DataLoader
workers). :func:`iter_batches` yields ``(x, y)`` on the device in a given order for both:

- a ``TensorDataset`` is indexed exactly as before this interface existed (``x[idx]`` for an order, ``x[i:j]``
  in sequence), so in-memory results are bit-identical;
- a streamed dataset goes through a ``DataLoader`` whose sampler is the same order, so the same seed visits the
  same images in the same batches; decoding happens in worker processes, one batch ahead.

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


def iter_batches(
    data: Examples,
    batch_size: int,
    *,
    device: torch.device,
    order: torch.Tensor | None = None,
    seed: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches of ``data`` on ``device``.

    Args:
        order: int64 permutation of ``range(len(data))`` (training); ``None`` goes in index order (evaluation).
        seed: seeds the DataLoader workers' RNGs (random augmentation) of a streamed dataset, so runs repeat; the
            global torch RNG is not consumed.
    """
    n = len(data)  # type: ignore[arg-type]
    if isinstance(data, TensorDataset):
        x_all, y_all = data.tensors
        for i in range(0, n, batch_size):
            if order is None:
                x, y = x_all[i : i + batch_size], y_all[i : i + batch_size]
            else:
                idx = order[i : i + batch_size]
                x, y = x_all[idx], y_all[idx]
            yield _to(x, device), _to(y, device)
        return
    workers = int(getattr(data, "num_workers", 0))
    loader = DataLoader(
        data,
        batch_size=batch_size,
        sampler=order.tolist() if order is not None else None,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),
        prefetch_factor=2 if workers else None,
    )
    try:
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    except PetlError as e:
        # A worker's error comes back with its traceback folded into the message; keep the one line it raised
        # (e.g. a file that broke after the folder was opened).
        raise PetlError(str(e).rsplit("PetlError: ", 1)[-1]) from None


def take(data: Examples, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples at ``idx`` as CPU tensors ``(x, y)`` (in-memory: plain indexing)."""
    if isinstance(data, TensorDataset):
        x_all, y_all = data.tensors
        return x_all[idx], y_all[idx]
    items = [data[int(i)] for i in idx]
    return torch.stack([x for x, _ in items]), torch.as_tensor([int(y) for _, y in items], dtype=torch.int64)
