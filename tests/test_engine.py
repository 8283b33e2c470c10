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
    with pytest.raises(PetlError, match="Recipe.epoch_selection must be one of 'last', 'val'; got 'best'"):
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
    with pytest.raises(PetlError, match="Recipe.optimizer must be adamw, sgd or another optimizer of timm"):
        Recipe(optimizer="adam9")


# --------------------------------------------------------------------------------------------------- recipe fields


def test_recipe_errors_come_from_its_declared_constraints() -> None:
    with pytest.raises(PetlError, match=r"^Recipe.lr must be a float > 0; got -1$"):
        Recipe(lr=-1)
    with pytest.raises(PetlError, match=r"^Recipe.label_smoothing must be a float in \[0, 1\); got 1$"):
        Recipe(label_smoothing=1)
    with pytest.raises(
        PetlError,
        match=r"^Recipe.layer_decay must be a float in \(0, 1\], or unset for one rate for all layers; got 1.5$",
    ):
        Recipe(layer_decay=1.5)
    with pytest.raises(PetlError, match="^Recipe.eval_batch_size must be an integer >= 1; got 0$"):
        Recipe(eval_batch_size=0)
    with pytest.raises(
        PetlError,
        match=r"^Recipe.amp must be one of 'auto', 'bf16', 'fp16', 'off' or true \(auto\) or false \(off\); got 'yes'$",
    ):
        Recipe(amp="yes")
    with pytest.raises(PetlError, match="^Recipe.epochs must be an integer >= 1; got True$"):
        Recipe(epochs=True)  # a bool is not a count
    assert Recipe(optimizer="lion").timm_optimizer == "lion"  # any optimizer of timm's factory


def test_new_recipe_fields_leave_trial_keys_unchanged_at_their_defaults() -> None:
    from petl_analysis.train import default_train_recipe
    from petl_analysis.trials import key_json

    assert "layer_decay" not in key_json(default_train_recipe())
    assert '"layer_decay": 0.75' in key_json(Recipe(layer_decay=0.75))
    # the key of the default recipe as every committed trial log holds it (the fields of before this change)
    assert key_json(Recipe()) == (
        '{"amp": true, "batch_size": 64, "epochs": 30, "eval_batch_size": 512, "grad_clip": 1.0, "head_lr": null, '
        '"label_smoothing": 0.0, "lr": 0.001, "momentum": 0.9, "optimizer": "adamw", "patience": null, '
        '"schedule": "cosine", "warmup_epochs": 1.0, "weight_decay": 0.0001}'
    )


def test_optimizers_come_from_timms_factory_and_sgd_keeps_classical_momentum() -> None:
    from petl_analysis.engine.train import _make_optimizer, _param_groups

    model = _model()
    for name, cls, nesterov in (("adamw", torch.optim.AdamW, None), ("sgd", torch.optim.SGD, False)):
        opt = _make_optimizer(_param_groups(model, Recipe(optimizer=name)), Recipe(optimizer=name))
        assert type(opt) is cls
        if nesterov is not None:
            assert opt.defaults["nesterov"] is nesterov and opt.defaults["momentum"] == 0.9
    nesterov = _make_optimizer(_param_groups(model, Recipe()), Recipe(optimizer="nesterov", momentum=0.5))
    assert type(nesterov) is torch.optim.SGD and nesterov.defaults["nesterov"] and nesterov.defaults["momentum"] == 0.5
    # and the optimizer trains differently
    train = _toy(64, 0)
    recipe = Recipe(epochs=1, batch_size=32, lr=3e-3, weight_decay=0.1)
    adamw = fit(_model(), train, None, recipe, seed=0)
    adam = fit(_model(), train, None, Recipe(**{**recipe.__dict__, "optimizer": "adam"}), seed=0)
    assert adam.train_loss != adamw.train_loss


def test_layer_decay_scales_each_layer_and_keeps_the_head_rate() -> None:
    from petl_analysis.engine.train import _param_groups

    model = _model()  # the bundled ViT: embeddings, 4 blocks, then norm and head: 6 layers
    recipe = Recipe(lr=1.0, head_lr=0.5, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in _param_groups(model, recipe) for p in g["params"]}
    params = dict(model.named_parameters())
    assert lr_of[id(params["patch_embed.proj.weight"])] == 0.5**5
    assert lr_of[id(params["blocks.0.attn.qkv.weight"])] == 0.5**4
    assert lr_of[id(params["blocks.3.mlp.fc2.weight"])] == 0.5
    assert lr_of[id(params["head.weight"])] == 0.5  # head_lr, not scaled
    plain = {id(p): g["lr"] for g in _param_groups(model, Recipe(lr=1.0)) for p in g["params"]}
    assert set(plain.values()) == {1.0}
    train = _toy(64, 0)
    base = Recipe(epochs=1, batch_size=32, lr=3e-3)
    assert (
        fit(_model(), train, None, base, seed=0).train_loss
        != fit(_model(), train, None, Recipe(**{**base.__dict__, "layer_decay": 0.5}), seed=0).train_loss
    )
    with pytest.raises(PetlError, match="layer_decay needs a timm model"):
        _param_groups(torch.nn.Sequential(torch.nn.Linear(2, 2)), recipe)


def test_label_smoothing_and_eval_batch_size_are_honoured() -> None:
    train, val = _toy(64, 0), _toy(40, 1)
    base = Recipe(epochs=1, batch_size=32, lr=3e-3, eval_batch_size=512)
    smooth = fit(_model(), train, None, Recipe(**{**base.__dict__, "label_smoothing": 0.3}), seed=0)
    assert smooth.train_loss != fit(_model(), train, None, base, seed=0).train_loss
    model = _model()
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])) if not m.training else None)
    fit(model, train, val, Recipe(**{**base.__dict__, "eval_batch_size": 16}), seed=0)
    assert calls == [16, 16, 8]  # validation in batches of 16


class _NanFrom(torch.nn.Module):
    """A model whose training forward returns NaN logits from its ``k``-th call on (1-based)."""

    def __init__(self, model: torch.nn.Module, k: int) -> None:
        super().__init__()
        self.model, self.k, self.calls = model, k, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.k:
                out = out * float("nan")
        return out


@pytest.mark.parametrize("k", [5, 40])
def test_divergence_is_caught_and_names_its_step_without_a_read_per_step(single_thread, k) -> None:
    # The loss is read every DIVERGENCE_CHECK_EVERY steps and at the epoch's end, not per step; a loss that turns
    # NaN at step k (before the first read, or after it) still stops the run, naming step k and its epoch.
    from petl_analysis.engine.train import DIVERGENCE_CHECK_EVERY

    assert 5 < DIVERGENCE_CHECK_EVERY < 40
    train = _toy(8 * 25, 0)  # 25 steps of 8 per epoch
    with pytest.raises(TrainingDiverged, match=rf"loss became nan at epoch {(k - 1) // 25 + 1}, step {k}$"):
        fit(_NanFrom(_model(), k), train, None, Recipe(epochs=3, batch_size=8), seed=0)


def test_a_training_step_does_not_read_the_device(single_thread, monkeypatch) -> None:
    # A host read (.item(), a tensor's truth value) waits for the GPU to finish: fit's own code does one per
    # DIVERGENCE_CHECK_EVERY steps and a few per epoch, never one per step.
    import sys

    from petl_analysis.engine import train as train_module

    reads = []
    for name in ("item", "__bool__"):
        real = getattr(torch.Tensor, name)

        def counted(self, real=real):
            if sys._getframe(1).f_code.co_filename == train_module.__file__:
                reads.append(sys._getframe(1).f_code.co_name)
            return real(self)

        monkeypatch.setattr(torch.Tensor, name, counted)
    res = fit(_model(), _toy(4 * 64, 0), None, Recipe(epochs=2, batch_size=4, lr=1e-3), seed=0)
    assert res.steps == 128
    assert len(reads) <= 2 * (64 // train_module.DIVERGENCE_CHECK_EVERY + 3), reads


def test_the_loss_on_the_device_sums_as_python_floats_did() -> None:
    # float64 on the device, in the same order: the recorded training loss is the one the per-step reads gave.
    from petl_analysis.engine.train import _LossWatch

    watch, summed = _LossWatch(torch.device("cpu"), 3), 0.0
    for i, value in enumerate([0.1, 0.7, 1.3]):
        loss = torch.tensor(value, dtype=torch.float32)
        watch.add(loss, 32, i)
        summed += loss.item() * 32
    assert watch.epoch_mean(96) == summed / 96
