"""Stale trials: records of a trial log that no current artefact uses, found and moved aside.

A log keeps every trial ever run under it, so after a recipe, a plan or a grid changed it also holds trials of
studies that no longer exist. They cost nothing to resume, but they mislead whoever reads or sums the log (a
training time summed over the whole log counts them). :func:`used_keys` names the records an artefact uses (a
probe, sweep or validation result: what re-deriving it would ask for); :func:`prune_log` moves the others into
``<log>.stale.jsonl`` and rewrites the log atomically. ``scripts/prune_trials.py`` is the command.

Which records an artefact uses is decided from the payloads, less what says where a trial ran (``device``,
``threads``): a record is used when its model, recipe, data (for its seed), head initialisation and point (a
configuration and seed; a probe's baseline or ``(units, d)`` and seed) are the artefact's.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artefacts import Artefact
from .errors import PetlError
from .io import JsonlLog, atomic_write_text
from .trials import TrialRecord, key_json, read_records

#: Payload fields that say where a trial ran, not what it trained.
CIRCUMSTANTIAL = ("device", "threads")
#: Suffix of the file the pruned records go to, beside the log.
STALE_SUFFIX = ".stale.jsonl"


def _identity(kind: str, payload: dict[str, Any]) -> str:
    """What a trial trained: its kind and payload less :data:`CIRCUMSTANTIAL`, canonical JSON."""
    return json.dumps(
        {
            "kind": kind,
            **{k: key_json(v) if isinstance(v, dict) else v for k, v in payload.items() if k not in CIRCUMSTANTIAL},
        },
        sort_keys=True,
        default=str,
    )


def _run_identities(
    model: Any,
    data: Any,
    recipe: Any,
    head_init: str,
    configs: Iterable[dict[str, Any]],
    seeds: Iterable[int],
    also_val: Any = None,
) -> set[str]:
    """Identities of the sweep trials (``RunTrial``) of ``configs`` x ``seeds`` (``also_val``: the data whose
    validation split each kept model was also scored on, as validate's judge on split B does)."""
    from .sweep.sweep import RunTrial
    from .trials import trial_payload

    out = set()
    for config in configs:
        for s in seeds:
            spec = RunTrial(
                model=model,
                recipe=recipe,
                head_init=head_init,
                device="",
                threads=0,
                data=data.for_seed(s),
                config=config,
                seed=s,
                also_val=also_val,
            )
            out.add(_identity("run", trial_payload(spec)))
    return out


def _expected(artefact: Artefact) -> tuple[set[str], set[str]] | None:
    """``(identities, kinds)`` of the trials ``artefact`` uses; None for an artefact that uses no trial log."""
    from .probe import ProbeResult
    from .sweep import SweepResult
    from .validate import ValidationResult

    if isinstance(artefact, ValidationResult):
        configs = {key_json(e.config): e.config for e in artefact.oracle}
        configs.update({key_json(p.config): p.config for p in artefact.plans})
        # The judge on split B also scored each model on the probe's validation images (validate's ``also_val``).
        also_val = artefact.probe_data if artefact.judged_on == "split B" else None
        return _run_identities(
            artefact.model,
            artefact.data,
            artefact.recipe,
            artefact.head_init,
            configs.values(),
            artefact.seeds,
            also_val,
        ), {"run"}
    if isinstance(artefact, SweepResult):
        configs = {key_json(p.run.config): p.run.config for p in artefact.points}
        head_init = {p.run.head_init for p in artefact.points} or {"lp"}
        return set().union(
            *(
                _run_identities(artefact.model, artefact.data, artefact.recipe, h, configs.values(), artefact.seeds)
                for h in head_init
            )
        ), {"run"}
    if isinstance(artefact, ProbeResult):
        return None  # matched by _probe_uses: a probe's learning rates are searched, not recorded per trial
    raise PetlError(
        f"cannot tell which trials a {type(artefact).__name__} uses; expected a probe, sweep or validation result"
    )


def _probe_uses(probe: Any, record: TrialRecord) -> bool:
    """Whether ``record`` is one of ``probe``'s trials: its context and a point the probe reports, at a learning-rate
    multiplier its search could try there (a trial of another grid or step is not)."""
    p, cfg = record.payload, probe.config
    seed = p.get("seed")
    recipes = [key_json(cfg.recipe)]
    if cfg.lr_screen_epochs is not None and record.kind == "subspace":  # the screens' shorter recipe
        recipes.append(key_json(dataclasses.replace(cfg.recipe, epochs=cfg.lr_screen_epochs)))
    context = (
        key_json(p.get("model", {})) == key_json(probe.model)
        and key_json(p.get("recipe", {})) in recipes
        and isinstance(seed, int)
        and 0 <= seed < cfg.seeds
        and key_json(p.get("data", {})) == key_json(probe.data.for_seed(seed))
    )
    if not context:
        return False
    if record.kind != "subspace":
        return record.kind in probe.baselines
    if (p.get("projection"), p.get("said"), p.get("head")) != (cfg.projection, cfg.said, cfg.head):
        return False
    if not cfg.searches_lr(p.get("lr"), p.get("d")):
        return False
    return any(
        list(t.units) == list(p.get("units") or []) and p.get("d") in t.dims and seed < t.seeds_at(p["d"], cfg.seeds)
        for t in probe.targets
    )


def used_keys(records: Sequence[TrialRecord], artefacts: Sequence[Artefact]) -> set[str]:
    """Keys of the ``records`` that any of ``artefacts`` uses."""
    from .probe import ProbeResult

    used: set[str] = set()
    for artefact in artefacts:
        if isinstance(artefact, ProbeResult):
            used |= {r.key for r in records if _probe_uses(artefact, r)}
            continue
        identities, kinds = _expected(artefact)
        used |= {r.key for r in records if r.kind in kinds and _identity(r.kind, r.payload) in identities}
    return used


@dataclass
class PruneResult:
    """What :func:`prune_log` found (and, unless a dry run, did)."""

    log: Path
    kept: list[TrialRecord] = field(default_factory=list)
    stale: list[TrialRecord] = field(default_factory=list)
    stale_path: Path | None = None
    written: bool = False

    def describe(self) -> str:
        """One line per log, e.g. ``log: 81 records, 63 used, 18 stale (18 ok, 0 failed) -> log.stale.jsonl``."""
        failed = sum(not r.ok for r in self.stale)
        where = f" -> {self.stale_path}" if self.written and self.stale else " (dry run)" if self.stale else ""
        return (
            f"{self.log}: {len(self.kept) + len(self.stale)} records, {len(self.kept)} used, {len(self.stale)} "
            f"stale ({len(self.stale) - failed} ok, {failed} failed){where}"
        )


def prune_log(
    log: str | os.PathLike,
    keep_for: Sequence[Artefact],
    *,
    dry_run: bool = False,
    stale_path: str | os.PathLike | None = None,
) -> PruneResult:
    """Move the records of ``log`` that none of ``keep_for`` uses into ``stale_path`` (default
    ``<log>.stale.jsonl``, appended to), then rewrite ``log`` with the rest, atomically and in their order.

    The stale records are written (and synced) before the log is replaced, so an interruption leaves at worst a
    record in both files, never in neither. ``dry_run`` only reports.
    """
    path = Path(log)
    if not path.is_file():
        raise PetlError(f"trial log {path} does not exist; expected a .trials.jsonl file")
    if not keep_for:
        raise PetlError(
            "name at least one artefact whose trials to keep (--keep-for); with none, every record would be stale"
        )
    log_file = JsonlLog(path)
    records = list(read_records(log_file))
    used = used_keys(records, keep_for)
    if records and not used:
        # Every record stale is what a mismatched artefact (or a reading of it that misses a field) looks like:
        # refused rather than emptying the log.
        raise PetlError(
            f"none of the {len(records)} records of {path} is used by the artefact(s) named; is it the log of "
            "another study? (nothing was moved)"
        )
    result = PruneResult(
        path,
        [r for r in records if r.key in used],
        [r for r in records if r.key not in used],
        Path(stale_path) if stale_path else Path(str(path) + STALE_SUFFIX),
    )
    if dry_run or not result.stale:
        return result
    # the lines as they are (byte for byte: older logs hold payload objects as JSON text)
    lines = path.read_text(encoding="utf-8").split("\n")
    numbered = [(lines[i - 1], rec["key"]) for i, rec in log_file.iter_numbered()]
    kept = [line for line, key in numbered if key in used]
    stale = [line for line, key in numbered if key not in used]
    with open(result.stale_path, "a", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in stale))
        f.flush()
        os.fsync(f.fileno())
    atomic_write_text(path, "".join(line + "\n" for line in kept))
    result.written = True
    return result
