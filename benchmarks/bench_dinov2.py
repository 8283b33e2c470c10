"""CPU cost of the DINOv2-S/14 backbone (``--weights dinov2-s14``): the cost rows of ``MODEL_CARD_DINOV2_S14.md``.

    nice -n 5 python benchmarks/bench_dinov2.py --threads 1 --json petl_analysis/models/cost_dinov2_s14.json --card

Per img size: eval-mode forward (``torch.no_grad``, batch ``--batch``) in ms per image, and one training step
(forward, cross-entropy, backward, AdamW step; batch ``--batch``) in ms for full fine-tuning (every parameter),
attention-only training (``blocks.*.attn.*``, i.e. ``attn.qkv`` + ``attn.proj``, plus the head) and the head alone.
Variants are timed interleaved round-robin after warm-up (:func:`_common.interleaved_times`), so background load hits
them alike; medians over ``--repeats`` rounds are reported, with the min-max range, because the machine is shared.
Needs the ``dinov2`` extra on first use (the conversion), then only the cache.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import interleaved_times, machine_line

from petl_analysis.io import atomic_write_json
from petl_analysis.models import ModelSpec, create_model

CARD = Path(__file__).resolve().parents[1] / "petl_analysis" / "models" / "MODEL_CARD_DINOV2_S14.md"
START, END = "<!-- cost-table:start -->", "<!-- cost-table:end -->"

#: Which parameters train in each variant (the head always does).
TRAINABLE: dict[str, Callable[[str], bool]] = {
    "full fine-tuning": lambda name: True,
    "attention only": lambda name: ".attn." in name or name.startswith("head."),
    "head only": lambda name: name.startswith("head."),
}


def step_fn(
    model: nn.Module, trainable: Callable[[str], bool], x: torch.Tensor, y: torch.Tensor
) -> Callable[[], None]:
    params = [p for n, p in model.named_parameters() if trainable(n)]
    opt = torch.optim.AdamW(params, lr=1e-5)

    def step() -> None:
        for n, p in model.named_parameters():
            p.requires_grad_(trainable(n))
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def measure(img_size: int, batch: int, repeats: int) -> dict:
    model = create_model(
        ModelSpec("vit_small_patch14_dinov2", weights="dinov2-s14", img_size=img_size, num_classes=10)
    )
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, img_size, img_size, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    fns: dict[str, Callable[[], None]] = {"forward": forward}
    model.train()
    for name, trainable in TRAINABLE.items():
        inner = step_fn(model, trainable, x, y)
        fns[name] = lambda inner=inner: (model.train(), inner())
    times = interleaved_times(fns, repeats, warmup=1)
    out = {"img_size": img_size, "tokens": 1 + (img_size // 14) ** 2, "batch": batch, "repeats": repeats}
    for name, ts in times.items():
        per = batch if name == "forward" else 1
        vals = [t / per for t in ts]
        out[name] = {"median_ms": statistics.median(vals), "min_ms": min(vals), "max_ms": max(vals)}
    return out


def render(rows: list[dict], meta: dict) -> str:
    lines = [
        "| img | tokens | forward, ms/image | step, full fine-tuning | step, attention only | step, head only |",
        "|---|---|---|---|---|---|",
    ]

    def cell(r: dict, k: str) -> str:
        return f"{r[k]['median_ms']:,.0f} ({r[k]['min_ms']:,.0f}-{r[k]['max_ms']:,.0f})"

    for r in rows:
        fwd = f"{r['forward']['median_ms']:.1f} ({r['forward']['min_ms']:.1f}-{r['forward']['max_ms']:.1f})"
        lines.append(
            f"| {r['img_size']} px | {r['tokens']} | {fwd} | {cell(r, 'full fine-tuning')} | "
            f"{cell(r, 'attention only')} | {cell(r, 'head only')} |"
        )
    lines += [
        "",
        f"Median (min-max) over {rows[0]['repeats']} interleaved rounds; training steps in ms per batch of "
        f"{rows[0]['batch']}, float32. {meta['machine']}; {meta['wall_s']:.0f} s.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[56, 112])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--card", action="store_true", help=f"rewrite the cost table of {CARD.name}")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    meta = {"machine": machine_line()}
    start = time.perf_counter()
    rows = []
    for size in a.sizes:
        rows.append(measure(size, a.batch, a.repeats))
        print(
            f"{size} px: "
            + ", ".join(f"{k} {v['median_ms']:.1f} ms" for k, v in rows[-1].items() if isinstance(v, dict)),
            flush=True,
        )
    meta["wall_s"] = time.perf_counter() - start
    table = render(rows, meta)
    print("\n" + table)
    if a.json:
        atomic_write_json(a.json, {"meta": meta, "rows": rows, "table": table})
    if a.card:
        from petl_analysis.io import atomic_write_text

        head, rest = CARD.read_text().split(START, 1)
        atomic_write_text(CARD, f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}")
        print(f"rewrote the cost table in {CARD}")


if __name__ == "__main__":
    main()
