"""Mixed precision (``Recipe.amp``): resolved per device, fp16 trains through a gradient scaler, and the mode is
written in JSON (and trial keys) as the flag it replaced."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from petl_analysis.artefacts import from_jsonable, to_jsonable
from petl_analysis.engine import Recipe, fit, precision
from petl_analysis.engine.precision import amp_dtype, autocast, grad_scaler
from petl_analysis.errors import PetlError
from petl_analysis.trials import key_json

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("amp", "has_bf16", "cuda", "cpu"),
    [
        ("auto", True, torch.bfloat16, None),
        ("auto", False, torch.float16, None),  # T4, V100: fp16 (with a scaler), not fp32
        ("bf16", True, torch.bfloat16, torch.bfloat16),
        ("fp16", True, torch.float16, torch.float16),
        ("off", True, None, None),
    ],
)
def test_amp_resolves_per_device(monkeypatch, amp, has_bf16, cuda, cpu):
    monkeypatch.setattr(precision, "bf16_supported", lambda: has_bf16)
    assert amp_dtype(amp, CUDA) is cuda
    assert amp_dtype(amp, CPU) is cpu
    assert (grad_scaler(amp, CPU) is not None) == (cpu is torch.float16)


def test_bf16_on_a_gpu_without_it_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(precision, "bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(PetlError, match="Tesla T4 does not support bf16; use amp='fp16'"):
        amp_dtype("bf16", CUDA)
    with pytest.raises(PetlError, match=r"^Recipe\.amp must be one of 'auto', 'bf16', 'fp16', 'off' .*; got 'fp8'$"):
        Recipe(amp="fp8")


def test_amp_is_written_as_the_flag_it_was_and_keeps_keys():
    # Every artefact and trial key made before the modes existed holds "amp": true (now "auto"); false is "off".
    assert to_jsonable(Recipe())["amp"] is True and Recipe().amp == "auto"
    assert to_jsonable(Recipe(amp="off"))["amp"] is False
    assert to_jsonable(Recipe(amp="fp16"))["amp"] == "fp16"
    assert Recipe(amp=False).amp == "off" and Recipe(amp=True).amp == "auto"
    for mode in ("auto", "bf16", "fp16", "off"):
        assert from_jsonable(Recipe, to_jsonable(Recipe(amp=mode))) == Recipe(amp=mode)
    assert '"amp": true' in key_json(Recipe()) and '"amp": "bf16"' in key_json(Recipe(amp="bf16"))


def _toy(n: int) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, 16, 16, generator=g) * 0.3
    for i, c in enumerate(y.tolist()):
        r, col = divmod(c, 2)
        x[i, 0, r * 8 : r * 8 + 8, col * 8 : col * 8 + 8] += 1.5
    return TensorDataset(x, y)


def _model():
    from petl_analysis.models import ModelSpec, create_model

    torch.manual_seed(0)
    return create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=4))


def test_fp16_trains_through_a_gradient_scaler(single_thread, monkeypatch):
    # The GPU path without a GPU: CPU fp16 autocast, its loss scaled, its gradients unscaled before clipping.
    made = []
    real = precision.grad_scaler

    def spy(amp, device):
        made.append(real(amp, device))
        return made[-1]

    monkeypatch.setattr("petl_analysis.engine.train.grad_scaler", spy)
    train, val = _toy(128), _toy(32)
    recipe = Recipe(epochs=2, batch_size=32, lr=2e-3, amp="fp16")
    half = fit(_model(), train, val, recipe, seed=0)
    full = fit(_model(), train, val, Recipe(epochs=2, batch_size=32, lr=2e-3, amp="off"), seed=0)
    assert isinstance(made[0], torch.amp.GradScaler) and made[0].get_scale() > 1  # scaled, and stepping
    assert made[1] is None
    assert half.steps == full.steps == 8
    assert half.train_loss == pytest.approx(full.train_loss, rel=0.05)
    assert half.train_loss != full.train_loss  # fp16 arithmetic did run


def test_cpu_bf16_autocast_is_what_it_asks_for():
    with autocast(CPU, "bf16"):
        assert torch.ones(2, 2).mm(torch.ones(2, 2)).dtype is torch.bfloat16
    with autocast(CPU, "auto"):  # auto is fp32 on CPU
        assert torch.ones(2, 2).mm(torch.ones(2, 2)).dtype is torch.float32
