"""A sweep's adapters: every trial saves its own, each point keeps its best seed's (by validation) under its plan's name.

Layout of ``<out>.adapters/`` (``sweep.json`` -> ``sweep.json.adapters/``)::

    trials/<trial key>/                  what each worker saved (removed once placed, unless all seeds are kept)
    plan_4000_lora-selected/             the point's best seed by validation accuracy (never test)
    plan_4000_lora-selected/seed<N>/     with all seeds kept: one folder per seed (the point names the best)

The worker writes under the trial's key, which is what a resumed sweep knows; a placed adapter records its trial key,
so a resumed sweep neither retrains nor copies again what is in place. Trials logged before adapters were saved have
none: their points say so (``adapter`` is None), and nothing is retrained to make one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import PetlError
from ..trials import TrialRecord
from ..tuners.saving import ADAPTER_RECORD_FILE, read_adapter_record

#: Where workers save under the adapters folder.
TRIALS_DIR = "trials"


def adapters_folder(out: str | Path) -> Path:
    """The adapters folder of a sweep writing ``out``."""
    return Path(f"{out}.adapters")


def trial_adapter_dir(folder: Path, key: str) -> Path:
    return folder / TRIALS_DIR / key


def _placed(folder: Path) -> dict[str, Path]:
    """``trial key -> folder`` of every adapter already placed in ``folder`` (plan folders and their seed folders)."""
    out: dict[str, Path] = {}
    for record in [*folder.glob(f"*/{ADAPTER_RECORD_FILE}"), *folder.glob(f"*/seed*/{ADAPTER_RECORD_FILE}")]:
        if record.parent.parent.name == TRIALS_DIR:
            continue
        try:
            key = read_adapter_record(record.parent).trial
        except PetlError:  # not an adapter this release reads: never the one a trial placed
            continue
        if isinstance(key, str):
            out.setdefault(key, record.parent)
    return out


def _place(source: Path, dest: Path) -> None:
    """Copy the adapter folder ``source`` to ``dest`` atomically (a copy beside it, then a rename)."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)


def best_seed(records: Sequence[TrialRecord]) -> TrialRecord:
    """The record of the best seed by validation accuracy (ties and missing values: the lowest seed)."""

    def val(r: TrialRecord) -> float:
        v = r.result["seed_run"].get("val_acc")
        return float("-inf") if v is None else float(v)

    return max(records, key=lambda r: (val(r), -int(r.result["seed_run"]["seed"])))


def place_adapters(
    folder: Path, points: Sequence[tuple[str, Sequence[TrialRecord]]], *, all_seeds: bool = False
) -> dict[str, str | None]:
    """Put each point's adapter(s) under ``folder/<name>``; ``points``: ``(plan file stem, ok records)``.

    Returns ``name -> adapter folder`` (the best seed's), None where no trial of the point saved one."""
    placed = _placed(folder) if folder.is_dir() else {}
    out: dict[str, str | None] = {}
    for name, records in points:
        best = best_seed(records)
        wanted = records if all_seeds else [best]
        where: dict[str, Path] = {}
        for r in wanted:
            dest = folder / name / (f"seed{r.result['seed_run']['seed']}" if all_seeds else "")
            dest = dest if all_seeds else folder / name
            if placed.get(r.key) == dest:
                where[r.key] = dest
                continue
            source = trial_adapter_dir(folder, r.key)
            source = source if (source / ADAPTER_RECORD_FILE).is_file() else placed.get(r.key)
            if source is None:
                continue
            _place(source, dest)
            placed[r.key] = dest
            where[r.key] = dest
        out[name] = str(where[best.key]) if best.key in where else None
    if not all_seeds:
        shutil.rmtree(folder / TRIALS_DIR, ignore_errors=True)
    return out


def adapter_options(folder: Path | None) -> dict[str, Any]:
    """The trial options that make a sweep worker save its adapter under ``folder`` (none without a folder)."""
    return {"adapter_dir": str(folder / TRIALS_DIR)} if folder is not None else {}
