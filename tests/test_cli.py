"""The command line: help, dry runs, and the bad-input matrix (one line, exit code 2, nothing written)."""

from __future__ import annotations

import json

import torch
from helpers import run_cli, synthetic_probe
from typer.testing import CliRunner

runner = CliRunner()


def _run(args: list[str], cwd) -> tuple[int, str]:
    return run_cli(args, cwd)


def test_help_lists_commands(tmp_path) -> None:
    code, out = _run(["--help"], tmp_path)
    assert code == 0
    for cmd in ("probe", "select", "plan", "train", "sweep", "report", "run", "demo", "info", "export-peft"):
        assert cmd in out


def test_info_prints_catalogue(tmp_path) -> None:
    code, out = _run(["info", "--weights", "random", "--targets", "blocks[0-1].attn.v"], tmp_path)
    assert code == 0 and "blocks.1.attn.v" in out and "blocks.2.attn.v" not in out


def test_train_dry_run_counts(tmp_path) -> None:
    code, out = _run(["train", "--method", "lora", "--targets", "attn.q,attn.v", "--rank", "4", "--dry-run"], tmp_path)
    assert code == 0 and "matches injected model: True" in out
    assert not (tmp_path / "run.json").exists()


def _write(path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def _bad_inputs(tmp_path) -> list[tuple[list[str], str]]:
    probe = synthetic_probe().to_dict()
    (tmp_path / "empty").mkdir()
    one = tmp_path / "one" / "a"
    one.mkdir(parents=True)
    from PIL import Image

    Image.new("L", (8, 8)).save(one / "x.png")
    bad = tmp_path / "bad"
    for c in ("a", "b"):
        (bad / c).mkdir(parents=True)
        Image.new("L", (8, 8)).save(bad / c / "ok.png")
    (bad / "b" / "broken.png").write_bytes(b"not a png")
    txt = tmp_path / "txt"
    for c in ("a", "b"):
        (txt / c).mkdir(parents=True)
        Image.new("L", (8, 8)).save(txt / c / "ok.png")
    (txt / "a" / "notes.csv").write_text("x")
    wrong_ckpt = tmp_path / "wrong.pt"
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, wrong_ckpt)
    evil = tmp_path / "evil.pt"
    torch.save({"x": torch.zeros(1), "o": _Opaque()}, evil)
    blocker = tmp_path / "a_file"  # a file where a directory is needed: unwritable even for root
    blocker.write_text("x")
    plans = tmp_path / "plans_in"
    plans.mkdir()
    from petl_analysis.models import ModelSpec, create_model
    from petl_analysis.plan import plan_for_budget
    from petl_analysis.select import rank_from_probe

    net = create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=10))
    plan = plan_for_budget(rank_from_probe(synthetic_probe()), net, 5000).to_dict()
    other_model_plan = {**plan, "model": {**plan["model"], "name": "vit_tiny_patch16_224"}}
    wrong_count_plan = {**plan, "trainable": {**plan["trainable"], "adapter": 1}}
    null_count_plan = {**plan, "trainable": {**plan["trainable"], "model_total": None}}
    model_total_plan = {
        **plan,
        "trainable": {**plan["trainable"], "model_total": plan["trainable"]["model_total"] + 1},
    }
    ranking = rank_from_probe(synthetic_probe()).save(tmp_path / "ranking.json")
    dry = ["train", "--dry-run"]
    cases = [
        (["info", "--model", "vit_nope_42"], "unknown model 'vit_nope_42'"),
        (
            ["info", "--model", "resnet18", "--weights", "random"],
            "is not supported: it has no flat list of attention+MLP",
        ),
        (
            ["info", "--model", "swin_tiny_patch4_window7_224", "--weights", "random"],
            "hierarchical (windowed, multi-stage) model); choose a plain ViT-family model such as vit_tiny_patch16_224",
        ),
        (
            ["info", "--model", "vit_tiny_patch16_224", "--weights", "random", "--img-size", "30"],
            "img_size 30 is not a multiple of patch_size 16; use img_size 16 or 32",
        ),
        (["info", "--weights", "random", "--img-size", "32", "--patch-size", "6"], "not a multiple of patch_size 6"),
        (
            ["info", "--weights", "random", "--in-chans", "2"],
            "ModelSpec.in_chans must be one of 1, 3, or unset for the model's default; got 2",
        ),
        (
            ["info", "--weights", "random", "--img-size", "0"],
            "ModelSpec.img_size must be an integer >= 1, or unset for the model's default; got 0",
        ),
        (
            [
                "probe",
                "-d",
                "digits",
                "--model",
                "vit_tiny_patch16_224",
                "--weights",
                "random",
                "--img-size",
                "40",
                "--out",
                "x4.json",
            ],
            "img_size 40 is not a multiple of patch_size 16",
        ),
        (
            ["sweep", "--ranking", str(ranking), "--dataset", "animals", "--methods", "linear", "--out", "w1.json"],
            "ranks targets on dataset 'digits', not 'animals'; drop --dataset to sweep on 'digits'",
        ),
        (
            dry
            + [
                "--method",
                "vpt",
                "--model",
                "beit_base_patch16_224",
                "--weights",
                "random",
                "--img-size",
                "32",
                "--patch-size",
                "8",
            ],
            "relative position bias tables are sized for a fixed number of tokens",
        ),
        (
            dry + ["--method", "vpt", "--model", "eva02_tiny_patch14_224", "--weights", "random", "--img-size", "28"],
            "use a ViT or DeiT with absolute position embeddings (e.g. vit_tiny_patch16_224), or a method that adds no",
        ),
        (
            [
                "train",
                "--plan",
                _write(plans / "null.json", null_count_plan),
                "--dataset",
                "digits",
                "--out",
                "r3.json",
            ],
            "Plan.trainable.model_total must be an integer >= 0; got None",
        ),
        (
            [
                "train",
                "--plan",
                _write(plans / "total.json", model_total_plan),
                "--dataset",
                "digits",
                "--out",
                "r4.json",
            ],
            f"plan field 'trainable.model_total' is {plan['trainable']['model_total'] + 1}, this model gives "
            f"{plan['trainable']['model_total']}",
        ),
        (
            [
                "train",
                "--plan",
                _write(plans / "sized.json", plan),
                "--weights",
                "random",
                "--img-size",
                "32",
                "--dataset",
                "digits",
                "--out",
                "r5.json",
            ],
            "plan field 'model.img_size' is null, the model given has 32; plan again for this model",
        ),
        (["info", "--weights", str(wrong_ckpt)], "the model expects (192, 64)"),
        (["info", "--weights", str(evil)], "cannot be loaded safely"),
        (["info", "--weights", str(tmp_path / "missing.safetensors")], "does not exist"),
        (["linear-probe", "--dataset", str(tmp_path / "nowhere")], "does not exist"),
        (["linear-probe", "--dataset", str(tmp_path / "empty")], "empty"),
        (["linear-probe", "--dataset", str(tmp_path / "one")], "at least 2 classes"),
        (["linear-probe", "--dataset", str(bad)], "broken.png"),
        (["linear-probe", "--dataset", str(txt)], "notes.csv"),
        (["linear-probe", "--dataset", "digits", "--shots", "500"], "class"),
        (["info", "--targets", "attn.nope"], "unknown target 'attn.nope'"),
        (dry + ["--method", "kadaptation", "--n", "5"], "valid n"),
        (dry + ["--method", "nope"], "unknown method 'nope'"),
        (["plan", "--ranking", str(ranking), "--budgets", "10", "--out", "p1"], "below the smallest valid"),
        (["plan", "--ranking", str(ranking), "--budgets", "-5", "--out", "p2"], "budget"),
        (
            ["plan", "--ranking", str(ranking), "--budgets", "0", "--out", "p3"],
            "--budgets: '0' is not a budget: a count must be a whole number of at least 1",
        ),
        (
            [
                "train",
                "--model",
                "petl_vit_tiny",
                "--plan",
                _write(plans / "other.json", other_model_plan),
                "--dataset",
                "digits",
                "--out",
                "r1.json",
            ],
            "made for model",
        ),
        (
            [
                "train",
                "--plan",
                _write(plans / "count.json", wrong_count_plan),
                "--dataset",
                "digits",
                "--out",
                "r2.json",
            ],
            "Plan.trainable.total_incl_head must be the sum of",
        ),
        (
            ["select", "--probe", _write(tmp_path / "v9.json", {**probe, "version": 9}), "--out", "s1.json"],
            "schema version 9 is not supported",
        ),
        (
            ["select", "--probe", _write(tmp_path / "plan_as_probe.json", plan), "--out", "s2.json"],
            "expected a probe_result artefact",
        ),
        (
            ["probe", "-d", "digits", "--threshold", "1.5", "--out", "x1.json"],
            "ProbeConfig.threshold must be a float in (0, 1]; got 1.5",
        ),
        (
            ["probe", "-d", "digits", "--threshold", "0", "--out", "x2.json"],
            "ProbeConfig.threshold must be a float in (0, 1]; got 0.0",
        ),
        (["probe", "-d", "digits", "--dims", "4,999999", "--targets", "attn.v", "--out", "x3.json"], "exceeds D="),
        (["linear-probe", "-d", "digits", "--device", "cuda:7"], "cuda"),
        (
            ["plan", "--ranking", str(ranking), "--budgets", "5k", "--out", str(blocker / "sub")],
            "cannot create output",
        ),
    ]
    if torch.cuda.is_available():
        cases = [c for c in cases if "cuda" not in c[0]]
    return cases


class _Opaque:
    pass


def test_bad_input_matrix(tmp_path) -> None:
    cases = _bad_inputs(tmp_path)
    assert len(cases) >= 20
    before = set(p.name for p in tmp_path.iterdir())
    for args, message in cases:
        code, out = _run(args, tmp_path)
        lines = [line for line in out.strip().splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        assert code == 2, (args, code, out)
        assert len(errors) == 1 and message in errors[0], (args, out)
    after = set(p.name for p in tmp_path.iterdir())
    assert after == before, f"bad input wrote files: {after - before}"


def test_probe_warns_on_the_console_when_every_d90_is_below_the_grid(tmp_path, monkeypatch) -> None:
    from helpers import below_grid_probe

    from petl_analysis.study import Study

    monkeypatch.setattr(Study, "probe", lambda *a, **k: below_grid_probe(all_below=True))  # the command's call
    code, out = _run(["probe", "-d", "digits", "--weights", "random", "--out", "p.json"], tmp_path)
    assert code == 0, out
    lines = out.splitlines()
    table_end = max(i for i, line in enumerate(lines) if line.startswith("└"))
    warning = [i for i, line in enumerate(lines) if line.startswith("warning: degenerate probe: every target")]
    assert warning and warning[0] > table_end, out
    monkeypatch.setattr(Study, "probe", lambda *a, **k: below_grid_probe(all_below=False))
    code, out = _run(["probe", "-d", "digits", "--weights", "random", "--out", "p.json"], tmp_path)
    assert code == 0 and "degenerate" not in out and "<=4" in out
    assert (
        "warning: full fine-tuning (88.0% validation) does not beat the head trained alone (90.0%): d90 is "
        "normalised by that gain" in " ".join(out.split())
    ), out
    monkeypatch.setattr(Study, "probe", lambda *a, **k: below_grid_probe(all_below=False, lp=0.5, ft=0.95))
    code, out = _run(["probe", "-d", "digits", "--weights", "random", "--out", "p.json"], tmp_path)
    assert code == 0 and "warning" not in out, out


def _json_of(path) -> dict:
    return json.loads(path.read_text())


def test_size_options_reach_every_artefact_and_sweep_takes_the_rankings_dataset(tmp_path) -> None:
    sizes = ["--weights", "random", "--img-size", "16", "--patch-size", "8"]
    fast = ["--seeds", "1", "--epochs", "1", "--threads", "1", "--device", "cpu"]
    code, out = _run(
        [
            "probe",
            *sizes,
            *fast,
            "--dataset",
            "animals",
            "--max-train",
            "40",
            "--targets",
            "attn.v",
            "--dims",
            "4",
            "--out",
            "probe.json",
        ],
        tmp_path,
    )
    assert code == 0, out
    # animals is 28x28 grayscale: shrunk for the model, and said so before the run
    assert (
        "note: dataset 'animals': 1x28x28 grayscale images -> 1x16x16 grayscale for the model (bilinear resize)" in out
    )
    assert _json_of(tmp_path / "probe.json")["input_conversion"] == {
        "source_channels": 1,
        "source_size": [28, 28],
        "model_channels": 1,
        "model_size": [16, 16],
        "skipped_images": [],
    }
    code, out = _run(["select", "--probe", "probe.json", "--proxies", "", "--out", "ranking.json"], tmp_path)
    assert code == 0, out
    code, out = _run(
        ["plan", "--ranking", "ranking.json", "--budgets", "3k", "--method", "lora", "--out", "plans"], tmp_path
    )
    assert code == 0, out
    code, out = _run(
        [
            "train",
            "--plan",
            "plans/plan_3000.json",
            "--weights",
            "random",
            "--dataset",
            "animals",
            "--shots",
            "2",
            *fast,
            "--out",
            "run.json",
        ],
        tmp_path,
    )
    assert code == 0, out
    # no --dataset: the sweep runs on the ranking's dataset (animals), not on the default digits
    code, out = _run(
        [
            "sweep",
            "--ranking",
            "ranking.json",
            *sizes,
            "--methods",
            "linear",
            "--shots",
            "2",
            *fast,
            "--out",
            "sweep.json",
        ],
        tmp_path,
    )
    assert code == 0, out
    for name in ("probe.json", "ranking.json", "plans/plan_3000.json", "run.json", "sweep.json"):
        model = _json_of(tmp_path / name)["model"]
        assert (model["img_size"], model["patch_size"]) == (16, 8), name
    assert _json_of(tmp_path / "sweep.json")["data"]["dataset"] == "animals"
    code, out = _run(["report", "sweep.json", "probe.json", "--out", "report"], tmp_path)
    assert code == 0, out
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| model input | **converted**: 1x28x28 grayscale images -> 1x16x16 grayscale for the model" in md


def test_colour_images_for_a_grayscale_model_are_announced_and_recorded(tmp_path) -> None:
    from PIL import Image

    for c, colour in (("red", (250, 10, 10)), ("blue", (10, 10, 250))):
        (tmp_path / "rgb" / c).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (24, 24), tuple(max(0, v - 7 * i) for v in colour)).save(
                tmp_path / "rgb" / c / f"{i}.png"
            )
    args = ["train", "--method", "linear", "--dataset", "rgb", "--seeds", "1", "--epochs", "1", "--threads", "1"]
    code, out = _run(args + ["--out", "gray.json"], tmp_path)
    assert code == 0, out
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: dataset 'rgb': 3x24x24 RGB images -> 1x16x16 grayscale for the model (RGB to BT.601 luma, "
        "bilinear resize); set in_chans / img_size (--in-chans / --img-size) to change this"
    ], out
    assert _json_of(tmp_path / "gray.json")["input_conversion"] == {
        "source_channels": 3,
        "source_size": [24, 24],
        "model_channels": 1,
        "model_size": [16, 16],
        "skipped_images": [],
    }
    # the user's choice: the model takes RGB at the images' size, so nothing is converted and nothing is said
    code, out = _run(
        args + ["--weights", "random", "--in-chans", "3", "--img-size", "24", "--out", "rgb.json"], tmp_path
    )
    assert code == 0 and "note:" not in out, out
    run = _json_of(tmp_path / "rgb.json")
    assert run["model"]["in_chans"] == 3 and run["input_conversion"]["model_channels"] == 3
    # an upscale loses nothing: recorded, not announced (the built-in digits are 8x8 for the 16x16 bundled model)
    code, out = _run(
        ["train", "--method", "linear", "-d", "digits", "--seeds", "1", "--epochs", "1", "--out", "digits.json"],
        tmp_path,
    )
    assert code == 0 and "note:" not in out, out
    assert _json_of(tmp_path / "digits.json")["input_conversion"]["source_size"] == [8, 8]
    # train saves its adapter by default, under our own file names
    assert "adapters -> digits.json.adapter/seed<N>/" in out
    assert (tmp_path / "digits.json.adapter" / "seed0" / "petl_adapter.json").is_file()


def test_sweep_trains_the_edited_plan_files_of_a_plans_folder(tmp_path) -> None:
    fast = ["--seeds", "1", "--epochs", "1", "--threads", "1", "--device", "cpu"]
    code, out = _run(
        [
            "select",
            "--from-model",
            "--proxies",
            "random",
            "--weights",
            "random",
            "--targets",
            "attn.v,attn.q",
            "-d",
            "digits",
            "--out",
            "ranking.json",
        ],
        tmp_path,
    )
    assert code == 0, out
    code, out = _run(
        [
            "plan",
            "--ranking",
            "ranking.json",
            "--budgets",
            "4k",
            "--weights",
            "random",
            "--out",
            "plans",
            "--export-peft",
        ],
        tmp_path,
    )
    assert code == 0, out
    peft_record = _json_of(tmp_path / "plans" / "plan_4000.peft.json")
    assert peft_record["approximate"] is True and peft_record["method"] == "LOKR"
    assert peft_record["schema"] == "peft-export"  # our file, written as an artefact
    assert f"peft export LOKR (approximate): plan {peft_record['trainable']['plan']:,} trainable" in out
    plan = _json_of(tmp_path / "plans" / "plan_4000.json")
    plan["config"]["init"] = "pevit"  # an edit that keeps the count
    (tmp_path / "plans" / "plan_4000.json").write_text(json.dumps(plan))
    code, out = _run(["sweep", "--plans", "plans", "--shots", "2", *fast, "--out", "sweep.json"], tmp_path)
    assert code == 0, out
    (point,) = _json_of(tmp_path / "sweep.json")["points"]
    assert point["plan"]["config"]["init"] == point["run"]["config"]["init"] == "pevit"
    assert point["plan"]["model"]["weights"] == "random"  # the plans' model
    assert "adapters (1 of 1 points, best seed by validation)" in out
    assert (tmp_path / point["adapter"] / "petl_adapter.json").is_file()
