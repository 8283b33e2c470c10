"""CLI hygiene: a light import (help answers before torch loads), one name per concept with the old names as
deprecated hidden aliases, help text on every option, and the listing commands (methods, --json)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from petl_analysis.cli.main import app
from petl_analysis.cli.options import DEFAULT_METHODS, DEPRECATED_OPTIONS

runner = CliRunner()
COMMAND = typer.main.get_command(app)


def test_cli_import_does_not_load_torch_or_timm() -> None:
    """`petl-analyze --help` parses before anything heavy loads: the commands import torch and timm themselves."""
    code = (
        "import sys, petl_analysis.cli.main; "
        "print(sorted(m for m in ('torch', 'timm', 'torchvision', 'numpy', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_default_methods_match_the_library() -> None:
    from petl_analysis.plan import DEFAULT_METHODS as LIBRARY

    assert tuple(DEFAULT_METHODS) == tuple(LIBRARY)


def _options():
    for name, cmd in COMMAND.commands.items():
        for p in cmd.params:
            yield name, p


def test_every_option_has_help_and_flags_take_no_value() -> None:
    missing = [f"{name} {'/'.join(p.opts)}" for name, p in _options() if not p.help]
    assert not missing
    out = runner.invoke(app, ["probe", "--help"], terminal_width=200).output
    assert "--augment" in out and "<bool>" not in out


def test_help_and_messages_print_their_square_brackets() -> None:
    """Help text and the warnings are rich markup: a lowercase ``[probe]`` is a style tag and would print as nothing
    (the --config help lost its table names so)."""
    import re

    from petl_analysis.cli._common import say

    tag = re.compile(r"(?<!\\)\[[a-z#/@][^\[\]]*\]")  # rich's markup tag, unescaped
    eaten = [f"{name} {'/'.join(p.opts)}" for name, p in _options() if tag.search(p.help or "")]
    eaten += [name for name, cmd in COMMAND.commands.items() if tag.search(cmd.help or "")]
    assert not eaten
    out = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "400"}).output
    assert "pip install 'petl-analysis[dinov2]'" in out  # the install hint printed without its extra once
    from petl_analysis.cli import _common

    with _common.console.capture() as captured:
        say("warning", "study file [probe.recipe] key x in /tmp/a[b]/c")
    assert captured.get().strip() == "warning: study file [probe.recipe] key x in /tmp/a[b]/c"


def test_one_name_per_concept() -> None:
    """A ranking is --ranking, a budget list --budgets, everywhere; -b (timm's batch size) names nothing."""
    decls = {d for _, p in _options() for d in p.opts}
    assert "-b" not in decls and "--plans-from" not in decls and "--proxy" not in decls
    for name in ("plan", "sweep", "report"):
        assert "--ranking" in {d for p in COMMAND.commands[name].params for d in p.opts}
    for name in ("plan", "sweep", "run", "validate"):
        assert "--budgets" in {d for p in COMMAND.commands[name].params for d in p.opts}
    for command, aliases in DEPRECATED_OPTIONS.items():  # every alias names an option the command has
        opts = {d for p in COMMAND.commands[command].params for d in p.opts}
        assert set(aliases.values()) <= opts, command


@pytest.mark.parametrize("old", ["--plans-from", "-b"])
def test_deprecated_names_still_work_with_a_note(tmp_path, monkeypatch, old) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["sweep", old, "missing.json" if old == "--plans-from" else "0%", "--dataset", "digits"]
    )
    assert result.exit_code == 2
    assert f"sweep {old} is deprecated" in result.output
    new = DEPRECATED_OPTIONS["sweep"][old]
    assert "use " + new in result.output and "No such option" not in result.output


def test_dataset_is_required_outside_demo(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (["probe"], ["linear-probe"], ["run"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "--dataset" in result.output, args
    result = runner.invoke(app, ["train", "--method", "linear"])
    assert result.exit_code == 2 and "no dataset; give --dataset" in result.output
    result = runner.invoke(app, ["sweep", "--methods", "linear"])
    assert result.exit_code == 2 and "no dataset; give --dataset" in result.output
    assert not list(tmp_path.iterdir())


def test_methods_lists_methods_and_one_methods_options() -> None:
    rows = json.loads(runner.invoke(app, ["methods", "--json"]).stdout)
    assert {r["name"] for r in rows} >= set(DEFAULT_METHODS)
    lora = json.loads(runner.invoke(app, ["methods", "lora", "--json"]).stdout)
    options = {o["option"]: o for o in lora["options"]}
    assert options["rank"]["default"] == 4 and "rank" in options["rank"]["meaning"]
    assert options["targets"]["default"] == ["attn.q", "attn.v"]
    bad = runner.invoke(app, ["methods", "loraa"])
    assert bad.exit_code == 2 and "expected one of" in bad.output


def test_info_and_datasets_json() -> None:
    rows = json.loads(runner.invoke(app, ["datasets", "--json"]).stdout)
    assert {"digits", "animals"} <= {r["name"] for r in rows}
    info = json.loads(runner.invoke(app, ["info", "--weights", "random", "--targets", "attn.v", "--json"]).stdout)
    assert info["model"] == "petl_vit_tiny" and info["blocks"] == len(info["targets"])


def test_the_resolved_recipe_is_printed(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app,
        [
            "train",
            "--method",
            "linear",
            "--dataset",
            "digits",
            "--shots",
            "1",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--max-steps",
            "1",
            "--out",
            "r.json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "training recipe: epochs=1 batch_size=" in result.output and "max_steps=1" in result.output


def test_probe_progress_lines_show_the_total_and_name_the_target(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app,
        [
            "probe",
            "-d",
            "digits",
            "--weights",
            "random",
            "--targets",
            "attn.v",
            "--dims",
            "4",
            "--max-train",
            "30",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--max-steps",
            "1",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--out",
            "p.json",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("[")]
    assert lines and not any("/?]" in line for line in lines), lines
    assert any("attn.v d=4 seed 0:" in line for line in lines), lines
    assert any("floor (head alone) seed 0:" in line for line in lines), lines
    done, total = lines[-1][1:].split("]")[0].split("/")
    assert done == total  # the last line closes the count


def test_units_label_names_targets_as_the_catalogue_does() -> None:
    from petl_analysis.cli._common import _units_label

    assert _units_label([f"blocks.{b}.attn.q" for b in range(12)]) == "attn.q"
    assert _units_label(["blocks.3.attn.q"]) == "blocks.3.attn.q"
    assert _units_label(["blocks.3.attn.q", "blocks.3.attn.v"]) == "blocks.3.attn.q,attn.v"
