"""Linear probing: the classifier of a frozen backbone trained on pre-logit features extracted once.

Every stage starts its head from this probe (the probe's ``lp`` baseline, the sweep's ``head_init="lp"``), so it is
the one place features are extracted: in memory for built-in data, cached on disk for streamed image folders
(:mod:`petl_analysis.features`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import TensorDataset

from . import features as feature_cache
from .accounting import classifier, count_parameters
from .data import StreamingImages
from .device import resolve_device
from .engine import Examples, FitResult, Recipe, fit, is_in_memory, iter_batches, labels_of
from .engine.precision import amp_dtype, autocast
from .engine.train import epoch_listeners_paused

if TYPE_CHECKING:
    from .task import Task


@torch.no_grad()
def extract_features(
    model: nn.Module,
    data: Examples,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
    cache_dir: str | Path | None = None,
    amp: str = "auto",
) -> TensorDataset:
    """Pre-logit features of a frozen ``model`` (``forward_head(..., pre_logits=True)``), shape ``(N, num_features)``.

    Streamed image files (:class:`StreamingImages` of a folder) are cached on disk (:mod:`petl_analysis.features`,
    ``cache_dir`` or the default directory): the returned features are then a memory map of the cache file,
    computed once per backbone, files and preprocessing. In-memory data, and items of other datasets (timm sources,
    Python datasets: no files to key a cache on), are computed in memory.
    ``amp``: the forward's precision (:func:`~petl_analysis.engine.precision.amp_dtype`; ``auto`` is fp32 on CPU).
    """
    dev = resolve_device(device)
    was_training = model.training
    model.eval().to(dev)
    labels = labels_of(data)
    writer = None
    if isinstance(data, StreamingImages) and data.cache_key() is not None:
        key = hashlib.sha1(
            f"{feature_cache.backbone_fingerprint(model)}|{data.cache_key()}|"
            f"{dev.type}:{_precision_tag(amp_dtype(amp, dev), dev)}".encode()
        ).hexdigest()
        path = feature_cache.cache_path(feature_cache.feature_cache_dir(cache_dir), key)
        cached = feature_cache.load_cached(path)
        if cached is not None and cached.shape == (len(data), model.num_features):
            model.train(was_training)
            return TensorDataset(cached, labels)
        writer = feature_cache.FeatureWriter(path, len(data), model.num_features)
    feats = []
    try:
        for x, _ in iter_batches(data, batch_size, device=dev):
            with autocast(dev, amp):
                f = model.forward_head(model.forward_features(x), pre_logits=True).float().cpu()
            if writer is not None:
                writer.write(f)
            else:
                feats.append(f)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        model.train(was_training)
    if writer is not None:
        return TensorDataset(feature_cache.load_cached(writer.commit()), labels)
    return TensorDataset(torch.cat(feats) if feats else torch.empty(0, model.num_features), labels)


def _precision_tag(dtype: torch.dtype | None, device: torch.device) -> str:
    """The feature cache key's precision: ``True``/``False`` as the keys made when amp was bf16-on-CUDA-or-fp32 say,
    the dtype's name otherwise."""
    if dtype is None or (dtype is torch.bfloat16 and device.type == "cuda"):
        return str(dtype is not None)
    return str(dtype).removeprefix("torch.")


def fit_linear_probe(
    model: nn.Module,
    task: Task,
    recipe: Recipe,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    score_test: bool = True,
) -> FitResult:
    """Train only the classifier of ``model`` on frozen features; the trained head is written back into ``model``.

    Features are computed once (for streamed data: cached on disk in ``cache_dir``, see :func:`extract_features`),
    so a probe costs one forward pass over the data plus a cheap logistic regression; ``recipe.max_steps`` does not
    cap that regression. The result's ``trainable`` counts are those of ``model`` with only its head trainable.
    ``score_test=False`` skips the test split's features (the result's test accuracy is then None) for a caller that
    only wants the head, e.g. the proxies' starting point; the head is the same either way.
    """
    train = task.train if task.train_plain is None else task.train_plain  # features never see augmentation
    sources = {"train": train, "val": task.val, **({"test": task.test} if score_test else {})}
    # In-memory data keeps the batch size it always had (512); streamed images use the recipe's evaluation batch.
    feats = {
        name: extract_features(
            model,
            data,
            device=device,
            amp=recipe.amp,
            cache_dir=cache_dir,
            batch_size=512 if is_in_memory(data) else recipe.eval_batch_size,
        )
        for name, data in sources.items()
    }
    head = classifier(model)
    if not isinstance(head, nn.Linear):
        raise TypeError(f"linear probing expects an nn.Linear classifier, got {type(head).__name__}")
    # Standardise features (train statistics) so one learning rate suits every backbone; folded back exactly below.
    mean = feats["train"].tensors[0].mean(0)
    std = feats["train"].tensors[0].std(0).clamp_min(1e-6) if len(feats["train"]) > 1 else torch.ones_like(mean)
    scaled = {k: TensorDataset((v.tensors[0] - mean) / std, v.tensors[1]) for k, v in feats.items()}
    probe = nn.Linear(head.in_features, head.out_features)
    with torch.no_grad():
        probe.weight.zero_()
        probe.bias.zero_()
    head_recipe = dataclasses.replace(recipe, lr=recipe.head_lr or recipe.lr, max_steps=None)
    with epoch_listeners_paused():  # a sub-step of the trial that asked for it, not an epoch of its own training
        result = fit(
            probe, scaled["train"], scaled["val"], head_recipe, test=scaled.get("test"), seed=seed, device=device
        )
    with torch.no_grad():
        w = probe.weight.cpu() / std
        head.weight.copy_(w.to(head.weight.device))
        head.bias.copy_((probe.bias.cpu() - w @ mean).to(head.bias.device))
    flags = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    head.requires_grad_(True)
    result.trainable = count_parameters(model).as_dict()
    for p in model.parameters():
        p.requires_grad_(flags[id(p)])
    return result
