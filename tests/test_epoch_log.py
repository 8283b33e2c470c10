"""Per-epoch logs (``--log-to``): a CSV row per epoch of every training, written by the process that trains it
(the driver or a worker), TensorBoard and MLflow through their own APIs, and one-line errors for what cannot work."""

from __future__ import annotations

import csv
import sys
import types

import pytest

from petl_analysis.data import SplitSpec
from petl_analysis.engine import EpochLog, Recipe
from petl_analysis.epoch_log import CSV_COLUMNS, logging_epochs, parse_log_target, prepare_epoch_log
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec
from petl_analysis.select import RankedTarget, Ranking
from petl_analysis.study import Study
from petl_analysis.sweep import sweep_plans
from petl_analysis.task import DataSpec
from petl_analysis.train import run_method

MODEL = ModelSpec("petl_vit_tiny", weights="random", img_size=8, patch_size=4)
DATA = DataSpec("digits", SplitSpec(shots=2))
RECIPE = Recipe(epochs=3, batch_size=64, lr=1e-2)

pytestmark = pytest.mark.usefixtures("single_thread")


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_training_logs_a_csv_row_per_epoch_and_a_resumed_one_appends(tmp_path):
    path = tmp_path / "logs" / "epochs.csv"
    result = run_method(MODEL, DATA, {"method": "lora"}, RECIPE, seeds=2, log_to=f"csv:{path}")
    rows = _rows(path)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(r["kind"], r["seed"], r["epoch"], r["epochs"]) for r in rows] == [
        ("train", str(s), str(e), "3") for s in (0, 1) for e in (1, 2, 3)
    ]  # the adapter's epochs only: the linear probe that starts its head is not a training of its own
    losses = [float(r["train_loss"]) for r in rows if r["seed"] == "0"]
    assert losses == pytest.approx(result.seeds[0].train_loss)
    assert float(rows[2]["val_acc"]) == pytest.approx(result.seeds[0].val_acc)
    run_method(MODEL, DATA, {"method": "lora"}, RECIPE, seeds=1, log_to=f"csv:{path}")
    assert len(_rows(path)) == 9  # one header, rows appended


def test_worker_processes_log_their_own_trials(tmp_path):
    # --jobs 2: the epochs happen in two worker processes; each appends its trial's rows, tagged with its key.
    entries = [RankedTarget(target="attn.v", units=[f"blocks.{b}.attn.v" for b in range(4)], D=1, rank=1, score=None)]
    ranking = Ranking(selector="d90", model=MODEL, data=DATA, entries=entries)
    plans, _, _ = Study(MODEL, DATA).plan([2_000], ["kadaptation"], ranking)
    path = tmp_path / "epochs.csv"
    sweep_plans(plans[:1], DATA, seeds=2, recipe=RECIPE, out=tmp_path / "sweep.json", n_jobs=2, log_to=f"csv:{path}")
    rows = _rows(path)
    by_trial: dict[str, list[str]] = {}
    for r in rows:
        by_trial.setdefault(r["trial"], []).append(r["epoch"])
    assert len(by_trial) == 2 and all(sorted(epochs) == ["1", "2", "3"] for epochs in by_trial.values())
    assert {r["kind"] for r in rows} == {"run"} and {r["seed"] for r in rows} == {"0", "1"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("json:x", "unknown logger 'json'; expected csv:PATH, tensorboard:DIR or mlflow[:EXPERIMENT]"),
        ("csv", "csv needs a path, e.g. csv:epochs.csv"),
        ("tensorboard:tb", "--log-to tensorboard needs the tensorboard package: pip install tensorboard"),
        ("mlflow", "--log-to mlflow needs the mlflow package: pip install mlflow"),
    ],
)
def test_a_target_that_cannot_work_is_a_one_line_error_before_any_work(monkeypatch, spec, message):
    for name in ("tensorboard", "torch.utils.tensorboard", "mlflow"):
        monkeypatch.setitem(sys.modules, name, None)  # as where they are not installed
    with pytest.raises(PetlError) as e:
        Study(MODEL, DATA, log_to=spec)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_unwritable_csv_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PetlError, match="cannot write"):
        prepare_epoch_log(f"csv:{blocker}/epochs.csv")


def _log(epoch: int, seed: int = 0) -> EpochLog:
    return EpochLog(epoch, 2, 1.0 / epoch, 0.5 if epoch == 2 else None, 0.5 if epoch == 2 else None, 0.1, seed=seed)


def test_tensorboard_and_mlflow_get_the_same_metrics(monkeypatch, tmp_path):
    from petl_analysis.engine.train import _EPOCH_LISTENERS

    scalars, closed = [], []

    class SummaryWriter:
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            scalars.append((self.log_dir, tag, value, step))

        def close(self):
            closed.append(self.log_dir)

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=SummaryWriter))
    assert parse_log_target(f"tensorboard:{tmp_path}") == ("tensorboard", str(tmp_path))
    with logging_epochs(f"tensorboard:{tmp_path}", trial="abc", kind="run"):
        for listener in list(_EPOCH_LISTENERS):
            listener(_log(1)), listener(_log(2))
    run = str(tmp_path / "run-abc")
    assert scalars == [
        (run, "train_loss", 1.0, 1),
        (run, "train_loss", 0.5, 2),
        (run, "val_acc", 0.5, 2),
        (run, "best_val_acc", 0.5, 2),
    ]
    assert closed == [run]

    calls = []
    mlflow = types.SimpleNamespace(
        set_experiment=lambda name: calls.append(("experiment", name)),
        start_run=lambda run_name: calls.append(("start", run_name)),
        log_params=lambda params: calls.append(("params", params)),
        log_metrics=lambda metrics, step: calls.append(("metrics", metrics, step)),
        end_run=lambda: calls.append(("end",)),
    )
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    with logging_epochs("mlflow:petl", kind="train"):
        for listener in list(_EPOCH_LISTENERS):
            listener(_log(1, seed=0)), listener(_log(1, seed=1))
    assert calls == [
        ("experiment", "petl"),
        ("start", "train-seed0"),
        ("params", {"kind": "train", "seed": 0}),
        ("metrics", {"train_loss": 1.0}, 1),
        ("end",),  # a new seed: a new run
        ("start", "train-seed1"),
        ("params", {"kind": "train", "seed": 1}),
        ("metrics", {"train_loss": 1.0}, 1),
        ("end",),
    ]
