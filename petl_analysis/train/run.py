"""The train stage: one adaptation method (or a plan) on one dataset, over seeds, as a :class:`RunResult`.

The classifier starts from the linear probe of the frozen backbone by default (``head_init="lp"``), the analogue
of the KAdaptation paper's language-initialised head; ``"random"`` starts from a fresh head. Every method, the
``linear`` baseline included, then trains for the recipe's epochs from that head: a baseline gets the same training
budget as what it is compared with.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..accounting import ParamCount, count_parameters
from ..artefacts import Artefact
from ..engine import EpochLog, FitResult, Recipe, evaluate, fit, loss_still_falling, pack_correct
from ..epoch_log import logging_epochs, prepare_epoch_log
from ..errors import PetlError
from ..models import BUNDLED_MODEL, ModelSpec, spec_with_load
from ..models.factory import WEIGHTS_DEFAULT
from ..task import (
    DataSpec,
    InputConversion,
    build_task,
    fit_linear_probe,
    open_data,
    prepare_model,
)
from ..tuners import MethodConfig, apply_method, config_from_dict, get_method, save_adapter

HEAD_INITS = ("lp", "random")


def default_train_recipe() -> Recipe:
    """The recipe ``train``, ``sweep`` and ``validate`` use unless told otherwise (one shared default, so runs compare)."""
    return Recipe(epochs=30, batch_size=64, lr=3e-3, head_lr=3e-3, weight_decay=1e-4, warmup_epochs=2.0)


@dataclass
class SeedRun:
    """One seed's outcome. Accuracies are fractions; ``test_acc`` is at the best-validation epoch."""

    seed: int
    val_acc: float | None
    test_acc: float | None
    last_val_acc: float | None
    last_test_acc: float | None
    best_epoch: int
    epochs_run: int
    n_train: int
    wall_time_s: float
    train_loss: list[float] = field(default_factory=list)
    val_curve: list[float] = field(default_factory=list)
    steps: int = 0  # optimizer steps taken (fewer than epochs x batches under the recipe's max_steps)
    #: Accuracy of the kept model on another data's validation split (``train_one_seed``'s ``also_val``; validate:
    #: split A's, where the regret's reference plan is chosen), None when not asked. In memory only (the sweep's
    #: trial result carries it), so the sweep and run artefacts keep their fields.
    also_val_acc: float | None = field(default=None, metadata={"transient": True})
    #: Which validation images the kept model got right (:func:`~petl_analysis.engine.pack_correct`), for the
    #: validation's image bootstrap. In memory only, like ``also_val_acc`` (the sweep's trial result carries it).
    val_correct: str | None = field(default=None, metadata={"transient": True})

    @property
    def loss_still_falling(self) -> bool:
        """More epochs would likely have helped (:func:`~petl_analysis.engine.loss_still_falling` of the curve)."""
        return loss_still_falling(self.train_loss)

    @property
    def loss_rose(self) -> bool:
        """The training loss ended above its first epoch's (or not finite): the sign of a learning rate too high
        for the model, e.g. full fine-tuning of a pretrained backbone at an adapter's rate."""
        losses = self.train_loss
        return len(losses) >= 2 and not losses[-1] <= losses[0]


@dataclass
class RunResult(Artefact):
    """Output of ``petl-analyze train``: one method configuration over seeds."""

    SCHEMA = "run_result"
    VERSION = 1

    method: str
    config: dict[str, Any]
    model: ModelSpec
    data: DataSpec
    recipe: Recipe
    head_init: str
    trainable: dict[str, int]
    seeds: list[SeedRun]
    test_acc_mean: float
    test_acc_std: float
    val_acc_mean: float
    last_test_acc_mean: float
    wall_time_s: float
    label: str = ""
    plan: str | None = None
    #: How the dataset's images were converted for the model (channels, size).
    input_conversion: InputConversion | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label or self.method,
            "method": self.method,
            "trainable": self.trainable["total_incl_head"],
            "trainable_excl_head": self.trainable["total_excl_head"],
            "test_acc": self.test_acc_mean,
            "test_std": self.test_acc_std,
            "last_test_acc": self.last_test_acc_mean,
            "val_acc": self.val_acc_mean,
            "seeds": len(self.seeds),
            "time_s": round(self.wall_time_s, 1),
        }


def train_one_seed(
    model: ModelSpec,
    data: DataSpec,
    config: MethodConfig,
    recipe: Recipe,
    seed: int,
    *,
    head_init: str = "lp",
    device: str = "cpu",
    adapter_dir: str | Path | None = None,
    adapter_record: dict[str, Any] | None = None,
    callback: Callable[[EpochLog], None] | None = None,
    also_val: DataSpec | None = None,
    compile: bool = False,
    grad_checkpointing: bool = False,
) -> tuple[SeedRun, dict[str, int]]:
    """Train ``config`` for one seed; returns the seed's result and the itemised trainable counts.

    ``also_val``: other data of the same dataset (e.g. split A where ``data`` is split B) whose validation split the
    kept model is also scored on (``SeedRun.also_val_acc``): an extra evaluation, no extra training.

    ``adapter_dir``: save the trained (best-validation) adapter there (:func:`~petl_analysis.tuners.save_adapter`),
    its record holding ``model``, the seed, its validation accuracy and ``adapter_record``.

    ``callback``, ``compile``, ``grad_checkpointing``: :func:`~petl_analysis.engine.fit`'s (checkpointing applies to
    the adapted model)."""
    if head_init not in HEAD_INITS:
        raise PetlError(f"unknown head init {head_init!r}; expected one of: {', '.join(HEAD_INITS)}")
    data = data.for_seed(seed)
    ds = open_data(data)
    net = prepare_model(model, ds.num_classes, seed=seed)
    task = build_task(data, net, dataset=ds, augment=recipe.augment)
    start = time.perf_counter()
    if head_init == "lp":
        fit_linear_probe(net, task, recipe, seed=seed, device=device)
    method = apply_method(net, config)
    res: FitResult = fit(
        net,
        task.train,
        task.val,
        recipe,
        test=task.test,
        seed=seed,
        device=device,
        callback=callback,
        compile=compile,
        grad_checkpointing=grad_checkpointing,
    )
    if adapter_dir is not None:
        save_adapter(
            net,
            method,
            adapter_dir,
            model_spec=model,
            extra={"seed": seed, "val_acc": res.val_acc, **(adapter_record or {})},
        )
    also_val_acc = None
    if also_val is not None:
        other = build_task(also_val.for_seed(seed), net, dataset=ds)
        also_val_acc = evaluate(net, other.val, device=device, batch_size=recipe.eval_batch_size, amp=recipe.amp)[0]
    run = SeedRun(
        seed,
        res.val_acc,
        res.test_acc,
        res.last_val_acc,
        res.last_test_acc,
        res.best_epoch,
        res.epochs_run,
        res.n_train,
        time.perf_counter() - start,
        res.train_loss,
        res.val_curve,
        steps=res.steps,
        also_val_acc=also_val_acc,
        val_correct=pack_correct(res.val_correct) if res.val_correct is not None else None,
    )
    return run, res.trainable


@dataclass
class MethodCount:
    """What a method adds to a model, counted two ways (``train --dry-run``): in closed form (``expected``) and on
    the injected model (``counted``); ``model`` is the spec built (weights need not load for a count)."""

    model: ModelSpec
    num_classes: int
    expected: ParamCount
    counted: ParamCount

    @property
    def matches(self) -> bool:
        return self.expected == self.counted


def count_method(model: ModelSpec, config: MethodConfig, num_classes: int) -> MethodCount:
    """Build ``model`` with a ``num_classes`` head, inject ``config`` and count: no data, no training. A count does
    not depend on the weights, so a model other than the bundled one is built with random weights (nothing is
    downloaded or converted)."""
    if model.weights == WEIGHTS_DEFAULT and model.name != BUNDLED_MODEL:
        model = dataclasses.replace(model, weights="random")
    net = prepare_model(model, num_classes)
    method = get_method(config)
    expected = method.expected_count(net)
    method.apply(net)
    return MethodCount(model, num_classes, expected, count_parameters(net))


def run_method(
    model: ModelSpec,
    data: DataSpec,
    config: MethodConfig | dict[str, Any],
    recipe: Recipe | None = None,
    seeds: list[int] | int = 3,
    *,
    head_init: str = "lp",
    device: str = "cpu",
    label: str = "",
    plan: str | None = None,
    adapter_dir: str | Path | None = None,
    on_seed: Callable[[SeedRun], None] | None = None,
    callback: Callable[[EpochLog], None] | None = None,
    compile: bool = False,
    grad_checkpointing: bool = False,
    log_to: str | None = None,
) -> RunResult:
    """Train one method configuration over ``seeds`` and summarise (mean/std over seeds).

    ``callback`` is called after every epoch of every seed (in seed order); ``compile``, ``grad_checkpointing``:
    :func:`~petl_analysis.engine.fit`'s; ``log_to``: where epochs are logged (:mod:`~petl_analysis.epoch_log`, ``train``)."""
    from ..study import Study

    config = config_from_dict(config) if isinstance(config, dict) else config
    recipe = recipe or default_train_recipe()
    seed_list = _seed_list(seeds)
    start = time.perf_counter()
    study = Study(model, data, device=device)
    conversion = study.conversion
    prepare_epoch_log(log_to)
    with logging_epochs(log_to, kind="train"):
        runs, trainable = _train_seeds(
            model,
            data,
            config,
            recipe,
            seed_list,
            on_seed,
            head_init=head_init,
            device=device,
            adapter_dir=adapter_dir,
            callback=callback,
            compile=compile,
            grad_checkpointing=grad_checkpointing,
        )
    return summarise(
        config.method,
        config.to_dict(),
        spec_with_load(model, study.template),
        study.data_record,
        recipe,
        head_init,
        trainable,
        runs,
        time.perf_counter() - start,
        label=label,
        plan=plan,
        input_conversion=conversion,
    )


def _seed_list(seeds: list[int] | int) -> list[int]:
    """``seeds`` as a list (an int ``n``: seeds 0 to n - 1); none is refused."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise PetlError("at least one seed is needed")
    return seed_list


def _train_seeds(
    model: ModelSpec,
    data: DataSpec,
    config: MethodConfig,
    recipe: Recipe,
    seeds: list[int],
    on_seed: Callable[[SeedRun], None] | None,
    *,
    adapter_dir: str | Path | None,
    **options: Any,
) -> tuple[list[SeedRun], dict[str, int]]:
    """:func:`run_method`'s seeds, in order (``options``: :func:`train_one_seed`'s); every seed's run and the last
    seed's trainable-parameter count."""
    runs, trainable = [], {}
    for seed in seeds:
        run, trainable = train_one_seed(
            model,
            data,
            config,
            recipe,
            seed,
            adapter_dir=Path(adapter_dir) / f"seed{seed}" if adapter_dir else None,
            **options,
        )
        runs.append(run)
        if on_seed:
            on_seed(run)
    return runs, trainable


def summarise(
    method,
    config,
    model,
    data,
    recipe,
    head_init,
    trainable,
    runs,
    wall,
    *,
    label="",
    plan=None,
    input_conversion: InputConversion | None = None,
) -> RunResult:
    def stats(values: list[float | None]) -> tuple[float, float]:
        vals = [v for v in values if v is not None]
        return (float(np.mean(vals)), float(np.std(vals))) if vals else (float("nan"), float("nan"))

    test_mean, test_std = stats([r.test_acc for r in runs])
    return RunResult(
        method=method,
        config=config,
        model=model,
        data=data,
        recipe=recipe,
        head_init=head_init,
        trainable=trainable,
        seeds=runs,
        test_acc_mean=test_mean,
        test_acc_std=test_std,
        val_acc_mean=stats([r.val_acc for r in runs])[0],
        last_test_acc_mean=stats([r.last_test_acc for r in runs])[0],
        wall_time_s=wall,
        label=label,
        plan=plan,
        input_conversion=input_conversion,
    )
