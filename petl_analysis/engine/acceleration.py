"""How :func:`~.train.fit` runs a model, not what it computes: ``torch.compile`` and gradient checkpointing.

Neither changes what a trial trains, so neither enters a trial key: a study resumed with ``--compile`` or
``--grad-checkpointing`` keeps its finished trials.

- **Gradient checkpointing** (timm's ``set_grad_checkpointing``): each block's activations are recomputed in the
  backward pass instead of kept, trading about one more forward for memory. The adapters' parametrisations
  (KAdaptation, LoRA) are recomputed with them, so gradients are those without it. timm checkpoints without
  re-entry (unless ``TIMM_REENTRANT_CKPT`` is set), so a frozen patch embedding still passes gradients to the
  adapters. A probe's subspace model substitutes its weights through ``functional_call``, which a recomputation
  cannot replay: it is refused there (the probe's baselines use it).
- **torch.compile**: the model's forward and backward as compiled graphs (Inductor: Triton on CUDA, a C++ compiler
  on CPU); the first steps pay the compilation. Whether it can work here is checked once per device type by
  compiling a two-operation function, so a machine without a compiler gives a one-line error, not a traceback
  from deep in a trial.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..errors import PetlError


def set_grad_checkpointing(model: nn.Module, enable: bool = True) -> None:
    """Turn timm's gradient checkpointing on (or off) in ``model``: its own ``set_grad_checkpointing``, else that of
    the first submodule that has one (a wrapped timm model).

    Raises:
        PetlError: no module of ``model`` has one, or ``model`` substitutes its weights (a subspace model).
    """
    if enable and getattr(model, "substituted_parameters", None) is not None:
        raise PetlError(
            f"grad checkpointing: {type(model).__name__} substitutes its weights through functional_call, which "
            "a recomputation cannot replay; train it without --grad-checkpointing"
        )
    owner = next((m for m in model.modules() if callable(getattr(m, "set_grad_checkpointing", None))), None)
    if owner is None:
        if not enable:
            return
        raise PetlError(
            f"grad checkpointing: {type(model).__name__} has no set_grad_checkpointing (timm models have it)"
        )
    owner.set_grad_checkpointing(enable)


@functools.lru_cache(maxsize=4)
def compile_unavailable(device_type: str) -> str | None:
    """Why ``torch.compile`` cannot work on ``device_type`` (``"cpu"``, ``"cuda"``) here, or None when it can: the
    first line of the error compiling a two-operation function raised (e.g. no C++ compiler, no Triton)."""
    try:
        fn = torch.compile(lambda x: torch.relu(x) * 2.0)
        fn(torch.ones(4, device=device_type))
    except Exception as e:
        lines = [line.strip() for line in f"{type(e).__name__}: {e}".splitlines() if line.strip()]
        return lines[0] if lines else type(e).__name__
    return None


def compiled(model: nn.Module, device: torch.device) -> nn.Module:
    """``torch.compile(model)`` (sharing its parameters), after checking that compilation works on ``device``.

    Raises:
        PetlError: ``torch.compile`` cannot work here (:func:`compile_unavailable` says why).
    """
    reason = compile_unavailable(device.type)
    if reason is not None:
        raise PetlError(f"--compile: torch.compile cannot run on {device.type} here ({reason}); run without --compile")
    return torch.compile(model)
