"""Adapters as files: a method's tensors under stable names, with the base they belong to.

A saved adapter is a folder of two files (our names: peft's ``adapter_config.json`` / ``adapter_model.safetensors``
are only written by :mod:`petl_analysis.plan.peft`, whose content is peft's)::

    petl_adapter.json         the record (:class:`AdapterRecord`, an artefact like every JSON the tool writes):
                              method config, base model spec, base fingerprint, number of classes
    petl_adapter.safetensors  the tensors, keyed by canonical names (blocks.0.attn.q.lora.lora_A)

Canonical names hide ``torch.nn.utils.parametrize``: the delta ``kadaptation_attn_q`` on
``blocks.0.attn.qkv.parametrizations.weight.0.deltas.kadaptation_attn_q.u`` is ``blocks.0.attn.q.kadaptation.u``
(the catalogue unit, the method, the tensor). A delta that is not one unit's (KAdaptation's per-layer bias shift)
keeps its tensor's path: ``blocks.0.attn.qkv.bias.kadaptation_bias192.b``. The mapping back is built from the model
the adapter is loaded into, so it never parses names. Folders written before (peft's file names, internal keys,
the ``format`` / ``format_version`` header of record versions 1 and 2) still load.

The *fingerprint* is a sha256 over the base parameters the method leaves frozen, less the classifier, in name
order: loading an adapter onto other weights (random ones, another checkpoint, another model) is refused in one line.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..accounting import classifier
from ..artefacts import Artefact
from ..errors import PetlError
from ..io import atomic_write_bytes, read_json
from ..models import ModelSpec
from ..models.catalogue import catalogue
from .base import Method, _base_parameters, get_method, head_parameter_names
from .deltas import delta_containers

__all__ = [
    "ADAPTER_FILE",
    "ADAPTER_RECORD_FILE",
    "AdapterBase",
    "AdapterRecord",
    "base_fingerprint",
    "canonical_names",
    "load_adapter",
    "read_adapter_record",
    "save_adapter",
]

ADAPTER_RECORD_FILE = "petl_adapter.json"
ADAPTER_FILE = "petl_adapter.safetensors"
#: Version 1 (petl-analysis < 0.x): peft's file names, internal (parametrize) keys, no base record.
LEGACY_FILES = ("adapter_config.json", "adapter_model.safetensors")
ADAPTER_FORMAT = "petl-adapter"
#: Versions 1 and 2 wrote the header as ``format`` / ``format_version``; version 3 is the artefacts' header.
ADAPTER_FORMAT_VERSION = 3


@dataclass
class AdapterBase:
    """The base an adapter was trained on: its spec (what to build), the fingerprint of its frozen weights
    (:func:`base_fingerprint`) and its number of classes."""

    model: ModelSpec | None = None
    fingerprint: str | None = None
    num_classes: int | None = None


def _header_v2(body: dict[str, Any]) -> dict[str, Any]:
    return body  # the same fields: version 3 changed only the header's names


@dataclass
class AdapterRecord(Artefact):
    """``petl_adapter.json``: what :func:`load_adapter` needs besides the tensors.

    Attributes:
        config: the method config (:meth:`~petl_analysis.tuners.MethodConfig.to_dict`).
        base: the base it was trained on (None in a folder of version 1, which did not record it).
        param_count: the adapted model's count (:meth:`~petl_analysis.accounting.ParamCount.as_dict`).
        seed, val_acc: the training seed and its validation accuracy (a trained adapter's).
        trial: the key of the sweep trial that trained it (:mod:`petl_analysis.sweep.adapters` places it by it).
    """

    SCHEMA: ClassVar[str] = ADAPTER_FORMAT
    VERSION: ClassVar[int] = ADAPTER_FORMAT_VERSION
    MIGRATIONS: ClassVar[dict[int, Any]] = {1: lambda body: {**body, "base": None}, 2: _header_v2}

    config: dict[str, Any] = field(default_factory=dict)
    base: AdapterBase | None = None
    param_count: dict[str, int] | None = None
    seed: int | None = None
    val_acc: float | None = None
    trial: str | None = None

    @classmethod
    def read_header(cls, data: dict[str, Any]) -> tuple[Any, Any, Any, dict[str, Any]]:
        """Versions 1 and 2: ``format`` and ``format_version`` (none: version 1)."""
        if "schema" in data or "format" not in data:
            return super().read_header(data)
        body = {k: v for k, v in data.items() if k not in ("format", "format_version", "tool_version")}
        return data["format"], data.get("format_version", 1), data.get("tool_version"), body


_DELTA = re.compile(r"^(?P<owner>.*?)\.?parametrizations\.(?P<tensor>[^.]+)\.0\.deltas\.(?P<key>[^.]+)\.(?P<rest>.+)$")
_ORIGINAL = re.compile(r"\.parametrizations\.([^.]+)\.original$")


def _unit_names(model: nn.Module) -> dict[tuple[str, str], str]:
    """``(owning module path, unit key) -> unit name`` of the model's catalogue (the key is how deltas are keyed)."""
    try:
        units = catalogue(model)
    except PetlError:
        return {}
    return {(u.module, u.kind.replace(".", "_")): u.name for u in units}


def canonical_names(model: nn.Module, names: list[str]) -> dict[str, str]:
    """``internal name -> canonical name`` for parameter names of an adapted ``model`` (see the module docstring).
    Names that are not a delta's keep their original name (``.parametrizations.X.original`` read as ``X``)."""
    units = _unit_names(model)
    methods = sorted({key.split("_", 1)[0] for _, _, c in delta_containers(model) for key, _, _ in c.entries()})
    out: dict[str, str] = {}
    for name in names:
        m = _DELTA.match(name)
        if m is None:
            out[name] = _ORIGINAL.sub(r".\1", name)
            continue
        owner, tensor, key, rest = m["owner"], m["tensor"], m["key"], m["rest"]
        method, _, unit_key = key.partition("_")
        unit = units.get((owner, unit_key)) if method in methods else None
        generic = f"{owner + '.' if owner else ''}{tensor}.{key}.{rest}"
        out[name] = (
            (f"{unit}.{method}.{rest}" if tensor == "weight" else f"{unit}.{tensor}.{method}.{rest}")
            if unit
            else generic
        )
    if len(set(out.values())) < len(out):  # never expected; stay correct rather than pretty
        out = {n: _DELTA.sub(r"\g<owner>.\g<tensor>.\g<key>.\g<rest>", n) for n in names}
    return out


def base_fingerprint(model: nn.Module) -> str:
    """sha256 (hex) over the frozen original parameters of ``model`` but the classifier, in name order: name,
    dtype, shape and bytes of each. On an adapted model it covers what the method left frozen; the same method on
    the same base gives the same fingerprint."""
    head = head_parameter_names(model)
    h = hashlib.sha256()
    for name, p in sorted(_base_parameters(model).items()):
        if name in head or p.requires_grad:
            continue
        t = p.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _num_classes(model: nn.Module) -> int | None:
    head = classifier(model)
    return getattr(head, "out_features", None)


def save_adapter(
    model: nn.Module,
    method: Method,
    directory: str | Path,
    *,
    model_spec: Any = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the adapter of ``method`` on ``model`` into ``directory`` (:data:`ADAPTER_RECORD_FILE` and
    :data:`ADAPTER_FILE`, each atomically): canonical tensor names, the method config, the base fingerprint, the
    number of classes and ``model_spec`` (a :class:`~petl_analysis.models.ModelSpec`, recorded to say what base to
    build). ``extra``: more :class:`AdapterRecord` fields (``seed``, ``val_acc``, ``trial``)."""
    from safetensors.torch import save

    from ..accounting import count_parameters

    if any(m.merged for _, _, c in delta_containers(model) for _, m, _ in c.entries()):
        raise PetlError("save_adapter: the adapter is merged into the weights; unmerge it first")
    directory = Path(directory)
    state = method.adapter_state_dict(model)
    names = canonical_names(model, list(state))
    tensors = {names[k]: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    record = AdapterRecord(
        config=method.config.to_dict(),
        base=AdapterBase(model_spec, base_fingerprint(model), _num_classes(model)),
        param_count=count_parameters(model).as_dict(),
    )
    record = replace(record, **(extra or {}))
    atomic_write_bytes(directory / ADAPTER_FILE, save(tensors, metadata={"format": ADAPTER_FORMAT}))
    record.save(directory / ADAPTER_RECORD_FILE)  # written last: its presence means complete
    return directory


def _files(directory: Path) -> tuple[Path, Path]:
    """The record and weights files of an adapter folder: ours, else those of format version 1."""
    if (directory / ADAPTER_RECORD_FILE).is_file() or not (directory / LEGACY_FILES[0]).is_file():
        return directory / ADAPTER_RECORD_FILE, directory / ADAPTER_FILE
    return directory / LEGACY_FILES[0], directory / LEGACY_FILES[1]


def read_adapter_record(directory: str | Path) -> AdapterRecord:
    """The record of a saved adapter (:meth:`AdapterRecord.from_dict`: an older version is migrated; version 1 had
    no ``base``)."""
    path, _ = _files(Path(directory))
    data = read_json(path, "adapter record")
    if isinstance(data, dict) and "peft_type" in data:
        raise PetlError(f"{str(path)!r} is a peft adapter, not a petl-analysis one")
    return AdapterRecord.from_dict(data, source=str(path))


def _check_base(record: AdapterRecord, model: nn.Module, directory: Path) -> None:
    base = record.base
    if base is None:
        return  # format version 1 did not record its base
    spec = base.model
    trained_on = f"{spec.name} (weights {spec.weights})" if spec else "another base"
    classes = _num_classes(model)
    if base.num_classes is not None and classes is not None and base.num_classes != classes:
        raise PetlError(
            f"adapter {str(directory)!r} has a {base.num_classes}-class head; this model has "
            f"{classes} classes (build it with num_classes={base.num_classes})"
        )
    if base.fingerprint and base.fingerprint != base_fingerprint(model):
        raise PetlError(
            f"adapter {str(directory)!r} was trained on {trained_on}, base fingerprint "
            f"{base.fingerprint[:12]}; this model's frozen weights differ: load it onto that base"
        )


def load_adapter(model: nn.Module, directory: str | Path, *, check_base: bool = True) -> Method:
    """Apply the saved method to ``model`` (a fresh base model, as the record's ``base.model`` builds) and load the
    saved tensors. Refused in one line when the model is not the base it was trained on (``check_base=False`` skips
    the fingerprint and class checks, e.g. to transplant on purpose)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    record = read_adapter_record(directory)
    _, weights = _files(directory)
    if not weights.is_file():
        raise PetlError(f"adapter weights {str(weights)!r} do not exist")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise PetlError(f"adapter weights {str(weights)!r} are not a readable safetensors file: {e}") from None
    method = get_method(record.config)
    try:
        method.apply(model)
    except PetlError as e:
        raise PetlError(f"adapter {str(directory)!r} does not fit this model: {e}") from None
    if check_base:
        _check_base(record, model, directory)
    internal = list(method.adapter_state_dict(model))
    to_internal = {canonical: name for name, canonical in canonical_names(model, internal).items()}
    to_internal.update({name: name for name in internal})  # format version 1: internal names as they were
    state = {to_internal.get(k, k): v for k, v in state.items()}
    method.load_adapter_state_dict(model, state)
    return method
