from __future__ import annotations

import pytest
import torch
from conftest import TINY_ARCHS, make_tiny

from petl_analysis.errors import PetlError
from petl_analysis.models import (
    ModelSpec,
    catalogue,
    create_model,
    load_weights,
    model_input_config,
    resolve_targets,
    save_weights,
)


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
def test_catalogue_names_resolve_on_each_architecture(arch: str) -> None:
    model = make_tiny(arch)
    units = catalogue(model)
    kinds = {u.kind for u in units}
    assert {"attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2", "norm1", "norm2"} <= kinds
    params = dict(model.named_parameters())
    for u in units:
        for t in u.tensors:
            assert t.param in params, (arch, u.name, t.param)
            full = params[t.param].shape
            if t.rows is not None:
                assert t.rows[1] <= full[0] and t.shape == (t.rows[1] - t.rows[0], *full[1:])
            else:
                assert t.shape == tuple(full)
    v = resolve_targets(model, "attn.v")
    assert [u.name for u in v] == ["blocks.0.attn.v", "blocks.1.attn.v"]
    assert all(u.out_features == 32 and u.in_features == 32 for u in v)
    # groups and block selections
    assert [u.name for u in resolve_targets(model, "blocks[1].mlp")] == ["blocks.1.mlp.fc1", "blocks.1.mlp.fc2"]
    assert len(resolve_targets(model, "attn")) == len(resolve_targets(model, "attn.qkv,attn.proj"))


def test_fused_slices_cover_the_qkv_rows_and_bias(tiny_vit) -> None:
    q, k, v = resolve_targets(tiny_vit, "blocks.0.attn.q,blocks.0.attn.k,blocks.0.attn.v")
    assert (q.rows, k.rows, v.rows) == ((0, 64), (64, 128), (128, 192))
    assert v.module == "blocks.0.attn.qkv" and v.biases[0].rows == (128, 192)
    assert v.numel == 64 * 64 + 64


def test_beit_biases_held_apart() -> None:
    model = make_tiny("beit")
    q, k, v = resolve_targets(model, "blocks.0.attn.q,blocks.0.attn.k,blocks.0.attn.v")
    assert q.biases[0].param == "blocks.0.attn.q_bias" and v.biases[0].param == "blocks.0.attn.v_bias"
    assert k.biases == ()  # BEiT's k bias is a zero buffer, not a parameter


def test_eva_separate_linears_and_module_names() -> None:
    model = make_tiny("eva")
    (v,) = resolve_targets(model, "blocks.1.attn.v")
    assert v.module == "blocks.1.attn.v_proj" and v.rows is None
    assert resolve_targets(model, "blocks.1.attn.v_proj") == [v]
    # attn.qkv means q, k and v when they are separate
    assert [u.kind for u in resolve_targets(model, "blocks[0].attn.qkv")] == ["attn.q", "attn.k", "attn.v"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("attn.x", "unknown target 'attn.x'"),
        ("blocks[7].attn.v", "block 7 does not exist"),
        ("blocks[3-1].mlp", "bad block range"),
        ("attn.qkv,attn.v", "overlap"),
        ("", "no targets given"),
    ],
)
def test_bad_targets(tiny_vit, spec: str, message: str) -> None:
    with pytest.raises(PetlError, match=message):
        resolve_targets(tiny_vit, spec)


def test_unknown_model_and_model_without_blocks() -> None:
    with pytest.raises(PetlError, match="unknown model 'vit_nonexistent_xx'"):
        create_model("vit_nonexistent_xx")
    with pytest.raises(PetlError, match="'resnet18' is not supported: it has no flat list of attention.MLP"):
        create_model(ModelSpec("resnet18", weights="random"))
    with pytest.raises(
        PetlError, match=r"hierarchical .* choose a plain ViT-family model such as vit_tiny_patch16_224"
    ):
        create_model(
            ModelSpec("swin_tiny_patch4_window7_224", weights="random", img_size=32, kwargs=dict(depths=(1, 1, 1, 1)))
        )


@pytest.mark.parametrize(
    "spec, message",
    [
        (dict(img_size=30, patch_size=16), "img_size 30 is not a multiple of patch_size 16; use img_size 16 or 32"),
        (dict(img_size=7, patch_size=14), "img_size 7 is not a multiple of patch_size 14; use img_size 14"),
        (dict(in_chans=2), "ModelSpec.in_chans must be one of 1, 3, or unset for the model's default; got 2"),
        (dict(img_size=0), "ModelSpec.img_size must be an integer >= 1, or unset for the model's default; got 0"),
        (dict(patch_size=True), "ModelSpec.patch_size must be an integer >= 1, or unset"),
    ],
)
def test_impossible_sizes_are_one_line_errors(spec: dict, message: str) -> None:
    with pytest.raises(PetlError) as e:
        ModelSpec("vit_tiny_patch16_224", weights="random", **spec)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_size_the_model_default_patch_does_not_divide_is_refused_after_build() -> None:
    with pytest.raises(PetlError, match="'eva02_tiny_patch14_224': img_size 30 is not a multiple of patch_size 14"):
        create_model(ModelSpec("eva02_tiny_patch14_224", weights="random", img_size=30, kwargs=dict(depth=1)))


def test_size_overrides_build_the_model_they_say() -> None:
    model = create_model(
        ModelSpec(
            "vit_tiny_patch16_224", weights="random", img_size=32, patch_size=8, in_chans=1, kwargs=dict(depth=1)
        )
    )
    assert model_input_config(model)["img_size"] == 32 and model_input_config(model)["in_chans"] == 1
    assert tuple(model.patch_embed.patch_size) == (8, 8)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_checkpoint_round_trip(tmp_path, tiny_vit, suffix: str) -> None:
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_weights(tiny_vit, path)
    else:
        torch.save({"state_dict": tiny_vit.state_dict()}, path)
    other = create_model(ModelSpec("petl_vit_tiny", weights=str(path), num_classes=5))
    x = torch.randn(3, 1, 16, 16)
    assert torch.equal(other(x), tiny_vit(x))


def test_checkpoint_errors(tmp_path, tiny_vit) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(tiny_vit, path)
    # another class count is not an error: the head is dropped (tests/test_loading.py)
    assert create_model(ModelSpec("petl_vit_tiny", weights=str(path), num_classes=7)).petl_weights.head == "dropped"
    with pytest.raises(PetlError, match="does not exist"):
        create_model(ModelSpec("petl_vit_tiny", weights=str(tmp_path / "missing.pt")))
    # a pickle that needs arbitrary objects is refused by weights_only=True
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": tiny_vit.state_dict(), "obj": object.__new__(_Opaque)}, evil)
    with pytest.raises(PetlError, match="cannot be loaded safely"):
        load_weights(tiny_vit, evil)
    other = make_tiny("vit")
    with pytest.raises(PetlError, match="wrong architecture|lacks"):
        load_weights(other, path)


class _Opaque:
    pass


def test_input_config(tiny_vit) -> None:
    cfg = model_input_config(tiny_vit)
    assert cfg == {"img_size": 16, "in_chans": 1, "mean": (0.5,), "std": (0.5,)}


# --------------------------------------------------------------------------------------------------- gated MLPs


def test_swiglu_catalogues_gate_and_value_and_fc1_means_both() -> None:
    model = make_tiny("eva_swiglu")
    kinds = {u.kind for u in catalogue(model)}
    assert {"mlp.fc1_g", "mlp.fc1_x", "mlp.fc2"} <= kinds and "mlp.fc1" not in kinds
    g, x = resolve_targets(model, "blocks.0.mlp.fc1_g,blocks.0.mlp.fc1_x")
    assert (g.module, x.module) == ("blocks.0.mlp.fc1_g", "blocks.0.mlp.fc1_x") and g.rows is None
    assert g.weight.shape == (128, 48) and g.numel == 128 * 48 + 128
    assert resolve_targets(model, "blocks.0.mlp.fc1_g") == [g]  # the timm module name is the unit name here
    assert [u.name for u in resolve_targets(model, "blocks[1].mlp.fc1")] == [
        "blocks.1.mlp.fc1_g",
        "blocks.1.mlp.fc1_x",
    ]
    assert [u.kind for u in resolve_targets(model, "blocks[1].mlp")] == ["mlp.fc1_g", "mlp.fc1_x", "mlp.fc2"]
    assert [u.kind for u in resolve_targets(model, "blocks[1]") if u.group == "mlp"] == [
        "mlp.fc1_g",
        "mlp.fc1_x",
        "mlp.fc2",
    ]
    assert len(resolve_targets(model, "mlp.fc1,mlp.fc1_g")) == 4  # the same units, not an overlap


def test_every_default_probe_target_resolves_on_gated_mlps() -> None:
    from petl_analysis.models import DEFAULT_PROBE_TARGETS

    for arch in ("eva_swiglu", "eva_packed"):
        model = make_tiny(arch)
        for spec in DEFAULT_PROBE_TARGETS:
            assert resolve_targets(model, spec), (arch, spec)


def test_packed_glu_fc1_is_one_unit_with_gate_and_value_row_halves() -> None:
    model = make_tiny("eva_packed")
    mlp = model.blocks[0].mlp
    assert mlp.gate_last is False  # timm's SwiGLUPacked layout: [gate, value]
    fc1, g, x = (
        resolve_targets(model, "blocks.0.mlp.fc1")[0],
        *resolve_targets(model, "blocks.0.mlp.fc1_g,blocks.0.mlp.fc1_x"),
    )
    assert fc1.rows is None and fc1.weight.shape == (256, 48)
    assert (g.module, g.rows, x.rows) == ("blocks.0.mlp.fc1", (0, 128), (128, 256))
    assert g.biases[0].rows == (0, 128) and x.biases[0].rows == (128, 256)
    assert [u.kind for u in resolve_targets(model, "blocks[0].mlp")] == ["mlp.fc1", "mlp.fc2"]
    with pytest.raises(PetlError, match="overlap"):
        resolve_targets(model, "blocks.0.mlp.fc1,blocks.0.mlp.fc1_x")
    # The value half really is the value: zero its rows and the MLP outputs fc2's bias alone (act(gate) * 0).
    with torch.no_grad():
        mlp.fc1.weight[x.rows[0] : x.rows[1]] = 0
        mlp.fc1.bias[x.rows[0] : x.rows[1]] = 0
        out = mlp(torch.randn(3, 4, 48))
    torch.testing.assert_close(out, mlp.fc2.bias.expand_as(out))
    mlp.gate_last = True  # the other GluMlp layout, [value, gate]
    g2, x2 = resolve_targets(model, "blocks.0.mlp.fc1_g,blocks.0.mlp.fc1_x")
    assert (g2.rows, x2.rows) == ((128, 256), (0, 128))


def test_gated_kinds_on_a_plain_mlp_are_a_one_line_error(tiny_vit) -> None:
    with pytest.raises(PetlError, match="this model has no 'mlp.fc1_g' units"):
        resolve_targets(tiny_vit, "mlp.fc1_g")
