"""peft export that is correct or refuses.

peft wraps a ``nn.Linear`` and changes what its *forward* returns. timm's BEiT and EVA attention read
``qkv.weight`` through ``F.linear`` and never call the Linear's forward, so a peft adapter there changes nothing
(that is why :mod:`petl_analysis.tuners.deltas` adapts the tensor instead). Whether a target is read through its
forward is measured, not listed: :func:`inert_modules` runs the model once with a forward hook on each target.

- :func:`export_peft`: the peft config of a plan, as a record (:class:`PeftExport`, an artefact: our file beside
  the plan, ``plan_<budget>.peft.json``; peft's own ``adapter_config.json`` stays peft's). Inert targets are refused in one line naming the
  model and the target. A method peft has only an approximation of (KAdaptation -> LoKr) is labelled
  ``approximate`` with both trainable counts.
- :func:`write_peft_adapter`: a trained LoRA as a real peft adapter folder (``adapter_config.json`` and
  ``adapter_model.safetensors``, peft's own files written by peft) that ``PeftModel.from_pretrained`` loads onto the
  base model, with the same outputs: q/k/v row slices of a fused ``qkv`` become one LoRA on ``qkv`` whose rank is
  the sum of theirs, ``B`` zero outside each slice's rows (exact).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..accounting import classifier
from ..artefacts import HEADER, Artefact
from ..errors import PetlError
from ..models import resolve_targets
from ..tuners import METHODS, Method
from ..tuners.deltas import _own_class, delta_containers

__all__ = ["PEFT_REQUIREMENT", "PeftExport", "export_peft", "inert_modules", "peft_base_model", "write_peft_adapter"]

PEFT_REQUIREMENT = "peft>=0.13"


@dataclass
class PeftExport(Artefact):
    """The peft export of a plan (:func:`export_peft`), saved as ``plan_<budget>.peft.json``.

    Attributes:
        peft_config: a dict for ``peft.get_peft_config`` (peft's own format).
        method: its ``peft_type`` (``LORA``, ``LOKR``); ``approximate``: peft's nearest method, not the plan's.
        trainable: ``{"plan": n, "peft": m}`` trainable counts without the head (``peft`` is None without peft).
        not_mapped: what the config does not carry over.
        model: the plan's model name.

    Files written before it had a header (the same fields) read as version 1.
    """

    SCHEMA: ClassVar[str] = "peft-export"
    VERSION: ClassVar[int] = 1

    peft_config: dict[str, Any]
    method: str
    approximate: bool
    trainable: dict[str, int | None]
    not_mapped: list[str] = field(default_factory=list)
    model: str = ""

    @classmethod
    def read_header(cls, data: dict[str, Any]) -> tuple[Any, Any, Any, dict[str, Any]]:
        if "schema" not in data and "peft_config" in data:  # written before the export had a header
            return cls.SCHEMA, 1, None, {k: v for k, v in data.items() if k not in HEADER}
        return super().read_header(data)

    def __getitem__(self, key: str) -> Any:
        """``record["method"]``: the dict that :func:`export_peft` returned before (deprecated: use attributes)."""
        warnings.warn(
            f"PeftExport[{key!r}] is deprecated; read the attribute PeftExport.{key}", DeprecationWarning, stacklevel=2
        )
        return getattr(self, key)


def _import_peft():
    try:
        import peft
    except ImportError:
        raise PetlError(
            f"the peft export needs peft: pip install 'petl-analysis[peft]' ({PEFT_REQUIREMENT})"
        ) from None
    return peft


def _example_input(model: nn.Module) -> torch.Tensor:
    """One input of the size the model takes (timm's ``pretrained_cfg['input_size']``, else its patch embedding)."""
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
    embed = getattr(model, "patch_embed", None)
    if embed is not None and getattr(embed, "img_size", None) is not None:
        size = (embed.proj.in_channels, *embed.img_size)
    if size is None:
        raise PetlError(f"{type(model).__name__}: cannot tell its input size to check the peft export")
    param = next(model.parameters())
    return torch.zeros(1, *size, device=param.device, dtype=param.dtype)


@torch.no_grad()
def inert_modules(model: nn.Module, modules: list[str]) -> list[str]:
    """The modules of ``modules`` whose forward the model never calls (a peft adapter on them would be inert)."""
    called: set[str] = set()
    handles = [model.get_submodule(m).register_forward_hook(lambda *_, name=m: called.add(name)) for m in modules]
    was_training = model.training
    try:
        model.eval()
        model(_example_input(model))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return [m for m in modules if m not in called]


def _refuse_inert(model: nn.Module, modules: list[str], model_name: str, method: str) -> None:
    inert = inert_modules(model, modules)
    if inert:
        more = f" (and {len(inert) - 1} more)" if len(inert) > 1 else ""
        raise PetlError(
            f"peft export refused: {model_name} never calls the forward of {inert[0]}{more} (it reads the weight "
            f"directly, e.g. F.linear(x, qkv.weight)), so a peft {method} there would change nothing; keep the "
            "petl-analysis adapter, or target other modules"
        )


def _head_name(model: nn.Module) -> str | None:
    head = classifier(model)
    return next((n for n, m in model.named_modules() if m is head), None) if head is not None else None


def peft_base_model(model: nn.Module) -> nn.Module:
    """A copy of an adapted ``model`` without its parametrisations (the base weights, unmerged): what peft wraps."""
    base = copy.deepcopy(model)
    for name, _, _ in list(delta_containers(base)):
        owner_path, _, tensor = name.rpartition(".")
        owner = base.get_submodule(owner_path) if owner_path else base
        _own_class(owner)
        parametrize.remove_parametrizations(owner, tensor, leave_parametrized=False)
    return base


def _peft_trainable(model: nn.Module, config: dict[str, Any]) -> int | None:
    """Trainable numbers of the peft model of ``config`` on a copy of ``model``, less ``modules_to_save``."""
    try:
        peft = _import_peft()
    except PetlError:
        return None
    cfg = peft.get_peft_config({**config, "modules_to_save": None})
    wrapped = peft.get_peft_model(peft_base_model(model), cfg)
    return sum(p.numel() for p in wrapped.parameters() if p.requires_grad)


def export_peft(plan: Any, model: nn.Module) -> PeftExport:
    """The peft export of ``plan`` on ``model`` (the base, before injection), a :class:`PeftExport` (``save`` it
    beside the plan).

    ``peft_config`` is a dict for ``peft.get_peft_config``; ``trainable`` counts exclude the head (``peft`` is None
    without peft installed). The ``peft_type`` is the one the method registered.

    Raises:
        PetlError: no peft export for the method, or a target whose forward the model never calls (inert in peft).
    """
    cls = METHODS.get(plan.method) if plan.method in METHODS else None
    if cls is None or cls.peft_type is None:
        exportable = [m for m in METHODS.names() if METHODS.get(m).peft_type]
        raise PetlError(f"no peft export for method {plan.method!r}; exportable: {', '.join(exportable)}")
    cfg = plan.config
    units = resolve_targets(model, cfg["targets"])
    modules = sorted({u.module for u in units})
    _refuse_inert(model, modules, plan.model.name, cls.peft_type)
    notes: list[str] = []
    sliced = [u.name for u in units if u.rows is not None]
    head = _head_name(model)
    to_save = [head] if cfg.get("train_head", True) and head else None
    if plan.method == "lora":
        out = {
            "peft_type": cls.peft_type,
            "r": cfg["rank"],
            "lora_alpha": cfg.get("alpha", cfg["rank"]),
            "lora_dropout": cfg.get("dropout", 0.0),
            "target_modules": modules,
            "modules_to_save": to_save,
        }
        if sliced:
            notes.append(
                f"{len(sliced)} target(s) are row slices of a fused Linear (e.g. {sliced[0]}): this config "
                "adapts the whole Linear (a superset); write_peft_adapter exports a trained adapter exactly"
            )
    elif plan.method == "kadaptation":
        out = {
            "peft_type": cls.peft_type,
            "r": cfg["rank"],
            "alpha": cfg["rank"],
            "target_modules": modules,
            "decompose_both": False,
            "decompose_factor": cfg["n"],
            "modules_to_save": to_save,
        }
        notes.append(
            f"LoKr is a single Kronecker term with unshared factors: it approximates KAdaptation's sum of "
            f"n={cfg['n']} terms with rule matrices shared across layers (sharing={cfg.get('sharing')}); "
            "targets and rank carry over, the weights do not"
        )
    else:
        raise PetlError(
            f"method {plan.method!r} registers peft_type {cls.peft_type!r}, but export_peft writes no options for it"
        )
    ours = plan.trainable.get("total_excl_head")
    return PeftExport(
        peft_config=out,
        method=cls.peft_type,
        approximate=bool(cls.peft_approximate),
        trainable={"plan": ours, "peft": _peft_trainable(model, out)},
        not_mapped=notes,
        model=plan.model.name,
    )


def export_summary(record: PeftExport) -> str:
    """One line for the console: the peft method, approximate or not, both trainable counts."""
    t = record.trainable
    peft_count = f"{t['peft']:,}" if t["peft"] is not None else "? (peft not installed)"
    label = f"{record.method} (approximate)" if record.approximate else record.method
    return f"peft export {label}: plan {t['plan']:,} trainable, peft {peft_count} (head excluded)"


def _lora_entries(model: nn.Module, method: Method) -> dict[str, list[tuple[tuple | None, nn.Module]]]:
    """``module path -> [(rows, LoraDelta)]`` of the LoRA deltas in ``model``."""
    out: dict[str, list] = {}
    for name, _, container in delta_containers(model):
        for key, delta, rows in container.entries():
            if not key.startswith(f"{method.name}_"):
                continue
            owner, _, tensor = name.rpartition(".")
            if tensor != "weight":
                raise PetlError(f"peft LoRA adapts weights; {name} is not one")
            out.setdefault(owner, []).extend((r, delta) for r in rows)
    return out


@torch.no_grad()
def write_peft_adapter(model: nn.Module, method: Method, directory: str | Path, *, model_name: str = "") -> Path:
    """Write the trained LoRA ``method`` of ``model`` as a peft adapter folder (peft's ``save_pretrained``), exact:
    ``PeftModel.from_pretrained(base, directory)`` gives the outputs of ``model``. Refused for another method, a
    merged adapter, or a target the model reads without calling its forward."""
    peft = _import_peft()
    if method.name != "lora":
        raise PetlError(f"write_peft_adapter exports LoRA exactly; {method.name} has no exact peft equivalent")
    entries = _lora_entries(model, method)
    if any(d.merged for items in entries.values() for _, d in items):
        raise PetlError("write_peft_adapter: the adapter is merged into the weights; unmerge it first")
    base = peft_base_model(model)
    _refuse_inert(base, sorted(entries), model_name or type(model).__name__, "LoRA")
    cfg = method.config
    rank = max(sum(d.lora_A.shape[0] for _, d in items) for items in entries.values())
    head = _head_name(base)
    trained_head = head is not None and cfg.train_head
    config = peft.LoraConfig(
        r=rank,
        lora_alpha=cfg.scaling * rank,
        lora_dropout=cfg.dropout,
        target_modules=sorted(entries),
        modules_to_save=[head] if trained_head else None,
    )
    wrapped = peft.get_peft_model(base, config)
    for path, items in entries.items():
        layer = wrapped.base_model.model.get_submodule(path)
        A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        A.zero_()
        B.zero_()
        at = 0
        for rows, delta in items:
            r = delta.lora_A.shape[0]
            lo, hi = rows if rows is not None else (0, B.shape[0])
            A[at : at + r] = delta.lora_A.to(A)
            B[lo:hi, at : at + r] = delta.lora_B.to(B)
            at += r
    if trained_head:
        ours = classifier(model)
        saved = wrapped.base_model.model.get_submodule(head).modules_to_save["default"]
        saved.load_state_dict(ours.state_dict())
    wrapped.save_pretrained(str(directory))
    return Path(directory)
