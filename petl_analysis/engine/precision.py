"""Mixed precision: which autocast dtype a :class:`~.recipe.Recipe`'s ``amp`` means on a device, and its context.

``Recipe.amp`` resolves per device:

=========  ===========================================  ==========================================
``amp``    CUDA                                         CPU
=========  ===========================================  ==========================================
``auto``   bf16 where the GPU has it (Ampere and        fp32
           later), else fp16 with a gradient scaler
           (T4, V100)
``bf16``   bf16 (a one-line error where unsupported)    bf16 autocast
``fp16``   fp16 with a gradient scaler                  fp16 autocast, gradient scaler (the GPU
                                                        path, checked without a GPU)
``off``    fp32                                         fp32
=========  ===========================================  ==========================================

``auto`` is fp32 on CPU because every committed CPU result (and its trial key, which holds ``amp=auto``) was
trained in fp32, so resuming one must run the same arithmetic; ``bf16`` asks for CPU autocast explicitly (another
trial key) where it pays (``benchmarks/gpu_check.py`` times the modes side by side).
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import PetlError


def bf16_supported() -> bool:
    """Whether the current CUDA GPU runs bf16 natively (False without CUDA)."""
    try:
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    except (RuntimeError, AssertionError, TypeError):
        return False


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``amp`` (a :data:`~.recipe.AMP_MODES` value) on ``device``; None: fp32.

    Raises:
        PetlError: ``bf16`` asked of a CUDA GPU without bf16, or an unknown mode.
    """
    if amp == "off":
        return None
    if amp not in ("auto", "bf16", "fp16"):
        raise PetlError(f"unknown amp {amp!r}; expected one of: auto, bf16, fp16, off")
    if device.type == "cuda":
        if amp == "auto":
            return torch.bfloat16 if bf16_supported() else torch.float16
        if amp == "bf16" and not bf16_supported():
            raise PetlError(
                f"amp='bf16': {torch.cuda.get_device_name(device)} does not support bf16; use amp='fp16' or 'auto'"
            )
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if amp == "auto":
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(device: torch.device, amp: str = "auto") -> contextlib.AbstractContextManager:
    """The autocast context of ``amp`` on ``device`` (a no-op where it resolves to fp32)."""
    dtype = amp_dtype(amp, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler where ``amp`` resolves to fp16 (its small range underflows small gradients), else None."""
    if amp_dtype(amp, device) is not torch.float16:
        return None
    return torch.amp.GradScaler(device.type)
