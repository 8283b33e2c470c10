"""Per-image correctness: what fit keeps for the validation's image bootstrap."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from petl_analysis.engine import Recipe, evaluate, evaluate_images, fit, pack_correct, unpack_correct


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 300])
def test_pack_round_trips(n):
    mask = np.random.default_rng(n).random(n) < 0.5
    packed = pack_correct(mask)
    assert len(packed) == 2 * ((n + 7) // 8)
    assert (unpack_correct(packed, n) == mask).all()


def test_unpack_refuses_the_wrong_length():
    with pytest.raises(ValueError, match="expected 20 images"):
        unpack_correct(pack_correct(np.ones(8, dtype=bool)), 20)


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return TensorDataset(x, (x[:, 0] + 0.3 * x[:, 1] > 0).long())


@pytest.mark.parametrize("selection", ["val", "last"])
def test_fit_keeps_the_kept_epochs_per_image_scores(selection):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 2))
    train, val = _data(64, 1), _data(37, 2)
    recipe = Recipe(epochs=4, batch_size=16, lr=0.05, warmup_epochs=0, epoch_selection=selection)
    res = fit(model, train, val, recipe, seed=0)
    assert res.val_correct is not None and res.val_correct.shape == (37,)
    assert res.val_correct.mean() == pytest.approx(res.val_acc)  # the same epoch the accuracy reports
    acc, loss, correct = evaluate_images(model, val)
    assert (correct == res.val_correct).all() and (acc, loss) == evaluate(model, val)
    assert fit(model, train, None, recipe, seed=0).val_correct is None
