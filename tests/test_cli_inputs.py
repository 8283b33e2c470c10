"""What an artefact records is what the next command uses: a plan's dataset, a ranking's model, dataset and
--skip-bad-images; a command given another one refuses it in one line (issue 28, items 7 and 8)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import run_cli, synthetic_probe

from petl_analysis.data import SplitSpec
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec
from petl_analysis.plan import Plan
from petl_analysis.select import rank_from_probe
from petl_analysis.task import DataSpec

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--seeds", "1", "--epochs", "1", "--max-steps", "1", "--threads", "1", "--device", "cpu"]

pytestmark = pytest.mark.usefixtures("single_thread")


def _run(args: list[str], cwd) -> tuple[int, str]:
    return run_cli(args, cwd)


def _one_error(out: str) -> str:
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in out, out
    return " ".join(" ".join(out[out.index("error:") :].split()).split())


def _ranking(tmp_path, name="ranking.json", **data) -> str:
    """A ranking of the bundled ViT (random weights) on ``data`` (default: digits)."""
    ranking = rank_from_probe(synthetic_probe())
    ranking = dataclasses.replace(ranking, data=DataSpec(**{"dataset": "digits", "split": SplitSpec(), **data}))
    return str(ranking.save(tmp_path / name))


def _json(path) -> dict:
    return json.loads(Path(path).read_text())


# ------------------------------------------------------------------------------------------- a plan's dataset (7)


def test_plans_record_their_dataset_and_sweep_plans_trains_on_it_or_refuses_another(tmp_path) -> None:
    ranking = _ranking(tmp_path, dataset="animals")
    code, out = _run(["plan", "--ranking", ranking, "--budgets", "3k", "--method", "lora", "--out", "plans"], tmp_path)
    assert code == 0, out
    assert _json(tmp_path / "plans" / "plan_3000.json")["dataset"] == "animals"
    code, out = _run(["sweep", "--plans", "plans", "--dataset", "digits", *FAST, "--out", "refused.json"], tmp_path)
    assert code == 2 and "made for dataset 'animals', not 'digits'" in _one_error(out)
    assert not (tmp_path / "refused.json").exists()
    code, out = _run(["sweep", "--plans", "plans", "--shots", "1", *FAST, "--out", "sweep.json"], tmp_path)
    assert code == 0, out
    assert _json(tmp_path / "sweep.json")["data"]["dataset"] == "animals"  # not the default digits
    # train --plan likewise
    plan = ["train", "--plan", "plans/plan_3000.json", "--shots", "1", *FAST]
    code, out = _run([*plan, "--dataset", "digits", "--out", "refused.json"], tmp_path)
    assert code == 2 and "--plan 'plans/plan_3000.json': made for dataset 'animals', not 'digits'" in _one_error(out)
    code, out = _run([*plan, "--out", "run.json"], tmp_path)
    assert code == 0, out
    assert _json(tmp_path / "run.json")["data"]["dataset"] == "animals"
    assert _json(tmp_path / "run.json")["model"]["weights"] == "random"  # the plan's weights, not the CLI default


def test_a_committed_plan_of_version_1_loads_migrated_and_its_file_is_unchanged(tmp_path) -> None:
    # the demo's plans as committed before plans recorded their dataset (kept as a fixture)
    committed = ROOT / "tests" / "data" / "legacy_plans_v1" / "plan_linear.json"
    before = committed.read_bytes()
    assert json.loads(before)["version"] == 1 and "dataset" not in json.loads(before)
    plan = Plan.load(committed)
    assert plan.dataset is None and plan.method == "linear"
    assert committed.read_bytes() == before
    assert Plan.from_dict(plan.to_dict()) == plan  # saved again, it is the current version
    assert plan.to_dict()["version"] == Plan.VERSION == 2
    # a version-1 folder does not say which dataset it is for: the sweep asks instead of guessing digits
    shutil.copytree(committed.parent, tmp_path / "plans")
    code, out = _run(["sweep", "--plans", "plans", *FAST, "--out", "sweep.json"], tmp_path)
    message = "no dataset recorded (plan files of version 1); give it with --dataset"
    assert code == 2 and message in _one_error(out)


# -------------------------------------------------------------------------------------- a ranking's model (7, 8)


def test_plan_refuses_a_model_or_dataset_other_than_the_rankings(tmp_path) -> None:
    ranking = _ranking(tmp_path)  # petl_vit_tiny, random weights, digits
    cases = [
        (
            ["--model", "vit_tiny_patch16_224"],
            "was made on model petl_vit_tiny (weights=random), not vit_tiny_patch16_224",
        ),
        (
            ["--weights", "default"],
            "was made on model petl_vit_tiny (weights=random), not petl_vit_tiny (weights=default)",
        ),
        (["--img-size", "32"], "not petl_vit_tiny (weights=random, img_size=32)"),
        (
            ["--dataset", "animals"],
            "ranks targets on dataset 'digits', not 'animals'; drop --dataset to plan on 'digits'",
        ),
    ]
    for extra, message in cases:
        code, out = _run(["plan", "--ranking", ranking, "--budgets", "3k", *extra, "--out", "plans"], tmp_path)
        assert code == 2 and message in _one_error(out), (extra, out)
        assert not (tmp_path / "plans").exists()
    # the ranking's own model and dataset, named or not, are planned for
    code, out = _run(
        [
            "plan",
            "--ranking",
            ranking,
            "--budgets",
            "3k",
            "--model",
            "petl_vit_tiny",
            "--weights",
            "random",
            "--dataset",
            "digits",
            "--out",
            "plans",
        ],
        tmp_path,
    )
    assert code == 0, out
    assert _json(tmp_path / "plans" / "plan_3000.json")["model"]["weights"] == "random"


def test_sweep_plans_from_a_ranking_trains_the_rankings_model_and_refuses_another(tmp_path) -> None:
    sized = ModelSpec("petl_vit_tiny", weights="random", img_size=32, patch_size=8)
    ranking = dataclasses.replace(rank_from_probe(synthetic_probe()), model=sized)
    ranking.save(tmp_path / "ranking.json")
    code, out = _run(
        [
            "sweep",
            "--ranking",
            "ranking.json",
            "--weights",
            "default",
            "--methods",
            "linear",
            *FAST,
            "--out",
            "refused.json",
        ],
        tmp_path,
    )
    assert code == 2 and "not petl_vit_tiny (weights=default, img_size=32, patch_size=8)" in _one_error(out)
    code, out = _run(
        ["sweep", "--ranking", "ranking.json", "--methods", "linear", "--shots", "2", *FAST, "--out", "sweep.json"],
        tmp_path,
    )
    assert code == 0, out
    model = _json(tmp_path / "sweep.json")["model"]
    assert (model["weights"], model["img_size"], model["patch_size"]) == ("random", 32, 8)  # not the bundled defaults


def test_report_refuses_a_probe_and_a_sweep_of_different_models(tmp_path) -> None:
    from petl_analysis.report import write_report
    from petl_analysis.sweep import SweepResult

    sweep = SweepResult.load(ROOT / "reports" / "demo" / "digits" / "sweep.json")  # the bundled weights
    probe = synthetic_probe()  # random weights
    with pytest.raises(
        PetlError,
        match=r"the probe was made on model petl_vit_tiny \(weights=random\), not "
        r"petl_vit_tiny \(weights=default\)",
    ):
        write_report(sweep, probe, tmp_path / "report")
    assert not (tmp_path / "report").exists()
    probe.model = sweep.model
    write_report(sweep, probe, tmp_path / "report", dpi=30)


# ------------------------------------------------------------------------------- --skip-bad-images carried (8)


def _folder_with_a_broken_image(root: Path) -> Path:
    from PIL import Image

    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(8):
            Image.new("L", (8, 8), 30 * i + (100 if c == "b" else 0)).save(root / c / f"{i}.png")
    (root / "b" / "broken.png").write_bytes(b"not a png")
    return root


def test_plan_and_sweep_take_skip_bad_images_from_the_ranking(tmp_path) -> None:
    folder = _folder_with_a_broken_image(tmp_path / "imgs")
    ranking = _ranking(tmp_path, dataset=str(folder), skip_bad_images=True)
    code, out = _run(["plan", "--ranking", ranking, "--budgets", "3k", "--method", "lora", "--out", "plans"], tmp_path)
    assert code == 0, out
    assert "skipped 1 of 17 images" in out and "b/broken.png" in out
    code, out = _run(
        ["sweep", "--ranking", ranking, "--methods", "linear", "--shots", "2", *FAST, "--out", "sweep.json"], tmp_path
    )
    assert code == 0, out
    assert _json(tmp_path / "sweep.json")["data"]["skip_bad_images"] is True
    # without the ranking's word, the broken file still stops the command
    code, out = _run(
        [
            "plan",
            "--ranking",
            _ranking(tmp_path, "r2.json", dataset=str(folder)),
            "--budgets",
            "3k",
            "--out",
            "plans2",
        ],
        tmp_path,
    )
    assert code == 2 and "broken.png" in _one_error(out)


# ------------------------------------------------------------------------------------ output paths, checked first


def _unwritable_system_dir() -> str | None:
    """/sys where even root cannot create a file there (``os.access`` says yes to root), else None."""
    import tempfile

    try:
        fd, path = tempfile.mkstemp(dir="/sys")
    except OSError:
        return "/sys"
    os.close(fd)
    os.unlink(path)
    return None


COMMANDS_WITH_A_FILE_OUT = [
    ["train", "--method", "linear", "-d", "digits", *FAST],
    ["probe", "-d", "digits", "--weights", "random", "--targets", "attn.v", "--dims", "4", "--max-train", "50", *FAST],
    ["select", "--from-model", "--proxies", "random", "-d", "digits", "--weights", "random", "--targets", "attn.v"],
    ["sweep", "--methods", "linear", "--weights", "random", *FAST],
    ["validate", "--probe", str(ROOT / "reports" / "demo" / "digits" / "probe.json"), *FAST],
]
COMMANDS_WITH_A_FOLDER_OUT = [
    ["plan", "--ranking", str(ROOT / "reports" / "demo" / "digits" / "ranking.json"), "--budgets", "4k"],
    ["report", str(ROOT / "reports" / "demo" / "digits" / "sweep.json")],
    [
        "run",
        "-d",
        "digits",
        "--weights",
        "random",
        "--targets",
        "attn.v",
        "--methods",
        "linear",
        "--seeds",
        "1",
        "--epochs",
        "1",
    ],
]


@pytest.mark.parametrize("args", COMMANDS_WITH_A_FILE_OUT + COMMANDS_WITH_A_FOLDER_OUT, ids=lambda a: a[0])
def test_an_output_path_that_cannot_be_written_is_one_line_before_any_work(args, tmp_path) -> None:
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    if args in COMMANDS_WITH_A_FILE_OUT:
        bad = {
            "a_dir": "is a directory; expected a file name",
            "a_file/out.json": "'a_file' is a file, not a directory",
        }
    else:
        bad = {"a_file": "is a file; expected a directory", "a_file/sub": "'a_file' is a file, not a directory"}
    system = _unwritable_system_dir()
    if system is not None:
        bad[f"{system}/petl-out"] = f"directory '{system}' is not writable"
    before = sorted(p.name for p in tmp_path.iterdir())
    for out, message in bad.items():
        code, text = _run([*args, "--out", out], tmp_path)
        assert code == 2 and message in _one_error(text), (out, text)
        assert "seed 0" not in text and "[1/" not in text, text  # no trial, no training ran
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ----------------------------------------------------------------------------------------------------- no seeds


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "-d", "digits", "--methods", "linear", "--out", "sweep.json"],
        ["run", "-d", "digits", "--methods", "linear", "--out", "petl-run"],
        ["linear-probe", "-d", "digits"],
    ],
    ids=lambda a: a[0],
)
def test_zero_seeds_is_refused_before_anything_is_written(args, tmp_path) -> None:
    code, out = _run([*args, "--weights", "random", "--seeds", "0"], tmp_path)
    assert code == 2 and "the number of seeds (seeds) must be an integer >= 1; got 0" in _one_error(out)
    assert "[1/" not in out and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- bad entries of a folder, all at once


def test_a_non_image_file_and_a_broken_image_are_reported_together_or_skipped_together(tmp_path) -> None:
    import warnings

    from petl_analysis.data import BadImagesWarning, load_image_folder, open_dataset

    folder = _folder_with_a_broken_image(tmp_path / "imgs")
    (folder / "a" / "notes.txt").write_text("not an image")
    for load in (open_dataset, load_image_folder):
        with pytest.raises(PetlError, match=r"2 of 18 images .* cannot be read as images: a/notes.txt, b/broken.png"):
            load(str(folder))
        with pytest.warns(BadImagesWarning, match="skipped 2 of 18 images .*: a/notes.txt, b/broken.png"):
            ds = load(str(folder), skip_bad_images=True)
        assert len(ds) == 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImagesWarning)
        assert [Path(p).name for p in open_dataset(str(folder), skip_bad_images=True).skipped] == [
            "notes.txt",
            "broken.png",
        ]
    # through the CLI, and into the artefact and the report
    code, out = _run(
        [
            "sweep",
            "--dataset",
            "imgs",
            "--skip-bad-images",
            "--methods",
            "linear",
            "--weights",
            "random",
            "--shots",
            "2",
            *FAST,
            "--out",
            "sweep.json",
        ],
        tmp_path,
    )
    assert code == 0, out
    assert len(_json(tmp_path / "sweep.json")["input_conversion"]["skipped_images"]) == 2
    code, out = _run(["report", "sweep.json", "--out", "report"], tmp_path)
    assert code == 0, out
    md = (tmp_path / "report" / "report.md").read_text()
    assert (
        "| skipped images | 2 file(s) of the folder could not be read as images and were left out "
        "(--skip-bad-images): `a/notes.txt`, `b/broken.png` |"
    ) in md


# --------------------------------------------------------------------------------- no "beat" within seed spread


def _point(variant: str, correct: list[int], n_test: int = 304):
    from petl_analysis.report.tables import PointRow

    accs = [c / n_test for c in correct]
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / len(accs)) ** 0.5
    return PointRow(
        label=f"kadaptation@{variant}",
        method="kadaptation",
        variant=variant,
        name=variant,
        budget=4000,
        params=4362,
        params_excl_head=4232,
        adapter=4232,
        shared=0,
        head=130,
        bias_norm=0,
        backbone=0,
        model_total=200_000,
        acc=mean,
        std=std,
        last_acc=mean,
        seed_accs=accs,
    )


def test_two_seeds_three_test_images_apart_are_not_a_beat() -> None:
    from petl_analysis.report.verdict import outcome, selection_rows, selection_verdict

    # the case: 76.32 +/- 0.33 vs 75.33 +/- 0.33 % on 304 test images, 2 seeds each (3 images apart)
    selected, fixed = _point("selected", [231, 233]), _point("fixed", [228, 230])
    assert (round(100 * selected.acc, 2), round(100 * fixed.acc, 2)) == (76.32, 75.33)
    assert outcome(selected, fixed) == "level"
    text = " ".join(selection_verdict(selection_rows([selected, fixed], {})))
    assert "Selection beat" not in text
    assert "Selection and fixed q,v are not distinguishable within seed spread at any budget" in text
    assert "selected is not distinguishable within seed spread from fixed q,v" in text
    # a gap well outside the seeds' spread is still a win
    assert outcome(_point("selected", [250, 251, 252]), _point("fixed", [228, 229, 230])) == "ahead"
    assert outcome(_point("selected", [228, 229, 230]), _point("fixed", [250, 251, 252])) == "behind"


# ------------------------------------------------------------------------ the console says what the report says


@pytest.mark.parametrize("command", [["run", "-d", "digits", "--weights", "random"], ["demo"]], ids=lambda c: c[0])
def test_run_and_demo_print_the_unresolved_gain_warning(command, tmp_path, monkeypatch) -> None:
    from helpers import below_grid_probe

    import petl_analysis.pipeline as pipeline
    from petl_analysis.sweep import SweepResult

    sweep = SweepResult.load(ROOT / "reports" / "demo" / "digits" / "sweep.json")
    probe = below_grid_probe(all_below=False)  # full fine-tuning (88%) below the head alone (90%)

    def fake_pipeline(study, config, commands=()):
        return pipeline.PipelineResult(study.out_dir, probe, None, [], sweep, None, {"probe": 1.0})

    monkeypatch.setattr(pipeline, "run_study", fake_pipeline)  # what run and demo call per dataset
    code, out = _run([*command, "--out", "out"], tmp_path)
    assert code == 0, out
    text = " ".join(out.split())
    assert (
        "warning: digits probe: full fine-tuning (88.0% validation) does not beat the head trained alone (90.0%): "
        "d90 is normalised by that gain, so the d90s do not order the targets"
    ) in text, out


# ------------------------------------------------------------------------------- no correlation table without order


def _probe_with(targets: int, reached: bool):
    probe = synthetic_probe()
    probe.targets = probe.targets[:targets]
    if not reached:
        for t in probe.targets:
            t.d90 = dataclasses.replace(
                t.d90, reached=False, value=None, ci_low=None, ci_high=float("inf"), reached_fraction=0.0
            )
    return probe


@pytest.mark.parametrize(
    "targets, reached, why",
    [
        (
            4,
            False,
            "no rank correlation with d90: no target reached the d90 threshold, so the d90 ranking has no order",
        ),
        (2, True, "no rank correlation: the ranking has 2 target(s), and a rank correlation needs at least 3"),
    ],
)
def test_select_says_why_there_is_no_proxy_correlation(targets, reached, why, tmp_path) -> None:
    _probe_with(targets, reached).save(tmp_path / "probe.json")
    code, out = _run(["select", "--probe", "probe.json", "--proxies", "random", "--out", "ranking.json"], tmp_path)
    assert code == 0, out
    assert f"warning: {why}" in " ".join(out.split()) and "rank correlation with the" not in out, out
    assert _json(tmp_path / "ranking.json")["details"]["proxies_caveat"].startswith(why)
    # with an order to compare, the table is printed
    _probe_with(4, True).save(tmp_path / "probe.json")
    code, out = _run(["select", "--probe", "probe.json", "--proxies", "random", "--out", "ranking.json"], tmp_path)
    assert code == 0 and "rank correlation with the d90 ranking" in out and "warning" not in out, out
