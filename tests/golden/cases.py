"""The seeded computations pinned by ``golden.safetensors`` (timm's ``test_model_inference`` pattern).

Each case is a function returning a tensor from fixed seeds through the library's public maths; the stored tensor is
what it returned when the fixture was written. A refactor that changes a number (an RNG stream, an init, the order
of a Kronecker product, a normalisation) fails ``tests/test_golden.py``. Regenerate only on purpose::

    python tests/golden/make_golden.py      # then say in the commit why the numbers changed
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from petl_analysis.functional import fwht
from petl_analysis.probe.projections import make_projection
from petl_analysis.tuners.kadaptation.layer import KronDelta, KronRules
from petl_analysis.tuners.lora.layer import LoraDelta

CASES: dict[str, Callable[[], torch.Tensor]] = {}


def case(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    CASES[fn.__name__] = fn
    return fn


def _theta(d: int, seed: int, batch: int | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*((batch,) if batch else ()), d, generator=gen)


@case
def fastfood_p_theta() -> torch.Tensor:
    """``P θ_d`` of a Fastfood projection (D=300, not a power of two: padded to 512, truncated back), seed 7."""
    return make_projection("fastfood", D=300, d=20, seed=7)(_theta(20, 1))


@case
def fastfood_p_theta_batch() -> torch.Tensor:
    """The same projection on a batch of three θ_d (rows must not mix)."""
    return make_projection("fastfood", D=300, d=20, seed=7)(_theta(20, 2, batch=3))


@case
def fastfood_p_columns() -> torch.Tensor:
    """Columns 0..4 of a Fastfood P (D=64, seed 0), i.e. ``P e_j``: the matrix itself, not only products."""
    return make_projection("fastfood", D=64, d=5, seed=0)(torch.eye(5))


@case
def fwht_64() -> torch.Tensor:
    """The unnormalised fast Walsh-Hadamard transform of four seeded rows of length 64."""
    return fwht(_theta(64, 3, batch=4))


@case
def fwht_1024() -> torch.Tensor:
    """FWHT of one seeded row of length 1024 (several radix steps)."""
    return fwht(_theta(1024, 4))


def _kron_delta(factorised: bool) -> torch.Tensor:
    torch.manual_seed(0)
    rules = KronRules(n=4, factorised=factorised, init="default")
    delta = KronDelta(rules, out_features=16, in_features=12, rank=2, scale=0.5, dropout=0.0, init="default")
    with torch.no_grad():
        delta.v.copy_(_theta(delta.v.numel(), 5).reshape(delta.v.shape))  # v = 0 at init: make ΔW non-zero
    return delta.delta().detach()


@case
def kron_delta_factorised() -> torch.Tensor:
    """``ΔW = s Σ A_i ⊗ u_i v_iᵀ`` of a 16x12 weight, n=4, rank 2, factorised rules, default init at seed 0."""
    return _kron_delta(True)


@case
def kron_delta_full_rules() -> torch.Tensor:
    """The same with full ``(n, n, n)`` rule matrices."""
    return _kron_delta(False)


@case
def lora_delta() -> torch.Tensor:
    """``ΔW = scaling · B A`` of a 16x12 weight, r=3, peft's kaiming init of A at seed 0, a seeded B."""
    torch.manual_seed(0)
    delta = LoraDelta(out_features=16, in_features=12, r=3, scaling=2.0, dropout=0.0)
    with torch.no_grad():
        delta.lora_B.copy_(_theta(delta.lora_B.numel(), 6).reshape(delta.lora_B.shape))  # B = 0 at init
    return delta.delta().detach()
