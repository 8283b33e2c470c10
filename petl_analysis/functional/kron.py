"""Sums of Kronecker products and low-rank factors: the maths of KAdaptation, PHM/Compacter and LoKr.

Ordering is ``torch.kron``'s, with the first factor outer and the second inner::

    (A ⊗ B)[a·p + k, c·q + l] = A[a, c] · B[k, l]          A: (m, n), B: (p, q), A ⊗ B: (m·p, n·q)

Everything here is a pure function of its tensor arguments (no module state), differentiable, and batched by
``einsum``/``matmul`` instead of Python loops over ``torch.kron``; ``tests/test_kron.py`` checks each against a dense
``torch.kron`` reference.

Two ways to compute ``Σ_i A_i ⊗ B_i``:

- :func:`kron_sum` (general ``A_i``, ``B_i``): one GEMM ``(a1·a2 × n) @ (n × b1·b2)`` plus one permuting copy.
- :func:`factored_kron_sum` (rank-1 ``A_i = a_i b_iᵀ``, rank-r ``B_i = u_i v_iᵀ``): by the mixed-product rule
  ``(a bᵀ) ⊗ (u vᵀ) = (a ⊗ u)(b ⊗ v)ᵀ``, so the sum is ``P Qᵀ`` with ``P = [a_i ⊗ u_i]`` (``d_out × n·r``) and
  ``Q = [b_i ⊗ v_i]`` (``d_in × n·r``): a LoRA of rank ``n·r`` with Kronecker-structured factors. One GEMM, no
  permute; faster than :func:`kron_sum` for the same result (figures: ``benchmarks/bench_adapters.py``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["common_divisors", "factored_kron_sum", "kron_sum", "low_rank", "rank1"]


def rank1(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Outer products ``u vᵀ``, batched over leading dimensions.

    Args:
        u: ``(..., p)``.
        v: ``(..., q)``.

    Returns:
        ``(..., p, q)``.
    """
    return u.unsqueeze(-1) * v.unsqueeze(-2)


def low_rank(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rank-r products ``u vᵀ``, batched over leading dimensions.

    Args:
        u: ``(..., p, r)``.
        v: ``(..., q, r)``.

    Returns:
        ``(..., p, q)``.
    """
    return u @ v.transpose(-1, -2)


def kron_sum(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``Σ_i A_i ⊗ B_i`` for stacks of matrices.

    Args:
        A: ``(n, a1, a2)``, the outer factors.
        B: ``(n, b1, b2)``, the inner factors.

    Returns:
        ``(a1·b1, a2·b2)``.
    """
    if A.dim() != 3 or B.dim() != 3 or A.shape[0] != B.shape[0]:
        raise ValueError(
            f"kron_sum expects A (n, a1, a2) and B (n, b1, b2); got {tuple(A.shape)} and {tuple(B.shape)}"
        )
    n, a1, a2 = A.shape
    _, b1, b2 = B.shape
    # (a1·a2, n) @ (n, b1·b2) is one GEMM; the result is indexed [a, c, k, l] and must become [a, k, c, l].
    outer = (A.reshape(n, a1 * a2).transpose(0, 1) @ B.reshape(n, b1 * b2)).reshape(a1, a2, b1, b2)
    return outer.permute(0, 2, 1, 3).reshape(a1 * b1, a2 * b2)


def factored_kron_sum(a: torch.Tensor, b: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``Σ_i (a_i b_iᵀ) ⊗ (u_i v_iᵀ)``: rank-1 outer factors, rank-r inner factors.

    Args:
        a: ``(n, a1)``, left vectors of the outer (rule) matrices.
        b: ``(n, a2)``, right vectors of the outer matrices.
        u: ``(n, b1, r)``, left factors of the inner matrices.
        v: ``(n, b2, r)``, right factors of the inner matrices.

    Returns:
        ``(a1·b1, a2·b2)``, equal to ``kron_sum(rank1(a, b), low_rank(u, v))``.
    """
    n, a1 = a.shape
    a2 = b.shape[1]
    _, b1, r = u.shape
    b2 = v.shape[1]
    left = torch.einsum("ia,ikr->akir", a, u).reshape(a1 * b1, n * r)
    right = torch.einsum("ic,ilr->clir", b, v).reshape(a2 * b2, n * r)
    return left @ right.transpose(0, 1)


def common_divisors(*dims: int) -> list[int]:
    """All positive integers dividing every one of ``dims``, ascending (the valid Kronecker sizes ``n``)."""
    if not dims or any(int(d) <= 0 for d in dims):
        raise ValueError(f"common_divisors needs positive dimensions, got {list(dims)}")
    g = math.gcd(*(int(d) for d in dims))
    return [k for k in range(1, g + 1) if g % k == 0]
