"""The training loop every stage uses: probe trials, baselines and adapter runs.

It trains exactly the parameters with ``requires_grad=True``, evaluates on the validation split every epoch, keeps
the best-validation state (never selected on test; ``Recipe.epoch_selection="val"``) or the last epoch's (a fixed
schedule, ``"last"``), and reports test accuracy both at the kept epoch and at the last.
Data is anything :mod:`.batches` accepts: an in-memory ``TensorDataset`` or a streamed dataset. On CUDA the forward
passes run under the autocast ``Recipe.amp`` resolves to on the device (:mod:`.precision`: bf16 where the GPU has it,
fp16 with a gradient scaler where it does not, fp32 on CPU).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..accounting import classifier, count_parameters
from ..device import resolve_device
from ..errors import PetlError
from .acceleration import compiled, set_grad_checkpointing
from .batches import Batches, Examples, num_examples
from .precision import autocast, grad_scaler
from .recipe import Recipe


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial is recorded as failed."""


@dataclass
class EpochLog:
    """Progress of one epoch, passed to :func:`fit`'s ``callback`` and to every :func:`epoch_listener`.

    Attributes:
        epoch, epochs: this epoch (from 1) of the recipe's; ``train_loss``: its mean training loss.
        val_acc: its validation accuracy (None where it was not evaluated); ``best_val_acc``: the best so far.
        elapsed_s: seconds since the fit started; ``seed``: the fit's seed.
    """

    epoch: int
    epochs: int
    train_loss: float
    val_acc: float | None
    best_val_acc: float | None
    elapsed_s: float
    seed: int | None = None


_EPOCH_LISTENERS: list[Callable[[EpochLog], None]] = []


@contextlib.contextmanager
def epoch_listener(listener: Callable[[EpochLog], None]) -> Iterator[None]:
    """While open, ``listener`` is called with the :class:`EpochLog` of every epoch of every :func:`fit` that runs
    in this process (a progress display, an epoch logger). A trial run in a worker process reports to that process's
    listeners only."""
    _EPOCH_LISTENERS.append(listener)
    try:
        yield
    finally:
        _EPOCH_LISTENERS.remove(listener)


@contextlib.contextmanager
def epoch_listeners_paused() -> Iterator[None]:
    """No :func:`epoch_listener` hears the fits inside (a linear probe's head on cached features: a sub-step of a
    trial, whose epochs would read as the trial's own)."""
    paused = _EPOCH_LISTENERS[:]
    _EPOCH_LISTENERS.clear()
    try:
        yield
    finally:
        _EPOCH_LISTENERS[:] = paused


@dataclass
class FitResult:
    """Outcome of :func:`fit`. Accuracies are fractions in [0, 1]; ``None`` where a split was not given."""

    best_epoch: int
    epochs_run: int
    val_acc: float | None
    test_acc: float | None
    last_val_acc: float | None
    last_test_acc: float | None
    train_loss: list[float] = field(default_factory=list)
    val_curve: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0
    steps: int = 0
    stopped_early: bool = False
    n_train: int = 0
    n_val: int = 0
    n_test: int = 0
    trainable: dict[str, int] = field(default_factory=dict)
    #: Which validation images the kept model classifies right (bool per image, in the split's order); ``None``
    #: without a validation split. The agreement's image bootstrap resamples these.
    val_correct: np.ndarray | None = field(default=None, repr=False)


def pack_correct(correct: np.ndarray) -> str:
    """Per-image correctness (bool vector) as a compact hex string (8 images a byte), for JSON records."""
    return np.packbits(np.asarray(correct, dtype=bool)).tobytes().hex()


def unpack_correct(packed: str, n: int) -> np.ndarray:
    """Inverse of :func:`pack_correct` for ``n`` images; a string of the wrong length is refused."""
    raw = np.frombuffer(bytes.fromhex(packed), dtype=np.uint8)
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"packed correctness holds {len(raw) * 8} bits, expected {n} images")
    return np.unpackbits(raw)[:n].astype(bool)


def loss_still_falling(train_loss: list[float], window: float = 0.1, tol: float = 0.05) -> bool:
    """Whether the training loss was still falling at the end: more than ``tol`` of the run's whole loss reduction
    came in its last ``window`` share of the epochs (at least one epoch).

    Under a cosine schedule the step in that last tenth is below 3% of its peak, so a run that still gains 5% of
    its progress there stopped short of what its recipe could reach. (Measured against the run's own progress, not
    the loss level: a loss creeping from 0.080 to 0.077 after falling from 2.0 has stopped.)"""
    if len(train_loss) < 2:
        return False
    k = min(len(train_loss) - 1, max(1, round(window * len(train_loss))))
    first, before, last = (float(train_loss[i]) for i in (0, -k - 1, -1))
    total = first - last
    return total > 0 and (before - last) / total > tol


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _param_groups(model: nn.Module, recipe: Recipe) -> list[dict]:
    head = classifier(model)
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    scales = _layer_scales(model, recipe.layer_decay) if recipe.layer_decay is not None else {}
    groups: dict[tuple, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = id(p) in head_ids
        # No decay on biases, norms, 1-d tensors, prompts or theta_d: decay would pull them to zero, not to theta_0.
        decay = p.ndim >= 2 and not name.endswith(("bias", "theta_d")) and "prompt" not in name
        key = (is_head, decay, 1.0 if is_head else scales.get(name, 1.0)) if scales else (is_head, decay)
        groups.setdefault(key, []).append(p)
    out = []
    for key, params in groups.items():
        is_head, decay = key[:2]
        lr = (recipe.head_lr or recipe.lr) if is_head else recipe.lr * (key[2] if scales else 1.0)
        out.append({"params": params, "lr": lr, "weight_decay": recipe.weight_decay if decay else 0.0})
    return out


def _layer_scales(model: nn.Module, layer_decay: float) -> dict[str, float]:
    """``name -> layer_decay ** (L - 1 - layer)`` per parameter, the layers as timm's layer-wise decay numbers them
    (the model's ``group_matcher``: embeddings 0, block i at i + 1, the final norm and head last; a parameter no
    group names is in the last layer, as in ``timm.optim.param_groups_layer_decay``)."""
    from timm.models import group_parameters

    if not hasattr(model, "group_matcher"):  # all in one layer: the decay would silently do nothing
        raise PetlError(
            f"recipe layer_decay needs a timm model that numbers its layers (group_matcher); "
            f"{type(model).__name__} has none: unset layer_decay"
        )
    layers = group_parameters(model, model.group_matcher(coarse=False), reverse=True)
    last = max(layers.values(), default=0)
    return {name: layer_decay ** (last - layers.get(name, last)) for name, _ in model.named_parameters()}


def _make_optimizer(groups: list[dict], recipe: Recipe) -> torch.optim.Optimizer:
    """timm's optimizer factory on our parameter groups (each carries its lr and weight decay)."""
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(groups, opt=recipe.timm_optimizer, lr=recipe.lr, momentum=recipe.momentum)


def _lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def evaluate(
    model: nn.Module,
    data: Examples,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
    amp: str = "auto",
) -> tuple[float, float]:
    """Accuracy (fraction) and mean cross-entropy of ``model`` on ``data``; restores the model's train/eval mode.
    ``amp``: the forward's precision (:func:`~.precision.amp_dtype`)."""
    acc, loss, _ = evaluate_images(model, data, device=device, batch_size=batch_size, amp=amp)
    return acc, loss


@torch.no_grad()
def evaluate_images(
    model: nn.Module,
    data: Examples,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
    amp: str = "auto",
) -> tuple[float, float, np.ndarray]:
    """:func:`evaluate` with, third, whether each example (in ``data``'s order) was classified right."""
    dev = resolve_device(device)
    return _evaluate(model, Batches(data, batch_size, device=dev), amp)


@torch.no_grad()
def _evaluate(model: nn.Module, batches: Batches, amp: str) -> tuple[float, float, np.ndarray]:
    """:func:`evaluate_images` over prepared batches; the loss and hits stay on the device until the pass ends (one
    host sync per pass, not one per batch). The loss sums in float64, as Python floats summed it before."""
    dev = batches.device
    was_training = model.training
    model.eval()
    loss_sum, hits = torch.zeros((), dtype=torch.float64, device=dev), []
    for x, y in batches():
        with autocast(dev, amp):
            logits = model(x)
        logits = logits.float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").double()
        hits.append(logits.argmax(-1) == y)
    model.train(was_training)
    correct = torch.cat(hits).cpu().numpy().astype(bool) if hits else np.zeros(0, dtype=bool)
    n = max(1, num_examples(batches.data))
    return float(correct.sum()) / n, loss_sum.item() / n, correct


#: Steps between two reads of the training loss on the host: a read waits for the device to finish its queued
#: work, so reading every step would stall a GPU each step. A diverging run is caught at the next read (or at the
#: epoch's end), naming the step where the loss first stopped being finite.
DIVERGENCE_CHECK_EVERY = 32


class _LossWatch:
    """The training loss kept on the device: the epoch's sum (float64, as Python floats summed it) and the first
    step whose loss was not finite, read every :data:`DIVERGENCE_CHECK_EVERY` steps and at the epoch's end."""

    def __init__(self, device: torch.device, steps_per_epoch: int) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.sum = torch.zeros((), dtype=torch.float64, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_value = torch.zeros((), device=device)

    def add(self, loss: torch.Tensor, n: int, step: int) -> None:
        loss = loss.detach()
        new_bad = (self.first_bad < 0) & ~torch.isfinite(loss)
        self.first_bad = torch.where(new_bad, step, self.first_bad)
        self.bad_value = torch.where(new_bad, loss, self.bad_value)
        self.sum += loss.double() * n
        if (step + 1) % DIVERGENCE_CHECK_EVERY == 0:
            self.check()

    def check(self) -> None:
        """Raise :class:`TrainingDiverged` naming the first step whose loss was NaN or infinite, if any."""
        bad = int(self.first_bad.item())
        if bad >= 0:
            raise TrainingDiverged(
                f"loss became {self.bad_value.item()} at epoch {bad // self.steps_per_epoch + 1}, step {bad + 1}"
            )

    def epoch_mean(self, seen: int) -> float:
        """The epoch's mean loss over its ``seen`` examples (after :meth:`check`); starts the next epoch's sum."""
        self.check()
        mean = self.sum.item() / max(1, seen)
        self.sum.zero_()
        return mean


def _snapshot(params: Iterable[nn.Parameter]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def fit(
    model: nn.Module,
    train: Examples,
    val: Examples | None,
    recipe: Recipe,
    *,
    test: Examples | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    callback: Callable[[EpochLog], None] | None = None,
    compile: bool = False,
    grad_checkpointing: bool = False,
) -> FitResult:
    """Train ``model``'s trainable parameters on ``train``; select the epoch on ``val``; report ``test``.

    The model is left on ``device`` holding the best-validation parameters (the last ones if ``val`` is None or
    ``recipe.epoch_selection == "last"``, when ``val_acc`` is the last epoch's and only the last epoch is evaluated:
    ``val_curve`` then holds that one score).
    With ``recipe.max_steps`` training stops after that many optimizer steps (the learning-rate schedule is laid
    out over the capped length), and the partial last epoch is evaluated like any other.

    ``callback`` is called after every epoch with its :class:`EpochLog`. ``compile`` trains and evaluates through
    ``torch.compile(model)``; ``grad_checkpointing`` recomputes each block's activations in the backward pass (timm's
    ``set_grad_checkpointing``, turned off again when fit returns). Neither changes what is computed
    (:mod:`.acceleration`).

    Raises:
        TrainingDiverged: the training loss became NaN/inf.
        PetlError: nothing to train, an empty training set, or ``compile``/``grad_checkpointing`` impossible here.
    """
    dev = resolve_device(device)
    params, n = _trainable(model, train)
    seed_everything(seed)
    model.to(dev)
    if grad_checkpointing:
        set_grad_checkpointing(model, True)
    net = compiled(model, dev) if compile else model  # shares model's parameters
    loop = _Loop(net, model, _make_optimizer(_param_groups(model, recipe), recipe), params, recipe, dev, n, seed)
    result = _new_result(model, n, val, test)
    best = _BestEpoch(keep_state=recipe.epoch_selection == "val")
    start = time.perf_counter()
    # One DataLoader (and its workers) per split for the whole fit, not one per epoch.
    loop.open(train)
    val_batches = Batches(val, recipe.eval_batch_size, device=dev) if val is not None and len(val) else None
    _epochs(loop, best, result, val_batches, callback, start)
    result.steps = loop.step
    loop.batches = val_batches = None  # their DataLoader workers stop before the test split's start
    _finish(result, net, params, best, val, test, dev, recipe)
    result.wall_time_s = time.perf_counter() - start
    if grad_checkpointing:
        set_grad_checkpointing(model, False)
    return result


def _trainable(model: nn.Module, train: Examples) -> tuple[list[nn.Parameter], int]:
    """The parameters :func:`fit` trains and the number of training examples; refused when either is none."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise PetlError("nothing to train: no parameter of the model has requires_grad=True")
    n = num_examples(train)
    if n == 0:
        raise PetlError("the training split is empty")
    return params, n


def _new_result(model: nn.Module, n: int, val: Examples | None, test: Examples | None) -> FitResult:
    """An empty :class:`FitResult` with the split sizes and the trainable-parameter count."""
    result = FitResult(best_epoch=0, epochs_run=0, val_acc=None, test_acc=None, last_val_acc=None, last_test_acc=None)
    result.n_train, result.n_val, result.n_test = n, num_examples(val), num_examples(test)
    result.trainable = count_parameters(model).as_dict()
    return result


class _Loop:
    """The optimisation of :func:`fit`: the learning-rate schedule over the (capped) steps, one epoch at a time, with
    the loss scaled under fp16 and divergence caught. ``net`` is what runs (``model`` or its compiled form, sharing
    its parameters); ``model`` names a parameter that became non-finite."""

    def __init__(
        self,
        net: nn.Module,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        params: list[nn.Parameter],
        recipe: Recipe,
        dev: torch.device,
        n: int,
        seed: int,
    ) -> None:
        self.net, self.model, self.optimizer, self.params = net, model, optimizer, params
        self.recipe, self.dev, self.n, self.seed = recipe, dev, n, seed
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.steps_per_epoch = math.ceil(n / recipe.batch_size)
        self.total_steps = self.steps_per_epoch * recipe.epochs
        if recipe.max_steps is not None:
            self.total_steps = min(self.total_steps, recipe.max_steps)
        self.warmup = min(self.total_steps, int(round(recipe.warmup_epochs * self.steps_per_epoch)))
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        self.scaler = grad_scaler(recipe.amp, dev)
        self.gen = torch.Generator().manual_seed(seed)
        self.step = 0
        self.batches: Batches | None = None

    def open(self, train: Examples) -> None:
        """The training split's batches for the whole fit, and the watch on its loss."""
        self.batches = Batches(train, self.recipe.batch_size, device=self.dev, seed=self.seed * 100_003)
        self.watch = _LossWatch(self.dev, self.steps_per_epoch)

    @property
    def done(self) -> bool:
        """Every step of the schedule taken (before the end of the last epoch only under ``max_steps``)."""
        return self.step >= self.total_steps

    def epoch(self, epoch: int) -> float:
        """One pass over the training split (shuffled by the seed); its mean training loss.

        Raises:
            TrainingDiverged: a step's loss was not finite, or a parameter is not at the epoch's end.
        """
        assert self.batches is not None
        self.net.train()
        order = torch.randperm(self.n, generator=self.gen)
        seen = 0
        for x, y in self.batches(order):
            self._step(x, y)
            seen += len(y)
            self.step += 1
            if self.done:  # before the end of the last epoch only under max_steps
                break
        epoch_loss = self.watch.epoch_mean(seen)  # raises first if a step's loss was not finite
        # The last step of an epoch can overflow the parameters while its loss was still finite; evaluating such a
        # model would report chance-level accuracy as if it were a result. (One host sync for all parameters.)
        if not torch.stack([torch.isfinite(p).all() for p in self.params]).all():
            bad = next(
                name for name, p in self.model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()
            )
            raise TrainingDiverged(f"parameter {bad} became non-finite at epoch {epoch + 1}, step {self.step}")
        return epoch_loss

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimizer step on the batch ``(x, y)`` at the schedule's learning rate."""
        recipe, optimizer, scaler = self.recipe, self.optimizer, self.scaler
        factor = _lr_factor(self.step, self.total_steps, self.warmup, recipe.schedule)
        for g, lr in zip(optimizer.param_groups, self.base_lrs):
            g["lr"] = lr * factor
        with autocast(self.dev, recipe.amp):
            logits = self.net(x)
        loss = self.loss_fn(logits.float(), y)
        self.watch.add(loss, len(y), self.step)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            if recipe.grad_clip:
                nn.utils.clip_grad_norm_(self.params, recipe.grad_clip)
            optimizer.step()
        else:  # fp16: scaled loss; clip the true gradients; a step with inf/nan gradients is skipped
            scaler.scale(loss).backward()
            if recipe.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(self.params, recipe.grad_clip)
            scaler.step(optimizer)
            scaler.update()


class _BestEpoch:
    """The best validation score so far (accuracy, then lower loss), its correctness per image and, when
    ``keep_state``, a copy of the trainable parameters then; ``since``: epochs evaluated since."""

    def __init__(self, keep_state: bool) -> None:
        self.keep_state = keep_state
        self.key: tuple[float, float] | None = None
        self.state: list[torch.Tensor] | None = None
        self.correct: np.ndarray | None = None
        self.last_correct: np.ndarray | None = None
        self.since = 0

    @property
    def val_acc(self) -> float | None:
        return self.key[0] if self.key else None

    def observe(self, val_acc: float, val_loss: float, correct: np.ndarray, params: list[nn.Parameter]) -> bool:
        """Record one evaluated epoch; whether it is the best so far."""
        self.last_correct = correct
        key = (val_acc, -val_loss)
        if self.key is None or key > self.key:
            self.key, self.state, self.since = key, _snapshot(params) if self.keep_state else None, 0
            self.correct = correct
            return True
        self.since += 1
        return False


def _epochs(
    loop: _Loop,
    best: _BestEpoch,
    result: FitResult,
    val_batches: Batches | None,
    callback: Callable[[EpochLog], None] | None,
    start: float,
) -> None:
    """:func:`fit`'s epochs: train, score on validation where it is read, tell the listeners, stop early (patience)
    or at the end of the schedule."""
    recipe = loop.recipe
    for epoch in range(recipe.epochs):
        result.train_loss.append(loop.epoch(epoch))
        result.epochs_run = epoch + 1
        val_acc = None
        # Under a fixed schedule nothing reads the earlier epochs' scores: only the last epoch is evaluated (on a
        # large validation pool, evaluating every epoch cost more than the training itself).
        final = epoch + 1 == recipe.epochs or loop.done
        if val_batches is not None and (best.keep_state or final):
            val_acc, val_loss, val_correct = _evaluate(loop.net, val_batches, recipe.amp)
            result.val_curve.append(val_acc)
            if best.observe(val_acc, val_loss, val_correct, loop.params):
                result.best_epoch = epoch + 1
        if callback is not None or _EPOCH_LISTENERS:
            elapsed = time.perf_counter() - start
            log = EpochLog(
                epoch + 1, recipe.epochs, result.train_loss[-1], val_acc, best.val_acc, elapsed, seed=loop.seed
            )
            for listener in ([callback] if callback is not None else []) + _EPOCH_LISTENERS:
                listener(log)
        if recipe.patience is not None and best.since >= recipe.patience:
            result.stopped_early = True
            break
        if loop.done:
            break


def _finish(
    result: FitResult,
    net: nn.Module,
    params: list[nn.Parameter],
    best: _BestEpoch,
    val: Examples | None,
    test: Examples | None,
    dev: torch.device,
    recipe: Recipe,
) -> None:
    """The scores of the last epoch, then the model back at the kept epoch and its scores."""
    if val is not None and len(val):
        result.last_val_acc = result.val_curve[-1]
    test_batches = Batches(test, recipe.eval_batch_size, device=dev) if test is not None and len(test) else None
    if test_batches is not None:
        result.last_test_acc = _evaluate(net, test_batches, recipe.amp)[0]
    if best.state is not None:
        with torch.no_grad():
            for p, saved in zip(params, best.state):
                p.copy_(saved)
        result.val_acc = best.val_acc
        result.val_correct = best.correct
    else:
        result.best_epoch = result.epochs_run
        result.val_acc = result.last_val_acc
        result.val_correct = best.last_correct
    if test_batches is not None:
        result.test_acc = (
            result.last_test_acc
            if result.best_epoch == result.epochs_run
            else _evaluate(net, test_batches, recipe.amp)[0]
        )
