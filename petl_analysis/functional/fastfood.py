"""The Fastfood transform (Le et al. 2013) and its transpose, on tensors: ``θ ↦ (H G Π H B pad_L(θ))[:D]``.

``H`` is the L×L Sylvester Hadamard matrix (:func:`~petl_analysis.functional.hadamard.fwht`), ``B = diag(signs)``,
``Π`` a permutation (a gather), ``G = diag(gauss)``, ``L`` a power of 2 with ``L >= D >= d`` (``d`` = length of
θ). Everything a caller fixes once (the random draws, their normalisation, seeds, buffers on a module) is the
caller's: :class:`~petl_analysis.probe.projections.FastfoodProjection` draws them and calls :func:`fastfood`.
``tests/test_fastfood.py`` checks both directions against the dense ``H G Π H B``.

Operands (all 1-D, on the device and, where floating, in the dtype of θ):

* ``signs`` (d,): the first d entries of B's diagonal (the rest multiply padded zeros);
* ``perm_mod`` (L,) and ``perm_inverse`` (L,): ``Π mod d'`` (``d' = 2^⌈log2 d⌉``) and ``Π⁻¹`` as int32, from
  :func:`fastfood_indices`;
* ``gauss`` (L,): G's diagonal, with any normalisation folded in;
* ``workspace``: a :class:`Workspace` whose two length-L work vectors are reused from call to call.

Neither transform touches what it does not need (exact; :func:`fwht_padded_`, :func:`fwht_truncated_`):
``H_L pad_L(θ)`` is ``H_{d'} pad_{d'}(θ)`` tiled L/d' times, so ``Π`` gathers by ``Π mod d'`` straight from those
d' numbers, and the last transform skips the L - D dropped rows. The transpose ``g ↦ B (H Πᵀ G H pad_L(g))[:d]``
has the mirror shortcuts (padded input, truncated output). Both directions are one autograd Function whose
backward is the other direction (double backward works); nothing is saved for backward but references to the
operands.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .hadamard import fwht_padded_, fwht_truncated_, next_power_of_two

__all__ = ["Fastfood", "Workspace", "fastfood", "fastfood_indices", "fastfood_transpose"]


class Workspace:
    """Work vectors reused from call to call, by (name, length, dtype, device).

    On CPU every fresh multi-hundred-KiB tensor is page-faulted in again once the allocator has returned the last
    one to the OS; fresh work vectors on every training step slowed the *model's* own kernels beside them (figures
    in ``benchmarks/bench_subspace.py``). Not for concurrent calls from several threads on one workspace.
    """

    def __init__(self) -> None:
        self._store: dict[tuple[str, int, torch.dtype, torch.device], Tensor] = {}

    def nbytes(self) -> int:
        """Bytes of the vectors held."""
        return sum(t.numel() * t.element_size() for t in self._store.values())

    def get(self, name: str, n: int, like: Tensor) -> Tensor:
        """The vector ``name`` of length ``n`` in ``like``'s dtype and device (contents undefined)."""
        key = (name, n, like.dtype, like.device)
        t = self._store.get(key)
        if t is None:
            self._store = {k: v for k, v in self._store.items() if k[0] != name}  # drop stale dtype/device/size
            t = self._store[key] = torch.empty(n, dtype=like.dtype, device=like.device)
        return t


def fastfood_indices(perm: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """``(Π mod d', Π⁻¹)`` as int32 for a permutation ``perm`` of ``range(L)`` and input length ``d``.

    int32: ``index_select`` takes it on CPU and CUDA, and it halves the index traffic of the gathers.
    """
    perm_mod = perm & (next_power_of_two(d) - 1)  # = perm when d' = L
    return perm_mod.to(torch.int32), torch.argsort(perm).to(torch.int32)


def _work_vectors(workspace: Workspace, L: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """The two length-L work vectors of a call. Each stage's scratch is the vector the other stage needs (the
    first transform works in ``buf`` with ``other`` as scratch, the gather writes ``other``, the last transform
    works there with ``buf`` as scratch): two vectors, not three, and in a training step, where the model evicts
    them between calls, each vector touched is a cold read."""
    return workspace.get("buf", L, like), workspace.get("other", L, like)


def _forward_vector(
    x: Tensor, signs: Tensor, n_out: int, perm_mod: Tensor, gauss: Tensor, workspace: Workspace
) -> Tensor:
    """``(H_L G Π H_L B pad_L(x))[:n_out]`` for one vector x (d,); the result is a fresh tensor."""
    d, L = x.numel(), perm_mod.numel()
    buf, other = _work_vectors(workspace, L, x)
    torch.mul(x, signs, out=buf[:d])
    u = fwht_padded_(buf[: next_power_of_two(d)], d, other)
    # index_select: faster than torch.take on CPU (benchmarks/bench_projections.py), and takes an int32 index.
    z = torch.index_select(u, 0, perm_mod, out=other).mul_(gauss)
    return fwht_truncated_(z, n_out, buf, out=torch.empty(n_out, dtype=x.dtype, device=x.device))


def _transpose_vector(g: Tensor, signs: Tensor, perm_inverse: Tensor, gauss: Tensor, workspace: Workspace) -> Tensor:
    """``B (H_L Πᵀ G H_L pad_L(g))[:d]`` for one vector g (D,): the transpose of :func:`_forward_vector`; the
    result is fresh."""
    buf, other = _work_vectors(workspace, perm_inverse.numel(), g)
    # src=g: the first transform reads g where it lies (contiguous: a grad can be an expanded view).
    w = fwht_padded_(buf, g.numel(), other, src=g.contiguous()).mul_(gauss)
    torch.index_select(w, 0, perm_inverse, out=other)
    return fwht_truncated_(other, signs.numel(), buf) * signs


def _rowwise(fn: Callable[..., Tensor], x: Tensor, *args: object) -> Tensor:
    """Apply a one-vector kernel to each row of a (rows, n) tensor (rows > 1 only when materialising P)."""
    if x.shape[0] == 1:
        return fn(x.reshape(-1), *args).unsqueeze(0)
    return torch.stack([fn(row.contiguous(), *args) for row in x])


def _rows(
    x: Tensor,
    transpose: bool,
    D: int,
    signs: Tensor,
    perm_mod: Tensor,
    perm_inverse: Tensor,
    gauss: Tensor,
    workspace: Workspace,
) -> Tensor:
    """``P x`` for x (..., d), or ``Pᵀ x`` for x (..., D) with ``transpose``; no autograd bookkeeping."""
    if transpose:
        out = _rowwise(_transpose_vector, x.reshape(-1, D), signs, perm_inverse, gauss, workspace)
        return out.reshape(*x.shape[:-1], signs.shape[0])
    out = _rowwise(_forward_vector, x.reshape(-1, x.shape[-1]), signs, D, perm_mod, gauss, workspace)
    return out.reshape(*x.shape[:-1], D)


class Fastfood(torch.autograd.Function):
    """``x ↦ P x`` (``transpose=False``) or ``x ↦ Pᵀ x`` (``transpose=True``), ``P = (H G Π H B)[:D, :d]``;
    arguments as :func:`fastfood`. Backward is the other direction: through this Function when a graph is being
    built (so double backward works), else the kernel directly, which saves a nested Function's autograd overhead
    on every training step. Nothing is saved but references to the operands."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        transpose: bool,
        D: int,
        signs: Tensor,
        perm_mod: Tensor,
        perm_inverse: Tensor,
        gauss: Tensor,
        workspace: Workspace,
    ) -> Tensor:
        ctx.transpose, ctx.D, ctx.workspace = transpose, D, workspace
        ctx.save_for_backward(signs, perm_mod, perm_inverse, gauss)
        return _rows(x, transpose, D, signs, perm_mod, perm_inverse, gauss, workspace)

    @staticmethod
    def backward(ctx, grad: Tensor):
        other = Fastfood.apply if torch.is_grad_enabled() else _rows  # create_graph: the transpose is differentiable
        grad_x = other(grad, not ctx.transpose, ctx.D, *ctx.saved_tensors, ctx.workspace)
        return grad_x, None, None, None, None, None, None, None


def fastfood(
    theta: Tensor, D: int, signs: Tensor, perm_mod: Tensor, perm_inverse: Tensor, gauss: Tensor, workspace: Workspace
) -> Tensor:
    """Differentiable ``(..., d) -> (..., D)``: ``(H G Π H B pad_L(θ))[:D]`` row-wise (operands: module docstring).

    Cost per row: one FWHT of length d', one length-L gather and one FWHT of length L truncated to D rows, which
    costs about half a full one when D is just above L/2; about two length-L work vectors, kept in ``workspace``.
    """
    return Fastfood.apply(theta, False, D, signs, perm_mod, perm_inverse, gauss, workspace)


def fastfood_transpose(
    grad: Tensor, D: int, signs: Tensor, perm_mod: Tensor, perm_inverse: Tensor, gauss: Tensor, workspace: Workspace
) -> Tensor:
    """Differentiable ``(..., D) -> (..., d)``: the transpose of :func:`fastfood` with the same operands."""
    return Fastfood.apply(grad, True, D, signs, perm_mod, perm_inverse, gauss, workspace)
