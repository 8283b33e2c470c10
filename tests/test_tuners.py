"""The common tester for adaptation methods, plus method-specific checks (KAdaptation maths, paper counts).

One parametrised class runs the same assertions over every method config on the bundled tiny ViT and, for the
weight-delta methods, on tiny BEiT and EVA models, whose attention reads ``qkv.weight`` directly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from conftest import GLU_ARCHS, TINY_ARCHS, make_tiny
from torch import nn

from petl_analysis.accounting import count_parameters
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec, create_model, model_input_config
from petl_analysis.tuners import (
    METHODS,
    AdapterConfig,
    BitFitConfig,
    CompacterConfig,
    FullConfig,
    KAdaptationConfig,
    LayerNormConfig,
    LinearConfig,
    LoraConfig,
    MethodConfig,
    VptConfig,
    apply_method,
    config_from_dict,
    get_method,
    load_adapter,
    save_adapter,
)
from petl_analysis.tuners.deltas import delta_containers
from petl_analysis.tuners.kadaptation import KronDelta

BATCH = 4

# EVA with a fused qkv (the default): attention calls F.linear(x, self.qkv.weight, qkv_bias).
_ARCHS = {
    **TINY_ARCHS,
    "eva_fused": dict(TINY_ARCHS["eva"], kwargs=dict(embed_dim=32, depth=2, num_heads=2)),
    **GLU_ARCHS,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one intra-op thread is faster than two, and far faster on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(arch: str) -> nn.Module:
    """A fresh random model; the same arch always gives the same base weights."""
    if arch == "tiny":
        torch.manual_seed(0)
        return create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=5))
    TINY_ARCHS.setdefault(arch, _ARCHS[arch])
    return make_tiny(arch)


def inputs(model: nn.Module, seed: int = 1, batch: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = model_input_config(model)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg["in_chans"], cfg["img_size"], cfg["img_size"], generator=g)
    y = torch.randint(0, 5, (batch,), generator=g)
    return x, y


def train(model: nn.Module, steps: int = 2, lr: float = 1e-2) -> torch.optim.Optimizer:
    """A few Adam steps on random data (moves every zero-initialised factor away from zero)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    for s in range(steps):
        x, y = inputs(model, seed=10 + s)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    return opt


@dataclass(frozen=True)
class Case:
    id: str
    config: MethodConfig
    archs: tuple[str, ...] = ("tiny",)

    @property
    def noop_at_init(self) -> bool:
        # VPT adds tokens that every patch token attends to: the output changes from the first forward whatever the
        # prompts' values, so it cannot be a no-op at init (no zero gate: the VPT paper has none).
        return self.config.method != "vpt"

    @property
    def mergeable(self) -> bool:
        return METHODS.get(self.config.method).mergeable


DELTA_ARCHS = ("tiny", "beit", "eva_fused")
GLU = ("eva_swiglu", "eva_packed")
CASES = [
    Case("linear", LinearConfig()),
    Case("full", FullConfig()),
    Case("bitfit", BitFitConfig(), DELTA_ARCHS),
    Case("bitfit-v-slice", BitFitConfig(targets=["attn.v"]), DELTA_ARCHS),
    Case("layernorm", LayerNormConfig()),
    Case("lora-qv", LoraConfig(targets=["attn.q", "attn.v"], rank=2, alpha=4.0), DELTA_ARCHS),
    Case(
        "lora-qkv-mlp-dropout",
        LoraConfig(targets=["attn.qkv", "blocks[0-1].mlp"], rank=2, dropout=0.1),
        ("tiny", "beit"),
    ),
    Case("kadaptation", KAdaptationConfig(n=4), DELTA_ARCHS),
    Case("kadaptation-bias", KAdaptationConfig(n=4, bias=True), DELTA_ARCHS),
    Case(
        "kadaptation-global-fullA",
        KAdaptationConfig(n=2, rank=2, sharing="global", a_factorised=False),
        ("tiny", "beit"),
    ),
    Case("kadaptation-none-proj-fc1", KAdaptationConfig(n=4, sharing="none", targets=["attn.proj", "mlp.fc1"])),
    Case("kadaptation-pevit", KAdaptationConfig(n=4, bias=True, init="pevit"), ("tiny", "beit")),
    Case("adapter", AdapterConfig(bottleneck=8), ("tiny", "beit")),
    Case("compacter", CompacterConfig(n=4, bottleneck=8)),
    Case("compacter-trained-rules", CompacterConfig(n=2, bottleneck=8, train_rule=True, shared_rule=False)),
    # Gated MLPs: separate fc1_g / fc1_x Linears (SwiGLU) and their row halves of a packed fc1 (GluMlp).
    Case("lora-glu-mlp", LoraConfig(targets=["mlp"], rank=2), GLU),
    Case("kadaptation-glu-gate-value", KAdaptationConfig(n=4, bias=True, targets=["mlp.fc1_g", "mlp.fc1_x"]), GLU),
    Case("kadaptation-glu-fc1-none", KAdaptationConfig(n=2, sharing="none", targets=["blocks[1].mlp.fc1"]), GLU),
    Case("bitfit-glu-value", BitFitConfig(targets=["mlp.fc1_x"]), GLU),
    Case("full-glu", FullConfig(), GLU),
    Case("layernorm-glu", LayerNormConfig(), GLU),
    Case("adapter-glu", AdapterConfig(bottleneck=8), GLU),
    Case("compacter-glu", CompacterConfig(n=4, bottleneck=8), GLU),
    Case("vpt-shallow", VptConfig(num_prompts=3)),
    Case("vpt-deep", VptConfig(num_prompts=2, mode="deep")),
]
PARAMS = [pytest.param(c, a, id=f"{c.id}-{a}") for c in CASES for a in c.archs]


_TRAINED: dict[tuple[str, str], tuple[nn.Module, nn.Module, object]] = {}


def adapted_and_trained(case: Case, arch: str) -> tuple[nn.Module, nn.Module, object]:
    """``(just applied, trained 2 steps, method)`` for a case, built once per session; callers copy before mutating."""
    key = (case.id, arch)
    if key not in _TRAINED:
        model = build(arch)
        method = apply_method(model, case.config)
        initial = copy.deepcopy(model)
        train(model, steps=2)
        _TRAINED[key] = (initial, model, method)
    return _TRAINED[key]


def _kron_factor(name: str) -> bool:
    return any(f".{k}" in name for k in ("rules.a", "rules.b", "rules.A")) or name.endswith((".u", ".v"))


@pytest.mark.parametrize("case,arch", PARAMS)
class TestMethod:
    """Shared assertions for every method config."""

    def test_noop_at_init_and_count(self, case: Case, arch: str) -> None:
        model = build(arch)
        x, _ = inputs(model)
        with torch.no_grad():
            before = model(x)
        method = get_method(case.config)
        expected = method.expected_count(model)
        method.apply(model)
        assert count_parameters(model) == expected
        if case.noop_at_init:
            with torch.no_grad():
                torch.testing.assert_close(model(x), before, atol=1e-6, rtol=0)

    def test_every_trainable_tensor_gets_gradient(self, case: Case, arch: str) -> None:
        model = build(arch)
        apply_method(model, case.config)
        train(model, steps=1)  # one step moves zero-initialised factors (LoRA B, Kronecker v, adapter Up)
        x, y = inputs(model, seed=3)
        model.train()
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        assert grads
        if case.config.method == "kadaptation" and case.config.init == "pevit":
            # The official init (u = v = 0) leaves every Kronecker factor with exactly zero gradient, forever.
            factors = {n: g for n, g in grads.items() if _kron_factor(n)}
            assert factors and all(g is not None and torch.count_nonzero(g) == 0 for g in factors.values())
            assert all(torch.count_nonzero(p) == 0 for n, p in model.named_parameters() if n.endswith((".u", ".v")))
            others = {n: g for n, g in grads.items() if n not in factors}  # the bias b and the head
            assert others and all(g is not None and torch.count_nonzero(g) > 0 for g in others.values())
        else:
            zero = [n for n, g in grads.items() if g is None or torch.count_nonzero(g) == 0]
            assert not zero, f"no gradient reached {zero}"

    def test_frozen_parameters_unchanged_by_training(self, case: Case, arch: str) -> None:
        initial, trained, _ = adapted_and_trained(case, arch)
        before = dict(initial.named_parameters())
        for n, p in trained.named_parameters():
            if not p.requires_grad:
                assert torch.equal(p, before[n]), n

    def test_merge_unmerge(self, case: Case, arch: str) -> None:
        _, trained, method = adapted_and_trained(case, arch)
        model = copy.deepcopy(trained)
        x, _ = inputs(model)
        with torch.no_grad():
            base = build(arch)(x)
        originals = {n: p.detach().clone() for n, p in model.named_parameters()}
        with torch.no_grad():
            adapted = model(x)
        assert not torch.allclose(adapted, base, atol=1e-4), "training did not change the output: delta ignored?"
        if not case.mergeable:
            with pytest.raises(PetlError, match="cannot be merged"):
                method.merge(model)
            with pytest.raises(PetlError, match="cannot be unloaded"):
                method.unload(model)
            return
        method.merge(model)
        with torch.no_grad():
            torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=0)
        method.unmerge(model)
        with torch.no_grad():
            torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=0)
        for n, p in model.named_parameters():
            torch.testing.assert_close(p, originals[n], atol=1e-6, rtol=0)
        method.unload(model)  # plain timm model again: original names, adapted values
        assert not any(".parametrizations." in k for k in model.state_dict())
        assert set(model.state_dict()) == set(build(arch).state_dict())
        with torch.no_grad():
            torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=0)

    def test_save_load_round_trip(self, case: Case, arch: str, tmp_path) -> None:
        _, model, method = adapted_and_trained(case, arch)
        save_adapter(model, method, tmp_path / "adapter")
        fresh = build(arch)
        loaded = load_adapter(fresh, tmp_path / "adapter")
        assert loaded.config == method.config
        x, _ = inputs(model)
        with torch.no_grad():
            torch.testing.assert_close(fresh(x), model(x), atol=1e-6, rtol=0)
        assert count_parameters(fresh) == count_parameters(model)

    def test_sample_independent_of_batch(self, case: Case, arch: str) -> None:
        _, model, _ = adapted_and_trained(case, arch)
        x, _ = inputs(model, seed=5)
        other, _ = inputs(model, seed=6)
        mixed = torch.cat([x[:1], other[1:]])
        with torch.no_grad():
            torch.testing.assert_close(model(mixed)[0], model(x)[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(model(x[:1])[0], model(x)[0], atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------------- KAdaptation
def _dense_reference(delta: KronDelta) -> torch.Tensor:
    A = delta.rules.matrices()
    B = delta.u @ delta.v.transpose(-1, -2)
    return delta.scale * sum(torch.kron(A[i], B[i]) for i in range(A.shape[0]))


@pytest.mark.parametrize("factorised", [True, False])
def test_kadaptation_delta_equals_dense_kron_reference(factorised: bool) -> None:
    model = build("tiny")
    cfg = KAdaptationConfig(n=4, rank=2, scale=3.0, a_factorised=factorised)
    apply_method(model, cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_()
    deltas = [m for m in model.modules() if isinstance(m, KronDelta)]
    assert len(deltas) == 2 * 4
    for d in deltas:
        torch.testing.assert_close(d.delta(), _dense_reference(d), atol=1e-4, rtol=1e-5)
    # and the effective weight is W0 + ΔW on exactly the q and v rows
    qkv = model.blocks[0].attn.qkv
    ((_, original, container),) = [c for c in delta_containers(model) if c[0] == "blocks.0.attn.qkv.weight"]
    dq, dv = (container.deltas[k].delta() for k in ("kadaptation_attn_q", "kadaptation_attn_v"))
    expected = original.detach().clone()
    expected[:64] += dq
    expected[128:] += dv
    torch.testing.assert_close(qkv.weight, expected)


@pytest.mark.parametrize("sharing,sets", [("type", 2), ("global", 1), ("none", 8)])
def test_kadaptation_rule_sharing(sharing: str, sets: int) -> None:
    model = build("tiny")
    method = apply_method(model, KAdaptationConfig(n=4, sharing=sharing))
    rules = {id(d.rules) for d in model.modules() if isinstance(d, KronDelta)}
    assert len(rules) == sets
    if sharing == "type":
        q_rules = {
            id(
                model.get_submodule(f"blocks.{i}.attn.qkv")
                .parametrizations.weight[0]
                .deltas["kadaptation_attn_q"]
                .rules
            )
            for i in range(4)
        }
        assert len(q_rules) == 1  # one object for all layers' q
    count = count_parameters(model)
    per_set = 2 * 4 * 4
    assert count.shared == (per_set * sets if sets < 8 else 0)
    assert count.adapter == 8 * (64 + 64) + (per_set * 8 if sets == 8 else 0)
    assert count == method.expected_count(build("tiny"))
    # each shared tensor is saved once
    state = method.adapter_state_dict(model)
    assert sum(1 for k in state if k.endswith("rules.a")) == sets


def test_kadaptation_n_must_divide_lists_valid_n() -> None:
    model = build("tiny")
    with pytest.raises(PetlError, match=r"n=5 does not divide .*valid n for these targets: 1, 2, 4, 8, 16, 32, 64"):
        apply_method(model, KAdaptationConfig(n=5))
    with pytest.raises(PetlError, match="valid n"):
        get_method(KAdaptationConfig(n=3)).expected_count(model)
    assert not any(p.requires_grad is False for p in model.parameters())  # untouched after the failure


def test_kadaptation_bias_needs_bias_of_output_width() -> None:
    model = build("beit")  # attn.qkv of BEiT has q_bias and v_bias held apart, each a third of its width
    with pytest.raises(PetlError, match="bias=true needs every target"):
        apply_method(model, KAdaptationConfig(n=4, bias=True, targets=["attn.qkv"]))


@pytest.mark.parametrize("arch", ["tiny", "beit"])
@pytest.mark.parametrize(
    "config",
    [LoraConfig(targets=["attn.q", "attn.v"]), KAdaptationConfig(n=4, bias=True), BitFitConfig(targets=["attn.v"])],
    ids=["lora", "kadaptation", "bitfit"],
)
def test_only_targeted_rows_of_fused_qkv_change(arch: str, config: MethodConfig) -> None:
    model = build(arch)
    before = {n: t.detach().clone() for n, t in _qkv_tensors(model).items()}
    apply_method(model, config)
    train(model, steps=2)
    d = model.embed_dim
    rows = {"q": slice(0, d), "k": slice(d, 2 * d), "v": slice(2 * d, 3 * d)}
    # rows expected to move, per tensor: LoRA touches weights only, BitFit biases only, KAdaptation(bias) both
    targeted = {"lora": ("qv", ""), "kadaptation": ("qv", "qv"), "bitfit": ("", "v")}[config.method]
    for (name, now), letters in zip(_qkv_tensors(model).items(), targeted):
        for letter, sl in rows.items():
            changed = not torch.equal(now[sl], before[name][sl])
            assert changed == (letter in letters), (name, letter)


@pytest.mark.parametrize(
    "config",
    [
        LoraConfig(targets=["mlp.fc1_x"]),
        KAdaptationConfig(n=4, bias=True, targets=["mlp.fc1_x"]),
        BitFitConfig(targets=["mlp.fc1_x"]),
    ],
    ids=["lora", "kadaptation", "bitfit"],
)
def test_only_the_value_half_of_a_packed_glu_fc1_changes(config: MethodConfig) -> None:
    model = build("eva_packed")
    fc1 = model.blocks[0].mlp.fc1
    before = {"weight": fc1.weight.detach().clone(), "bias": fc1.bias.detach().clone()}
    apply_method(model, config)
    train(model, steps=2)
    gate, value = slice(0, 128), slice(128, 256)
    moves = {"lora": ("weight",), "kadaptation": ("weight", "bias"), "bitfit": ("bias",)}[config.method]
    for name in ("weight", "bias"):
        now = getattr(fc1, name)
        assert torch.equal(now[gate], before[name][gate]), name
        assert (not torch.equal(now[value], before[name][value])) == (name in moves), name


def _qkv_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Effective fused qkv weight and bias of block 0 (BEiT: cat of q_bias, k_bias, v_bias)."""
    attn = model.blocks[0].attn
    bias = attn.qkv.bias if attn.qkv.bias is not None else torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
    return {"weight": attn.qkv.weight, "bias": bias}


def test_pevit_init_never_moves_kronecker_factors() -> None:
    model = build("tiny")
    apply_method(model, KAdaptationConfig(n=4, bias=True, init="pevit"))
    factors = {n: p.detach().clone() for n, p in model.named_parameters() if _kron_factor(n)}
    train(model, steps=3)
    for n, p in model.named_parameters():
        if n in factors:
            assert torch.equal(p, factors[n]), n
    assert all(torch.count_nonzero(d.delta()) == 0 for d in model.modules() if isinstance(d, KronDelta))


# ------------------------------------------------------------------------------------------- paper-scale counts
@pytest.fixture(scope="module")
def clip_b32() -> nn.Module:
    torch.manual_seed(0)
    return create_model(ModelSpec("vit_base_patch32_clip_224", weights="random", num_classes=10))


def test_paper_counts_on_clip_vit_b32(clip_b32: nn.Module) -> None:
    def count(cfg: MethodConfig) -> int:
        return get_method(cfg).expected_count(clip_b32).total_excl_head

    kad = get_method(KAdaptationConfig(n=32, rank=1, targets=["attn.q", "attn.v"], sharing="type"))
    c = kad.expected_count(clip_b32)
    assert (c.adapter, c.shared) == (12 * 3072, 4096)  # 3,072 per layer + 4,096 shared rule factors
    c = get_method(KAdaptationConfig(n=32, rank=1, bias=True)).expected_count(clip_b32)
    assert (c.adapter, c.shared, c.total_excl_head) == (12 * 3840, 4096, 50_176)  # PEViT: 12 x 3,840 + 4,096
    assert c.head == 768 * 10 + 10
    assert count(LoraConfig(rank=4, alpha=128, targets=["attn.q", "attn.v"])) == 147_456
    assert count(CompacterConfig(n=4, rank=1, bottleneck=64)) == 12 * 4_032
    assert count(AdapterConfig(bottleneck=64, layernorm=True)) == 12 * 100_672


def test_paper_kadaptation_count_after_apply(clip_b32: nn.Module) -> None:
    model = copy.deepcopy(clip_b32)
    method = apply_method(model, KAdaptationConfig(n=32, rank=1, bias=True))
    c = count_parameters(model)
    assert c.total_excl_head == 50_176 and c == method.expected_count(clip_b32)


# -------------------------------------------------------------------------------------------- configs and misc
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_config_dict_round_trip(case: Case) -> None:
    d = case.config.to_dict()
    assert config_from_dict(d) == case.config
    assert config_from_dict(__import__("json").loads(__import__("json").dumps(d))) == case.config


def test_config_errors_are_one_line() -> None:
    with pytest.raises(PetlError, match="unknown method 'nope'"):
        config_from_dict({"method": "nope"})
    with pytest.raises(PetlError, match="unknown option 'n'"):
        config_from_dict({"method": "lora", "n": 3})
    with pytest.raises(PetlError, match=r"^LoraConfig\.rank must be an integer >= 1; got 0$"):
        LoraConfig(rank=0)
    # LoRA's rank was called r (peft's name) before: saved plans, sweeps and adapters still load
    assert config_from_dict({"method": "lora", "r": 3}) == LoraConfig(rank=3)
    with pytest.raises(
        PetlError, match=r"^KAdaptationConfig\.sharing must be one of 'global', 'none', 'type'; got 'layer'$"
    ):
        KAdaptationConfig(sharing="layer")
    with pytest.raises(PetlError, match=r"^KAdaptationConfig\.dropout must be a float in \[0, 1\); got 1\.0$"):
        KAdaptationConfig(dropout=1.0)
    with pytest.raises(PetlError, match=r"^LoraConfig\.targets must be a non-empty list of target specs such as"):
        LoraConfig(targets=[])
    with pytest.raises(PetlError, match=r"^LoraConfig\.method must be 'lora'; got 'kadaptation'$"):
        LoraConfig(method="kadaptation")
    with pytest.raises(PetlError, match=r"^AdapterConfig\.layernorm must be true or false; got 1$"):
        AdapterConfig(layernorm=1)
    assert LoraConfig(targets="attn.q, attn.v").targets == ["attn.q", "attn.v"]
    assert isinstance(LoraConfig(alpha=4).alpha, float)  # stored as a float: files and trial keys read 4.0
    with pytest.raises(PetlError, match="nothing to train"):
        LinearConfig(train_head=False)


def test_wrong_targets_rejected_before_any_change() -> None:
    model = build("tiny")
    with pytest.raises(PetlError, match="lora targets linear weights"):
        apply_method(model, LoraConfig(targets=["norm1"]))
    with pytest.raises(PetlError, match="expected MLP targets"):
        apply_method(model, AdapterConfig(targets=["attn.q"]))
    with pytest.raises(PetlError, match="layernorm targets norm units"):
        apply_method(model, LayerNormConfig(targets=["attn.q"]))
    assert all(p.requires_grad for p in model.parameters())
    apply_method(model, LoraConfig())
    with pytest.raises(PetlError, match="already has adaptation modules"):
        apply_method(model, LoraConfig())


def test_load_adapter_errors(tmp_path) -> None:
    model = build("tiny")
    method = apply_method(model, LoraConfig(rank=2))
    state = method.adapter_state_dict(model)
    bad = dict(state)
    key = next(k for k in bad if k.endswith("lora_A"))
    bad[key] = torch.zeros(3, 3)
    with pytest.raises(PetlError, match="has shape"):
        method.load_adapter_state_dict(model, bad)
    with pytest.raises(PetlError, match="lacks 1 tensor"):
        method.load_adapter_state_dict(model, {k: v for k, v in state.items() if k != key})
    with pytest.raises(PetlError, match="adapter record .* does not exist"):
        load_adapter(build("tiny"), tmp_path / "nowhere")


def test_vpt_prompts_sit_after_prefix_and_are_not_pooled() -> None:
    model = build("vit")  # class token + token pooling
    tokens = model.patch_embed.num_patches
    apply_method(model, VptConfig(num_prompts=3))
    x, _ = inputs(model, batch=2)
    with torch.no_grad():
        feats = model.forward_features(x)
        prompts = model.petl_prompts.prompts[0]
        h = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    assert feats.shape[1] == 1 + 3 + tokens and model.num_prefix_tokens == 1 + 3
    torch.testing.assert_close(h[0, 1:4], prompts)  # inserted after the class token
    instead = r"use a ViT or DeiT with absolute position embeddings .*, or a method that adds no tokens \(kadaptation"
    with pytest.raises(PetlError, match=r"vpt cannot adapt Beit: its relative position bias tables .*; " + instead):
        apply_method(build("beit"), VptConfig())
    with pytest.raises(PetlError, match=r"vpt cannot adapt Eva: its rotary position embeddings .*; " + instead):
        apply_method(build("eva_swiglu"), VptConfig())
    no_entry = build("vit")
    del no_entry.norm_pre
    with pytest.raises(
        PetlError,
        match=r"vpt cannot adapt VisionTransformer: prompts enter after the patch and "
        r"position embedding .* \(its norm_pre\), which VisionTransformer lacks; " + instead,
    ):
        apply_method(no_entry, VptConfig())


def test_deepcopy_of_adapted_model_rebinds_hooks() -> None:
    model = build("tiny")
    apply_method(model, AdapterConfig(bottleneck=4))
    twin = copy.deepcopy(model)
    x, _ = inputs(model)
    with torch.no_grad():
        before = model(x)
        for p in twin.blocks[0].mlp.petl_adapter.up.parameters():
            p.fill_(0.5)
        torch.testing.assert_close(model(x), before)  # the original's hook did not follow the copy's module
        assert not torch.allclose(twin(x), before)


@pytest.mark.parametrize("arch", ["beit", "eva_fused"])
@pytest.mark.parametrize(
    "config",
    [LoraConfig(targets=["attn.q", "attn.v"], train_head=False), KAdaptationConfig(n=4, train_head=False)],
    ids=["lora", "kadaptation"],
)
def test_delta_reaches_attention_that_reads_qkv_weight_directly(arch: str, config: MethodConfig) -> None:
    """BEiT/EVA call F.linear(x, self.qkv.weight, ...): the adapted model must equal a plain model whose weights are
    W0 + ΔW, and differ from the base model."""
    model = build(arch)
    assert "F.linear" in __import__("inspect").getsource(type(model.blocks[0].attn).forward)
    apply_method(model, config)
    with torch.no_grad():
        for _n, p in model.named_parameters():
            if p.requires_grad:
                p.normal_()
    reference = build(arch)
    with torch.no_grad():
        for i, blk in enumerate(reference.blocks):
            blk.attn.qkv.weight.copy_(model.blocks[i].attn.qkv.weight)  # the parametrised (effective) weight
    x, _ = inputs(model)
    with torch.no_grad():  # features, not logits: the random heads of these models output ~1e-4
        out = model.forward_features(x)
        torch.testing.assert_close(out, reference.forward_features(x), atol=1e-5, rtol=0)
        assert (out - build(arch).forward_features(x)).abs().max() > 1e-2


def test_every_registered_method_has_a_case_in_the_common_tester():
    # Adding a method is the checklist in tuners/base.py; its step 4 is a Case here, and this test enforces it.
    assert set(METHODS.registered()) <= {c.config.method for c in CASES}


def test_a_registration_carries_what_the_study_the_report_and_the_cli_read():
    from petl_analysis.plan import FIXED_SIZE_METHODS, KNOBS, PLANNABLE
    from petl_analysis.report.plots import method_marker
    from petl_analysis.report.tables import display_name, method_name
    from petl_analysis.tuners import FIXED, PLANNED, Knob
    from petl_analysis.tuners.vpt.model import token_free_methods

    for name in METHODS.registered():
        m = METHODS.get(name)
        assert m.display_name and m.marker and (m.sizing in (PLANNED, FIXED) or isinstance(m.sizing, Knob))
        assert display_name(name, "sized") == m.display_name and method_marker(name) == m.marker
        assert method_name(name, short=True) == m.short_name and 0 < len(m.short_name) <= len(m.display_name)
        assert (name in PLANNABLE) == (m.sizing == PLANNED) and (name in FIXED_SIZE_METHODS) == (m.sizing == FIXED)
        assert (name in KNOBS) == isinstance(m.sizing, Knob)
        assert (name in token_free_methods()) == (not m.adds_tokens and m.config_class.uses_targets)
    assert len({METHODS.get(n).marker for n in METHODS.registered()}) == len(METHODS)  # one marker each
    # Narrow README cells read the short names; one each, or two oracles' cells could not be told apart.
    assert len({METHODS.get(n).short_name for n in METHODS.registered()}) == len(METHODS)
    assert [method_name(n, short=True) for n in ("kadaptation", "lora", "unregistered")] == [
        "KA",
        "LoRA",
        "unregistered",
    ]
    assert [n for n in METHODS.registered() if METHODS.get(n).peft_type] == ["kadaptation", "lora"]
