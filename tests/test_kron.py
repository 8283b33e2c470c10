"""The Kronecker maths of petl_analysis.functional.kron against dense torch.kron references."""

from __future__ import annotations

import pytest
import torch

from petl_analysis.errors import PetlError
from petl_analysis.functional.kron import common_divisors, factored_kron_sum, kron_sum, low_rank, rank1


def _dense(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    return sum(torch.kron(A[i], B[i]) for i in range(A.shape[0]))


@pytest.mark.parametrize("shapes", [(3, 2, 5, 4, 3), (1, 1, 1, 7, 2), (4, 4, 4, 6, 6)])
def test_kron_sum_matches_dense(shapes) -> None:
    n, a1, a2, b1, b2 = shapes
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(n, a1, a2, generator=g, dtype=torch.float64), torch.randn(n, b1, b2, generator=g, dtype=torch.float64)
    out = kron_sum(A, B)
    assert out.shape == (a1 * b1, a2 * b2)
    torch.testing.assert_close(out, _dense(A, B))


@pytest.mark.parametrize("r", [1, 3])
def test_factored_kron_sum_matches_dense(r: int) -> None:
    g = torch.Generator().manual_seed(1)
    n, a1, a2, b1, b2 = 4, 4, 3, 5, 2
    a, b = torch.randn(n, a1, generator=g, dtype=torch.float64), torch.randn(n, a2, generator=g, dtype=torch.float64)
    u, v = torch.randn(n, b1, r, generator=g, dtype=torch.float64), torch.randn(n, b2, r, generator=g, dtype=torch.float64)
    torch.testing.assert_close(factored_kron_sum(a, b, u, v), _dense(rank1(a, b), low_rank(u, v)))


def test_rank_helpers_and_gradients() -> None:
    u, v = torch.randn(2, 3), torch.randn(2, 4)
    torch.testing.assert_close(rank1(u, v)[1], torch.outer(u[1], v[1]))
    U, V = torch.randn(2, 3, 2, requires_grad=True), torch.randn(2, 4, 2)
    torch.testing.assert_close(low_rank(U, V)[0], U[0] @ V[0].T)
    A = torch.randn(2, 2, 2, requires_grad=True)
    kron_sum(A, low_rank(U, V)).sum().backward()
    assert A.grad is not None and U.grad is not None and torch.count_nonzero(A.grad) > 0


def test_common_divisors() -> None:
    assert common_divisors(768, 768) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 768]
    assert common_divisors(64, 256, 96) == [1, 2, 4, 8, 16, 32]
    with pytest.raises(PetlError):
        common_divisors(0, 4)
