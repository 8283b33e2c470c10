from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from petl_analysis.engine import Recipe, TrainingDiverged, evaluate, fit
from petl_analysis.errors import PetlError


def _toy(n: int, seed: int) -> TensorDataset:
    """Class = which image quadrant is bright: learnable by a tiny ViT in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, 16, 16, generator=g) * 0.3
    for i, c in enumerate(y.tolist()):
        r, col = divmod(c, 2)
        x[i, 0, r * 8 : r * 8 + 8, col * 8 : col * 8 + 8] += 1.5
    return TensorDataset(x, y)


def _model(seed: int = 0):
    from petl_analysis.models import ModelSpec, create_model

    torch.manual_seed(seed)
    return create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=4))


def test_fit_learns_and_is_deterministic() -> None:
    train, val, test = _toy(512, 0), _toy(64, 1), _toy(64, 2)
    recipe = Recipe(epochs=6, batch_size=32, lr=3e-3)
    a = fit(_model(), train, val, recipe, test=test, seed=3)
    b = fit(_model(), train, val, recipe, test=test, seed=3)
    assert a.train_loss == b.train_loss and a.test_acc == b.test_acc
    assert a.test_acc > 0.6  # chance is 0.25
    assert a.steps == 6 * 16 and a.epochs_run == 6
    assert a.trainable["total_incl_head"] == a.trainable["model_total"]


def test_model_is_left_at_best_validation_epoch() -> None:
    train, val = _toy(128, 0), _toy(64, 1)
    model = _model()
    res = fit(model, train, val, Recipe(epochs=3, batch_size=32, lr=2e-3), seed=0)
    assert res.val_acc == max(res.val_curve)
    assert res.val_curve[res.best_epoch - 1] == res.val_acc
    assert evaluate(model, val)[0] == pytest.approx(res.val_acc)


def test_fixed_schedule_keeps_and_scores_the_last_epoch() -> None:
    # epoch_selection="last": the validation score is the last epoch's, not the maximum over the epochs it reports
    train, val = _toy(128, 0), _toy(64, 1)
    model = _model()
    res = fit(model, train, val, Recipe(epochs=4, batch_size=32, lr=2e-3, epoch_selection="last"), seed=0)
    best = fit(_model(), train, val, Recipe(epochs=4, batch_size=32, lr=2e-3), seed=0)
    # The same training; only which epoch is kept differs, and only the kept (last) epoch is evaluated.
    assert res.val_curve == [best.val_curve[-1]] and len(best.val_curve) == 4
    assert res.val_acc == res.val_curve[-1] and res.best_epoch == res.epochs_run == 4
    assert evaluate(model, val)[0] == pytest.approx(res.val_curve[-1])
    assert res.val_acc != best.val_acc  # this run's best epoch is not its last: the test can fail
    with pytest.raises(PetlError, match="patience"):
        Recipe(patience=3, epoch_selection="last")
    with pytest.raises(PetlError, match="epoch selection"):
        Recipe(epoch_selection="best")


def test_early_stopping_and_divergence() -> None:
    train, val = _toy(64, 0), _toy(32, 1)
    res = fit(_model(), train, val, Recipe(epochs=50, batch_size=64, lr=1e-9, patience=2, warmup_epochs=0), seed=0)
    assert res.stopped_early and res.epochs_run < 50
    with pytest.raises(TrainingDiverged):
        fit(_model(), TensorDataset(train.tensors[0] * float("nan"), train.tensors[1]), None, Recipe(epochs=1))


def test_nothing_to_train_and_bad_recipe() -> None:
    model = _model().requires_grad_(False)
    with pytest.raises(PetlError, match="nothing to train"):
        fit(model, _toy(8, 0), None, Recipe(epochs=1))
    with pytest.raises(PetlError, match="unknown optimizer"):
        Recipe(optimizer="adam9")
