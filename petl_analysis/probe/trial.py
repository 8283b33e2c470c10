"""One probe trial, run in a worker: a baseline (``lp``, ``head``, ``ft``) or theta_d of one target at one d."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..accounting import classifier
from ..data import open_dataset
from ..device import use_worker_device
from ..engine import Recipe, fit
from ..linear_probe import fit_linear_probe
from ..models import ModelSpec, resolve_targets
from ..task import DataSpec, Task, build_task, prepare_model
from ..trials import Trial, key_json
from .subspace import SubspaceModel


@functools.lru_cache(maxsize=2)
def _dataset(name: str, skip_bad_images: bool = False, data_dir: str | None = None):
    """Built-ins in memory, folders as a file index (decoded per batch); one per worker process."""
    return open_dataset(name, skip_bad_images=skip_bad_images, data_dir=data_dir)


@dataclass
class ProbeTrial:
    """What one probe trial trains: a baseline (``lp``, ``head``, ``ft`` with ``ft_lr``) or, with the subspace
    fields, theta_d of dimension ``d`` over ``units`` at learning rate ``lr``."""

    model: ModelSpec
    recipe: Recipe
    device: str
    threads: int
    data: DataSpec
    seed: int
    ft_lr: float | None = None
    units: list[str] | None = None
    d: int | None = None
    lr: float | None = None
    projection: str | None = None
    said: bool | None = None
    head: str | None = None


class _Memo:
    """Memoises ``fn`` on the canonical JSON of its arguments (specs holding dicts cannot be hashed for lru_cache)."""

    def __init__(self, fn: Callable[..., Any], maxsize: int) -> None:
        self.fn, self.maxsize, self.cache = fn, maxsize, {}
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any) -> Any:
        key = key_json(list(args))
        if key not in self.cache:
            if len(self.cache) >= self.maxsize:
                self.cache.pop(next(iter(self.cache)))
            self.cache[key] = self.fn(*args)
        return self.cache[key]

    def cache_clear(self) -> None:
        self.cache.clear()


def _prepare(model_spec: ModelSpec, data: DataSpec, seed: int, recipe: Recipe, device: str) -> tuple[Any, Task]:
    """The seed's task and a model with its linear-probe head (computed once per worker process)."""
    ds = _dataset(data.dataset, data.skip_bad_images, data.data_dir)
    model = prepare_model(model_spec, ds.num_classes, seed=seed)
    task = build_task(data, model, dataset=ds, augment=recipe.augment)
    lp = fit_linear_probe(model, task, recipe, seed=seed, device=device)
    return (model.cpu(), lp), task


_prepared = _Memo(_prepare, maxsize=8)


def probe_trial(trial: Trial) -> dict[str, Any]:
    """Worker: run one baseline (``lp``, ``head``, ``ft``) or ``subspace`` trial described by its :class:`ProbeTrial`."""
    p = trial.spec(ProbeTrial)
    torch.set_num_threads(max(1, p.threads))
    device, seed, recipe = str(use_worker_device(p.device)), p.seed, p.recipe
    (base, lp), task = _prepared(p.model, p.data, seed, recipe, device)
    if trial.kind == "lp":
        return _summary(lp, device)
    model = copy.deepcopy(base)
    head = classifier(model)
    options = {k: bool(v) for k, v in trial.options.items() if k in ("compile", "grad_checkpointing")}
    if trial.kind == "ft":
        model.requires_grad_(True)  # raw weights want a smaller step than subspace coordinates
        recipe = dataclasses.replace(recipe, lr=float(p.ft_lr), head_lr=recipe.head_lr or recipe.lr)
        res = fit(model, task.train, task.val, recipe, test=task.test, seed=seed, device=device, **options)
        return _summary(res, device, options)
    model.requires_grad_(False)
    if trial.kind == "head":  # d = 0: the trial recipe with no subspace, the curve's floor
        head.requires_grad_(True)
        res = fit(model, task.train, task.val, recipe, test=task.test, seed=seed, device=device, **options)
        return _summary(res, device, options)
    if trial.kind != "subspace":
        raise ValueError(f"unknown probe trial kind {trial.kind!r}")
    head.requires_grad_(p.head == "train")
    units = resolve_targets(model, p.units)
    wrapped = SubspaceModel(model, units, int(p.d), projection=p.projection, seed=seed, said=bool(p.said))
    recipe = dataclasses.replace(recipe, lr=float(p.lr), head_lr=recipe.head_lr or recipe.lr)
    options.pop("grad_checkpointing", None)  # functional_call's substitution cannot be recomputed
    res = fit(wrapped, task.train, task.val, recipe, test=task.test, seed=seed, device=device, **options)
    return _summary(res, device, options)


def _summary(res, device: str, options: dict[str, bool] | None = None) -> dict[str, Any]:
    return {
        "device": str(device),  # where and with how many torch threads the worker actually ran it
        "threads": torch.get_num_threads(),
        **{k: True for k, v in (options or {}).items() if v},  # compiled, checkpointed: how, not what
        "val_acc": res.val_acc,
        "test_acc": res.test_acc,
        "last_test_acc": res.last_test_acc,
        "best_epoch": res.best_epoch,
        "val_curve": res.val_curve,
        "train_loss": res.train_loss,
        "trainable": res.trainable,
        "n_train": res.n_train,
        "n_val": res.n_val,
        "n_test": res.n_test,
        "fit_time_s": res.wall_time_s,
    }
