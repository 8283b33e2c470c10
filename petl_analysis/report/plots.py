"""The report's figures, each rendered to PNG bytes by Agg through matplotlib's object API (no pyplot, no global
backend or state).

Every figure is drawn inside matplotlib's default style plus :data:`RC`, so a user's ``matplotlibrc`` does not change
the output, and PNG metadata carries no software/version string: the same inputs give the same bytes.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.style
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..plan import PLANNED_VARIANTS
from ..tuners import METHODS
from .pareto import front_order
from .tables import (
    VARIANT_NAMES,
    PointRow,
    ProbeRow,
    fmt_ci,
    fmt_d,
    fmt_int,
    fmt_params,
    split_block_target,
)

if TYPE_CHECKING:
    from ..probe import ProbeResult, TargetResult
    from .verdict import SelectionRow

__all__ = ["RC", "accuracy_vs_params", "id_curves", "id_heatmap", "oracle_vs_predicted", "selection_vs_fixed"]

RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "hatch.linewidth": 0.8,
}
SPARE_MARKERS = ("h", "8", ">", "d", "P", "H")
MARKER_SIZE = {"*": 13, "X": 9, "p": 9}
#: Variant -> (line style joining a label's budgets, marker fill style).
VARIANT_STYLE = {
    "selected": ("-", "full"),
    "fixed": ("--", "left"),
    "worst": (":", "none"),
    "sized": ("-", "full"),
    "fixed-size": ("-", "full"),
}
SELECTION_COLOURS = {"selected": "#1b6ca8", "fixed": "#e08a00", "worst": "#b8323c"}
SELECTION_MARKERS = {"selected": "*", "fixed": "o", "worst": "v"}


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.style.context("default"), matplotlib.rc_context(RC):
        yield


def _png(fig: Figure, dpi: int) -> bytes:
    FigureCanvasAgg(fig)  # render with Agg whatever backend pyplot may have chosen
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def method_marker(method: str) -> str:
    """The marker a method registered (:func:`~petl_analysis.tuners.base.register_method`); ``o`` for another."""
    return METHODS.get(method).marker if method in METHODS else "o"


def _marker(method: str, extra: dict[str, str]) -> str:
    if method in METHODS:
        return method_marker(method)
    if method not in extra:
        extra[method] = SPARE_MARKERS[len(extra) % len(SPARE_MARKERS)]
    return extra[method]


def _log_limits(values: Sequence[float], pad: float = 1.6) -> tuple[float, float]:
    v = [x for x in values if x > 0 and math.isfinite(x)]
    if not v:
        return 1.0, 10.0
    return min(v) / pad, max(v) * pad


def _log_axis(ax, axis: str = "x") -> None:
    """Log axis with plain-number major ticks (1k, 10k, 1M) and no minor labels."""
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(base=10))
    target.set_major_formatter(FuncFormatter(lambda v, _: fmt_params(v)))
    target.set_minor_formatter(NullFormatter())


# --------------------------------------------------------------------------------------------------- 1. trade-off


def _plot_label(ax: Any, pts: list[PointRow], marker: str, colour_of: Callable[[float], Any]) -> Line2D:
    """One label's points (one method and variant, by parameters): joined across budgets, error bars, each marker
    coloured by its PE; returns its legend handle."""
    first = pts[0]
    linestyle, fill = VARIANT_STYLE.get(first.variant, ("-", "full"))
    size = MARKER_SIZE.get(marker, 7.5)
    x = [r.params for r in pts]
    y = [100 * r.acc for r in pts]
    line_colour, line_width = ("0.15", 1.4) if first.method == "kadaptation" else ("0.55", 0.9)
    if len(pts) > 1:
        ax.plot(x, y, linestyle=linestyle, color=line_colour, linewidth=line_width, zorder=2)
    ax.errorbar(
        x, y, yerr=[100 * r.std for r in pts], fmt="none", ecolor="0.35", elinewidth=0.9, capsize=2.5, zorder=3
    )
    for r in pts:
        colour = colour_of(r.pe)
        ax.plot(
            [r.params],
            [100 * r.acc],
            linestyle="none",
            marker=marker,
            markersize=size,
            fillstyle=fill,
            markerfacecolor=colour,
            markerfacecoloralt="white",
            markeredgecolor="black" if fill != "none" else colour,
            markeredgewidth=0.8 if fill != "none" else 2.0,
            zorder=4,
        )
    joined = len(pts) > 1 or first.variant in PLANNED_VARIANTS
    return Line2D(
        [],
        [],
        color=line_colour,
        linewidth=line_width,
        linestyle=linestyle if joined else "none",
        marker=marker,
        markersize=size * 0.85,
        fillstyle=fill,
        markerfacecolor="0.75",
        markerfacecoloralt="white",
        markeredgecolor="black" if fill != "none" else "0.35",
        markeredgewidth=0.8 if fill != "none" else 1.6,
        label=first.name,
    )


def accuracy_vs_params(rows: list[PointRow], *, m0_text: str, title: str, seeds_text: str, dpi: int = 150) -> bytes:
    """Accuracy (%) against trainable parameters (log x, head included), coloured by PE, with the Pareto front.

    One marker shape per method; a label's points at several budgets are joined by a thin line whose style (and the
    marker's fill) gives the variant: selected solid/filled, fixed q,v dashed/half-filled, worst-ranked dotted/hollow.
    """
    ok = [r for r in rows if r.ok]
    with _style():
        fig = Figure(figsize=(9.0, 6.4), layout="constrained")
        ax = fig.add_subplot()
        cmap = colormaps["viridis"]
        pes = [r.pe for r in ok] or [0.0, 1.0]
        lo, hi = min(pes), max(pes)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.01, hi + 0.01
        norm = Normalize(lo, hi)
        extra: dict[str, str] = {}
        labels: dict[str, list[PointRow]] = {}
        for r in ok:
            labels.setdefault(r.label, []).append(r)
        handles = []
        for label in sorted(
            labels, key=lambda lab: (_method_order(labels[lab][0].method), _variant_order(labels[lab][0].variant))
        ):
            pts = sorted(labels[label], key=lambda r: r.params)
            handles.append(_plot_label(ax, pts, _marker(pts[0].method, extra), lambda pe: cmap(norm(pe))))
        order = front_order([r.params for r in ok], [r.acc for r in ok])
        if len(order):
            fx = [ok[i].params for i in order]
            fy = [100 * ok[i].acc for i in order]
            ax.plot(fx, fy, drawstyle="steps-post", color="crimson", linewidth=1.6, alpha=0.8, zorder=1)
            handles.append(Line2D([], [], color="crimson", linewidth=1.6, label="Pareto front"))
        _log_axis(ax, "x")
        ax.set_xlim(*_log_limits([r.params for r in ok]))
        ys = [100 * r.acc for r in ok]
        if ys:
            spread = max(max(100 * (r.acc + r.std) for r in ok) - min(100 * (r.acc - r.std) for r in ok), 1.0)
            ax.set_ylim(
                min(100 * (r.acc - r.std) for r in ok) - 0.08 * spread,
                max(100 * (r.acc + r.std) for r in ok) + 0.08 * spread,
            )
        ax.set_xlabel("Trainable parameters, incl. classification head (log scale)")
        ax.set_ylabel(f"Test accuracy (%), mean ± std over {seeds_text}")
        ax.set_title(f"{title}\ncolour: PE = acc · exp(−log10(params / M0 + 1)), M0 = {m0_text}", loc="left")
        fig.colorbar(
            ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="PE score (higher is better)", shrink=0.9, pad=0.01
        )
        if not ok:
            ax.text(0.5, 0.5, "no successful sweep point", transform=ax.transAxes, ha="center", va="center")
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=min(4, max(1, len(handles))),
            frameon=False,
            handlelength=3.0,
        )
        return _png(fig, dpi)


def _method_order(method: str) -> int:
    keys = METHODS.registered()
    return keys.index(method) if method in keys else len(keys)


def _variant_order(variant: str) -> int:
    keys = list(VARIANT_STYLE)
    return keys.index(variant) if variant in keys else len(keys)


# --------------------------------------------------------------------------------------------------- 2. ID curves


def _pct(values: Sequence[float]) -> np.ndarray:
    return 100 * np.asarray(values, dtype=float)


def _curve_panel(ax, t: TargetResult, floor: float, ceiling: float, *, compact: bool) -> None:
    dims = np.asarray(t.dims, dtype=float)
    mean, std = _pct(t.val_mean), _pct(t.val_std)
    if not compact:
        for d, seeds in zip(dims, t.val_per_seed):
            s = _pct(seeds)
            s = s[np.isfinite(s)]
            ax.plot([d] * len(s), s, linestyle="none", marker=".", markersize=3.5, color="0.55", zorder=2)
    ok = np.isfinite(mean)
    ax.errorbar(
        dims[ok],
        mean[ok],
        yerr=np.nan_to_num(std[ok]),
        color="#1b6ca8",
        marker="o",
        markersize=3 if compact else 4,
        linewidth=1.0,
        elinewidth=0.8,
        capsize=2,
        zorder=3,
    )
    if t.fitted and len(t.fitted) == len(dims):
        ax.plot(dims, _pct(t.fitted), color="#6a3d9a", linestyle=(0, (4, 2)), linewidth=1.0, zorder=3)
    ax.axhline(100 * floor, color="#2b8a3e", linestyle="--", linewidth=0.9, zorder=1)
    ax.axhline(100 * ceiling, color="0.15", linestyle="--", linewidth=0.9, zorder=1)
    ax.axhline(100 * t.d90_classic.threshold_acc, color="#d9480f", linestyle=":", linewidth=1.1, zorder=1)
    ax.axhline(100 * t.d90.threshold_acc, color="#d9480f", linestyle="-", linewidth=1.1, zorder=1)
    _log_axis(ax, "x")
    ax.set_xlim(*_log_limits(list(dims), pad=1.5))
    if t.d90.reached and t.d90.value is not None:
        y = 100 * t.d90.threshold_acc
        lo = t.d90.ci_low if t.d90.ci_low is not None and math.isfinite(t.d90.ci_low) else t.d90.value
        hi_inf = t.d90.ci_high is None or not math.isfinite(t.d90.ci_high)
        right = ax.get_xlim()[1]
        hi = right if hi_inf else t.d90.ci_high
        ax.plot([lo, hi], [y, y], color="#d9480f", linewidth=3.0, alpha=0.45, solid_capstyle="butt", zorder=4)
        for end in [lo] + ([] if hi_inf else [hi]):
            ax.plot([end, end], [y - 0.6, y + 0.6], color="#d9480f", linewidth=1.2, zorder=4)
        if hi_inf:
            ax.plot([right], [y], marker=">", color="#d9480f", markersize=5, clip_on=False, zorder=4)
        ax.plot(
            [t.d90.value],
            [y],
            marker="D",
            markersize=6 if not compact else 5,
            color="#d9480f",
            markeredgecolor="black",
            markeredgewidth=0.7,
            zorder=5,
        )


def _curve_legend(per_seed: bool) -> list:
    seeds = [Line2D([], [], color="0.55", marker=".", linestyle="none", label="per seed")] if per_seed else []
    return [
        Line2D([], [], color="#1b6ca8", marker="o", markersize=4, label="validation accuracy, mean ± std over seeds"),
        *seeds,
        Line2D([], [], color="#6a3d9a", linestyle=(0, (4, 2)), label="isotonic fit"),
        Line2D([], [], color="#d9480f", linestyle="-", label="gain-normalised threshold (d90)"),
        Line2D([], [], color="#d9480f", linestyle=":", label="classic threshold (fraction of the ceiling)"),
        Line2D([], [], color="#d9480f", marker="D", markeredgecolor="black", linestyle="none", label="d90"),
        Line2D([], [], color="#d9480f", linewidth=3.0, alpha=0.45, label="d90 bootstrap CI"),
        Line2D([], [], color="#2b8a3e", linestyle="--", label="floor: head alone, d = 0"),
        Line2D([], [], color="0.15", linestyle="--", label="ceiling: full fine-tuning"),
    ]


def _d90_text(t: TargetResult) -> str:
    d = t.d90
    if not d.reached or d.value is None:
        return "d90 not reached"
    return f"d90 = {d.text()}, CI {d.ci_text()}"


def _block_grid_panels(
    targets: list, parsed: list[tuple[int | None, str]], lp: float, ft: float
) -> tuple[Figure, np.ndarray, int]:
    """A per-block probe: one small panel per (kind, block), sharing axes."""
    kinds = sorted(dict.fromkeys(k for _, k in parsed), key=_kind_key)
    blocks = sorted({b for b, _ in parsed})
    nrows, ncols = len(kinds), len(blocks)
    fig = Figure(figsize=(max(6.0, 1.55 * ncols + 1.2), 1.45 * nrows + 1.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    where = {(kinds.index(k), blocks.index(b)): t for t, (b, k) in zip(targets, parsed)}
    for (i, j), ax in np.ndenumerate(axes):
        t = where.get((i, j))
        if t is None:
            ax.set_axis_off()
            continue
        _curve_panel(ax, t, lp, ft, compact=True)
        ax.set_title(_d90_text(t), fontsize=7, pad=2)
        if i == 0:
            ax.annotate(
                f"block {blocks[j]}",
                xy=(0.5, 1.0),
                xycoords="axes fraction",
                xytext=(0, 14),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=9,
                fontweight="bold",
            )
        if j == 0:
            ax.set_ylabel(f"{kinds[i]}\nacc. (%)", fontsize=8)
        ax.tick_params(labelsize=6.5)
    for ax in axes[-1]:
        ax.set_xlabel("d", fontsize=8)
    return fig, axes, ncols


def _target_panels(targets: list, lp: float, ft: float, metric: str) -> tuple[Figure, np.ndarray, int]:
    """Any other probe: one panel per target, up to 4 per row."""
    n = max(1, len(targets))
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.4 * ncols + 0.4, 2.9 * nrows + 1.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(targets):
            ax.set_axis_off()
            continue
        t = targets[k]
        _curve_panel(ax, t, lp, ft, compact=False)
        ax.set_title(f"{t.target}  (D = {fmt_int(t.D)})\n{_d90_text(t)}", fontsize=9)
        if k % ncols == 0:
            ax.set_ylabel(f"{metric} accuracy (%)")
        if k // ncols == nrows - 1 or k + ncols >= len(targets):
            ax.set_xlabel("subspace dimension d (log scale)")
    return fig, axes, ncols


def id_curves(probe: ProbeResult, *, title: str, dpi: int = 150) -> bytes:
    """Accuracy against subspace dimension d (log x) per target with thresholds, baselines and d90 ± CI.

    Per-block probes (every target ``blocks.N.<kind>``) are drawn as a kind x block grid of small panels sharing
    axes; other probes get one panel per target (up to 4 per row).
    """
    lp, ft = probe.floor.val_mean, probe.ceiling.val_mean
    targets = list(probe.targets)
    parsed = [split_block_target(t.target) for t in targets]
    grid = bool(targets) and all(b is not None for b, _ in parsed)
    all_acc = [a for t in targets for a in list(t.val_mean) + [v for s in t.val_per_seed for v in s]]
    # Both threshold lines are in the legend, so both are in range (the classic one can sit far below the curves).
    all_acc += [t.d90.threshold_acc for t in targets] + [t.d90_classic.threshold_acc for t in targets]
    all_acc = [100 * a for a in all_acc if a is not None and math.isfinite(a)] + [100 * lp, 100 * ft]
    ylo, yhi = min(all_acc), max(all_acc)
    pad = max(0.06 * (yhi - ylo), 0.5)
    metric = "validation"
    with _style():
        if grid:
            fig, axes, ncols = _block_grid_panels(targets, parsed, lp, ft)
        else:
            fig, axes, ncols = _target_panels(targets, lp, ft, metric)
        axes.flat[0].set_ylim(ylo - pad, yhi + pad)
        cfg = probe.config
        fig.suptitle(
            f"{title}\nthreshold {cfg.threshold:g} of full fine-tuning's gain over the head alone (solid) "
            f"and {cfg.threshold:g}·FT "
            f"(dotted); {cfg.projection} projection, {cfg.seeds} seed{'s' if cfg.seeds != 1 else ''}, "
            f"head {cfg.head}",
            fontsize=10,
        )
        fig.legend(
            handles=_curve_legend(per_seed=not grid),
            loc="outside lower center",
            ncols=3 if grid and ncols < 5 else 5,
            frameon=False,
        )
        return _png(fig, dpi)


# --------------------------------------------------------------------------------------------------- 3. heatmap


def _heatmap_cell(
    ax: Any, i: int, j: int, r: ProbeRow | None, colour_of: Callable[[float], Any], show_ci: bool
) -> None:
    """Annotate one heatmap cell: its d90 (and CI), "not reached" with the best accuracy, or "–" (not probed)."""
    if r is None:
        ax.text(j, i, "–", ha="center", va="center", color="0.5", fontsize=9)
        return
    if not r.reached:
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.85", edgecolor="0.55", hatch="///", linewidth=0))
        # The best accuracy still orders unreached cells (as the ranking does).
        ax.text(
            j,
            i,
            f"not reached\nbest val {100 * r.best_acc:.1f}%",
            ha="center",
            va="center",
            fontsize=7,
            color="0.15",
            bbox=dict(boxstyle="round,pad=0.15", facecolor="0.85", edgecolor="none"),
        )
        return
    rgba = colour_of(r.d90.reached_value)
    lum = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
    colour = "black" if lum > 0.5 else "white"
    ax.text(
        j,
        i - (0.12 if show_ci else 0),
        fmt_d(r),
        ha="center",
        va="center",
        fontsize=9,
        fontweight="bold",
        color=colour,
    )
    if show_ci:
        ax.text(j, i + 0.22, fmt_ci(r), ha="center", va="center", fontsize=6.5, color=colour)


def id_heatmap(rows: list[ProbeRow], *, title: str, dpi: int = 150) -> bytes:
    """Submodule kind x block grid coloured by d90 (log colour scale); not-reached cells hatched grey, with their
    best accuracy."""
    block_rows = [r for r in rows if r.block is not None]
    kinds = list(dict.fromkeys(r.kind for r in sorted(block_rows, key=lambda r: _kind_key(r.kind))))
    blocks = sorted({r.block for r in block_rows})
    cell = {(r.kind, r.block): r for r in block_rows}
    values = np.full((len(kinds), len(blocks)), np.nan)
    for (k, b), r in cell.items():
        if r.reached and r.d90.reached_value > 0:
            values[kinds.index(k), blocks.index(b)] = r.d90.reached_value
    finite = values[np.isfinite(values)]
    show_ci = len(blocks) <= 12
    with _style():
        fig = Figure(figsize=(max(5.5, 0.95 * len(blocks) + 2.6), 0.75 * len(kinds) + 1.9), layout="constrained")
        ax = fig.add_subplot()
        cmap = colormaps["viridis"].with_extremes(bad="white")
        vmin = float(finite.min()) if finite.size else 1.0
        vmax = float(finite.max()) if finite.size else 10.0
        if vmax <= vmin:
            vmin, vmax = vmin / 2, vmax * 2
        norm = LogNorm(vmin=vmin, vmax=vmax)
        ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        ax.grid(False)
        for i, k in enumerate(kinds):
            for j, b in enumerate(blocks):
                _heatmap_cell(ax, i, j, cell.get((k, b)), lambda d: cmap(norm(d)), show_ci)
        ax.set_xticks(range(len(blocks)), [str(b) for b in blocks])
        ax.set_yticks(range(len(kinds)), kinds)
        ax.set_xlabel("block")
        ax.set_ylabel("submodule")
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_xticks(np.arange(-0.5, len(blocks), 1), minor=True)
        ax.set_yticks(np.arange(-0.5, len(kinds), 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5)
        ax.tick_params(which="minor", length=0)
        ax.set_title(title, loc="left")
        cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.01)
        cb.set_label("d90 (log colour scale; lower = fewer dimensions needed)")
        cb.ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_params(v)))
        cb.ax.yaxis.set_minor_formatter(NullFormatter())
        legend = [Patch(facecolor="0.85", edgecolor="0.55", hatch="///", label="threshold not reached")]
        if len(cell) < len(kinds) * len(blocks):
            legend.append(Patch(facecolor="white", edgecolor="0.7", label="– not probed"))
        fig.legend(handles=legend, loc="outside lower center", ncols=2, frameon=False)
        return _png(fig, dpi)


_KIND_ORDER = (
    "attn",
    "attn.qkv",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.proj",
    "mlp",
    "mlp.fc1",
    "mlp.fc1_g",
    "mlp.fc1_x",
    "mlp.fc2",
)


def _kind_key(kind: str) -> tuple[int, str]:
    return (_KIND_ORDER.index(kind) if kind in _KIND_ORDER else len(_KIND_ORDER), kind)


# --------------------------------------------------------------------------------------------------- 4. selection


def selection_vs_fixed(
    sel_rows: list[SelectionRow],
    references: list[PointRow],
    *,
    title: str,
    seeds_text: str,
    budget_text: str,
    dpi: int = 150,
) -> bytes:
    """KAdaptation accuracy per budget for the selected, fixed (q, v) and worst-ranked target sets (dodged points
    with mean ± std and per-seed dots); fixed-size references (linear probe, full FT, ...) as horizontal lines."""
    variants = [v for v in PLANNED_VARIANTS if any(v in r.points for r in sel_rows)]
    offsets = dict(zip(variants, np.linspace(-0.22, 0.22, len(variants)) if len(variants) > 1 else [0.0]))
    with _style():
        fig = Figure(figsize=(max(6.5, 1.5 * len(sel_rows) + 3.5), 5.0), layout="constrained")
        ax = fig.add_subplot()
        handles = []
        ys = []
        for v in variants:
            xs, means, stds = [], [], []
            for i, r in enumerate(sel_rows):
                p = r.points.get(v)
                if p is None:
                    continue
                x = i + offsets[v]
                xs.append(x)
                means.append(100 * p.acc)
                stds.append(100 * p.std)
                seeds = [100 * a for a in p.seed_accs]
                ax.plot(
                    [x + 0.07] * len(seeds),
                    seeds,
                    linestyle="none",
                    marker=".",
                    markersize=4,
                    color=SELECTION_COLOURS[v],
                    alpha=0.55,
                    zorder=2,
                )
                ys += seeds + [100 * (p.acc - p.std), 100 * (p.acc + p.std)]
            ax.errorbar(
                xs,
                means,
                yerr=stds,
                linestyle="none",
                marker=SELECTION_MARKERS[v],
                markersize=12 if v == "selected" else 7,
                color=SELECTION_COLOURS[v],
                markeredgecolor="black",
                markeredgewidth=0.6,
                elinewidth=1.2,
                capsize=4,
                zorder=3,
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    marker=SELECTION_MARKERS[v],
                    markersize=10 if v == "selected" else 7,
                    color=SELECTION_COLOURS[v],
                    markeredgecolor="black",
                    markeredgewidth=0.6,
                    label=f"KAdaptation, {VARIANT_NAMES[v]} targets",
                )
            )
        ref_styles = ["--", "-.", (0, (1, 1)), (0, (5, 1, 1, 1, 1, 1))]
        span = (max(ys) - min(ys)) if ys else 0.0
        window = (min(ys) - max(span, 2.0), max(ys) + max(span, 2.0)) if ys else (-math.inf, math.inf)
        for k, ref in enumerate(sorted(references, key=lambda r: r.params)):
            ls = ref_styles[k % len(ref_styles)]
            y = 100 * ref.acc
            text = f"{ref.name} ({fmt_params(ref.params)} params)"
            if window[0] <= y <= window[1]:  # a far-away reference would squash the comparison that matters
                ax.axhline(y, color="0.35", linestyle=ls, linewidth=1.0, zorder=1)
                ys.append(y)
                handles.append(Line2D([], [], color="0.35", linestyle=ls, label=text))
            else:
                handles.append(Line2D([], [], linestyle="none", label=f"{text}: {y:.2f} %, off scale"))
        handles.append(Line2D([], [], color="0.4", marker=".", linestyle="none", label="per seed"))
        ax.set_xticks(range(len(sel_rows)), [_budget_tick(r) for r in sel_rows])
        ax.set_xlim(-0.6, len(sel_rows) - 0.4)
        if ys:
            lo, hi = min(ys), max(ys)
            pad = max(0.1 * (hi - lo), 0.5)
            ax.set_ylim(lo - pad, hi + pad)
        ax.grid(axis="x", visible=False)
        # Wrapped to the figure's width: a narrow figure (two budgets) would cut a one-line label at both edges.
        ax.set_xlabel(
            textwrap.fill(
                f"parameter budget ({budget_text}); below: actual trainable counts incl. head "
                f"({' / '.join(VARIANT_NAMES[v] for v in variants)})",
                width=int(11 * fig.get_figwidth()),
            )
        )
        ax.set_ylabel(f"Test accuracy (%), mean ± std over {seeds_text}")
        ax.set_title(title, loc="left")
        fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
        return _png(fig, dpi)


def _budget_tick(r: SelectionRow) -> str:
    counts = " / ".join(fmt_params(r.points[v].params) for v in PLANNED_VARIANTS if v in r.points)
    return f"{fmt_int(r.budget)}\n({counts})"


# --------------------------------------------------------------------------------------------------- 5. validation


ORACLE_COLOURS = {"kadaptation": "#1b6ca8", "lora": "#e08a00"}


def oracle_vs_predicted(
    panels: list[tuple[str, str, list[str]]], oracle: dict[str, dict[str, list[float]]], *, title: str, dpi: int = 150
) -> bytes:
    """One panel per selector: x = the rank the selector gives each set, y = that set's oracle validation accuracy
    (mean ± std over seeds, per-seed dots), one series per oracle method. A selector that predicts draws a falling
    line; a flat or scattered panel means its order says nothing about what adapting a set achieves.

    Args:
        panels: ``(selector, panel title, order)``: the selector's order of the sets, first = rank 1.
        oracle: ``oracle[method][set]`` = validation accuracies per seed.
    """
    methods = list(oracle)
    n = len(panels)
    cols = min(4, n)
    rows_ = math.ceil(n / cols)
    all_acc = [100 * a for m in methods for v in oracle[m].values() for a in v]
    lo, hi = (min(all_acc), max(all_acc)) if all_acc else (0.0, 100.0)
    pad = max(0.08 * (hi - lo), 0.3)
    offsets = dict(zip(methods, np.linspace(-0.12, 0.12, len(methods)) if len(methods) > 1 else [0.0]))
    with _style():
        fig = Figure(figsize=(3.1 * cols + 0.6, 2.7 * rows_ + 0.9), layout="constrained")
        axes = fig.subplots(rows_, cols, squeeze=False, sharey=True)
        for k, (_name, panel_title, order) in enumerate(panels):
            ax = axes[k // cols][k % cols]
            for m in methods:
                xs = np.arange(1, len(order) + 1) + offsets[m]
                means = [100 * float(np.mean(oracle[m][t])) for t in order]
                stds = [100 * float(np.std(oracle[m][t])) for t in order]
                ax.errorbar(
                    xs,
                    means,
                    yerr=stds,
                    marker=method_marker(m),
                    markersize=7 if m != "kadaptation" else 10,
                    color=ORACLE_COLOURS.get(m, "0.3"),
                    markeredgecolor="black",
                    markeredgewidth=0.5,
                    linewidth=1.0,
                    elinewidth=1.0,
                    capsize=3,
                    zorder=3,
                )
                for x, t in zip(xs, order):
                    ax.plot(
                        [x] * len(oracle[m][t]),
                        [100 * a for a in oracle[m][t]],
                        linestyle="none",
                        marker=".",
                        markersize=3,
                        color=ORACLE_COLOURS.get(m, "0.3"),
                        alpha=0.5,
                        zorder=2,
                    )
            ax.set_xticks(
                range(1, len(order) + 1),
                [t if len(order) <= 8 else str(i + 1) for i, t in enumerate(order)],
                rotation=60 if len(order) <= 8 else 0,
                ha="right" if len(order) <= 8 else "center",
            )
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_title(panel_title, loc="left", fontsize=8.5)
            if k % cols == 0:
                ax.set_ylabel("oracle val. accuracy (%)")
        for k in range(n, rows_ * cols):
            axes[k // cols][k % cols].set_visible(False)
        handles = [
            Line2D(
                [],
                [],
                marker=method_marker(m),
                color=ORACLE_COLOURS.get(m, "0.3"),
                markeredgecolor="black",
                markeredgewidth=0.5,
                label=f"{m}: set adapted alone",
            )
            for m in methods
        ]
        handles.append(Line2D([], [], color="0.4", marker=".", linestyle="none", label="per seed"))
        for k in range(max(0, n - cols), n):  # the bottom panel of each column
            axes[k // cols][k % cols].set_xlabel("the selector's order (adapt first ->)")
        fig.suptitle(title, x=0.01, ha="left")
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
        return _png(fig, dpi)
