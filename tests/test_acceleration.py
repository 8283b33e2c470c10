"""How fit runs a model: gradient checkpointing (same gradients, activations recomputed) and torch.compile (the
parametrised methods compile, train a step and give the eager model's outputs)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from petl_analysis.engine import Recipe, acceleration, fit
from petl_analysis.engine.acceleration import compile_unavailable, set_grad_checkpointing
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec, create_model, resolve_targets
from petl_analysis.probe.subspace import SubspaceModel
from petl_analysis.tuners import apply_method

METHODS = {
    "kadaptation": {"method": "kadaptation", "targets": ["attn.q", "attn.v", "mlp.fc1"]},
    "lora": {"method": "lora", "targets": ["attn.q", "attn.v", "mlp.fc1"]},
}


def _adapted(method: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(ModelSpec("petl_vit_tiny", weights="default", num_classes=4))
    model.requires_grad_(False)
    apply_method(model, METHODS[method])
    with torch.no_grad():  # away from the zero init, so every adapter tensor gets a nonzero gradient
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model


def _batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 4, (n,), generator=g)


def _grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_checkpointing_recomputes_the_blocks_and_keeps_the_gradients(single_thread, method):
    model, (x, y) = _adapted(method), _batch()
    calls = []
    model.blocks[0].register_forward_pre_hook(lambda *_: calls.append(1))  # a recomputation may stop early
    plain = _grads(model, x, y)
    assert len(calls) == 1
    set_grad_checkpointing(model, True)
    calls.clear()
    checkpointed = _grads(model, x, y)
    assert len(calls) == 2  # the block ran again in the backward pass: its activations were not kept
    assert plain.keys() == checkpointed.keys() and len(plain) > 0
    for name in plain:
        assert plain[name].abs().sum() > 0, name
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=0, atol=0, msg=name)


def test_fit_with_checkpointing_trains_the_same_and_turns_it_off(single_thread):
    x, y = _batch(48)
    train = TensorDataset(x, y)
    recipe = Recipe(epochs=2, batch_size=16, lr=1e-2)
    a, b = _adapted("kadaptation"), _adapted("kadaptation")
    calls = {"a": [], "b": []}
    a.blocks[0].register_forward_pre_hook(lambda *_: calls["a"].append(1))
    b.blocks[0].register_forward_pre_hook(lambda *_: calls["b"].append(1))
    plain = fit(a, train, None, recipe, seed=0)
    checkpointed = fit(b, train, None, recipe, seed=0, grad_checkpointing=True)
    assert (len(calls["a"]), len(calls["b"])) == (6, 12)  # 6 steps; checkpointed, the block also ran in backward
    assert checkpointed.train_loss == plain.train_loss
    assert not b.grad_checkpointing  # the model is handed back as it came
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_checkpointing_is_refused_where_it_cannot_work():
    model = create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=4))
    wrapped = SubspaceModel(model, resolve_targets(model, ["attn.q"]), 10)
    with pytest.raises(PetlError, match="SubspaceModel substitutes its weights through functional_call"):
        set_grad_checkpointing(wrapped, True)
    with pytest.raises(PetlError, match="Linear has no set_grad_checkpointing"):
        fit(torch.nn.Linear(4, 2), TensorDataset(torch.randn(4, 4), torch.zeros(4).long()), None, Recipe(epochs=1),
            grad_checkpointing=True)  # fmt: skip


def test_compile_that_cannot_run_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(acceleration, "compile_unavailable", lambda device_type: "InvalidCxxCompiler: no compiler")
    with pytest.raises(PetlError) as e:
        fit(_adapted("lora"), TensorDataset(*_batch(8)), None, Recipe(epochs=1), compile=True)
    assert str(e.value) == (
        "--compile: torch.compile cannot run on cpu here (InvalidCxxCompiler: no compiler); run without --compile"
    )


@pytest.mark.parametrize("method", sorted(METHODS))
def test_compiled_parametrised_model_trains_a_step_like_the_eager_one(single_thread, method):
    reason = compile_unavailable("cpu")
    if reason is not None:
        pytest.skip(f"torch.compile cannot run on this machine's CPU: {reason}")
    x, y = _batch(16)
    # SGD: the step is proportional to the gradient (Adam's first step is its sign, which a rounding flips on
    # a near-zero gradient).
    recipe = Recipe(epochs=1, batch_size=16, optimizer="sgd", lr=0.1, max_steps=1, warmup_epochs=0)
    eager, compiled = _adapted(method), _adapted(method)
    a = fit(eager, TensorDataset(x, y), None, recipe, seed=0)
    torch._dynamo.utils.counters.clear()
    b = fit(compiled, TensorDataset(x, y), None, recipe, seed=0, compile=True)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it did train through compiled graphs
    assert a.steps == b.steps == 1
    assert b.train_loss == pytest.approx(a.train_loss, rel=1e-5)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
    trained = [n for n, p in eager.named_parameters() if p.requires_grad]
    before = dict(_adapted(method).named_parameters())
    assert any(not torch.equal(dict(eager.named_parameters())[n], before[n]) for n in trained)  # a step was taken
    eager.eval(), compiled.eval()
    with torch.no_grad():  # the compiled forward's outputs are the eager model's
        torch.testing.assert_close(torch.compile(compiled)(x), eager(x), rtol=1e-4, atol=1e-5)
