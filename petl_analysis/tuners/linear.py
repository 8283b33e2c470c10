"""Linear probing (``linear``: the head only) and full fine-tuning (``full``: every parameter)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from ..constraints import invalid
from ..models.catalogue import Unit
from .base import (
    FIXED,
    IGNORED_TARGETS,
    Added,
    Method,
    MethodConfig,
    base_parameter_names,
    head_parameter_names,
    head_parameters,
    method_name,
    register_method,
)


@dataclass
class LinearConfig(MethodConfig):
    """Train only the classifier; the backbone stays frozen. ``targets`` is ignored."""

    method: str = "linear"
    targets: list[str] = field(default_factory=list)
    uses_targets: ClassVar[bool] = False
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MethodConfig._parameter_constraints,
        "method": method_name("linear"),
        "targets": [IGNORED_TARGETS],
    }

    def validate(self) -> None:
        if not self.train_head:  # the linear probe *is* the head
            raise invalid("LinearConfig.train_head", "true (false leaves the linear probe nothing to train)", False)


@dataclass
class FullConfig(MethodConfig):
    """Train every parameter of the model (``train_head=false`` freezes the head). ``targets`` is ignored."""

    method: str = "full"
    targets: list[str] = field(default_factory=list)
    uses_targets: ClassVar[bool] = False
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MethodConfig._parameter_constraints,
        "method": method_name("full"),
        "targets": [IGNORED_TARGETS],
    }


@register_method(display_name="Linear probe", marker="o", sizing=FIXED)
class Linear(Method):
    """Linear probing: the head only. Nothing to merge."""

    config_class = LinearConfig

    def _inject(self, model: nn.Module, units: list[Unit]) -> None:
        pass

    def _added(self, model: nn.Module, units: list[Unit]) -> Added:
        return Added()


@register_method(display_name="Full FT", marker="X", sizing=FIXED)
class Full(Method):
    """Full fine-tuning: every original parameter becomes trainable. Nothing to merge."""

    config_class = FullConfig

    def _inject(self, model: nn.Module, units: list[Unit]) -> None:
        for p in model.parameters():
            p.requires_grad_(True)
        if not self.config.train_head:
            for p in head_parameters(model):
                p.requires_grad_(False)

    def _added(self, model: nn.Module, units: list[Unit]) -> Added:
        names = set(base_parameter_names(model))
        if not self.config.train_head:
            names -= head_parameter_names(model)
        return Added(trainable_base=names)
