"""BitFit (Ben Zaken et al., 2022): train the biases of the targeted units.

Default targets ``attn, mlp, norm``: every bias of every block (fused ``qkv`` or BEiT's ``q_bias``/``v_bias``,
``proj``, ``fc1``, ``fc2``, and both LayerNorms' biases). Biases outside the blocks (patch embedding, final norm)
are not catalogue units and stay frozen. A whole bias tensor is unfrozen in place; a *row slice* of a fused bias
(``attn.v`` on a ViT: only rows 2D:3D of ``qkv.bias``) becomes a zero-initialised delta on those rows through a
parametrisation. Both count as ``bias_norm``. Units without a bias contribute nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import PetlError
from ..models.catalogue import Unit
from .base import FIXED, Added, Method, MethodConfig, method_name, register_method
from .deltas import DeltaMixin, attach_delta


@dataclass
class BitFitConfig(MethodConfig):
    """Train the biases of ``targets`` (default: every bias in every block)."""

    method: str = "bitfit"
    targets: list[str] = field(default_factory=lambda: ["attn", "mlp", "norm"])
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MethodConfig._parameter_constraints,
        "method": method_name("bitfit"),
    }


class BiasRowsDelta(DeltaMixin, nn.Module):
    """A trainable delta on some rows of a fused bias. Deliberately *not* an ``AdapterModule``: its tensor is named
    ``…bias`` and counts as ``bias_norm``, like the whole biases BitFit unfreezes."""

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(rows))

    def delta(self) -> torch.Tensor:
        return self.bias


@register_method(display_name="BitFit", marker="^", sizing=FIXED)
class BitFit(Method):
    config_class = BitFitConfig

    def _check(self, model: nn.Module, units: list[Unit]) -> None:
        if not any(u.biases for u in units):
            names = ", ".join(u.name for u in units[:3])
            raise PetlError(f"bitfit: none of the targets has a bias ({names}{', …' if len(units) > 3 else ''})")

    def _inject(self, model: nn.Module, units: list[Unit]) -> None:
        for u in units:
            for t in u.biases:
                if t.rows is None:
                    model.get_parameter(t.param).requires_grad_(True)
                else:
                    delta = BiasRowsDelta(t.rows[1] - t.rows[0])
                    attach_delta(model, t.param, f"bitfit_{u.kind.replace('.', '_')}", delta, [t.rows])

    def _added(self, model: nn.Module, units: list[Unit]) -> Added:
        added = Added()
        for u in units:
            for t in u.biases:
                if t.rows is None:
                    added.trainable_base.add(t.param)
                else:
                    added.bias_norm += t.numel
        return added
