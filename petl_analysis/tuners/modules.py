"""Shared wiring for methods that add modules (adapters after the MLP, prompts): hooks, not patched forwards.

A module-adding method registers its module as a child of the timm module it extends (``blocks.3.mlp.petl_adapter``)
and a forward hook that is a *bound method* of that child. So original parameter names and the catalogue stay
valid, ``copy.deepcopy`` of the model rebinds the hook to the copied child, and removing the child and its hook
restores the model exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import PetlError, expected_one_of
from ..models.catalogue import Unit

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU,
    "identity": nn.Identity,
}

ADAPTER_CHILD = "petl_adapter"


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise expected_one_of("activation", name, list(ACTIVATIONS))
    return ACTIVATIONS[name]()


def embed_dim(model: nn.Module) -> int:
    """Token width of a timm ViT-family model."""
    for attr in ("embed_dim", "num_features"):
        value = getattr(model, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise PetlError(f"{type(model).__name__}: cannot tell the token width (no embed_dim); expected a timm ViT")


def mlp_blocks(units: list[Unit], method: str) -> list[int]:
    """Blocks whose MLP gets an adapter: the blocks of the ``mlp`` units among the targets."""
    bad = [u for u in units if u.group != "mlp"]
    if bad:
        raise PetlError(
            f"{method} places one adapter after the MLP of each targeted block; expected MLP targets such as mlp or "
            f"blocks[0-3].mlp, got {bad[0].name}"
        )
    return sorted({u.block for u in units})


class PostMlpAdapter(nn.Module):
    """Mixin for adapters that run after a block's MLP: ``mlp(x) -> h + adapter(h)`` (PEViT placement)."""

    def after_mlp(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + self(output)

    def attach(self, mlp: nn.Module) -> None:
        if hasattr(mlp, ADAPTER_CHILD):
            raise PetlError(f"{type(mlp).__name__} already has an adapter")
        mlp.add_module(ADAPTER_CHILD, self)
        mlp.register_forward_hook(self.after_mlp)
