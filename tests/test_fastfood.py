"""functional.fastfood: the transform and its transpose against the dense ``H G Π H B``, on raw operands."""

from __future__ import annotations

import pytest
import scipy.linalg
import torch

from petl_analysis.functional import Workspace, fastfood, fastfood_indices, fastfood_transpose


def _operands(L: int, d: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    signs = (torch.randint(0, 2, (L,), generator=gen) * 2 - 1).double()
    perm = torch.randperm(L, generator=gen)
    gauss = torch.randn(L, generator=gen, dtype=torch.float64)
    perm_mod, perm_inverse = fastfood_indices(perm, d)
    H = torch.from_numpy(scipy.linalg.hadamard(L)).double()
    dense = H @ torch.diag(gauss) @ torch.eye(L, dtype=torch.float64)[perm] @ H @ torch.diag(signs)
    return signs[:d], perm_mod, perm_inverse, gauss, dense


@pytest.mark.parametrize(("L", "D", "d"), [(1, 1, 1), (8, 5, 3), (64, 37, 10), (128, 100, 65), (256, 256, 256)])
def test_both_directions_equal_the_dense_matrix(L, D, d):
    signs, perm_mod, perm_inverse, gauss, dense = _operands(L, d)
    work = Workspace()
    theta = torch.randn(3, d, dtype=torch.float64)
    g = torch.randn(2, D, dtype=torch.float64)
    torch.testing.assert_close(fastfood(theta, D, signs, perm_mod, perm_inverse, gauss, work), theta @ dense[:D, :d].T)
    torch.testing.assert_close(fastfood_transpose(g, D, signs, perm_mod, perm_inverse, gauss, work), g @ dense[:D, :d])


def test_indices_are_int32_and_the_workspace_keeps_two_vectors():
    perm = torch.randperm(64)
    perm_mod, perm_inverse = fastfood_indices(perm, 10)
    assert perm_mod.dtype == perm_inverse.dtype == torch.int32
    torch.testing.assert_close(perm_mod.long(), perm % 16)
    torch.testing.assert_close(perm[perm_inverse.long()], torch.arange(64))
    signs, perm_mod, perm_inverse, gauss, _ = _operands(64, 10)
    work = Workspace()
    fastfood(torch.randn(10, dtype=torch.float64), 40, signs, perm_mod, perm_inverse, gauss, work)
    assert work.nbytes() == 2 * 64 * 8


@pytest.mark.parametrize("direction", [fastfood, fastfood_transpose])
def test_gradcheck_and_double_backward(direction):
    signs, perm_mod, perm_inverse, gauss, _ = _operands(32, 6)
    work = Workspace()
    x = torch.randn(6 if direction is fastfood else 20, dtype=torch.float64, requires_grad=True)

    def f(t):
        return direction(t, 20, signs, perm_mod, perm_inverse, gauss, work)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))
