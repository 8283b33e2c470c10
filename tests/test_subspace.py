"""SubspaceModel: theta_S = theta0_S + P theta_d wired into a timm ViT without touching it.

Checked here: no-op at theta_d = 0, gradients reach theta_d (and equal Pᵀ times the direct gradient), nothing but
the targeted tensors (or rows of a fused qkv) moves, the wrapper is an honest nn.Module (state_dict, .to,
parameters), sizes are validated, SAID scales are counted in d, and Fastfood's fixed memory does not depend on d.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from petl_analysis.accounting import count_parameters
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec, create_model, resolve_targets
from petl_analysis.models.catalogue import TensorSlice
from petl_analysis.probe import SubspaceModel, all_parameters, subspace_size

KINDS = ["dense", "fastfood", "sparse"]
WIDTH = 64  # petl_vit_tiny embed_dim
QKV_W = "blocks.0.attn.qkv.weight"
QKV_B = "blocks.0.attn.qkv.bias"


@pytest.fixture(scope="module")
def base() -> nn.Module:
    torch.manual_seed(0)
    return create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=5))


@pytest.fixture
def model(base) -> nn.Module:
    return copy.deepcopy(base)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(1))


def _frozen_but_head(m: nn.Module) -> nn.Module:
    m.requires_grad_(False)
    m.get_classifier().requires_grad_(True)
    return m


def _step(wrapped: SubspaceModel, x: torch.Tensor, lr: float = 1e-2) -> None:
    opt = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    loss = wrapped(x).logsumexp(-1).sum() - wrapped(x)[:, 0].sum()
    opt.zero_grad()
    loss.backward()
    opt.step()


# ----------------------------------------------------------------------------------------------- no-op at init
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("said", [False, True])
def test_zero_theta_reproduces_base_output(model, x, kind, said):
    expected = model(x)
    units = resolve_targets(model, "attn.v,mlp.fc1")  # a row slice of the fused qkv and whole Linears
    wrapped = SubspaceModel(model, units, 40, projection=kind, seed=3, said=said)
    assert torch.count_nonzero(wrapped.theta_d) == 0
    torch.testing.assert_close(wrapped(x), expected, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind", KINDS)
def test_gradient_reaches_theta_d_and_only_theta_d_of_the_subspace(model, x, kind):
    units = resolve_targets(model, "blocks.1.attn.proj,blocks.2.mlp.fc2")
    subspace_params = {t.param for u in units for t in u.tensors}
    wrapped = SubspaceModel(model, units, 30, projection=kind, seed=0)  # other parameters keep requires_grad=True
    for name, p in model.named_parameters():
        assert p.requires_grad == (name not in subspace_params), name
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _step(wrapped, x)
    assert wrapped.theta_d.grad is not None and wrapped.theta_d.grad.abs().sum() > 0
    assert torch.count_nonzero(wrapped.theta_d) > 0
    for name, p in model.named_parameters():
        if name in subspace_params:
            assert p.grad is None, name
            torch.testing.assert_close(p, before[name], rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_theta_d_gradient_is_projected_direct_gradient(model, x, kind):
    """d loss / d theta_d == Pᵀ (d loss / d theta_S), the chain rule through the projection, with theta_d != 0."""
    _frozen_but_head(model)
    units = resolve_targets(model, "attn.v,blocks.3.mlp.fc1")
    wrapped = SubspaceModel(model, units, 25, projection=kind, seed=5).double()
    with torch.no_grad():
        wrapped.theta_d.normal_(0, 0.3)
    xd = x.double()
    wrapped(xd).pow(2).mean().backward()

    direct = copy.deepcopy(model).double()
    direct.load_state_dict(wrapped.merged_state_dict())
    direct.requires_grad_(True)
    direct(xd).pow(2).mean().backward()
    grads = dict(direct.named_parameters())
    flat = []
    for seg in wrapped._segments:  # the D-vector layout: one piece per (param, rows), in order
        g = grads[seg.param].grad
        flat.append((g if seg.rows is None else g[seg.rows[0] : seg.rows[1]]).reshape(-1))
    flat = torch.cat(flat)
    assert flat.numel() == wrapped.D == subspace_size(units)
    expected = wrapped.projection.matrix().T @ flat
    torch.testing.assert_close(wrapped.theta_d.grad, expected, rtol=1e-8, atol=1e-12)


# ------------------------------------------------------------------------------------------ fused qkv row slices
@pytest.mark.parametrize("kind", KINDS)
def test_v_slice_changes_only_v_rows_of_fused_qkv(model, x, kind):
    _frozen_but_head(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = SubspaceModel(model, resolve_targets(model, "blocks.0.attn.v"), 20, projection=kind, seed=1)
    assert wrapped.D == WIDTH * WIDTH + WIDTH
    _step(wrapped, x)
    merged = wrapped.merged_state_dict()
    v = slice(2 * WIDTH, 3 * WIDTH)
    qk = slice(0, 2 * WIDTH)
    assert not torch.equal(merged[QKV_W][v], before[QKV_W][v])
    assert not torch.equal(merged[QKV_B][v], before[QKV_B][v])
    assert torch.equal(merged[QKV_W][qk], before[QKV_W][qk])
    assert torch.equal(merged[QKV_B][qk], before[QKV_B][qk])
    # Nothing else in the backbone moved, and the base model itself was never written to.
    changed = {k for k in before if k != "head.weight" and k != "head.bias" and not torch.equal(merged[k], before[k])}
    assert changed == {QKV_W, QKV_B}
    for k, v_ in model.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(v_, before[k]), k


def test_q_and_v_slices_of_one_qkv_share_the_tensor_without_clobbering(model, x):
    """Two row slices of the same fused tensor: each gets its own offset, k rows stay put."""
    _frozen_but_head(model)
    before = model.state_dict()[QKV_W].clone()
    wrapped = SubspaceModel(model, resolve_targets(model, "blocks.0.attn.q,blocks.0.attn.v"), 20, seed=2)
    _step(wrapped, x)
    merged = wrapped.merged_state_dict()[QKV_W]
    for rows, moved in ((slice(0, WIDTH), True), (slice(WIDTH, 2 * WIDTH), False), (slice(2 * WIDTH, None), True)):
        assert torch.equal(merged[rows], before[rows]) != moved


def test_q_and_v_offsets_and_gradients_match_plain_autograd(model, x):
    """The one-node substitution against the same maths in plain autograd ops: outputs, the gradient of theta_d
    and, when a caller unfreezes a substituted tensor, its gradient too."""
    _frozen_but_head(model)
    wrapped = SubspaceModel(
        model,
        resolve_targets(model, "blocks.0.attn.q,blocks.0.attn.v,blocks.1.attn.qkv"),
        30,
        projection="dense",
        seed=5,
    )
    with torch.no_grad():
        wrapped.theta_d.normal_()
    model.get_parameter(QKV_W).requires_grad_(True)  # substituted, and now also trained directly
    out = wrapped(x)
    out.square().sum().backward()
    got_theta, got_base = wrapped.theta_d.grad.clone(), model.get_parameter(QKV_W).grad.clone()

    theta = wrapped.theta_d.detach().clone().requires_grad_(True)
    base = {k: p.detach().clone().requires_grad_(k == QKV_W) for k, p in model.named_parameters()}
    flat = wrapped.projection(theta)
    subs = {}
    for seg in wrapped._segments:  # each slice's offset, zero-padded to its full tensor and added
        full = base[seg.param]
        piece = flat[seg.start : seg.stop].view(seg.shape)
        if seg.rows is not None:
            pad = [0, 0] * (full.dim() - 1) + [seg.rows[0], full.shape[0] - seg.rows[1]]
            piece = torch.nn.functional.pad(piece, pad)
        subs[seg.param] = subs.get(seg.param, full) + piece
    assert len(subs) == 4 and len(wrapped._segments) == 6
    expected = torch.func.functional_call(model, {**base, **subs}, (x,))
    torch.testing.assert_close(out, expected)
    expected.square().sum().backward()
    torch.testing.assert_close(got_theta, theta.grad)
    torch.testing.assert_close(got_base, base[QKV_W].grad)


def test_merged_state_dict_reproduces_the_wrapped_forward(model, x):
    wrapped = SubspaceModel(_frozen_but_head(model), resolve_targets(model, "attn,mlp.fc2"), 50, seed=4)
    with torch.no_grad():
        wrapped.theta_d.normal_()
    plain = copy.deepcopy(model)
    plain.load_state_dict(wrapped.merged_state_dict())
    torch.testing.assert_close(plain(x), wrapped(x), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ an honest nn.Module
def test_state_dict_parameters_and_to_are_honest(model, x):
    wrapped = SubspaceModel(_frozen_but_head(model), resolve_targets(model, "attn.v"), 16, seed=0)
    sd = wrapped.state_dict()
    assert "theta_d" in sd
    assert {f"model.{k}" for k in model.state_dict()} <= set(sd)
    assert not any(k.startswith("projection.") for k in sd)  # P is regenerated from (kind, D, seed), never saved
    assert isinstance(wrapped.theta_d, nn.Parameter)
    params = list(wrapped.parameters())
    assert any(p is wrapped.theta_d for p in params)
    assert {id(p) for p in model.parameters()} <= {id(p) for p in params}
    assert [n for n, p in wrapped.named_parameters() if p.requires_grad] == [
        "theta_d",
        "model.head.weight",
        "model.head.bias",
    ]
    wrapped.double()
    assert wrapped.theta_d.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert all(b.dtype in (torch.float64, torch.int32) for b in wrapped.projection.buffers())  # float P, int32 perms
    assert wrapped(x.double()).dtype == torch.float64


def test_state_dict_round_trip_rebuilds_the_same_function(base, x):
    a = SubspaceModel(_frozen_but_head(copy.deepcopy(base)), resolve_targets(base, "mlp"), 64, seed=9)
    with torch.no_grad():
        a.theta_d.normal_()
    b = SubspaceModel(_frozen_but_head(copy.deepcopy(base)), resolve_targets(base, "mlp"), 64, seed=9)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------- sizes
def test_d_larger_than_D_is_refused(model):
    units = resolve_targets(model, "blocks.0.attn.proj")
    D = subspace_size(units)
    assert D == WIDTH * WIDTH + WIDTH
    SubspaceModel(copy.deepcopy(model), units, D, projection="fastfood")  # d == D is fine
    for kind in KINDS:
        with pytest.raises(PetlError, match="exceeds D"):
            SubspaceModel(copy.deepcopy(model), units, D + 1, projection=kind)
    with pytest.raises(PetlError):
        SubspaceModel(copy.deepcopy(model), [], 4)


def test_said_scales_are_part_of_d(model):
    units = resolve_targets(model, "attn.v,blocks.0.mlp.fc1")  # 4 v slices x (weight, bias) + fc1 (weight, bias)
    n_tensors = 2 * 4 + 2
    wrapped = SubspaceModel(_frozen_but_head(model), units, 50, said=True)
    assert wrapped.said_scales.numel() == n_tensors
    assert wrapped.theta_d.numel() + wrapped.said_scales.numel() == 50 == wrapped.d
    assert wrapped.projection.d == 50 - n_tensors
    assert count_parameters(wrapped).adapter == 50
    with pytest.raises(PetlError, match="SAID"):
        SubspaceModel(model, units, n_tensors, said=True)


def test_said_scales_get_gradient_once_theta_moves(model, x):
    wrapped = SubspaceModel(_frozen_but_head(model), resolve_targets(model, "attn.v"), 30, said=True, seed=0)
    with torch.no_grad():
        wrapped.theta_d.normal_()
    wrapped(x).pow(2).mean().backward()
    assert wrapped.said_scales.grad is not None and torch.all(wrapped.said_scales.grad != 0)


def test_count_parameters_theta_d_is_adapter_head_is_head(model):
    wrapped = SubspaceModel(_frozen_but_head(model), resolve_targets(model, "mlp.fc1"), 123)
    c = count_parameters(wrapped)
    head = model.get_classifier()
    assert c.adapter == 123
    assert c.head == head.weight.numel() + head.bias.numel() == 5 * WIDTH + 5
    assert c.backbone == c.bias_norm == c.shared == 0
    assert c.total_excl_head == 123
    assert c.model_total == sum(p.numel() for p in model.parameters()) + 123


def test_all_parameters_spans_the_whole_network():
    net = nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))
    slices = all_parameters(net)
    assert subspace_size(slices) == sum(p.numel() for p in net.parameters()) == 7 * 5 + 5 + 5 * 3 + 3
    x = torch.randn(4, 7)
    expected = net(x)
    wrapped = SubspaceModel(net, slices, 10, projection="dense")
    torch.testing.assert_close(wrapped(x), expected, rtol=0, atol=0)
    assert not any(p.requires_grad for p in net.parameters())
    assert count_parameters(wrapped).total == 10


class _Tied(nn.Module):
    """Encoder and decoder share one weight (as in tied embeddings): one Parameter under two names."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(6, 6, bias=False)
        self.dec = nn.Linear(6, 6, bias=False)
        self.dec.weight = self.enc.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.tanh(self.enc(x)))


def test_an_offset_to_a_tied_weight_moves_it_under_every_name():
    torch.manual_seed(0)
    net = _Tied()
    x = torch.randn(3, 6)
    wrapped = SubspaceModel(net, [TensorSlice("enc.weight", None, (6, 6))], 5, projection="dense")
    with torch.no_grad():
        wrapped.theta_d.normal_()
        w = net.enc.weight + wrapped.offset().view(6, 6)
    expected = torch.tanh(x @ w.T) @ w.T  # the offset applied in both places, not only where it was named
    torch.testing.assert_close(wrapped(x), expected)


# ------------------------------------------------------------------------------------------------ memory
def test_fastfood_fixed_memory_does_not_grow_with_d(model):
    units = resolve_targets(model, "attn")
    D = subspace_size(units)
    small = SubspaceModel(copy.deepcopy(model), units, 10, projection="fastfood")
    full = SubspaceModel(copy.deepcopy(model), units, D, projection="fastfood")
    L = 1 << (D - 1).bit_length()
    assert small.projection.memory_bytes() == full.projection.memory_bytes() == 16 * L
    for wrapped in (small, full):  # work vectors, kept between calls: two of length L whatever d
        wrapped.projection(wrapped.theta_d.detach().requires_grad_()).sum().backward()
    assert small.projection.work_memory_bytes() == full.projection.work_memory_bytes() == 8 * L
    dense = SubspaceModel(copy.deepcopy(model), units, 10, projection="dense")
    assert dense.projection.memory_bytes() == 4 * D * 10
