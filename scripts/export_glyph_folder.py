#!/usr/bin/env python
"""Write a subset of the built-in ``glyphs`` dataset (rendered font glyphs) as an image folder, one sub-folder per
class, so the folder code path (indexing, streaming with timm transforms) runs on real images offline.

A probe or a validation study on a folder reads what this writes::

    python scripts/export_glyph_folder.py --out /tmp/glyph_letters          # letters A-J, 10 classes
    petl-analyze probe --dataset /tmp/glyph_letters --split-part A --out /tmp/glyphs/probe.json
"""

from __future__ import annotations

import argparse

import torch

from petl_analysis.data import ImageDataset, load_dataset, write_image_folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to write (must not exist unless --overwrite)")
    ap.add_argument("--classes", default="ABCDEFGHIJ", help="glyph classes to keep, one character each")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    ds = load_dataset("glyphs")
    keep = [ds.classes.index(c) for c in args.classes]
    mask = torch.isin(ds.labels, torch.tensor(keep))
    remap = {old: new for new, old in enumerate(keep)}
    labels = torch.tensor([remap[int(y)] for y in ds.labels[mask]], dtype=torch.int64)
    subset = ImageDataset(ds.images[mask], labels, [ds.classes[i] for i in keep], f"glyphs[{args.classes}]")
    root = write_image_folder(subset, args.out, overwrite=args.overwrite)
    print(f"{len(subset)} images in {len(keep)} classes -> {root}")


if __name__ == "__main__":
    main()
