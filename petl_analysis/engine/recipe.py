"""The training recipe: one serialisable description of how every probe trial, baseline and adapter run trains."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar

from ..constraints import Interval, Options, Satisfies, Unset, invalid, validate_fields

#: The optimizers named before timm's factory built them; every other name of ``timm.optim.list_optimizers()`` works
#: too. ``sgd`` is SGD with classical momentum (timm's ``momentum``); timm's ``sgd`` (Nesterov) is ``nesterov``.
OPTIMIZERS = ("adamw", "sgd")
#: Our optimizer names whose timm name differs (kept, so a recipe trains as it always did).
TIMM_OPTIMIZER_NAMES = {"sgd": "momentum"}
SCHEDULES = ("cosine", "constant")
#: Which epoch's model a training keeps and scores: the best on validation (validation is then a maximum over the
#: epochs, so it flatters the score it reports) or the last one of a fixed schedule.
EPOCH_SELECTIONS = ("val", "last")
#: Mixed precision: ``auto`` (bf16 on a CUDA GPU that has it, fp16 with a gradient scaler on one that does not, fp32
#: on CPU), ``bf16``, ``fp16`` (with a gradient scaler) or ``off`` (fp32). See :func:`~.train.amp_dtype`.
AMP_MODES = ("auto", "bf16", "fp16", "off")


_AT_LEAST_ONE = Interval(Integral, 1, None, closed="left")
_POSITIVE = Interval(Real, 0, None, closed="neither")
_NON_NEGATIVE = Interval(Real, 0, None, closed="left")
_FRACTION = Interval(Real, 0, 1, closed="left")


def optimizer_names() -> tuple[str, ...]:
    """Every optimizer a recipe may name: ours, then timm's (imports timm)."""
    from timm.optim import list_optimizers

    return OPTIMIZERS + tuple(n for n in list_optimizers() if n not in OPTIMIZERS)


@dataclass
class Recipe:
    """Optimisation settings shared by all stages (recorded with every result so runs are comparable).

    Attributes:
        epochs: passes over the training set.
        batch_size: training batch size (the last, smaller batch is kept).
        optimizer: ``"adamw"``, ``"sgd"`` (classical momentum ``momentum``) or any other name of timm's optimizer
            factory (``timm.optim.list_optimizers()``: ``adam``, ``nesterov``, ``lamb``, ``lion``, ...), which
            builds it (``timm.optim.create_optimizer_v2``).
        lr: peak learning rate of the backbone / adapter parameters.
        head_lr: learning rate of the classifier; ``None`` uses ``lr``.
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD); never applied to biases, norms or ``theta_d``.
        momentum: momentum of the optimizers that have one (``sgd``, ``nesterov``, ``rmsprop``, ...).
        layer_decay: layer-wise learning-rate decay (BEiT): the parameters of layer ``i`` of ``L`` (the layers of
            the model's timm ``group_matcher``: embeddings, each block, then the final norm and head) train at
            ``lr * layer_decay ** (L - 1 - i)``; the head keeps ``head_lr``. ``None``: one rate for all (the usual
            choice for adapters; 0.65-0.75 is the usual one for full fine-tuning of a pretrained ViT).
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
    layer_decay: float | None = None

    #: Added after trial logs existed: left out of trial keys at their defaults (see ``trials.key_json``).
    KEY_OMIT_IF_DEFAULT: ClassVar[tuple[str, ...]] = ("max_steps", "augment", "epoch_selection", "layer_decay")
    #: Values written in JSON (artefacts, trial keys) as files made before the field took them hold them.
    JSON_ENCODING: ClassVar[dict[str, dict[Any, Any]]] = {"amp": {"auto": True, "off": False}}
    #: What each field accepts (:mod:`petl_analysis.constraints`): one phrasing for this class and study files.
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "epochs": [_AT_LEAST_ONE],
        "batch_size": [_AT_LEAST_ONE],
        "optimizer": [
            Options(
                str,
                optimizer_names,  # timm's names are read only for a name not in OPTIMIZERS (it imports torch)
                fast=OPTIMIZERS,
                what="adamw, sgd or another optimizer of timm.optim.list_optimizers()",
            )
        ],
        "lr": [_POSITIVE],
        "head_lr": [_POSITIVE, Unset("lr")],
        "weight_decay": [_NON_NEGATIVE],
        "momentum": [_FRACTION],
        "warmup_epochs": [_NON_NEGATIVE],
        "schedule": [Options(str, SCHEDULES)],
        "label_smoothing": [_FRACTION],
        "patience": [Interval(Integral, 0, None, closed="left"), Unset("no early stopping")],
        "grad_clip": [_NON_NEGATIVE, Unset("no clipping")],  # 0: off too
        "eval_batch_size": [_AT_LEAST_ONE],
        # the flag this field was: files and trial keys made then hold true/false (read as auto/off)
        "amp": [Options(str, AMP_MODES), Satisfies(lambda v: isinstance(v, bool), "true (auto) or false (off)")],
        "max_steps": [_AT_LEAST_ONE, Unset("every epoch")],
        "augment": ["boolean"],
        "epoch_selection": [Options(str, EPOCH_SELECTIONS)],
        "layer_decay": [Interval(Real, 0, 1, closed="right"), Unset("one rate for all layers")],
    }

    def __post_init__(self) -> None:
        for name in self.JSON_ENCODING:  # amp: the flag it was, as JSON still writes it
            setattr(self, name, self.decoded(name, getattr(self, name)))
        validate_fields(self)
        if self.epoch_selection == "last" and self.patience is not None:
            # early stopping reads validation, which a fixed schedule does not
            raise invalid("Recipe.patience", "unset with epoch_selection='last' (or select on 'val')", self.patience)

    @classmethod
    def decoded(cls, name: str, value: Any) -> Any:
        """Field ``name``'s value as written in JSON or a study file, as the field takes it (``amp``: ``true`` is
        ``"auto"``, ``false`` is ``"off"``); any other value as it is."""
        encoding = cls.JSON_ENCODING.get(name, {})
        if isinstance(value, str):
            return value
        return next((mode for mode, written in encoding.items() if written is value), value)

    @property
    def timm_optimizer(self) -> str:
        """The name timm's optimizer factory knows this recipe's optimizer by."""
        return TIMM_OPTIMIZER_NAMES.get(self.optimizer, self.optimizer)
