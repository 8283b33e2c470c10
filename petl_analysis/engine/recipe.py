"""The training recipe: one serialisable description of how every probe trial, baseline and adapter run trains."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import PetlError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
#: Which epoch's model a training keeps and scores: the best on validation (validation is then a maximum over the
#: epochs, so it flatters the score it reports) or the last one of a fixed schedule.
EPOCH_SELECTIONS = ("val", "last")
#: Mixed precision: ``auto`` (bf16 on a CUDA GPU that has it, fp16 with a gradient scaler on one that does not, fp32
#: on CPU), ``bf16``, ``fp16`` (with a gradient scaler) or ``off`` (fp32). See :func:`~.train.amp_dtype`.
AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass
class Recipe:
    """Optimisation settings shared by all stages (recorded with every result so runs are comparable).

    Attributes:
        epochs: passes over the training set.
        batch_size: training batch size (the last, smaller batch is kept).
        optimizer: ``"adamw"`` or ``"sgd"`` (momentum ``momentum``).
        lr: peak learning rate of the backbone / adapter parameters.
        head_lr: learning rate of the classifier; ``None`` uses ``lr``.
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD); never applied to biases, norms or ``theta_d``.
        warmup_epochs: linear warm-up length in epochs (fractional allowed), then ``schedule``.
        schedule: ``"cosine"`` (to zero) or ``"constant"``.
        label_smoothing: cross-entropy label smoothing.
        patience: stop after this many epochs without a better validation score (``None``: never).
        grad_clip: max global gradient norm (``None``: off).
        eval_batch_size: batch size for evaluation.
        amp: mixed precision, one of :data:`AMP_MODES`, resolved per device by :func:`~.train.amp_dtype`; ``auto``
            is fp32 on CPU. Written ``true`` (``auto``) and ``false`` (``off``) in JSON, as files and trial keys
            made when this was a flag hold it; ``True``/``False`` are read as those.
        max_steps: stop after this many optimizer steps in all (``None``: run every epoch); the learning-rate
            schedule spans the capped length. For quick runs of large models; not applied to a linear probe's head
            on cached features, which is cheap.
        augment: timm's training augmentation (random resized crop, flip, colour jitter) on streamed image
            folders; in-memory built-in datasets are never augmented.
        epoch_selection: ``"val"``: keep the best-validation epoch (test is reported at it; the validation score
            is then the maximum over epochs of the images it is reported on); ``"last"``: a fixed schedule, the
            last epoch is kept and scored (no ``patience``). The probe and validate use ``"last"``.
    """

    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 1e-3
    head_lr: float | None = None
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    label_smoothing: float = 0.0
    patience: int | None = None
    grad_clip: float | None = 1.0
    eval_batch_size: int = 512
    amp: str | bool = "auto"
    max_steps: int | None = None
    augment: bool = False
    epoch_selection: str = "val"

    #: Added after trial logs existed: left out of trial keys at their defaults (see ``trials.key_json``).
    KEY_OMIT_IF_DEFAULT: ClassVar[tuple[str, ...]] = ("max_steps", "augment", "epoch_selection")
    #: Values written in JSON (artefacts, trial keys) as files made before the field took them hold them.
    JSON_ENCODING: ClassVar[dict[str, dict[Any, Any]]] = {"amp": {"auto": True, "off": False}}

    def __post_init__(self) -> None:
        if isinstance(self.amp, bool):  # the flag this field was, as JSON still writes it
            self.amp = {v: k for k, v in self.JSON_ENCODING["amp"].items()}[self.amp]
        if self.amp not in AMP_MODES:
            raise PetlError(f"unknown amp {self.amp!r}; expected one of: {', '.join(AMP_MODES)}")
        if self.epochs < 1:
            raise PetlError(f"recipe epochs must be >= 1, got {self.epochs}")
        if self.max_steps is not None and (isinstance(self.max_steps, bool) or self.max_steps < 1):
            raise PetlError(f"recipe max_steps must be a positive integer or None, got {self.max_steps}")
        if self.batch_size < 1:
            raise PetlError(f"recipe batch_size must be >= 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise PetlError(f"unknown optimizer {self.optimizer!r}; expected one of: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise PetlError(f"unknown schedule {self.schedule!r}; expected one of: {', '.join(SCHEDULES)}")
        if self.epoch_selection not in EPOCH_SELECTIONS:
            raise PetlError(
                f"unknown epoch selection {self.epoch_selection!r}; expected one of: {', '.join(EPOCH_SELECTIONS)}"
            )
        if self.epoch_selection == "last" and self.patience is not None:
            raise PetlError(
                f"recipe patience={self.patience} stops on validation, which a fixed schedule "
                f"(epoch_selection='last') does not read; unset patience or select on 'val'"
            )
        if not self.lr > 0 or (self.head_lr is not None and not self.head_lr > 0):
            raise PetlError(f"learning rates must be > 0, got lr={self.lr}, head_lr={self.head_lr}")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or not 0 <= self.label_smoothing < 1:
            raise PetlError("weight_decay and warmup_epochs must be >= 0 and label_smoothing in [0, 1)")
