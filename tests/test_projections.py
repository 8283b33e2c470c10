"""Fast Walsh–Hadamard transform and the subspace projections, checked against dense references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from petl_analysis.errors import PetlError
from petl_analysis.functional import FWHT, fwht, fwht_destructive, hadamard_matrix
from petl_analysis.functional.hadamard import fwht_into_, fwht_padded_, fwht_truncated_
from petl_analysis.probe.projections import PROJECTIONS, DenseProjection, FastfoodProjection, make_projection

KINDS = ["dense", "sparse", "fastfood", "grouping"]
#: Kinds whose column j does not depend on d (grouping partitions the rows among the d columns).
NESTED = ["dense", "sparse", "fastfood"]


def _hadamard(n: int) -> torch.Tensor:
    return torch.from_numpy(scipy.linalg.hadamard(n).astype(np.float64))


# --------------------------------------------------------------------------------------------------------- FWHT
@pytest.mark.parametrize("n", [1, 2, 8, 64, 1024])
@pytest.mark.parametrize("lead", [(), (3,), (2, 5)])
def test_fwht_matches_scipy_hadamard(n, lead):
    x = torch.randn(*lead, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    expected = x @ _hadamard(n)  # H is symmetric: x @ H == (H @ x^T)^T
    torch.testing.assert_close(fwht(x), expected, rtol=1e-12, atol=1e-10 * n)


@pytest.mark.parametrize("n", [16, 32, 4096, 2**15])
def test_fwht_is_its_own_inverse_up_to_n(n):
    x = torch.randn(4, n, dtype=torch.float64)
    torch.testing.assert_close(fwht(fwht(x)), n * x)


def test_hadamard_matrix_matches_scipy():
    for n in (1, 2, 16, 128):
        torch.testing.assert_close(hadamard_matrix(n, torch.float64), _hadamard(n))


@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 5e-2)])
def test_fwht_low_precision_dtypes(dtype, rtol):
    x = torch.randn(3, 256, dtype=torch.float64)
    out = fwht(x.to(dtype))
    assert out.dtype == dtype
    ref = fwht(x)
    assert ((out.double() - ref).norm() / ref.norm()).item() < rtol


def test_fwht_non_contiguous_input():
    x = torch.randn(6, 128, dtype=torch.float64)[:, ::2]
    torch.testing.assert_close(fwht(x), x @ _hadamard(64))


@pytest.mark.parametrize("n", [1, 2, 16, 32, 512, 8192])
def test_fwht_destructive_uses_the_two_buffers(n):
    x = torch.randn(3, n, dtype=torch.float64)
    buf, spare = x.clone(), torch.empty_like(x)
    out = fwht_destructive(buf, spare)
    assert out.data_ptr() in (buf.data_ptr(), spare.data_ptr())
    torch.testing.assert_close(out, x @ _hadamard(n))


# Sizes around the cases the shortcuts distinguish: m <= n/2 (tile / fold), n/2 < m < n (split), m == n.
PREFIXES = [
    (1, 1),
    (2, 1),
    (8, 3),
    (16, 8),
    (16, 9),
    (64, 33),
    (64, 41),
    (64, 63),
    (64, 64),
    (1024, 517),
    (1024, 700),
    (4096, 1),
]


@pytest.mark.parametrize(("n", "m"), PREFIXES)
def test_fwht_padded_equals_transform_of_zero_padded_input(n, m):
    x = torch.randn(m, dtype=torch.float64)
    buf = torch.full((n,), float("nan"), dtype=torch.float64)  # entries past m must never be read
    buf[:m] = x
    out = fwht_padded_(buf, m, torch.empty(n, dtype=torch.float64))
    assert out.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(out, torch.nn.functional.pad(x, (0, n - m)) @ _hadamard(n))


@pytest.mark.parametrize(("n", "keep"), PREFIXES)
def test_fwht_truncated_equals_first_outputs_and_is_the_transpose_of_padded(n, keep):
    z = torch.randn(n, dtype=torch.float64)
    out = fwht_truncated_(z.clone(), keep, torch.empty(n, dtype=torch.float64))
    torch.testing.assert_close(out, (z @ _hadamard(n))[:keep])
    x = torch.randn(keep, dtype=torch.float64)  # <H pad(x), z> == <x, (H z)[:keep]>
    padded = fwht_padded_(
        torch.cat((x, torch.zeros(n - keep, dtype=torch.float64))), keep, torch.empty(n, dtype=torch.float64)
    )
    torch.testing.assert_close(padded @ z, x @ out)


@pytest.mark.parametrize("m", [1, 300, 2**14, 2**14 + 1, 2**14 + 300, 3 * 2**13 + 5, 2**15 - 1, 2**15])
def test_structured_transforms_split_branches_at_large_n(m):
    """At n >= 2^14 the structured transforms split in halves (tile-broadcast and fold branches included);
    checked against the plain FWHT, itself checked against scipy above."""
    n = 2**15
    x = torch.randn(m, dtype=torch.float64)
    ref = fwht(torch.nn.functional.pad(x, (0, n - m)))
    buf = torch.full((n,), float("nan"), dtype=torch.float64)
    buf[:m] = x
    torch.testing.assert_close(fwht_padded_(buf, m, torch.empty(n, dtype=torch.float64)), ref)
    z = torch.randn(n, dtype=torch.float64)
    out = fwht_truncated_(z.clone(), m, torch.full((n,), float("nan"), dtype=torch.float64))
    torch.testing.assert_close(out, fwht(z)[:m])


# 16 and 2^12: one and three rotating steps (odd: the in-place case finishes in spare); 256 and 2^16: two and
# four (even); 2^17: the batched form above the rotating range.
@pytest.mark.parametrize("n", [2, 16, 256, 2**12, 2**16, 2**17])
def test_fwht_into_writes_dst_reads_src_and_works_in_place(n):
    x = torch.randn(n, dtype=torch.float64)
    ref = fwht(x)
    src, dst = x.clone(), torch.full((n,), float("nan"), dtype=torch.float64)
    assert fwht_into_(src, dst, torch.empty(n, dtype=torch.float64)) is dst
    torch.testing.assert_close(dst, ref)
    torch.testing.assert_close(src, x, rtol=0, atol=0)  # only read
    buf = x.clone()
    assert fwht_into_(buf, buf, torch.empty(n, dtype=torch.float64)) is buf
    torch.testing.assert_close(buf, ref)


@pytest.mark.parametrize(("n", "m"), [*PREFIXES, (2**15, 2**14 + 300), (2**15, 2**15 - 1), (2**17, 2**16 + 1024)])
def test_padded_from_src_and_truncated_into_out_match_the_in_place_forms(n, m):
    """src= reads the input where it lies (buf holds only NaN), out= writes the result elsewhere (buf is scratch)."""
    x = torch.randn(m, dtype=torch.float64)
    src = x.clone()
    buf = torch.full((n,), float("nan"), dtype=torch.float64)
    out = fwht_padded_(buf, m, torch.empty(n, dtype=torch.float64), src=src)
    torch.testing.assert_close(out, fwht(torch.nn.functional.pad(x, (0, n - m))))
    torch.testing.assert_close(src, x, rtol=0, atol=0)
    z = torch.randn(n, dtype=torch.float64)
    into = torch.full((m,), float("nan"), dtype=torch.float64)
    got = fwht_truncated_(z.clone(), m, torch.full((n,), float("nan"), dtype=torch.float64), out=into)
    assert got is into
    torch.testing.assert_close(into, fwht(z)[:m])


def test_fwht_rejects_non_power_of_two():
    with pytest.raises(ValueError, match="power of 2") as e:
        fwht(torch.randn(12))
    assert type(e.value) is ValueError  # pure maths: the caller turns it into a user error


def test_fwht_gradcheck_and_double_backward():
    x = torch.randn(3, 32, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(FWHT.apply, (x,))
    assert torch.autograd.gradgradcheck(fwht, (x,))


def test_fwht_gradient_equals_dense_hadamard_and_saves_nothing():
    n = 64
    x = torch.randn(2, n, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, n, dtype=torch.float64)
    y = fwht(x)
    assert y.grad_fn.saved_tensors == ()  # no graph of per-stage intermediates
    (y * w).sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    ((x_ref @ _hadamard(n)) * w).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)


# -------------------------------------------------------------------------------------------------- projections
def test_registry_lists_the_kinds():
    assert set(KINDS) <= set(PROJECTIONS.names())


@pytest.mark.parametrize("kind", KINDS)
def test_shape_and_linearity(kind):
    D, d = 1000, 37
    proj = make_projection(kind, D, d, seed=0)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(d, generator=g), torch.randn(d, generator=g)
    out = proj(x)
    assert out.shape == (D,)
    torch.testing.assert_close(proj(2.5 * x - 0.5 * y), 2.5 * out - 0.5 * proj(y), rtol=1e-4, atol=1e-5)
    batch = proj(torch.stack([x, y]))
    assert batch.shape == (2, D)
    torch.testing.assert_close(batch[1], proj(y), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(proj.matrix() @ x, out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_by_seed_and_nested_in_d(kind):
    a = make_projection(kind, 3000, 20, seed=7).matrix()
    b = make_projection(kind, 3000, 20, seed=7).matrix()
    c = make_projection(kind, 3000, 20, seed=8).matrix()
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    if kind in NESTED:  # column j does not depend on d: the d=10 subspace is the first 10 columns of the d=20 one
        torch.testing.assert_close(make_projection(kind, 3000, 10, seed=7).matrix(), a[:, :10])


@pytest.mark.parametrize("D, d", [(1, 1), (7, 3), (1000, 37), (1000, 1000), (16_640, 100)])
def test_grouping_is_an_isometry_with_one_nonzero_per_row(D, d):
    # Uni-LoRA's random grouping: disjoint column supports, so P^T P = I exactly and every column is non-empty.
    P = make_projection("grouping", D, d, seed=5, dtype=torch.float64).matrix()
    assert ((P != 0).sum(dim=1) == 1).all()
    torch.testing.assert_close(P.T @ P, torch.eye(d, dtype=torch.float64))
    counts = (P != 0).sum(dim=0)
    assert (counts >= 1).all() and int(counts.sum()) == D
    if D >= 1000 and d < D:  # the other rows fall uniformly: about D/d a column
        assert counts.float().mean() == pytest.approx(D / d) and counts.max() < 3 * D / d + 10


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("D", [4096, 5000])
def test_columns_unit_norm_and_nearly_orthogonal(kind, D):
    d = 64
    proj = make_projection(kind, D, d, seed=3, dtype=torch.float64)
    P = proj.matrix()
    norms = P.norm(dim=0)
    if proj.column_norm == "exact":
        torch.testing.assert_close(norms, torch.ones(d, dtype=torch.float64))
    else:
        assert proj.column_norm == "expected"
        assert abs(norms.mean().item() - 1) < 0.03
        assert (norms - 1).abs().max().item() < 0.1
    cos = (P.T @ P) / torch.outer(norms, norms)
    assert (cos - torch.eye(d, dtype=torch.float64)).abs().max().item() < 0.15


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_is_transpose_product(kind):
    proj = make_projection(kind, 700, 9, seed=0, dtype=torch.float64)
    theta = torch.randn(9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(700, dtype=torch.float64)
    (proj(theta) * w).sum().backward()
    torch.testing.assert_close(theta.grad, proj.matrix().T @ w)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(kind):
    proj = make_projection(kind, 20, 5, seed=0, dtype=torch.float64)
    theta = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(proj, (theta,))
    assert torch.autograd.gradgradcheck(proj, (theta,))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("D", [1, 7, 1000, 1023])
def test_d_equals_D_and_non_power_of_two(kind, D):
    proj = make_projection(kind, D, D, seed=0, dtype=torch.float64)
    P = proj.matrix()
    assert P.shape == (D, D)
    assert bool((P.norm(dim=0) > 0.5).all())  # every coordinate of θ_d reaches the output: nothing cropped
    if kind != "sparse":  # a random sparse D×D matrix may be singular at tiny D; dense and Fastfood are not
        assert torch.linalg.matrix_rank(P).item() == D
    assert abs(P.norm(dim=0).mean().item() - 1) < 0.05


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("D,d,pattern", [(10, 11, "d=11 exceeds D=10"), (10, 0, "d=0"), (0, 1, "D=0")])
def test_invalid_sizes_raise_one_line(kind, D, d, pattern):
    with pytest.raises(PetlError, match=pattern) as err:
        make_projection(kind, D, d, seed=0)
    assert "\n" not in str(err.value)


def test_scope_appears_in_error():
    with pytest.raises(PetlError, match="exceeds D=768 for the fastfood projection of blocks.0.norm1"):
        make_projection("fastfood", 768, 5000, seed=0, scope="blocks.0.norm1")


def test_dense_refuses_above_max_bytes():
    with pytest.raises(PetlError, match="fastfood") as err:
        DenseProjection(100_000, 1000, seed=0, max_bytes=2**20)
    msg = str(err.value)
    assert "381.5 MiB" in msg and "\n" not in msg  # states the size it would need (4 bytes · 1e8)
    assert DenseProjection(1000, 10, seed=0).memory_bytes() == 4 * 1000 * 10


def test_sparse_refuses_above_max_bytes():
    with pytest.raises(PetlError, match="fastfood"):
        make_projection("sparse", 10_000, 1000, seed=0, max_bytes=2**10)


@pytest.mark.parametrize(
    ("D", "d"), [(1, 1), (5, 3), (37, 10), (100, 64), (100, 65), (130, 130), (257, 129), (600, 300)]
)
def test_fastfood_equals_its_dense_definition(D, d):
    """P = (H G Π H B)[:D, :d] with the stored diagonals and permutation, built densely: the fast path's
    shortcuts (tiled input transform, folded / truncated output transform) are exact."""
    proj = FastfoodProjection(D, d, seed=3).double()
    L = proj.L
    H = _hadamard(L)
    perm = torch.argsort(proj.perm_inverse.long())
    torch.testing.assert_close(proj.perm_mod.long(), perm % (1 << (d - 1).bit_length()))
    V = H @ torch.diag(proj.gauss) @ torch.eye(L, dtype=torch.float64)[perm] @ H @ torch.diag(proj.signs)
    torch.testing.assert_close(proj.matrix(), V[:D, :d])
    g = torch.randn(D, dtype=torch.float64)
    theta = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    (proj(theta) @ g).backward()
    torch.testing.assert_close(theta.grad, V[:D, :d].T @ g)


def test_fastfood_memory_independent_of_d():
    small = FastfoodProjection(5000, 10, seed=0)
    large = FastfoodProjection(5000, 1000, seed=0)
    assert small.memory_bytes() == large.memory_bytes() == 16 * 8192


def test_dtype_mismatch_and_wrong_shape_raise():
    proj = make_projection("fastfood", 100, 4, seed=0)
    with pytest.raises(PetlError, match="float64"):
        proj(torch.zeros(4, dtype=torch.float64))
    with pytest.raises(PetlError, match=r"\(\.\.\., 4\)"):
        proj(torch.zeros(5))


@pytest.mark.parametrize("kind", KINDS)
def test_p_is_regenerated_not_saved(kind):
    proj = make_projection(kind, 300, 6, seed=4)
    assert proj.state_dict() == {}  # buffers are non-persistent: P comes back from config()
    rebuilt = make_projection(**proj.config())
    assert torch.equal(rebuilt.matrix(), proj.matrix())
    proj.double()
    assert proj(torch.ones(6, dtype=torch.float64)).dtype == torch.float64


def test_make_projection_rejects_unknown_kind_and_option():
    with pytest.raises(PetlError, match="unknown projection 'gaussian'"):
        make_projection("gaussian", 10, 2, seed=0)
    with pytest.raises(PetlError, match="max_bytes"):
        make_projection("fastfood", 10, 2, seed=0, max_bytes=5)
