"""Report polish (issue 29 item 5): what the verdict rests on with one probe seed, the id_curves axes and subtitle,
the selection figure's label and BitFit line, readable messages, the closeness hint for a mistyped model."""

from __future__ import annotations

import dataclasses

import pytest
from helpers import synthetic_probe

from petl_analysis.errors import PetlError


def _one_seed(probe):
    targets = [
        dataclasses.replace(t, d90=dataclasses.replace(t.d90, ci_low=None, ci_high=None, n_seeds=1))
        for t in probe.targets
    ]
    return dataclasses.replace(probe, targets=targets)


def test_one_probe_seed_verdict_says_what_the_order_rests_on() -> None:
    from petl_analysis.report.tables import probe_rows
    from petl_analysis.report.verdict import probe_verdict

    floor, ceiling = (0.5, 0.0), (0.9, 0.0)
    one = probe_verdict(probe_rows(_one_seed(synthetic_probe())), floor, ceiling)[0]
    assert "overlapping CIs" not in one and "one probe seed there is no interval" in one
    two = probe_verdict(probe_rows(synthetic_probe()), floor, ceiling)[0]
    assert "Not distinguishable from it (overlapping CIs): attn.q" in two


def _fig_text(png_call, monkeypatch) -> list[str]:
    """The texts a plot function puts on its figure (captured before rendering)."""
    from petl_analysis.report import plots

    seen = []
    original = plots._png

    def capture(fig, dpi):
        seen.append(fig)
        return original(fig, dpi)

    monkeypatch.setattr(plots, "_png", capture)
    png_call()
    return seen


def test_id_curves_show_both_thresholds_and_name_the_floor(monkeypatch) -> None:
    from petl_analysis.report import plots

    probe = synthetic_probe()
    low = 0.2  # a classic threshold far below every curve point must still be on the axes
    probe = dataclasses.replace(
        probe,
        targets=[
            dataclasses.replace(t, d90_classic=dataclasses.replace(t.d90_classic, threshold_acc=low))
            for t in probe.targets
        ],
    )
    (fig,) = _fig_text(lambda: plots.id_curves(probe, title="t"), monkeypatch)
    lo, hi = fig.axes[0].get_ylim()
    assert lo <= 100 * low <= hi
    subtitle = fig._suptitle.get_text()
    assert "over LP" not in subtitle and "head alone" in subtitle


def test_selection_figure_wraps_its_label_and_draws_bitfit(monkeypatch) -> None:
    from petl_analysis.report import plots
    from petl_analysis.report.verdict import SelectionRow

    def point(variant, acc, params):
        return dataclasses.replace(_point_row(), variant=variant, acc=acc, params=params, seed_accs=[acc])

    rows = [
        SelectionRow(
            budget=b,
            points={"selected": point("selected", 0.8, b), "fixed": point("fixed", 0.79, b)},
            vs_fixed="level",
            vs_worst=None,
            same_units_as_fixed=False,
        )
        for b in (2000, 8000)
    ]
    bitfit = dataclasses.replace(_point_row(), name="BitFit", method="bitfit", acc=0.795, params=5000)
    (fig,) = _fig_text(
        lambda: plots.selection_vs_fixed(
            rows, [bitfit], title="t", seeds_text="3 seeds", budget_text="head not counted"
        ),
        monkeypatch,
    )
    ax = fig.axes[0]
    assert "\n" in ax.get_xlabel()  # two budgets: a narrow figure, so the long label is wrapped, not cut
    assert any(abs(line.get_ydata()[0] - 79.5) < 1e-9 for line in ax.get_lines() if len(line.get_ydata()) == 2)


def test_bitfit_is_a_reference_of_the_selection_figure() -> None:
    from petl_analysis.report.render import fixed_size_references

    rows = [dataclasses.replace(_point_row(), method=m, label=m) for m in ("bitfit", "linear", "full", "lora")]
    assert [r.method for r in fixed_size_references(rows)] == ["bitfit", "linear", "full"]


def _point_row():
    from petl_analysis.report.tables import PointRow

    return PointRow(
        label="kadaptation",
        method="kadaptation",
        variant="selected",
        name="KAdaptation",
        budget=None,
        params=1000,
        params_excl_head=900,
        adapter=900,
        shared=0,
        head=100,
        bias_norm=0,
        backbone=0,
        model_total=10000,
        acc=0.8,
        std=0.0,
        last_acc=0.8,
        seed_accs=[0.8],
    )


def test_split_messages_name_what_the_user_set() -> None:
    from petl_analysis.data import SplitSpec

    with pytest.raises(PetlError) as e:
        SplitSpec(shots=0)
    assert "SplitSpec" not in str(e.value) and "training images per class (shots)" in str(e.value)


def test_unknown_model_hint_is_a_closeness_match() -> None:
    from petl_analysis.models import ModelSpec, create_model

    with pytest.raises(PetlError) as e:
        create_model(ModelSpec("vit_tinyy_patch16_224", weights="random"))
    assert "similar: vit_tiny_patch16_224" in str(e.value) and "convit" not in str(e.value)


def test_demo_output_is_ignored_by_git() -> None:
    from pathlib import Path

    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().split()
    assert "/petl-demo/" in ignored
