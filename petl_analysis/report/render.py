"""The report stage: sweep and/or probe artefacts in, PNG figures, CSV tables, ``report.md`` and a self-contained
``report.html`` out (every file written atomically; the same inputs give the same bytes)."""

from __future__ import annotations

import dataclasses
import math
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..artefacts import stored_value
from ..errors import PetlError
from ..io import atomic_write_bytes, atomic_write_text, ensure_writable_dir
from ..plan import FIXED_SIZE_METHODS, PLANNED_VARIANTS
from ..probe.d90 import distinct_resamples
from ..trials import key_json
from . import plots
from .document import Block, Bullets, Code, Heading, Image, Paragraph, Table, to_html, to_markdown
from .pareto import KADAPTATION_M0
from .tables import (
    VARIANT_NAMES,
    PointRow,
    ProbeRow,
    default_m0,
    fmt_acc,
    fmt_ci,
    fmt_d,
    fmt_d_classic,
    fmt_int,
    fmt_params,
    fmt_pct,
    fmt_pe,
    is_per_block,
    point_rows,
    points_csv,
    probe_csv,
    probe_rows,
    seed_count,
)
from .validation import validation_section
from .verdict import probe_verdict, selection_rows, selection_verdict, sweep_verdict

if TYPE_CHECKING:
    from ..probe import ProbeResult
    from ..select import Ranking
    from ..sweep import SweepResult
    from ..validate import ValidationResult

__all__ = ["ReportFiles", "write_report"]

ACCURACY_PNG = "accuracy_vs_params.png"
CURVES_PNG = "id_curves.png"
HEATMAP_PNG = "id_heatmap.png"
SELECTION_PNG = "selection_vs_fixed.png"


@dataclass
class ReportFiles:
    """Paths written by :func:`write_report`; a figure or table that does not apply is ``None``."""

    out_dir: Path
    markdown: Path
    html: Path
    accuracy_vs_params: Path | None = None
    id_curves: Path | None = None
    id_heatmap: Path | None = None
    selection_vs_fixed: Path | None = None
    oracle_vs_predicted: Path | None = None
    points_csv: Path | None = None
    probe_csv: Path | None = None

    def paths(self) -> list[Path]:
        """Every file written (out_dir excluded)."""
        return [
            v
            for f in dataclasses.fields(self)
            if f.name != "out_dir"
            for v in [getattr(self, f.name)]
            if v is not None
        ]


def fixed_size_references(rows: list[PointRow]) -> list[PointRow]:
    """The lines of the selection figure: every successful point of a fixed-size method (linear probe, full
    fine-tuning, BitFit, LayerNorm), which no budget sizes, so each is one reference level."""
    return [r for r in rows if r.ok and r.method in FIXED_SIZE_METHODS]


def _require_one_model(**artefacts: Any) -> None:
    """A report puts its artefacts side by side: a probe of one model beside a sweep of another would read as one
    study. Refused in one line naming both (the head size aside, which each dataset sets)."""
    from ..task import require_same_model

    given = [(name, a.model) for name, a in artefacts.items() if a is not None]
    for name, model in given[1:]:
        require_same_model(
            model,
            given[0][1],
            f"the {name}",
            f"the {given[0][0]} is of another model; report artefacts of one model together",
        )


def write_report(
    sweep: SweepResult | None,
    probe: ProbeResult | None,
    out_dir: str | Path,
    *,
    ranking: Ranking | None = None,
    validation: ValidationResult | None = None,
    title: str | None = None,
    m0: float | None = None,
    commands: list[str] | None = None,
    dpi: int = 150,
) -> ReportFiles:
    """Write the trade-off report into ``out_dir``.

    Args:
        sweep: the sweep stage's result (accuracy vs parameters, Pareto front, selection vs fixed); optional.
        probe: the probe stage's result (ID curves, per-block heatmap, ID table); optional.
        ranking: the select stage's ranking, shown beside the probe table when given.
        validation: the validate stage's result: the section "Does the ranking predict?" and
            ``oracle_vs_predicted.png``.
        title: report title (default: "PETL trade-off report: <model> on <dataset>").
        m0: PE scale constant for the main plot and the ``pe_m0`` column; default: the adapted model's size
            (parameters of the pretrained network and its head, which is what full fine-tuning trains). PE with the
            KAdaptation paper's M0 = 1e8 and V-PETL's PPT C = 1e7 is always listed too.
        commands: the exact command lines that produced the artefacts (default: the sweep's recorded command).
        dpi: resolution of the PNG figures.

    Returns:
        the :class:`ReportFiles` written: ``accuracy_vs_params.png``, ``selection_vs_fixed.png`` and ``points.csv``
        with a sweep; ``id_curves.png``, ``probe.csv`` and (per-block probes only) ``id_heatmap.png`` with a probe;
        always ``report.md`` and ``report.html``.
    """
    if sweep is None and probe is None and validation is None:
        raise PetlError("nothing to report: give a sweep result, a probe result and/or a validation result")
    m0_value, m0_text = _m0(m0, sweep)
    _require_one_model(sweep=sweep, probe=probe, ranking=ranking, validation=validation)
    out = ensure_writable_dir(out_dir)
    src = sweep or probe or validation
    title = title or f"PETL trade-off report: {src.model.name} on {src.data.dataset}"  # type: ignore[union-attr]
    builder = _Builder(out, dpi)
    blocks = _title_blocks(title, sweep, probe, validation)
    rows = point_rows(sweep, m0_value) if sweep is not None else []
    pr = probe_rows(probe, ranking) if probe is not None else []
    blocks += _setup_section(sweep, probe, ranking, commands, m0_value, m0 is None, validation)
    blocks += _stage_sections(builder, sweep, probe, ranking, validation, rows, pr, (m0_value, m0_text), title)
    files = {
        **builder.files,
        **_write_tables(out, rows if sweep is not None else None, pr if probe is not None else None, m0_value),
    }
    listed = sorted(p.name for p in files.values()) + ["report.md", "report.html"]
    blocks += [Heading("Files", 2), Bullets([f"`{name}`" for name in listed])]
    md = atomic_write_text(out / "report.md", to_markdown(blocks))
    html = atomic_write_text(out / "report.html", to_html(blocks, title))
    return ReportFiles(out_dir=out, markdown=md, html=html, **files)


def _stage_sections(
    builder: _Builder,
    sweep: SweepResult | None,
    probe: ProbeResult | None,
    ranking: Ranking | None,
    validation: ValidationResult | None,
    rows: list,
    pr: list,
    m0: tuple[float, str],
    title: str,
) -> list[Block]:
    """The report's sections of the stages given, in order: the sweep, the probe (or the ranking alone), the
    validation, then the problems found."""
    blocks: list[Block] = []
    if sweep is not None:
        blocks += _sweep_section(builder, sweep, rows, m0[0], m0[1], title)
    if probe is not None:
        blocks += _probe_section(builder, probe, pr, ranking)
    elif ranking is not None:
        blocks += _ranking_section(ranking)
    if validation is not None:
        blocks += validation_section(validation, builder.figure)
    blocks += _problems_section(sweep, rows, probe)
    return blocks


def _write_tables(
    out: Path, point_table: list[PointRow] | None, probe_table: list[ProbeRow] | None, m0: float
) -> dict[str, Path]:
    """``points.csv`` (with a sweep) and ``probe.csv`` (with a probe), as ``ReportFiles`` fields."""
    files = {}
    if point_table is not None:
        files["points_csv"] = atomic_write_text(out / "points.csv", points_csv(point_table, m0))
    if probe_table is not None:
        files["probe_csv"] = atomic_write_text(out / "probe.csv", probe_csv(probe_table))
    return files


def _title_blocks(title: str, sweep, probe, validation) -> list[Block]:
    sources = [k for k, v in (("sweep", sweep), ("probe", probe), ("validation", validation)) if v is not None]
    return [
        Heading(title, 1),
        Paragraph(
            f"Generated by petl-analysis {__version__} from the {' and '.join(sources)} "
            f"artefact{'s' if len(sources) > 1 else ''}."
        ),
    ]


def _m0(m0: float | None, sweep: SweepResult | None) -> tuple[float, str]:
    """The PE scale and how the report names it: ``m0`` as given, else the adapted model's size (with a sweep)."""
    if m0 is not None and (
        isinstance(m0, bool) or not isinstance(m0, (int, float)) or not m0 > 0 or not math.isfinite(m0)
    ):
        raise PetlError(f"m0 must be a positive number of parameters, got {m0!r}")
    value = float(m0) if m0 is not None else (float(default_m0(sweep)) if sweep is not None else KADAPTATION_M0)
    return value, f"{fmt_params(value)}" + (
        "" if m0 is not None or sweep is None else f" (model size: {fmt_int(value)} params)"
    )


class _Builder:
    """Renders figures to disk and remembers which were written."""

    def __init__(self, out: Path, dpi: int) -> None:
        self.out, self.dpi = out, dpi
        self.files: dict[str, Path] = {}

    def figure(self, key: str, filename: str, png: bytes, alt: str, caption: str) -> Image:
        self.files[key] = atomic_write_bytes(self.out / filename, png)
        return Image(filename, png, alt, caption)


# --------------------------------------------------------------------------------------------------- setup


def _versions() -> list[list[str]]:
    rows = [["petl-analysis", __version__], ["python", platform.python_version()]]
    for dist in ("torch", "timm", "numpy", "matplotlib"):
        try:
            rows.append([dist, metadata.version(dist)])
        except metadata.PackageNotFoundError:
            rows.append([dist, "not installed"])
    return rows


def _split_text(split: Any, record: Any = None) -> str:
    """The split protocol in words; with the split's record (artefacts since it was recorded), which split it was:
    predefined by the dataset or random, and the counts."""
    if record is not None:
        parts = [record.describe(split)]
    else:
        parts = [
            f"val {split.val_fraction:g} / test {split.test_fraction:g} of each class, split seed {split.split_seed}"
        ]
    if split.shots:
        parts.append(f"train: {split.shots}-shot per class, a new k-shot sample per seed (shot seed = seed)")
        parts.append(f"val: {split.val_shots or split.shots} per class")
    else:
        parts.append("train: the whole train pool" + (f" (at most {split.max_train})" if split.max_train else ""))
    if getattr(split, "dedup", False):
        parts.append("identical images kept once before splitting")
    return "; ".join(parts)


def _removed_text(removed: dict[str, int]) -> str:
    """What deduplication removed, in words (the data card lists it per built-in dataset)."""
    text = (
        f"{removed.get('duplicates', 0):,} duplicate image(s) of {removed.get('groups', 0):,} identical group(s) "
        "removed before splitting"
    )
    if removed.get("conflicting"):
        text += f", and {removed['conflicting']:,} whose copies carry different labels"
    return text


def few_shot_labels(probe: Any, sweep: Any) -> str | None:
    """``the probe used N labelled images; a k-shot user has M`` when a k-shot sweep was planned from a probe that
    read more labels than that user has (train and validation images); None otherwise."""
    k = sweep.data.split.shots
    runs = [r for p in sweep.points for r in p.run.seeds]
    if not k or not runs or probe.n_train + probe.n_val == 0:
        return None
    classes = runs[0].n_train // k
    val_k = sweep.data.split.val_shots or k
    user = classes * (k + val_k)
    used = probe.n_train + probe.n_val
    if used <= user:
        return None
    return (
        f"the probe used {used:,} labelled images ({probe.n_train:,} train + {probe.n_val:,} validation); "
        f"a {k}-shot user has {user:,} ({k} train + {val_k} validation per class): the ranking read "
        f"{used / user:.0f}x the labels of the study it plans"
    )


def _model_text(spec: Any) -> str:
    extra = [f"{k}={getattr(spec, k)}" for k in ("img_size", "in_chans", "patch_size") if getattr(spec, k) is not None]
    extra += [f"{k}={v}" for k, v in sorted(spec.kwargs.items())]
    return f"`{spec.name}`" + (f" ({', '.join(extra)})" if extra else "")


def _input_text(conversion: Any) -> str:
    text = conversion.describe()
    return f"**converted**: {text}" if conversion.changed else text


#: Recipe settings shown only when some recipe of the report moves them from their default (their rows appeared after
#: reports existed; ``epoch_selection`` then says which stage scores a fixed schedule).
_SHOWN_IF_SET = {"epoch_selection": "val", "layer_decay": None}


def _recipe_rows(recipes: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    names = list(recipes)
    fields = [
        f.name
        for f in dataclasses.fields(next(iter(recipes.values())))
        if f.name not in _SHOWN_IF_SET or any(getattr(r, f.name) != _SHOWN_IF_SET[f.name] for r in recipes.values())
    ]
    # As the artefact holds each value (amp="auto" is True), so reports read as they always have.
    rows = [[f] + [str(stored_value(recipes[n], f)) for n in names] for f in fields]
    return ["setting"] + names, rows


def _setup_section(sweep, probe, ranking, commands, m0_value, m0_default, validation=None) -> list[Block]:
    src = sweep or probe or validation
    weights = f"`{src.model.weights}`" + (f": {src.model.load.describe()}" if src.model.load is not None else "")
    rows: list[list[str]] = [
        ["model", _model_text(src.model)],
        ["weights", weights],
        ["dataset", f"`{src.data.dataset}`"],
        ["split protocol", _split_text(src.data.split, getattr(src.data, "split_record", None))],
    ]
    if getattr(src, "input_conversion", None) is not None:
        rows.append(["model input", _input_text(src.input_conversion)])
    if (
        probe is not None
        and sweep is not None
        and probe.input_conversion is not None
        and probe.input_conversion != sweep.input_conversion
    ):
        rows.append(["probe model input", _input_text(probe.input_conversion)])
    skipped = sorted(
        {
            s
            for a in (sweep, probe)
            if getattr(a, "input_conversion", None) is not None
            for s in a.input_conversion.skipped_images
        }
    )
    if skipped:
        names = ", ".join(f"`{'/'.join(Path(s).parts[-2:])}`" for s in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        rows.append(
            [
                "skipped images",
                f"{len(skipped)} file(s) of the folder could not be read as images and were "
                f"left out (--skip-bad-images): {names}{more}",
            ]
        )
    removed = getattr(src.data, "removed", None) or {}
    if removed.get("duplicates") or removed.get("conflicting"):
        rows.append(["duplicates", _removed_text(src.data.removed)])
    if probe is not None and sweep is not None and probe.data != sweep.data:
        probe_split = _split_text(probe.data.split, getattr(probe.data, "split_record", None))
        rows.append(["probe data", f"`{probe.data.dataset}`: {probe_split}"])
    labels = few_shot_labels(probe, sweep) if probe is not None and sweep is not None else None
    if labels:
        rows.append(["probe labels", f"**{labels}**"])
    if probe is not None and sweep is not None and key_json(probe.model) != key_json(sweep.model):
        rows.append(["probe model", _model_text(probe.model) + f", weights `{probe.model.weights}`"])
    if sweep is not None:
        rows += _sweep_setup_rows(sweep, m0_value, m0_default)
    if probe is not None:
        rows += _probe_setup_rows(probe)
    if validation is not None:
        rows += _validation_setup_rows(validation)
    if ranking is not None:
        source = f" from `{ranking.source}`" if ranking.source else ""
        rows.append(["ranking", f"selector `{ranking.selector}`{source}"])
    blocks: list[Block] = [Heading("What was run", 2), Table(["setting", "value"], rows)]
    recipes = {}
    if sweep is not None:
        recipes["sweep (train)"] = sweep.recipe
        for method in sweep.method_lr:
            recipes[f"sweep (train), {method}"] = sweep.recipe_of(method)
    if probe is not None:
        recipes["probe"] = probe.config.recipe
    if validation is not None:
        recipes["validation (train)"] = validation.recipe
    header, rrows = _recipe_rows(recipes)
    blocks += [Heading("Recipe", 3), Table(header, rrows)]
    cmds = list(commands) if commands else [a.command for a in (sweep, validation) if a is not None and a.command]
    blocks.append(Heading("Commands", 3))
    blocks.append(Code("\n".join(cmds), "bash") if cmds else Paragraph("No command was recorded."))
    blocks += [Heading("Versions (at report time)", 3), Table(["package", "version"], _versions())]
    return blocks


def _sweep_setup_rows(sweep, m0_value: float, m0_default: bool) -> list[list[str]]:
    head_inits = sorted({p.run.head_init for p in sweep.points}) or ["-"]
    return [
        ["sweep seeds", ", ".join(map(str, sweep.seeds))],
        [
            "budgets",
            ", ".join(fmt_int(b) for b in sweep.budgets)
            + (
                " (the head counts against the budget)"
                if sweep.head_in_budget
                else " (head not counted in the budget)"
            ),
        ],
        ["methods", ", ".join(sweep.methods)],
        ["head initialisation", ", ".join(head_inits)],
        [
            "model selection",
            (
                "the epoch with the best validation accuracy; its test accuracy is reported "
                "(last-epoch test accuracy also listed)"
                if sweep.recipe.epoch_selection == "val"
                else f"none: a fixed schedule of {sweep.recipe.epochs} epochs, the last one's test accuracy is reported"
            ),
        ],
        ["ranking used by the plans", f"`{sweep.ranking_source}`" if sweep.ranking_source else "-"],
        [
            "PE scale M0",
            f"{fmt_int(m0_value)}"
            + (" (size of the adapted model, i.e. what full fine-tuning trains)" if m0_default else " (given)"),
        ],
        ["sweep wall time", f"{sweep.wall_time_s:.0f} s"],
    ]


def _probe_setup_rows(probe) -> list[list[str]]:
    cfg = probe.config
    return [
        [
            "probe targets",
            ", ".join(f"`{t}`" for t in cfg.targets) + (" (one set per block)" if cfg.per_block else ""),
        ],
        [
            "probe",
            f"{cfg.projection} projection, threshold {cfg.threshold:g}, {cfg.seeds} seed(s), "
            f"head {cfg.head}, decisions on validation ({fmt_int(probe.n_val)} images), theta_d lr "
            f"{_lr_text(cfg)}"
            + (", SAID" if cfg.said else "")
            + (f", d grid {cfg.dims}" if cfg.dims else f", adaptive d grid from {cfg.d_min}"),
        ],
        ["probe wall time", f"{probe.wall_time_s:.0f} s ({probe.trials_total} trials)"],
    ]


def _validation_setup_rows(validation) -> list[list[str]]:
    return [
        [
            "validation",
            f"oracle: each of {len(validation.sets)} sets alone at {fmt_int(validation.budget)} "
            f"parameters with {', '.join(validation.methods)}, {len(validation.seeds)} seeds; regret "
            f"plans at {', '.join(fmt_int(b) for b in validation.budgets)}"
            + (f", probe `{validation.probe_source}`" if validation.probe_source else ""),
        ],
        [
            "validation time",
            f"{validation.train_time_s:.0f} s of training summed over its trials; the call "
            f"that wrote it took {validation.wall_time_s:.0f} s",
        ],
    ]


# --------------------------------------------------------------------------------------------------- sweep


def _seeds_text(rows: list[PointRow]) -> str:
    lo, hi = seed_count(rows)
    n = f"{lo}" if lo == hi else f"{lo}-{hi}"
    return f"{n} seed" + ("" if hi == 1 else "s")


def _sweep_section(builder: _Builder, sweep, rows: list[PointRow], m0: float, m0_text: str, title: str) -> list[Block]:
    seeds_text = _seeds_text(rows)
    blocks: list[Block] = [Heading("Accuracy vs trainable parameters", 2)]
    png = plots.accuracy_vs_params(
        rows,
        m0_text=m0_text,
        title=f"Accuracy vs trainable parameters: {sweep.model.name} on {sweep.data.dataset}",
        seeds_text=seeds_text,
        dpi=builder.dpi,
    )
    blocks.append(
        builder.figure(
            "accuracy_vs_params",
            ACCURACY_PNG,
            png,
            "accuracy vs trainable parameters",
            f"Test accuracy (mean ± std over {seeds_text}) against trainable parameters including the classification "
            f"head (log scale). Marker shape = method; colour = PE with M0 = {m0_text}; red step line = Pareto front. "
            "KAdaptation variants: selected targets (solid line, filled marker), fixed q,v (dashed, half-filled), "
            "worst-ranked targets (dotted, hollow).",
        )
    )
    blocks += [
        Heading("Results", 2),
        Paragraph(
            f"Sorted by trainable parameters (head included). PE = acc · exp(−log10(params / M0 + 1)) "
            f"with M0 = {m0_text}, with the KAdaptation paper's M0 = 1e8, and with V-PETL's PPT constant "
            f"1e7. ✓ = on the Pareto front. Accuracies in %."
        ),
    ]
    header = [
        "method",
        "budget",
        "trainable (incl. head)",
        "excl. head",
        "adapter",
        "shared",
        "head",
        "test acc",
        "last-epoch acc",
        f"PE (M0 {fmt_params(m0)})",
        "PE (1e8)",
        "PPT (1e7)",
        "front",
    ]
    table_rows = [
        [
            r.name,
            fmt_int(r.budget),
            fmt_int(r.params),
            fmt_int(r.params_excl_head),
            fmt_int(r.adapter),
            fmt_int(r.shared),
            fmt_int(r.head),
            r.acc_text,
            fmt_pct(r.last_acc),
            fmt_pe(r.pe),
            fmt_pe(r.pe_1e8),
            fmt_pe(r.pe_1e7),
            "✓" if r.on_front else "",
        ]
        for r in rows
    ]
    blocks.append(Table(header, table_rows, numeric=set(range(1, 12))))
    planned = [r for r in rows if r.targets]
    if planned:
        blocks += [
            Heading("Targets of the planned points", 3),
            Table(
                ["method", "budget", "targets (ranking order)"],
                [
                    [r.name, fmt_int(r.budget), r.targets]
                    for r in sorted(
                        planned,
                        key=lambda r: (
                            r.method,
                            PLANNED_VARIANTS.index(r.variant) if r.variant in PLANNED_VARIANTS else 9,
                            r.budget or 0,
                        ),
                    )
                ],
                numeric={1},
            ),
        ]
    blocks += [
        Heading("Verdict", 2),
        Bullets(
            sweep_verdict(
                rows, f"M0 = {fmt_params(m0)}", seed_count(rows), epoch_selection=sweep.recipe.epoch_selection
            )
        ),
    ]

    plan_units = {(p.label, p.budget): {u for t in p.plan.targets for u in t.units} for p in sweep.points}
    sel = selection_rows(rows, plan_units)
    if sel:
        refs = fixed_size_references(rows)
        budget_text = "head counted" if sweep.head_in_budget else "head not counted"
        png = plots.selection_vs_fixed(
            sel,
            refs,
            title="KAdaptation: ranked selection vs the paper's fixed q,v vs the worst-ranked targets",
            seeds_text=seeds_text,
            budget_text=budget_text,
            dpi=builder.dpi,
        )
        blocks += [
            Heading("Does target selection help?", 2),
            builder.figure(
                "selection_vs_fixed",
                SELECTION_PNG,
                png,
                "selection vs fixed targets",
                "KAdaptation at each budget with the targets chosen by the ranking (selected), "
                "the paper's q and v of every block (fixed q,v) and the lowest-ranked targets "
                "(worst-ranked), all sized by the same planner. Dots: single seeds. Horizontal "
                "lines: fixed-size references.",
            ),
            Table(
                ["budget"] + [VARIANT_NAMES[v] for v in PLANNED_VARIANTS] + ["selected vs fixed", "selected vs worst"],
                [
                    [fmt_int(r.budget)]
                    + [_cell(r.points.get(v)) for v in PLANNED_VARIANTS]
                    + [_outcome(r.vs_fixed), _outcome(r.vs_worst)]
                    for r in sel
                ],
                numeric={0},
            ),
            Bullets(selection_verdict(sel)),
        ]
    return blocks


def _cell(r: PointRow | None) -> str:
    return "-" if r is None else f"{r.acc_text} ({fmt_params(r.params)})"


def _outcome(o: str | None) -> str:
    if o is None:
        return "-"
    return {"ahead": "ahead", "behind": "behind", "level": "not distinguishable", "same": "same configuration"}[o]


# --------------------------------------------------------------------------------------------------- probe


def _probe_section(builder: _Builder, probe, rows: list[ProbeRow], ranking) -> list[Block]:
    lp, floor, ceiling = probe.baselines["lp"], probe.floor, probe.ceiling
    cfg = probe.config
    thr = rows[0].d90.threshold_acc if rows else math.nan
    thr_c = rows[0].d90_classic.threshold_acc if rows else math.nan
    floor_name = (
        "the head trained alone with the trial recipe (d = 0)"
        if cfg.floor == "head"
        else "the frozen linear-probe head (d = 0)"
    )
    seeds = cfg.seeds
    ci_text = (
        "no interval: one seed."
        if seeds < 2
        else f"CI: 95 % bootstrap over whole seeds (a seed's curve together with its own floor and ceiling); with "
        f"{seeds} seeds there are only {distinct_resamples(seeds)} distinct resamples, so the interval is "
        f"{'the span of the two single-seed estimates' if seeds == 2 else 'coarse'} (∞: some resamples never "
        "reach the threshold)."
    )
    blocks: list[Block] = [
        Heading("Local intrinsic dimension (probe)", 2),
        Paragraph(
            f"Every number the probe decides on is validation accuracy ({fmt_int(probe.n_val)} images); test "
            f"accuracy ({fmt_int(probe.n_test)} images) is shown beside it and read by nothing. Baselines "
            f"(validation, mean ± std over seeds; test in brackets): floor, {floor_name}, "
            f"{fmt_acc(floor.val_mean, floor.val_std)} % [{fmt_acc(floor.test_mean, floor.test_std)} %]; "
            f"ceiling, full fine-tuning with the trial recipe and backbone lr {cfg.ft_lr:g}, "
            f"{fmt_acc(ceiling.val_mean, ceiling.val_std)} % [{fmt_acc(ceiling.test_mean, ceiling.test_std)} %] "
            f"({fmt_int(ceiling.trainable)} trainable); linear probe {fmt_acc(lp.val_mean, lp.val_std)} % "
            f"[{fmt_acc(lp.test_mean, lp.test_std)} %]. d90 is the smallest subspace dimension d whose isotonic "
            f"fit of the seed-mean validation accuracy reaches the gain-normalised threshold "
            f"floor + {cfg.threshold:g}·(ceiling − floor), per seed, mean {fmt_pct(thr)} %; the classic "
            f"threshold {cfg.threshold:g}·ceiling (mean {fmt_pct(thr_c)} %) is listed too. theta_d's learning "
            f"rate: {_lr_text(cfg)}. " + ci_text
        ),
    ]
    header = [
        "rank",
        "target",
        "D",
        "d90",
        "d90 CI",
        "d90 classic",
        "best val acc",
        "test acc there",
        "reached (boot.)",
        "trials",
    ]
    if ranking is not None:
        header += ["ranking rank", "tied with"]
    table = []
    for r in rows:
        line = [
            str(r.rank),
            f"`{r.target}`",
            fmt_int(r.D),
            fmt_d(r),
            fmt_ci(r),
            fmt_d_classic(r),
            fmt_pct(r.best_acc),
            fmt_pct(r.best_test_acc),
            f"{100 * r.d90.reached_fraction:.0f} %" if r.d90.n_seeds > 1 else "n/a",
            f"{r.trials}" + (f" ({r.failed_trials} failed)" if r.failed_trials else ""),
        ]
        if ranking is not None:
            line += ["-" if r.ranking_rank is None else str(r.ranking_rank), ", ".join(r.tied_with) or "-"]
        table.append(line)
    blocks.append(Table(header, table, numeric={0, 2, 3, 5, 6, 7, 8}))
    blocks.append(
        Bullets(
            probe_verdict(
                rows, (floor.val_mean, floor.val_spread), (ceiling.val_mean, ceiling.val_spread), n_val=probe.n_val
            )
        )
    )
    title = f"Accuracy vs subspace dimension: {probe.model.name} on {probe.data.dataset}"
    png = plots.id_curves(probe, title=title, dpi=builder.dpi)
    blocks.append(
        builder.figure(
            "id_curves",
            CURVES_PNG,
            png,
            "accuracy vs subspace dimension per target",
            "Validation accuracy against subspace dimension d (log scale) per target set: seed "
            "mean ± std, isotonic fit, thresholds, floor (d = 0) and ceiling (full fine-tuning), "
            "d90 with its CI.",
        )
    )
    if is_per_block(probe):
        png = plots.id_heatmap(
            rows, title=f"d90 per block and submodule: {probe.model.name} on {probe.data.dataset}", dpi=builder.dpi
        )
        blocks.append(
            builder.figure(
                "id_heatmap",
                HEATMAP_PNG,
                png,
                "d90 per block and submodule",
                "Gain-normalised d90 per block (columns) and submodule (rows), log colour scale, "
                "95 % CI under each value (n/a with one seed); hatched grey: the threshold was not reached.",
            )
        )
    return blocks


def _lr_text(cfg) -> str:
    rule = (
        f"{cfg.theta_step:g}/sqrt(d) (one step length in weight space at every d)"
        if cfg.lr_scaling == "sqrt"
        else f"{cfg.recipe.lr:g} at every d"
    )
    if list(cfg.lr_grid) == [1.0]:
        return rule
    text = f"{rule} times the best of {', '.join(f'{m:g}' for m in cfg.lr_grid)} per d, chosen on validation"
    if cfg.lr_grid_extend:
        up, down = cfg.lr_range()
        text += f" (a best on the grid's edge followed outward, up to {up:g}x and down to {down:g}x)"
    if cfg.lr_screen_epochs is not None:
        text += f"; each multiplier screened with {cfg.lr_screen_epochs} epochs, the kept one trained in full"
    return text


def _ranking_section(ranking) -> list[Block]:
    rows = ranking.table()
    header = list(rows[0]) if rows else ["rank", "target"]
    return [
        Heading(f"Ranking ({ranking.selector})", 2),
        Table(header, [[str(row[h]) for h in header] for row in rows], numeric={0}),
    ]


# --------------------------------------------------------------------------------------------------- problems


def _problems_section(sweep, rows: list[PointRow], probe) -> list[Block]:
    blocks: list[Block] = [Heading("Failed and skipped", 2)]
    items = []
    if sweep is not None:
        items += [
            f"failed: {f.get('label')} at budget {fmt_int(f.get('budget'))}, seed {f.get('seed')}: "
            f"{f.get('error') or 'no error message'}"
            for f in sweep.failed
        ]
        items += [f"skipped: {s}" for s in sweep.skipped]
        items += [
            f"under-trained: {r.label} at budget {fmt_int(r.budget)}: the training loss was still falling at "
            f"the last epoch in {r.still_falling} of {len(r.seed_accs)} seeds (more than 5 % of its loss "
            "reduction came in the last tenth of the epochs)"
            for r in rows
            if r.still_falling
        ]
        items += [
            f"diverging: {r.label}{'' if r.budget is None else f' at budget {fmt_int(r.budget)}'}: the training "
            f"loss ended above its first epoch's in {r.loss_rose} of {len(r.seed_accs)} seeds; its learning rate "
            f"({sweep.recipe_of(r.method).lr:g}) may be too high for this model (`sweep --method-lr "
            f"{r.method}=LR` trains one method at its own rate)"
            for r in rows
            if r.loss_rose
        ]
    if probe is not None and probe.failed_trials:
        per_target = [f"{t.target} ({t.failed_trials})" for t in probe.targets if t.failed_trials]
        items.append(
            f"probe: {probe.failed_trials} of {probe.trials_total} trials failed"
            + (f" — {', '.join(per_target)}" if per_target else "")
        )
        items += [
            f"probe failed: `{f.get('target')}` at d = {fmt_int(f.get('d'))}, seed {f.get('seed')}: "
            f"{f.get('error') or 'no error message'}"
            for f in getattr(probe, "failed", None) or []
        ]
    blocks.append(Bullets(items) if items else Paragraph("None: every planned trial ran and succeeded."))
    return blocks
