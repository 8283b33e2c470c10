"""What every adaptation method shares: config base class, registry, injection, counting, merging, save/load.

A method is a :class:`MethodConfig` dataclass (what to do; JSON-serialisable) plus a :class:`Method` (how; stateless
apart from its config: everything it adds lives in the model). Usage::

    method = apply_method(model, LoraConfig(targets=["attn.q", "attn.v"], rank=4))
    ...train...
    save_adapter(model, method, "out/adapter")           # tuners/saving.py
    method = load_adapter(fresh_model, "out/adapter")

Contract of :meth:`Method.apply` (in place): freeze every original parameter, inject the method's modules, make
the adapter parameters (and, with ``train_head``, the classifier ``model.get_classifier()``) trainable.
:meth:`Method.expected_count` gives the closed-form :class:`~petl_analysis.accounting.ParamCount` the model will
have after ``apply`` without injecting anything; the tests check it equals ``count_parameters`` for every method.

To add a method (the checklist; nothing else keeps a table of methods):

1. a folder ``tuners/<name>/`` (or one file) with ``config.py`` (a :class:`MethodConfig` dataclass, ``method =
   "<name>"``, what each option accepts in ``_parameter_constraints``, rules across options in ``validate``),
   ``layer.py`` (the modules it adds; weight deltas subclass
   :class:`~petl_analysis.tuners.deltas.DeltaMixin`) and ``model.py`` (the :class:`Method`: ``_check``, ``_inject``,
   ``_added``);
2. register it with everything the study, the report and the CLI read: ``@register_method(display_name=...,
   marker=..., short_name=..., sizing=PLANNED | FIXED | Knob(option, values), adds_tokens=..., peft_type=...)``; the planner, the
   study's plans, the report's names and markers, VPT's alternatives and the CLI's help all read it from there;
3. import it in ``tuners/__init__.py`` (where it is imported is where reports list it) and add its row to the table
   in that module's docstring;
4. add a ``Case`` to the common tester (``tests/test_tuners.py``): no-op at init, gradients, merge, closed-form
   count, save/load, batch independence; a test fails while a registered method has no case.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from numbers import Integral, Real
from typing import Any, ClassVar

import torch
from torch import nn

from ..accounting import AdapterModule, ParamCount, classifier, original_category
from ..constraints import Interval, ListOf, Options, Satisfies, validate_fields
from ..errors import PetlError
from ..models.catalogue import Unit, resolve_targets
from ..registry import Registry
from .deltas import TensorDeltas, has_deltas, merge_deltas, unload_deltas, unmerge_deltas

__all__ = [
    "FIXED",
    "METHODS",
    "PLANNED",
    "Added",
    "Knob",
    "Method",
    "MethodConfig",
    "apply_method",
    "config_from_dict",
    "config_from_settings",
    "get_method",
    "options_from_settings",
    "register_method",
]

#: Registry of adaptation methods: name -> :class:`Method` subclass (whose ``config_class`` is its config).
METHODS: Registry[type[Method]] = Registry("method")


# ----------------------------------------------------------------------------------------------------------- config
_TARGET_SPEC = Satisfies(lambda t: isinstance(t, str) and bool(t.strip()), "a non-empty str")
_TARGET_EXAMPLES = "target specs such as 'attn.q' or 'blocks[0-5].mlp'"
#: ``targets`` of a method that adapts them: at least one catalogue spec.
TARGETS = ListOf(_TARGET_SPEC, non_empty=True, what=_TARGET_EXAMPLES)
#: ``targets`` of a method that ignores them (``uses_targets = False``): any list, usually empty.
IGNORED_TARGETS = ListOf(_TARGET_SPEC, what=_TARGET_EXAMPLES)
#: A dropout probability.
DROPOUT = Interval(Real, 0, 1, closed="left")
#: A size or count of at least one (rank, n, bottleneck, prompts).
POSITIVE_INT = Interval(Integral, 1, None, closed="left")


def method_name(name: str) -> list[Any]:
    """The constraint of a config's ``method`` field: its own method's name."""
    return [Options(str, {name})]


@dataclass
class MethodConfig:
    """Options shared by every method.

    Attributes:
        method: registry name of the method (``"lora"``, ``"kadaptation"``, …); set by each subclass.
        targets: catalogue target specs (``["attn.q", "attn.v"]``, ``["blocks[0-5].mlp"]``); a comma-separated string
            is accepted and split.
        train_head: also train the classifier (``model.get_classifier()``); counted as ``head``.
    """

    method: str = ""
    targets: list[str] = field(default_factory=list)
    train_head: bool = True

    #: False for methods that ignore ``targets`` (linear probe, full fine-tuning).
    uses_targets: ClassVar[bool] = True
    #: Option names of earlier versions -> their names now (:func:`config_from_dict` reads either).
    RENAMED: ClassVar[dict[str, str]] = {}
    #: What each field accepts (:mod:`petl_analysis.constraints`); a subclass extends it with its own options and
    #: narrows ``method`` to its name.
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "method": [str],
        "targets": [TARGETS],
        "train_head": ["boolean"],
    }

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = [t.strip() for t in self.targets.split(",") if t.strip()]
        elif isinstance(self.targets, tuple):
            self.targets = list(self.targets)
        validate_fields(self)
        # A whole number given for a float option is stored as a float, so files and trial keys read the same.
        for name, declared in type(self)._parameter_constraints.items():
            value = getattr(self, name)
            if isinstance(value, int) and any(isinstance(c, Interval) and c.kind is Real for c in declared):
                setattr(self, name, float(value))
        self.validate()

    def validate(self) -> None:
        """Rules across fields (subclasses); raise :func:`~petl_analysis.constraints.invalid`'s one-line error."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict; :func:`config_from_dict` reverses it."""
        return asdict(self)


def config_from_dict(d: dict[str, Any]) -> MethodConfig:
    """Rebuild a config from :meth:`MethodConfig.to_dict` output, dispatching on ``d["method"]``.

    Raises:
        PetlError: not a dict, unknown method, or an option the method does not have.
    """
    if not isinstance(d, dict) or not isinstance(d.get("method"), str):
        raise PetlError("method config: expected an object with a 'method' key, e.g. {'method': 'lora', ...}")
    cls = METHODS.get(d["method"]).config_class
    d = {cls.RENAMED.get(k, k) if cls.RENAMED.get(k) not in d else k: v for k, v in d.items()}
    names = [f.name for f in fields(cls)]
    unknown = [k for k in d if k not in names]
    if unknown:
        raise PetlError(f"{d['method']} config: unknown option {unknown[0]!r}; expected one of: {', '.join(names)}")
    return cls(**d)


def config_from_settings(method: str, targets: Sequence[str] = (), settings: Sequence[str] = ()) -> MethodConfig:
    """A method config from ``key=value`` settings (the CLI's ``--set``): each value read as JSON (``8``,
    ``true``, ``[1, 2]``), else as text (``global``); ``targets`` replace the method's default targets.

    Raises:
        PetlError: a setting without ``=``, an option the method does not have, or a value its constraints refuse.
    """
    values: dict[str, Any] = {"method": method}
    if targets:
        values["targets"] = list(targets)
    for item in settings:
        if "=" not in item:
            raise PetlError(f"--set {item!r}: expected key=value, e.g. --set n=8")
        key, raw = item.split("=", 1)
        try:
            values[key.strip()] = json.loads(raw)
        except ValueError:
            values[key.strip()] = raw
    return config_from_dict(values)


def options_from_settings(method: str, settings: Sequence[str]) -> dict[str, Any]:
    """Only the options ``settings`` set (``key=value``, as :func:`config_from_settings` reads them, checked by the
    method's config): what a planner keeps of a user's ``--set`` while it chooses targets and sizes itself."""
    renamed = METHODS.get(method).config_class.RENAMED
    given = {renamed.get(k, k) for k in (item.split("=", 1)[0].strip() for item in settings)}
    config = config_from_settings(method, settings=settings).to_dict()
    return {k: v for k, v in config.items() if k in given}


# ------------------------------------------------------------------------------------------------------------ method
#: Sizing of a method sized to a budget by the planner (targets chosen from the ranking, then its own sizes).
PLANNED = "planned"
#: Sizing of a method of one size: a study trains it once, without a budget.
FIXED = "fixed"


@dataclass(frozen=True)
class Knob:
    """Sizing of a method sized to a budget by one integer option: the largest of ``values`` whose count fits."""

    option: str
    values: tuple[int, ...]


@dataclass
class Added:
    """What a method adds or unfreezes, in closed form (the input to :meth:`Method.expected_count`).

    Attributes:
        adapter / shared / bias_norm: new trainable numbers in those accounting categories.
        frozen: new numbers that stay frozen (e.g. Compacter's fixed rule tensor); they count in ``model_total``.
        trainable_base: names of original parameters the method makes trainable (BitFit biases, full fine-tuning).
    """

    adapter: int = 0
    shared: int = 0
    bias_norm: int = 0
    frozen: int = 0
    trainable_base: set[str] = field(default_factory=set)


class Method:
    """Base class of adaptation methods. Subclasses set ``name``/``config_class`` and implement ``_inject`` and
    ``_added``; weight-delta methods inherit exact ``merge``/``unmerge`` through :mod:`.deltas`."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    #: False: the method adds non-linear modules or tokens, so ``merge`` raises.
    mergeable: ClassVar[bool] = True
    # Set by :func:`register_method`:
    #: How reports and tables name it (``"KAdaptation"``).
    display_name: ClassVar[str] = ""
    #: Its name in narrow table cells (``"KA"``); the display name unless registered.
    short_name: ClassVar[str] = ""
    #: Its matplotlib marker in the report's figures.
    marker: ClassVar[str] = "o"
    #: How a study sizes it to a budget: :data:`PLANNED`, :data:`FIXED` or a :class:`Knob`.
    sizing: ClassVar[str | Knob] = FIXED
    #: It adds tokens to the sequence (models with position tables of a fixed size cannot take it).
    adds_tokens: ClassVar[bool] = False
    #: peft's ``peft_type`` of the export (None: no peft export); ``approximate``: peft's nearest method, not this one.
    peft_type: ClassVar[str | None] = None
    peft_approximate: ClassVar[bool] = False

    def __init__(self, config: MethodConfig) -> None:
        if not isinstance(config, self.config_class):
            raise PetlError(f"method {self.name!r} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # --- subclass hooks -------------------------------------------------------------------------------------------
    def _check(self, model: nn.Module, units: list[Unit]) -> None:
        """Validate the config against the model before anything changes (raise :class:`PetlError`)."""

    def _inject(self, model: nn.Module, units: list[Unit]) -> None:
        """Add the method's modules; every original parameter is frozen when this runs."""
        raise NotImplementedError

    def _added(self, model: nn.Module, units: list[Unit]) -> Added:
        """Closed-form counts of what ``_inject`` adds (see :class:`Added`)."""
        raise NotImplementedError

    # --- public API -----------------------------------------------------------------------------------------------
    def units(self, model: nn.Module) -> list[Unit]:
        """The catalogue units the config targets (empty for methods that ignore targets)."""
        return resolve_targets(model, self.config.targets) if self.config.uses_targets else []

    def apply(self, model: nn.Module) -> nn.Module:
        """Inject the method into ``model`` in place and set ``requires_grad`` (see module docstring)."""
        if any(isinstance(m, AdapterModule) for m in model.modules()) or has_deltas(model):
            raise PetlError(f"cannot apply {self.name!r}: the model already has adaptation modules; use a fresh model")
        units = self.units(model)
        self._check(model, units)
        for p in model.parameters():
            p.requires_grad_(False)
        self._inject(model, units)
        model.train(model.training)  # new modules are created in training mode; follow the model's mode
        if self.config.train_head:
            for p in head_parameters(model):
                p.requires_grad_(True)
        if not any(p.requires_grad for p in model.parameters()):
            raise PetlError(f"{self.name}: nothing to train (train_head=false and the method adds no parameters)")
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        """Fold the method's weight deltas into the base tensors (exact; the adapter then contributes nothing until
        :meth:`unmerge`). Methods that only unfreeze original tensors have nothing to merge."""
        if not self.mergeable:
            raise PetlError(f"{self.name} cannot be merged: it adds modules or tokens, not a weight delta")
        merge_deltas(model, f"{self.name}_")
        return model

    def unmerge(self, model: nn.Module) -> nn.Module:
        """Undo :meth:`merge` (subtract the deltas again)."""
        if not self.mergeable:
            raise PetlError(f"{self.name} cannot be unmerged: it adds modules or tokens, not a weight delta")
        unmerge_deltas(model, f"{self.name}_")
        return model

    def unload(self, model: nn.Module) -> nn.Module:
        """Merge and remove the method's parametrisations: a plain timm model again (original parameter names, the
        adapted values, no dispatch overhead), e.g. for export. Irreversible; trainable flags are left as they are."""
        if not self.mergeable:
            raise PetlError(f"{self.name} cannot be unloaded into the weights: it adds modules or tokens")
        unload_deltas(model, f"{self.name}_")
        return model

    def adapter_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Tensors to save: every parameter of the method's modules (trainable or not, e.g. a frozen random rule
        tensor) and every trainable original (BitFit biases, the head). Shared tensors appear once (first name)."""
        owned = _owned_prefixes(model)
        out: dict[str, torch.Tensor] = {}
        for name, p in model.named_parameters():
            if p.requires_grad or name.startswith(owned):
                out[name] = p.detach()
        return out

    def load_adapter_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` into the adapted ``model`` (strict: same names and shapes as :meth:`adapter_state_dict`)."""
        own = self.adapter_state_dict(model)
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if unexpected:
            raise PetlError(
                f"adapter state has {len(unexpected)} tensor(s) this {self.name} model does not, e.g. {unexpected[0]!r}"
            )
        if missing:
            raise PetlError(
                f"adapter state lacks {len(missing)} tensor(s) of this {self.name} model, e.g. {missing[0]!r}"
            )
        for k, v in state.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise PetlError(
                    f"adapter tensor {k!r} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}"
                )
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v.to(dtype=own[k].dtype, device=own[k].device))

    def expected_count(self, model: nn.Module) -> ParamCount:
        """The :class:`ParamCount` that ``count_parameters(model)`` will give after :meth:`apply`, in closed form
        from the config and the catalogue (nothing is injected). Call it on the model before ``apply``."""
        units = self.units(model)
        self._check(model, units)
        added = self._added(model, units)
        base = _base_parameters(model)
        head = _head_names(model, base)
        trainable = set(added.trainable_base) | (head if self.config.train_head else set())
        count = ParamCount(adapter=added.adapter, shared=added.shared, bias_norm=added.bias_norm)
        count.model_total = sum(p.numel() for p in base.values()) + added.adapter + added.shared
        count.model_total += added.bias_norm + added.frozen
        category = original_category(model)
        for name in trainable:
            n = base[name].numel()
            if name in head:
                count.head += n
            else:
                setattr(count, category(name), getattr(count, category(name)) + n)
        return count


def register_method(
    *,
    display_name: str,
    marker: str,
    sizing: str | Knob,
    short_name: str | None = None,
    adds_tokens: bool = False,
    peft_type: str | None = None,
    peft_approximate: bool = False,
):
    """Class decorator (peft's ``register_peft_method``): register a :class:`Method` in :data:`METHODS` under its
    config's ``method`` (the one place a method's name is written) with what the study, the report and the CLI
    read about it (see the module docstring's checklist)::

        @register_method(display_name="LoRA", marker="D", sizing=PLANNED, peft_type="LORA")
        class Lora(Method): ...
    """
    if not display_name or not marker:
        raise ValueError("register_method needs a display_name and a marker")
    if sizing not in (PLANNED, FIXED) and not isinstance(sizing, Knob):
        raise ValueError(f"sizing must be PLANNED, FIXED or a Knob, got {sizing!r}")

    def decorate(cls: type[Method]) -> type[Method]:
        cls.name = cls.config_class.__dataclass_fields__["method"].default
        cls.display_name, cls.marker, cls.sizing = display_name, marker, sizing
        cls.short_name = short_name or display_name
        cls.adds_tokens, cls.peft_type, cls.peft_approximate = adds_tokens, peft_type, peft_approximate
        return METHODS.register(cls.name)(cls)

    return decorate


def methods_sized(sizing: str | type[Knob]) -> list[str]:
    """Registered methods of one sizing (:data:`PLANNED`, :data:`FIXED`, or ``Knob`` for every knob-sized one), in
    registration order."""
    return [
        name
        for name in METHODS.registered()
        if (isinstance(METHODS.get(name).sizing, Knob) if sizing is Knob else METHODS.get(name).sizing == sizing)
    ]


# ----------------------------------------------------------------------------------------------------- model helpers
_PARAMETRIZED = re.compile(r"\.parametrizations\.([^.]+)\.original$")


def _owned_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Name prefixes of modules added by methods (adapter modules and delta containers)."""
    return tuple(
        f"{n}."
        for n, m in model.named_modules(remove_duplicate=False)
        if n and isinstance(m, (AdapterModule, TensorDeltas))
    )


def _base_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The model's original parameters under their original names (parametrised ``.original`` mapped back)."""
    owned = _owned_prefixes(model)
    out: dict[str, nn.Parameter] = {}
    for name, p in model.named_parameters():
        if owned and name.startswith(owned):
            continue
        out[_PARAMETRIZED.sub(r".\1", name)] = p
    return out


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    head = classifier(model)
    return list(head.parameters()) if head is not None else []


def head_parameter_names(model: nn.Module) -> set[str]:
    return _head_names(model, _base_parameters(model))


def _head_names(model: nn.Module, base: dict[str, nn.Parameter]) -> set[str]:
    """The names in ``base`` (:func:`_base_parameters`, walked once by the caller) that belong to the head."""
    head = classifier(model)
    if head is None:
        return set()
    ids = {id(p) for p in head.parameters()}
    return {name for name, p in base.items() if id(p) in ids}


def base_parameter_names(model: nn.Module) -> list[str]:
    """Original parameter names of ``model`` (stable across injection), in registration order."""
    return list(_base_parameters(model))


def shared_or_adapter(numel: int, references: int) -> tuple[int, int]:
    """``(adapter, shared)`` contribution of a tensor referenced by ``references`` modules: a tensor reachable under
    more than one name is *shared* (counted once), otherwise it is a plain adapter tensor."""
    return (0, numel) if references > 1 else (numel, 0)


# -------------------------------------------------------------------------------------------------------- public API
def get_method(config: MethodConfig | dict[str, Any]) -> Method:
    """The :class:`Method` for a config (or a config dict)."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    return METHODS.get(config.method)(config)


def apply_method(model: nn.Module, config: MethodConfig | dict[str, Any]) -> Method:
    """Build the method for ``config`` and apply it to ``model`` in place; returns the method."""
    method = get_method(config)
    method.apply(model)
    return method
