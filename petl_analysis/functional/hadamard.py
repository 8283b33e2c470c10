"""Fast Walsh–Hadamard transform (FWHT), unnormalised, Sylvester ordering.

``fwht(x)`` equals ``x @ H_n`` (= ``H_n @ x`` for a vector, since ``H_n`` is symmetric), where ``H_n`` is
``scipy.linalg.hadamard(n)``: ``H_1 = [1]``, ``H_2n = [[H_n, H_n], [H_n, -H_n]]``. Entries are ±1, so
``H_n @ H_n = n I``; divide by ``sqrt(n)`` for the orthonormal version.

Formulation: Sylvester matrices factor as Kronecker products, ``H_{a·b} = H_a ⊗ H_b``. Viewing the last
dimension as a grid ``(f_k, …, f_2, f_1)`` with every ``f_i ≤ 16``, the transform is one small dense ``H_{f_i}``
applied along each grid axis in turn. Each step is one batched GEMM against a cached 16×16 ±1 matrix on a *view*
of the data (no transposes, no copies): ~4·n·log2 n flops instead of n·log2 n, but GEMMs run near peak while the
classic butterfly loop is memory-bound, so on CPU this beats the ``stack``-based butterfly and a ``tensordot``
over a ``(16,)*k`` reshape (figures: ``benchmarks/bench_projections.py``). Steps write into two ping-pong buffers
(``matmul(out=...)``), not a fresh tensor each: on CPU a fresh multi-MiB allocation is page-faulted in again, so
allocation count matters as much as flops here; :func:`fwht_destructive` lets chained callers (Fastfood) run in
two buffers they own. For one vector up to 2^16, :func:`fwht_inplace` uses a rotating form (one plain GEMM per
step) that has less per-step overhead.

Structured inputs and outputs (:func:`fwht_padded_`, :func:`fwht_truncated_`): the transform of a zero-padded
vector and the first ``keep`` outputs of a transform, exactly, without transforming the zeros or computing the
dropped rows. Fastfood needs both (it pads θ_d from d to L = 2^⌈log2 D⌉ and keeps D of L rows), and with D just
above a power of 2 each costs about half a full transform.

Autograd: :class:`FWHT` is a custom :class:`torch.autograd.Function`. Because ``H`` is symmetric, the backward of
``y = x H`` is ``grad_x = grad_y H`` — one more transform — and nothing from the forward pass is saved (no graph of
per-stage intermediates, which in pure-PyTorch butterflies costs O(n log n) memory per call).
"""

from __future__ import annotations

import functools

import torch

__all__ = [
    "FWHT",
    "fwht",
    "fwht_destructive",
    "fwht_inplace",
    "fwht_into_",
    "fwht_padded_",
    "fwht_truncated_",
    "hadamard_matrix",
    "is_power_of_two",
    "next_power_of_two",
]

# Largest Kronecker factor applied as one dense GEMM (16 and 32 level, larger slower: benchmarks/bench_projections.py).
_BLOCK = 16

_CACHE: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}

# Below this length a half-split in fwht_padded_ / fwht_truncated_ saves less than its Python overhead (a few
# ops, each with a fixed cost on CPU); the transform is done in full instead.
_SPLIT_MIN = 1 << 14
# Largest length fwht_inplace transforms in the rotating form (see there).
_ROTATE_MAX = 1 << 16


def is_power_of_two(n: int) -> bool:
    """True for 1, 2, 4, 8, …"""
    return n >= 1 and (n & (n - 1)) == 0


def next_power_of_two(n: int) -> int:
    """Smallest power of 2 that is >= n (n >= 1): 1, 2, 4, 4, 8, …"""
    return 1 << (n - 1).bit_length()


def hadamard_matrix(
    n: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Dense Sylvester Hadamard matrix ``H_n`` (n×n, entries ±1), identical to ``scipy.linalg.hadamard(n)``.

    Meant for small n (the FWHT's blocks, tests). Cached per (n, dtype, device); treat the result as read-only.
    """
    if not is_power_of_two(n):
        raise ValueError(f"Hadamard size must be a power of 2, got n={n}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (n, dtype, device)
    h = _CACHE.get(key)
    if h is None:
        h = torch.ones(1, 1, dtype=torch.float64)
        while h.shape[0] < n:
            h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
        h = h.to(dtype=dtype, device=device)
        if n <= 4 * _BLOCK:  # only cache the small blocks the transform uses; big matrices are one-offs
            _CACHE[key] = h
    return h


@functools.cache
def _factors(n: int) -> tuple[int, ...]:
    """Kronecker factors of H_n, innermost axis first: 16s, then the one smaller factor (if any) outermost.

    Steps whose contracted axis has a short stride are many tiny matmuls, so a small factor innermost would make
    step 2 the slowest by far (figures: ``benchmarks/bench_projections.py``).
    """
    factors: list[int] = []
    while n > 1:
        f = min(_BLOCK, n)
        factors.append(f)
        n //= f
    return tuple(factors)


def _blocks(factors: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> dict[int, torch.Tensor]:
    """The Hadamard blocks a transform needs, looked up once per transform rather than once per step (on a few
    thousand numbers the transform is so short that per-step Python overhead shows)."""
    return {f: hadamard_matrix(f, dtype, device) for f in set(factors)}


def _run_steps(x: torch.Tensor, targets: list[torch.Tensor]) -> torch.Tensor:
    """Apply H_f along each grid axis of ``x`` (rows, n); step i writes into ``targets[i]`` (flat, rows·n).

    Step i reads what step i-1 wrote, so consecutive targets must differ; ``targets[0]`` must not alias ``x``.
    Writing into given buffers (``matmul(out=...)``) instead of a fresh tensor per step matters on CPU: every
    fresh large allocation is page-faulted in again.
    """
    rows, n = x.shape
    factors = _factors(n)
    f0 = factors[0]
    blocks = _blocks(factors, x.dtype, x.device)
    # Innermost axis: (rows·n/f0, f0) @ H_f0. H is symmetric, so x @ H == (H @ x^T)^T.
    y = torch.matmul(x.reshape(-1, f0), blocks[f0], out=targets[0].view(-1, f0))
    inner = f0
    for f, target in zip(factors[1:], targets[1:]):
        # View as (rows·outer, f, inner) and contract the middle axis: H_f @ X, broadcast over the batch.
        shape = (rows * (n // (inner * f)), f, inner)
        y = torch.matmul(blocks[f], y.reshape(shape), out=target.view(shape))
        inner *= f
    return y.reshape(rows, n)


def _check(x: torch.Tensor) -> None:
    n = x.shape[-1]
    if not is_power_of_two(n):
        raise ValueError(f"fwht needs the last dimension to be a power of 2, got {n} (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise ValueError(f"fwht needs a floating-point tensor, got {x.dtype}")


def _fwht_impl(x: torch.Tensor) -> torch.Tensor:
    """The transform into a fresh tensor (``x`` untouched; no autograd bookkeeping). (..., n) -> (..., n)."""
    _check(x)
    n, lead = x.shape[-1], x.shape[:-1]
    if n == 1:
        return x.clone()
    batch = x.reshape(-1, n)
    steps = len(_factors(n))
    result = torch.empty(batch.numel(), dtype=x.dtype, device=x.device)
    scratch = torch.empty_like(result) if steps > 1 else result
    # Ping-pong so that the last step lands in `result`.
    targets = [result if (steps - 1 - i) % 2 == 0 else scratch for i in range(steps)]
    return _run_steps(batch, targets).reshape(*lead, n)


def fwht_destructive(buf: torch.Tensor, spare: torch.Tensor) -> torch.Tensor:
    """FWHT of ``buf`` (rows, n) using only ``buf`` and ``spare`` (same shape, contiguous) as memory.

    Both inputs are overwritten; the result is returned as a view of one of the two (compare ``data_ptr()`` to
    tell which); the other is then free to reuse.
    For callers that chain transforms (Fastfood) without allocating per step; not differentiable.
    """
    _check(buf)
    if buf.shape[-1] == 1:
        return buf
    steps = len(_factors(buf.shape[-1]))
    targets = [spare.view(-1) if i % 2 == 0 else buf.view(-1) for i in range(steps)]
    return _run_steps(buf, targets)


def fwht_inplace(x: torch.Tensor, spare: torch.Tensor) -> torch.Tensor:
    """FWHT of a contiguous 1-D ``x`` written back into ``x``; ``spare`` (at least ``x.numel()``, contiguous) is
    scratch. Returns ``x``."""
    return fwht_into_(x, x, spare)


def fwht_into_(src: torch.Tensor, dst: torch.Tensor, spare: torch.Tensor) -> torch.Tensor:
    """``dst ← H_n src`` for contiguous 1-D ``src`` and ``dst`` of length n: the same tensor for in place, else
    ``src`` is only read. ``spare`` (at least n, contiguous, overlapping neither) is scratch. Returns ``dst``.
    Reading ``src`` in the first step saves the copy a caller would otherwise make."""
    n = src.numel()
    if n == 1:
        return dst.copy_(src)
    if n > _ROTATE_MAX:
        if dst.data_ptr() != src.data_ptr():
            dst.copy_(src)
        out = fwht_destructive(dst.view(1, n), spare[:n].view(1, n))
        if out.data_ptr() != dst.data_ptr():
            dst.copy_(out.view(n))
        return dst
    # Rotating form: each step is one plain GEMM, H_f @ (view as (n/f, f))ᵀ, which contracts the innermost grid
    # axis and writes it out as the outermost; after one step per axis the order is the original again. One
    # kernel per step instead of a broadcast batched matmul: faster up to n = 2^16, slower above on 2 threads,
    # where the batched form parallelises better. For n = 16^k the mirrored rotation (contract the outermost axis,
    # write it innermost: Xᵀ H_f) is faster still; with a smaller factor in the grid its short contraction is slow
    # that way round. Figures: benchmarks/bench_projections.py.
    factors = _factors(n)
    mirrored = factors[-1] == _BLOCK
    blocks = _blocks(factors, src.dtype, src.device)
    spare = spare[:n]
    # Ping-pong so that the last step lands in dst; in place with an odd step count, finish in spare and copy.
    cur = dst if len(factors) % 2 == 1 and dst.data_ptr() != src.data_ptr() else spare
    x = src
    for f in factors:
        if mirrored:
            torch.mm(x.view(f, n // f).T, blocks[f], out=cur.view(n // f, f))
        else:
            torch.mm(blocks[f], x.view(n // f, f).T, out=cur.view(f, n // f))
        x, cur = cur, (spare if cur is dst else dst)
    if x is not dst:
        dst.copy_(x)
    return dst


def fwht_padded_(buf: torch.Tensor, m: int, spare: torch.Tensor, src: torch.Tensor | None = None) -> torch.Tensor:
    """In place: ``buf ← H_n pad_n(buf[:m])`` for a contiguous 1-D ``buf`` of power-of-2 length n; ``buf[m:]`` is
    never read (it need not be zero). With ``src`` (contiguous, at least m long, not overlapping ``buf`` or
    ``spare``) the input is ``src[:m]`` instead, read where it lies rather than copied into ``buf`` first.
    ``spare``: scratch of length >= n. Returns ``buf``.

    Does not transform the zeros. With ``H_n = [[H, H], [H, -H]]`` (``H = H_{n/2}``) and ``x = [x1; x2]`` the result
    is ``[a + b; a - b]``, ``a = H x1``, ``b = H pad(x2)``; and a vector supported on its first ``w = 2^⌈log2 m⌉``
    entries transforms to ``H_w x`` tiled n / w times (the first column of a Sylvester matrix is all ones). Cost
    about ``T(w)`` for ``w < n``, else ``T(n/2) + T(m - n/2)``, against ``T(n)`` for the full transform: half of
    it for m just above n/2, the common case when n is the power of 2 above a parameter count.
    """
    n = buf.numel()
    width = next_power_of_two(m)
    if width < n:
        fwht_padded_(buf[:width], m, spare, src)
        buf.view(n // width, width)[1:] = buf[:width]  # tile
    elif m == n or n < _SPLIT_MIN:
        if src is not None:
            buf[:m] = src[:m]
        buf[m:] = 0
        fwht_inplace(buf, spare)
    else:
        half = n // 2
        a, b = buf[:half], buf[half:]
        # b = H pad(x2) is u = H_w pad(x2) tiled half / w times: combine by broadcasting u, never writing the tile.
        w = next_power_of_two(m - half)
        u = spare[half : half + w]
        u.copy_(fwht_padded_(b[:w], m - half, spare, None if src is None else src[half:m]))
        fwht_into_(a if src is None else src[:half], a, spare)
        torch.sub(a.view(-1, w), u, out=b.view(-1, w))
        a.view(-1, w).add_(u)
    return buf


def fwht_truncated_(
    buf: torch.Tensor, keep: int, spare: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """In place: ``buf[:keep] ← (H_n buf)[:keep]`` for a contiguous 1-D ``buf`` of power-of-2 length n, without
    computing the dropped outputs; ``buf[keep:]`` is left as scratch. ``spare``: scratch of length >= n. With
    ``out`` (contiguous, length ``keep``, overlapping neither) the result is written there instead (``buf`` is
    then scratch too), saving a copy when the caller needs a tensor of its own. Returns ``buf[:keep]`` or ``out``.
    The transpose of :func:`fwht_padded_`.

    With ``z = [z1; z2]``, ``H_n z = [H(z1 + z2); H(z1 - z2)]``, and the first ``w = 2^⌈log2 keep⌉`` outputs of a
    size-n transform are ``H_w`` applied to the sum of the n / w chunks of length w. Cost about
    ``T(n/2) + T(keep - n/2)`` for keep > n/2, against ``T(n)``.
    """
    n = buf.numel()
    width = next_power_of_two(keep)
    if keep == n:
        return fwht_into_(buf, buf if out is None else out, spare)
    if width == n and n < _SPLIT_MIN:
        fwht_inplace(buf, spare)
        return buf[:keep] if out is None else out.copy_(buf[:keep])
    if width < n:
        torch.sum(buf.view(n // width, width), 0, out=spare[:width])
        buf[:width] = spare[:width]
        return fwht_truncated_(buf[:width], keep, spare, out)
    half = n // 2
    z1, z2 = buf[:half], buf[half:]
    w = next_power_of_two(keep - half)
    head = z1 if out is None else out[:half]
    tail = None if out is None else out[half:keep]
    if w < half:  # of z1 - z2 only its fold to w is needed: fold(z1) - fold(z2), taken before z1 += z2
        folds = spare[half : half + 2 * w].view(2, w)
        torch.sum(buf.view(2, -1, w), 1, out=folds)
        folds[0].sub_(folds[1])
        z1.add_(z2)
        fwht_into_(z1, head, spare)
        z2[:w] = folds[0]
        fwht_truncated_(z2[:w], keep - half, spare, tail)
    else:
        torch.sub(z1, z2, out=spare[:half])
        z1.add_(z2)
        z2.copy_(spare[:half])
        fwht_into_(z1, head, spare)
        fwht_truncated_(z2, keep - half, spare, tail)
    return buf[:keep] if out is None else out


class FWHT(torch.autograd.Function):
    """Differentiable unnormalised FWHT over the last dimension; backward is one more FWHT, nothing is saved."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return _fwht_impl(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        # H is symmetric: d(xH)/dx applied to g is gH. Calling apply (not _fwht_impl) keeps double backward working.
        return FWHT.apply(grad_output)


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised fast Walsh–Hadamard transform over the last dimension.

    Args:
        x: float tensor of shape ``(..., n)`` with ``n`` a power of 2 (any float dtype, CPU or CUDA).

    Returns:
        ``(..., n)`` tensor equal to ``x @ scipy.linalg.hadamard(n)`` (Sylvester ordering), computed in
        O(n log n). Not normalised: ``fwht(fwht(x)) == n * x``.
    """
    return FWHT.apply(x)
