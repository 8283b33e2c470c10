"""Projection cost side by side: dense vs Fastfood vs sparse vs grouping (Uni-LoRA), forward+backward time and
fixed-buffer memory.

    python benchmarks/bench_projections.py                 # default grid, ~1 min on 2 cores
    python benchmarks/bench_projections.py --D 148224 --d 100 1000 --repeats 15

Each cell is the median over ``--repeats`` timed calls (after 2 warm-up calls) of ``P(θ_d)`` followed by a
backward pass of ``sum(w · P θ_d)`` into ``θ_d``, i.e. one training step's worth of projection work. The kinds of
one (D, d) cell are built first and then timed round-robin, so background load affects them alike. Dense P is
reported as "refused" when it exceeds ``--max-bytes`` (the library's default bound, 1 GiB). A first table compares
the FWHT used by Fastfood with the classic stack-butterfly formulation.

Measured while the kernels in ``petl_analysis/functional/`` and ``probe/projections.py`` were written (2 CPU cores,
float32, one-off timings on the project's VMs; the figures their docstrings refer to):

- FWHT forward, one vector, n = 2^21 (2026-12-01): 2.5–4 ms with the Kronecker-16 GEMMs, against ~22 ms for the
  ``stack``-based butterfly and ~10 ms for ``tensordot`` over a ``(16,)*k`` reshape. Largest GEMM factor: 16 and
  32 within noise of each other; 64+ slower. Factor order: with a 2-wide innermost axis, 4 ms of 7 ms at n = 2^21
  went to that step, 0.4 ms with it outermost.
- Allocation (2026-12-01): a fresh multi-MiB tensor is page-faulted in again at ~1 µs per 4 KiB page (~2 ms per
  8 MiB buffer).
- Per-step overhead (2026-12-01): the FWHT of a few thousand numbers costs tens of µs, a half-split's extra ops
  ~10 µs each on CPU (hence no split below 2^14).
- Rotating form, one GEMM per step (2026-12-01): 1.3–2.5× faster than the batched form up to n = 2^16 on 1 thread
  (level at 2^16 on 2 threads), slower above on 2 threads. Mirrored for n = 16^k (2026-12-02): 12% faster at
  n = 2^16 on 2 threads (87 against 99 µs; level on 1 thread) and level below; with a smaller factor in the grid,
  slower (2^14: 52 against 41 µs).
- Fastfood gather (2026-12-01): ``index_select`` 20% (L = 2^17) to 3x (L = 2^21) faster than ``torch.take`` on CPU.
- Sparse projection (2026-12-01): the ``index_add`` gather-scale is 5–10× faster than ``torch.sparse`` CSR/COO
  matmul with autograd (D = 1.2M, d = 1000: 9 ms against 61–80 ms forward+backward).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import interleaved_median_ms

from petl_analysis.errors import PetlError
from petl_analysis.functional.hadamard import fwht
from petl_analysis.probe.projections import DEFAULT_MAX_BYTES, format_bytes, make_projection

KINDS = ("dense", "fastfood", "sparse", "grouping")


def stack_butterfly(x: torch.Tensor) -> torch.Tensor:
    """The pure-PyTorch FWHT of env.md §4.2 (reference formulation, autograd through every stage)."""
    n, h, lead = x.shape[-1], 1, x.shape[:-1]
    while h < n:
        x = x.reshape(*lead, n // (2 * h), 2, h)
        a, b = x[..., 0, :], x[..., 1, :]
        x = torch.stack((a + b, a - b), dim=-2)
        h *= 2
    return x.reshape(*lead, n)


def bench_fwht(sizes: list[int], repeats: int) -> None:
    print("FWHT, one vector, forward+backward (ms, median)")
    print(f"{'L':>10} {'kronecker-16 (ours)':>20} {'stack butterfly':>16} {'ratio':>6}")
    for n in sizes:
        x = torch.randn(n, requires_grad=True)
        w = torch.randn(n)

        def ours() -> None:
            (fwht(x) * w).sum().backward()

        def stack() -> None:
            (stack_butterfly(x) * w).sum().backward()

        ms = interleaved_median_ms({"ours": ours, "stack": stack}, repeats)
        a, b = ms["ours"], ms["stack"]
        print(f"{n:>10,} {a:>20.2f} {b:>16.2f} {b / a:>5.1f}x")
    print()


def bench_cell(D: int, d: int, repeats: int, max_bytes: int) -> dict[str, dict]:
    """Build every kind for (D, d), then time their forward+backward steps interleaved."""
    results: dict[str, dict] = {}
    steps = {}
    for kind in KINDS:
        kw = {"max_bytes": max_bytes} if kind in ("dense", "sparse") else {}
        start = time.perf_counter()
        try:
            proj = make_projection(kind, D, d, seed=0, **kw)
        except PetlError:
            results[kind] = {"refused": True}
            continue
        results[kind] = {"refused": False, "bytes": proj.memory_bytes(), "build_s": time.perf_counter() - start}
        theta = torch.zeros(d, requires_grad=True)
        w = torch.randn(D)

        def step(proj=proj, theta=theta, w=w) -> None:
            theta.grad = None
            (proj(theta) * w).sum().backward()

        steps[kind] = step
    for kind, ms in interleaved_median_ms(steps, repeats).items():
        results[kind]["ms"] = ms
    del steps
    gc.collect()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--D", type=int, nargs="+", default=[16_640, 148_224, 1_205_898])
    parser.add_argument("--d", type=int, nargs="+", default=[10, 100, 1000, 10_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="dense/sparse memory bound")
    parser.add_argument("--no-fwht", action="store_true", help="skip the FWHT formulation table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bound = format_bytes(args.max_bytes)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dense/sparse bound {bound}\n")
    if not args.no_fwht:
        bench_fwht([1 << (D - 1).bit_length() for D in args.D], args.repeats)

    print("Projection forward+backward (ms, median) and fixed-buffer memory")
    header = (
        f"{'D':>10} {'d':>6} | {'dense ms':>9} {'fastfood ms':>11} {'sparse ms':>9} {'grouping ms':>11} "
        f"{'ff/dense':>8} {'grp/ff':>6} | {'dense mem':>10} {'fastfood mem':>12} {'sparse mem':>10} "
        f"{'grouping mem':>12} | build s (dense/ff/sparse/grp)"
    )
    print(header)
    print("-" * len(header))
    for D in args.D:
        for d in args.d:
            if d > D:
                continue
            r = bench_cell(D, d, args.repeats, args.max_bytes)

            def t(kind: str) -> str:
                return "refused" if r[kind]["refused"] else f"{r[kind]['ms']:.2f}"

            def m(kind: str) -> str:
                return "refused" if r[kind]["refused"] else format_bytes(r[kind]["bytes"])

            def b(kind: str) -> str:
                return "-" if r[kind]["refused"] else f"{r[kind]['build_s']:.2f}"

            dense_ok = not r["dense"]["refused"]
            t_ratio = f"{r['fastfood']['ms'] / r['dense']['ms']:.2f}" if dense_ok else "-"
            g_ratio = f"{r['grouping']['ms'] / r['fastfood']['ms']:.2f}"
            print(
                f"{D:>10,} {d:>6,} | {t('dense'):>9} {t('fastfood'):>11} {t('sparse'):>9} {t('grouping'):>11} "
                f"{t_ratio:>8} {g_ratio:>6} | {m('dense'):>10} {m('fastfood'):>12} {m('sparse'):>10} "
                f"{m('grouping'):>12} | {b('dense')}/{b('fastfood')}/{b('sparse')}/{b('grouping')}",
                flush=True,
            )


if __name__ == "__main__":
    main()
