"""The sweep compares like with like: every baseline trains as long as the methods from the same head, and plans
that coincide are one result, reported as such."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from petl_analysis.data import SplitSpec
from petl_analysis.engine import Recipe, loss_still_falling
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec
from petl_analysis.report.tables import point_rows
from petl_analysis.report.verdict import outcome, selection_rows, selection_verdict
from petl_analysis.select import RankedTarget, Ranking
from petl_analysis.sweep import run_sweep
from petl_analysis.task import DataSpec
from petl_analysis.train import train_one_seed
from petl_analysis.tuners import config_from_dict

MODEL = ModelSpec("petl_vit_tiny", weights="random")
DATA = DataSpec("digits", SplitSpec(shots=5))
RECIPE = Recipe(epochs=3, batch_size=64, lr=1e-2)


pytestmark = pytest.mark.usefixtures("single_thread")


def test_linear_trains_as_long_as_the_methods_from_the_same_head():
    linear, counts = train_one_seed(MODEL, DATA, config_from_dict({"method": "linear"}), RECIPE, 0)
    bitfit, _ = train_one_seed(MODEL, DATA, config_from_dict({"method": "bitfit"}), RECIPE, 0)
    assert linear.epochs_run == bitfit.epochs_run == RECIPE.epochs
    assert len(linear.train_loss) == len(bitfit.train_loss) == RECIPE.epochs
    assert counts["total_incl_head"] == counts["head"] == 64 * 10 + 10
    # Both start from the same linear-probe head: the first epoch's loss is already that of a trained head.
    assert linear.train_loss[0] == pytest.approx(bitfit.train_loss[0], rel=0.5)


def test_loss_still_falling():
    assert loss_still_falling([1.0 - 0.09 * i for i in range(10)])  # steady descent to the last epoch
    assert not loss_still_falling([2.0, 1.0, 0.6, 0.5, 0.45, 0.42, 0.41, 0.405, 0.404, 0.404])
    # a small loss creeping down by a few percent of itself has stopped: 0.0798 -> 0.0767 after 2.0 -> 0.08
    assert not loss_still_falling([2.0, 0.9, 0.4, 0.2, 0.12, 0.09, 0.0798, 0.0784, 0.0774, 0.0767])
    assert not loss_still_falling([1.0]) and not loss_still_falling([0.5, 0.6])


def _ranking(targets: list[str]) -> Ranking:
    entries = [
        RankedTarget(target=t, units=[f"blocks.{b}.{t}" for b in range(4)], D=4 * 4160, rank=i + 1, score=None)
        for i, t in enumerate(targets)
    ]
    return Ranking(selector="d90", model=MODEL, data=DATA, entries=entries)


def test_plans_that_coincide_are_trained_once_and_reported_as_the_same(tmp_path):
    # Two targets and a budget large enough for both: the selected and the worst-ranked plans adapt the same units.
    ranking = _ranking(["attn.v", "attn.q"])
    result = run_sweep(
        MODEL, DATA, [50_000], ["kadaptation"], ranking, seeds=1, recipe=RECIPE, out=tmp_path / "sweep.json"
    )
    by_label = {p.label: p for p in result.points}
    selected, worst = by_label["kadaptation@selected"], by_label["kadaptation@worst"]
    assert selected.run.config == worst.run.config
    assert worst.same_as == "kadaptation@selected@50000" and selected.same_as is None
    log = (tmp_path / "sweep.json.trials.jsonl").read_text().splitlines()
    assert len(log) == len({json.dumps(p.run.config, sort_keys=True) for p in result.points}) < len(result.points)
    rows = point_rows(result, m0=1e5)
    sel_row = next(r for r in rows if r.label == "kadaptation@selected")
    worst_row = next(r for r in rows if r.label == "kadaptation@worst")
    assert outcome(sel_row, worst_row) == "same"
    (row,) = selection_rows(rows, {})
    assert row.vs_worst == "same"
    text = " ".join(selection_verdict([row]))
    assert "the same configuration as (trained once) worst-ranked" in text
    assert "Selection chose exactly the worst-ranked configuration at every budget" in text


@pytest.mark.parametrize("study", ["demo/animals", "demo/digits", "dinov2/animals"])
def test_committed_sweep_resumes_from_its_plans_folder_without_training(study, tmp_path, monkeypatch):
    # Every point of reports/<study>/sweep.json is a plan file of its plans folder, and the trials rebuilt from those
    # files are all in the committed log: the sweep re-derives the artefact without training anything. (The DINOv2
    # glyph study's data is a folder the study script writes to /tmp; its key is that path.)
    from petl_analysis.plan import read_plans
    from petl_analysis.sweep import SweepResult, sweep_plans
    from petl_analysis.sweep import sweep as sweep_module

    root = Path(__file__).resolve().parents[1] / "reports" / study
    committed = SweepResult.load(root / "sweep.json")
    plans = read_plans(root / ("plans" if study.startswith("demo") else "sweep.json.plans"))
    assert [p.plan for p in committed.points] == plans  # typed, in study order, one per point

    def no_training(trial):
        raise AssertionError(f"trial {trial.key} is not in the committed log")

    monkeypatch.setattr(sweep_module, "sweep_trial", no_training)
    shutil.copy(root / "sweep.json.trials.jsonl", tmp_path / "sweep.json.trials.jsonl")
    again = sweep_plans(
        plans,
        committed.data,
        seeds=len(committed.seeds),
        recipe=committed.recipe,
        method_lr=committed.method_lr,
        out=tmp_path / "sweep.json",
        n_jobs=2,
    )  # the studies ran two jobs on two cores: one thread each
    assert [(p.label, p.budget, p.same_as, p.run.test_acc_mean) for p in again.points] == [
        (p.label, p.budget, p.same_as, p.run.test_acc_mean) for p in committed.points
    ]


def test_an_edited_plan_file_is_what_the_sweep_trains(tmp_path):
    from petl_analysis.plan import read_plans
    from petl_analysis.sweep import sweep_plans

    result = run_sweep(
        MODEL,
        DATA,
        [4_000],
        ["linear", "kadaptation"],
        _ranking(["attn.v", "attn.q"]),
        seeds=1,
        recipe=RECIPE,
        out=tmp_path / "sweep.json",
        plans_dir=tmp_path / "plans",
    )
    assert result.plans_source == str(tmp_path / "plans")
    path = tmp_path / "plans" / "plan_4000_kadaptation-selected.json"
    plan = json.loads(path.read_text())
    assert plan["config"]["init"] == "default"
    plan["config"]["init"] = "pevit"  # an edit that keeps the count: the official zero-zero init
    path.write_text(json.dumps(plan))
    again = sweep_plans(read_plans(tmp_path / "plans"), DATA, seeds=1, recipe=RECIPE, out=tmp_path / "sweep.json")
    edited = next(p for p in again.points if p.label == "kadaptation@selected")
    assert edited.plan.config["init"] == edited.run.config["init"] == "pevit"
    log = [json.loads(line) for line in (tmp_path / "sweep.json.trials.jsonl").read_text().splitlines()]
    trained_before = {json.dumps(p.run.config, sort_keys=True) for p in result.points}
    assert len(log) == len(trained_before) + 1  # only the edited plan trained again
    # rerunning the planning keeps the edited file: what the folder holds is what is trained
    third = run_sweep(
        MODEL,
        DATA,
        [4_000],
        ["linear", "kadaptation"],
        _ranking(["attn.v", "attn.q"]),
        seeds=1,
        recipe=RECIPE,
        out=tmp_path / "sweep.json",
        plans_dir=tmp_path / "plans",
    )
    assert next(p for p in third.points if p.label == "kadaptation@selected").run.config["init"] == "pevit"


def test_a_method_at_its_own_learning_rate_changes_only_its_own_trials(tmp_path):
    # Full fine-tuning of a pretrained backbone needs its own rate (DINOv2-S diverges at the adapters' 3e-3): the
    # named method's trials train at it, its head at the recipe's; the other methods' trials and keys are untouched.
    from petl_analysis.report import write_report
    from petl_analysis.sweep import SweepResult

    recipe = Recipe(epochs=1, batch_size=64, lr=1e-2, head_lr=5e-3)
    data = DataSpec("digits", SplitSpec(shots=2))
    plain = run_sweep(MODEL, data, None, ["linear", "bitfit"], seeds=1, recipe=recipe, out=tmp_path / "a.json")
    own = run_sweep(
        MODEL,
        data,
        None,
        ["linear", "bitfit", "full"],
        seeds=1,
        recipe=recipe,
        method_lr={"full": 1e-4},
        out=tmp_path / "b.json",
    )
    keys = {
        m: {json.loads(line)["key"] for line in (tmp_path / f"{m}.json.trials.jsonl").read_text().splitlines()}
        for m in "ab"
    }
    assert keys["a"] < keys["b"] and len(keys["b"] - keys["a"]) == 1  # only the full fine-tuning trial is new
    lr = {p.method: (p.run.recipe.lr, p.run.recipe.head_lr) for p in own.points}
    assert lr == {"linear": (1e-2, 5e-3), "bitfit": (1e-2, 5e-3), "full": (1e-4, 5e-3)}
    loaded = SweepResult.load(tmp_path / "b.json")
    assert loaded.method_lr == {"full": 1e-4} and loaded.recipe_of("full").lr == 1e-4 and plain.method_lr == {}
    report = write_report(loaded, None, tmp_path / "report").markdown.read_text()
    assert "sweep (train), full" in report
    with pytest.raises(PetlError, match=r"method_lr names 'full', which this sweep does not train \(its methods: "):
        run_sweep(MODEL, data, None, ["linear"], seeds=1, recipe=recipe, method_lr={"full": 1e-4})


@pytest.mark.parametrize(
    "value, message",
    [
        ("full:1e-5", r"--method-lr: 'full:1e-5' is not METHOD=LR; expected e\.g\. full=1e-5,bitfit=1e-3"),
        ("fulll=1e-5", r"--method-lr: 'fulll' is not a method; methods: kadaptation, lora, "),
        ("full=fast", r"--method-lr: full='fast' is not a number; expected e\.g\. full=1e-5"),
        ("full=0", r"--method-lr: full=0 must be a positive learning rate"),
        ("full=inf", r"--method-lr: full=inf must be a positive learning rate"),
    ],
)
def test_method_lr_is_read_or_refused_in_one_line(value, message):
    from petl_analysis.sweep import parse_method_lr

    assert parse_method_lr(" full=1e-5, bitfit=0.001 ") == {"full": 1e-5, "bitfit": 1e-3}
    assert parse_method_lr(None) == {} == parse_method_lr("")
    with pytest.raises(PetlError, match=message) as e:
        parse_method_lr(value)
    assert "\n" not in str(e.value)


def test_the_pipeline_and_run_refuse_a_rate_for_a_method_they_do_not_train(tmp_path):
    from helpers import run_cli

    from petl_analysis.pipeline import PipelineConfig

    assert PipelineConfig(methods=["lora", "full"], method_lr={"full": 1e-5}).method_lr == {"full": 1e-5}
    with pytest.raises(PetlError, match=r"PipelineConfig.method_lr names 'full', which this sweep does not train"):
        PipelineConfig(methods=["lora"], method_lr={"full": 1e-5})
    code, out = run_cli(["run", "--dataset", "digits", "--methods", "linear", "--method-lr", "full=1e-5"], tmp_path)
    assert code != 0 and "--method-lr names 'full', which this sweep does not train" in out
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_a_point_whose_loss_rose_is_reported_as_diverging(tmp_path):
    # Full fine-tuning of DINOv2-S/14 at the adapters' 3e-3 diverges; the report says so and names the way out.
    import dataclasses

    from petl_analysis.report import write_report
    from petl_analysis.sweep import SweepResult
    from petl_analysis.train.run import SeedRun

    seed = SeedRun(0, 0.5, 0.5, 0.5, 0.5, best_epoch=0, epochs_run=2, n_train=10, wall_time_s=1.0)
    assert not dataclasses.replace(seed, train_loss=[2.0, 1.0]).loss_rose
    assert dataclasses.replace(seed, train_loss=[2.0, 2.5]).loss_rose
    assert dataclasses.replace(seed, train_loss=[2.0, float("nan")]).loss_rose
    assert not dataclasses.replace(seed, train_loss=[2.0]).loss_rose

    sweep = SweepResult.load(Path(__file__).resolve().parents[1] / "reports" / "demo" / "digits" / "sweep.json")
    full = next(p for p in sweep.points if p.method == "full")
    full.run.seeds = [dataclasses.replace(s, train_loss=[1.0, 3.0]) for s in full.run.seeds]
    text = write_report(sweep, None, tmp_path / "report").markdown.read_text()
    n = len(full.run.seeds)
    assert (
        f"diverging: full: the training loss ended above its first epoch's in {n} of {n} seeds; its learning rate "
        f"({sweep.recipe.lr:g}) may be too high for this model (`sweep --method-lr full=LR` trains one method at its "
        "own rate)" in text
    )
    assert text.count("diverging:") == 1
