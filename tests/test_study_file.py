"""Study files: --config (TOML or YAML) for probe, sweep, run, validate, train and plan, --print-config, the
resolved configuration written beside each artefact and read back, and one-line errors for bad files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import tomllib
from typer.testing import CliRunner

from petl_analysis.cli.main import app
from petl_analysis.errors import PetlError
from petl_analysis.studyfile import read_study_file, to_toml, write_study_file

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "study.toml"
runner = CliRunner()


def _invoke(args: list[str], cwd: Path):
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, args)
    finally:
        os.chdir(old)


def _resolved(args: list[str], cwd: Path) -> dict:
    """The --print-config output of a command, parsed (it must exit 0 and write nothing)."""
    before = set(cwd.iterdir())
    result = _invoke([*args, "--print-config"], cwd)
    assert result.exit_code == 0, result.output
    assert set(cwd.iterdir()) == before  # no work: nothing written
    return tomllib.loads(result.stdout)


def _file(tmp_path: Path, text: str, name: str = "study.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return name


# --------------------------------------------------------------------------------------------------- the file format


def test_read_study_file_names_nested_tables_with_dots(tmp_path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[probe]\nseeds = 2\n[probe.recipe]\nlr = 0.1\n[model]\nmodel = "x"\n')
    assert read_study_file(path) == {"probe": {"seeds": 2}, "probe.recipe": {"lr": 0.1}, "model": {"model": "x"}}


def test_yaml_reads_as_the_same_tables(tmp_path) -> None:
    (tmp_path / "s.yaml").write_text("probe:\n  seeds: 2\n  recipe:\n    lr: 0.1\n")
    assert read_study_file(tmp_path / "s.yaml") == {"probe": {"seeds": 2}, "probe.recipe": {"lr": 0.1}}


def test_to_toml_round_trips_through_tomllib(tmp_path) -> None:
    sections = {
        "a": {"s": 'quote " back \\ tab\t é', "i": -3, "f": 1e-05, "g": 3.0, "big": 1e22, "t": True, "l": ["x", "y"]},
        "a.b": {"n": [1, 2.5], "inf": math.inf, "unset": None},
        "empty": {"unset": None},
    }
    text = to_toml(sections, header="line one\nline two")
    assert text.startswith("# line one\n# line two\n") and "[empty]" not in text and "unset" not in text
    back = tomllib.loads(text)
    assert back["a"].pop("b") == {"n": [1, 2.5], "inf": math.inf} and back["a"] == sections["a"]
    write_study_file(tmp_path / "w.toml", sections)
    assert read_study_file(tmp_path / "w.toml")["a.b"] == {"n": [1, 2.5], "inf": math.inf}


@pytest.mark.parametrize(
    "text, message",
    [
        ("lr = 0.1\n", r"s.toml: lr = 0.1 is outside a table; put it under one"),
        ("[recipe\nlr = 1\n", r"s.toml: not valid TOML \(Expected ']'"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, text, message) -> None:
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(PetlError, match=message):
        read_study_file(tmp_path / "s.toml")
    with pytest.raises(PetlError, match="study file .*missing.toml' does not exist"):
        read_study_file(tmp_path / "missing.toml")


# --------------------------------------------------------------------------------------------------- precedence


def test_defaults_then_file_then_flags(tmp_path) -> None:
    study = _file(tmp_path, "[recipe]\nlr = 0.5\namp = false\n[sweep]\nseeds = 7\n[data]\nshots = 2\n")
    base = ["sweep", "-d", "digits"]
    default = _resolved(base, tmp_path)
    assert default["recipe"]["lr"] == 0.003 and default["recipe"]["amp"] == "auto" and default["sweep"]["seeds"] == 3
    from_file = _resolved([*base, "--config", study], tmp_path)
    assert from_file["recipe"]["lr"] == 0.5 and from_file["recipe"]["amp"] == "off"  # false: the flag amp was
    assert from_file["sweep"]["seeds"] == 7 and from_file["data"]["shots"] == 2
    flags = _resolved([*base, "--config", study, "--lr", "0.2", "--seeds", "4", "--shots", "3"], tmp_path)
    assert flags["recipe"]["lr"] == 0.2 and flags["sweep"]["seeds"] == 4 and flags["data"]["shots"] == 3
    assert flags["recipe"]["amp"] == "off"  # the file still sets what no flag gave
    # the whole recipe resolved, the command's own default recipe under it
    assert flags["recipe"]["epochs"] == 30 and flags["recipe"]["epoch_selection"] == "val"


def test_every_recipe_field_has_a_key_and_the_common_ones_a_flag(tmp_path) -> None:
    import dataclasses

    from petl_analysis.engine import Recipe

    flags = [
        "--optimizer", "nesterov", "--weight-decay", "0", "--warmup-epochs", "0.5", "--label-smoothing", "0.1",
        "--batch-size", "8", "--eval-batch-size", "16", "--augment", "--layer-decay", "0.75", "--momentum", "0.8",
        "--schedule", "constant", "--grad-clip", "0", "--head-lr", "0.02", "--patience", "2", "--max-steps", "5",
    ]  # fmt: skip
    recipe = _resolved(["train", "-d", "digits", *flags], tmp_path)["recipe"]
    assert recipe == {
        **recipe,
        "optimizer": "nesterov",
        "weight_decay": 0.0,  # a zero given is a value, not "unset"
        "warmup_epochs": 0.5,
        "label_smoothing": 0.1,
        "batch_size": 8,
        "eval_batch_size": 16,
        "augment": True,
        "layer_decay": 0.75,
        "momentum": 0.8,
        "schedule": "constant",
        "grad_clip": 0.0,
        "head_lr": 0.02,
        "patience": 2,
        "max_steps": 5,
    }
    assert set(recipe) == {f.name for f in dataclasses.fields(Recipe)}


def test_sweep_run_and_validate_set_batch_size_and_augmentation(tmp_path) -> None:
    study = _file(tmp_path, "[recipe]\nbatch_size = 8\naugment = true\n[validate]\nprobe = 'p.json'\n")
    for args in (["sweep", "-d", "digits"], ["run", "-d", "digits"], ["validate"]):
        recipe = _resolved([*args, "--config", study], tmp_path)["recipe"]
        assert recipe["batch_size"] == 8 and recipe["augment"] is True, args
    assert _resolved(["validate", "--probe", "p.json"], tmp_path)["recipe"]["epoch_selection"] == "last"


def test_run_reads_the_probe_and_sweep_tables_as_probe_and_sweep_do(tmp_path) -> None:
    study = _file(
        tmp_path,
        "[probe]\ntargets = ['attn.v']\ndims = [4, 16]\nprojection = 'dense'\nseeds = 1\n"
        "[probe.recipe]\nepochs = 2\nbatch_size = 16\n"
        "[sweep]\nbudgets = ['2k']\nmethods = ['lora']\nseeds = 2\n",
    )
    run = _resolved(["run", "-d", "digits", "--config", study], tmp_path)
    probe = _resolved(["probe", "-d", "digits", "--config", study], tmp_path)
    sweep = _resolved(["sweep", "-d", "digits", "--config", study], tmp_path)
    assert run["probe"] == {k: v for k, v in probe["probe"].items() if k != "out"}
    assert run["probe"]["dims"] == [4, 16] and run["probe"]["projection"] == "dense"  # keys run has no flag for
    assert run["probe"]["recipe"] == probe["probe"]["recipe"] and run["probe"]["recipe"]["batch_size"] == 16
    assert run["sweep"]["budgets"] == sweep["sweep"]["budgets"] == "2k" and run["sweep"]["seeds"] == 2
    # a flag of run still wins over the file
    assert _resolved(["run", "-d", "digits", "--config", study, "--probe-seeds", "3"], tmp_path)["probe"]["seeds"] == 3


# --------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "text, message",
    [
        ("[recipe]\nlr = 'abc'\n", "error: study.toml: [recipe] lr must be a float > 0; got 'abc'"),
        ("[recipe]\nlr = -1\n", "error: study.toml: [recipe] lr must be a float > 0; got -1"),
        ("[recipe]\nlrr = 0.1\n", "error: study.toml: unknown key [recipe] lrr (did you mean lr?); expected one of:"),
        ("[recipes]\nlr = 0.1\n", "error: study.toml: unknown section [recipes]; expected one of: [data],"),
        (
            "[data]\nshots = 'five'\n",
            "error: study.toml: [data] shots must be an integer, or unset for its default; got 'five'",
        ),
        ("[sweep]\nhead_in_budget = 1\n", "error: study.toml: [sweep] head_in_budget must be true or false; got 1"),
        ("[probe.recipe]\noptimizer = 'adam9'\n", "optimizer must be adamw, sgd or another optimizer of timm"),
    ],
)
def test_bad_study_files_fail_in_one_line_before_any_work(tmp_path, text, message) -> None:
    study = _file(tmp_path, text)
    result = _invoke(["run", "-d", "digits", "--config", study, "--out", "out"], tmp_path)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]


def test_another_commands_table_is_skipped_and_unused_keys_are_noted(tmp_path) -> None:
    study = _file(tmp_path, "[sweep]\nseeds = 'not read by probe'\n[data]\nmax_train = 30\n")
    assert "seeds" not in _resolved(["probe", "-d", "digits", "--config", study], tmp_path).get("sweep", {})
    result = _invoke(["sweep", "-d", "digits", "--config", "study.toml", "--print-config"], tmp_path)
    assert result.exit_code == 2 and "[sweep] seeds must be an integer" in result.output  # sweep reads it
    study = _file(tmp_path, "[data]\nmax_train = 30\n")
    result = _invoke(["train", "-d", "digits", "--method", "linear", "--config", study, "--print-config"], tmp_path)
    assert result.exit_code == 0 and "note: study.toml: train does not use [data] max_train" in result.output


# --------------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("command", ["probe", "sweep", "run", "train", "validate", "plan"])
def test_the_example_study_file_loads_and_its_resolution_reads_back(tmp_path, command) -> None:
    extra = {"validate": ["--probe", "p.json"], "plan": ["--ranking", "r.json"]}.get(command, [])
    first = _invoke([command, "--config", str(EXAMPLE), *extra, "--print-config"], tmp_path)
    assert first.exit_code == 0, first.output
    if command in ("probe", "sweep", "run"):
        assert "does not use" not in first.output  # every key of its tables is one it reads
    (tmp_path / "resolved.toml").write_text(first.stdout)
    again = _invoke([command, "--config", "resolved.toml", "--print-config"], tmp_path)
    assert again.exit_code == 0 and again.stdout == first.stdout
    resolved = tomllib.loads(first.stdout)
    if command != "validate":  # validate's model and data are its probe's
        assert resolved["model"]["model"] == "petl_vit_tiny"
    if command == "run":
        assert resolved["probe"]["targets"] == ["attn.q", "attn.v", "mlp.fc1"]
        assert resolved["probe"]["recipe"]["epochs"] == 2 and resolved["recipe"]["label_smoothing"] == 0.1


def test_yaml_and_toml_study_files_resolve_alike(tmp_path) -> None:
    (tmp_path / "s.yaml").write_text("recipe:\n  lr: 0.5\n  optimizer: sgd\nsweep:\n  methods: [lora, linear]\n")
    (tmp_path / "s.toml").write_text("[recipe]\nlr = 0.5\noptimizer = 'sgd'\n[sweep]\nmethods = 'lora,linear'\n")
    yaml = _resolved(["sweep", "-d", "digits", "--config", "s.yaml"], tmp_path)
    assert yaml == _resolved(["sweep", "-d", "digits", "--config", "s.toml"], tmp_path)
    assert yaml["recipe"]["optimizer"] == "sgd" and yaml["sweep"]["methods"] == "lora,linear"


def test_train_writes_its_resolved_configuration_and_it_reproduces_the_run(tmp_path, single_thread) -> None:
    study = _file(
        tmp_path,
        "[data]\ndataset = 'digits'\nshots = 1\n[recipe]\nepochs = 1\nmax_steps = 1\nlabel_smoothing = 0.1\n"
        "[train]\nmethod = 'linear'\nseeds = 1\nout = 'r.json'\n[execution]\ndevice = 'cpu'\n",
    )
    result = _invoke(["train", "--config", study, "--lr", "0.01"], tmp_path)
    assert result.exit_code == 0, result.output
    written = tmp_path / "r.json.config.toml"
    resolved = tomllib.loads(written.read_text())
    assert resolved["recipe"]["lr"] == 0.01 and resolved["recipe"]["label_smoothing"] == 0.1
    assert resolved["train"]["out"] == "r.json" and resolved["data"]["dataset"] == "digits"
    again = _invoke(["train", "--config", written.name, "--print-config"], tmp_path)
    assert again.exit_code == 0 and again.stdout == written.read_text()
    from petl_analysis.train import RunResult

    first = RunResult.load(tmp_path / "r.json")
    assert first.recipe.label_smoothing == 0.1 and first.recipe.lr == 0.01
    (tmp_path / "r.json").unlink()
    assert _invoke(["train", "--config", written.name, "--no-adapter"], tmp_path).exit_code == 0
    assert RunResult.load(tmp_path / "r.json").seeds[0].test_acc == first.seeds[0].test_acc


def test_the_guide_shows_the_example_file_as_it_is() -> None:
    guide = (EXAMPLE.parents[1] / "docs" / "guides" / "study-file.md").read_text()
    shown = guide.split("```toml\n", 1)[1].split("```", 1)[0]
    assert shown == EXAMPLE.read_text()


def test_sweep_caps_its_training_set_as_the_probe_does(tmp_path) -> None:
    # A study judges its plans on as many training images as its probe and its oracle used (--max-train).
    resolved = _resolved(
        ["sweep", "-d", "animals", "--shots", "0", "--max-train", "300", "--split-part", "B"], tmp_path
    )
    assert resolved["data"]["max_train"] == 300 and resolved["data"]["split_part"] == "B"
