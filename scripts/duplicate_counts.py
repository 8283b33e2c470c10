"""Count exact duplicates in every built-in dataset (and in image-folder exports), and how many cross the splits with
and without deduplication: the table of ``petl_analysis/data/DATA_CARD.md``.

    python scripts/duplicate_counts.py                 # built-ins, plus animals written as a PNG folder (in /tmp)
    python scripts/duplicate_counts.py --folder PATH   # also an image folder of your own

"Crossing" counts test images whose content is also in train (or val) under ``SplitSpec()`` (the full pool) and under
``SplitSpec(max_train=300)`` (the probe's split of the demo), before (``dedup=False``) and after deduplication.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from petl_analysis.data import SplitSpec, builtin_names, load_dataset, make_splits, write_image_folder
from petl_analysis.data.splits import content_hashes, deduplicate
from petl_analysis.data.stream import open_image_files


def crossing(ds, spec: SplitSpec) -> tuple[int, int]:
    """(test images with a copy in train, test images with a copy in val) under ``spec``."""
    s = make_splits(ds, spec)
    train, val = set(content_hashes(s.train)), set(content_hashes(s.val))
    test = content_hashes(s.test)
    return sum(h in train for h in test), sum(h in val for h in test)


def row(name: str, ds) -> str:
    start = time.perf_counter()
    _, removed = deduplicate(ds)
    took = time.perf_counter() - start
    dropped = removed["duplicates"] + removed["conflicting"]
    cells = [f"`{name}`", f"{len(ds):,}", f"{removed['groups']:,}", f"{dropped:,}", f"{removed['conflicting']:,}"]
    for spec in (SplitSpec(), SplitSpec(max_train=300)):
        before = crossing(ds, SplitSpec(**{**spec.to_dict(), "dedup": False}))
        after = crossing(ds, spec)
        cells.append(f"{before[0]} / {before[1]} -> {after[0]} / {after[1]}")
    cells.append(f"{took * 1e3:.0f} ms")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", action="append", default=[], help="an image folder to count as well")
    args = ap.parse_args()
    print(
        "| dataset | images | duplicate groups | images removed | of them: conflicting labels | "
        "test with a copy in train / val, full pool: before -> after | same, max_train=300 | hashing |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in builtin_names():
        print(row(name, load_dataset(name)), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_image_folder(load_dataset("animals"), Path(tmp) / "animals")
        print(row("animals as a PNG folder", open_image_files(folder)), flush=True)
    for path in args.folder:
        print(row(path, open_image_files(path)), flush=True)


if __name__ == "__main__":
    main()
