"""One trainable-parameter counter, used by every stage.

Counts are itemised so that head-included (PEViT/ELEVATER convention) and head-excluded (V-PETL tables) totals are
both explicit, and a tensor referenced by several layers (KAdaptation's shared rule matrices) is counted once.

Categories (each trainable tensor falls in exactly one, checked in this order):

- ``head``: parameters of the classifier (``model.get_classifier()``).
- ``shared``: adapter tensors reachable under more than one name (shared across layers); counted once.
- ``adapter``: parameters added by an adaptation method or a subspace wrapper (modules deriving from
  :class:`AdapterModule`).
- ``bias_norm``: original biases and normalisation parameters (BitFit, LayerNorm tuning).
- ``backbone``: every other original parameter (weights, embeddings: full fine-tuning).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)


class AdapterModule(nn.Module):
    """Marker base class: parameters of any submodule deriving from it are counted as adapter parameters."""


@dataclass
class ParamCount:
    """Itemised trainable-parameter counts (plain integers) and the model's total size."""

    head: int = 0
    adapter: int = 0
    shared: int = 0
    bias_norm: int = 0
    backbone: int = 0
    model_total: int = 0  # every unique parameter, trainable or not

    @property
    def total(self) -> int:
        """Trainable parameters including the head."""
        return self.head + self.adapter + self.shared + self.bias_norm + self.backbone

    @property
    def total_excl_head(self) -> int:
        return self.total - self.head

    def as_dict(self) -> dict[str, int]:
        return {
            "head": self.head,
            "adapter": self.adapter,
            "shared": self.shared,
            "bias_norm": self.bias_norm,
            "backbone": self.backbone,
            "total_incl_head": self.total,
            "total_excl_head": self.total_excl_head,
            "model_total": self.model_total,
        }

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> ParamCount:
        return cls(**{k: int(d[k]) for k in ("head", "adapter", "shared", "bias_norm", "backbone", "model_total")})


def classifier(model: nn.Module) -> nn.Module | None:
    """The model's classifier module (timm's ``get_classifier()``), or None when it has none (or not a module).

    The one place that finds a model's head: accounting, optimiser groups, plans, feature caches and tuners ask
    here."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    return head if isinstance(head, nn.Module) else None


def _classifier_prefix(model: nn.Module) -> str | None:
    head = classifier(model)
    if head is None or not any(True for _ in head.parameters()):
        return None
    for name, mod in model.named_modules():
        if mod is head:
            return name
    return None


def original_category(model: nn.Module) -> Callable[[str], str]:
    """The rule for an original (not added) trainable parameter that is not the head, by its name: ``"bias_norm"``
    for a bias or a parameter of a normalisation layer, ``"backbone"`` for every other. One rule for counting an
    injected model and for the closed-form count before injection."""
    norms = tuple(f"{n}." for n, m in model.named_modules() if isinstance(m, _NORM_TYPES) and n)
    return lambda name: "bias_norm" if name.endswith("bias") or name.startswith(norms) else "backbone"


def count_parameters(model: nn.Module) -> ParamCount:
    """Count ``model``'s trainable parameters by category (see module docstring).

    Works on a plain timm model, a model with adapters injected, and wrappers (the classifier is looked up on the
    outermost module that has ``get_classifier``).
    """
    head_prefix = _find_head_prefix(model)
    names_of: dict[int, list[str]] = {}
    params: dict[int, nn.Parameter] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(p), []).append(name)
        params[id(p)] = p
    adapter_prefixes = [
        f"{n}." for n, m in model.named_modules(remove_duplicate=False) if isinstance(m, AdapterModule) and n
    ]
    adapter_root = isinstance(model, AdapterModule)
    category = original_category(model)
    count = ParamCount()
    for pid, p in params.items():
        n = p.numel()
        count.model_total += n
        if not p.requires_grad:
            continue
        names = names_of[pid]
        first = names[0]
        if head_prefix is not None and any(nm.startswith(head_prefix) for nm in names):
            count.head += n
        elif any(nm.startswith(tuple(adapter_prefixes)) for nm in names) if adapter_prefixes else False:
            if len(names) > 1:
                count.shared += n
            else:
                count.adapter += n
        elif len(names) > 1:
            count.shared += n
        elif adapter_root and "." not in first:
            count.adapter += n
        else:
            setattr(count, category(first), getattr(count, category(first)) + n)
    return count


def _find_head_prefix(model: nn.Module) -> str | None:
    """Prefix (``"head."``, ``"base.head."``) of the classifier, searching wrapped models too."""
    for name, mod in model.named_modules():
        if hasattr(mod, "get_classifier"):
            inner = _classifier_prefix(mod)
            if inner is not None:
                return f"{name}.{inner}." if name else f"{inner}."
    return None
