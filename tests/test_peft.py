"""The peft export on tiny timm ViT, BEiT and EVA: exact where peft can hold it, refused where it would be inert."""

from __future__ import annotations

import pytest
import torch

peft = pytest.importorskip("peft")  # the `test` extra installs it: CI runs this file

from petl_analysis.errors import PetlError  # noqa: E402
from petl_analysis.models import ModelSpec, create_model  # noqa: E402
from petl_analysis.plan import export_peft, fixed_plan, write_peft_adapter  # noqa: E402
from petl_analysis.tuners import LoraConfig, apply_method  # noqa: E402

#: Tiny random-weights timm models; BEiT and EVA-02 (fused qkv, timm's default) read ``qkv.weight`` via F.linear.
SPECS = {
    "vit": ModelSpec(
        "vit_tiny_patch16_224",
        weights="random",
        img_size=32,
        patch_size=8,
        num_classes=5,
        kwargs=dict(embed_dim=32, depth=2, num_heads=2),
    ),
    "beit": ModelSpec(
        "beit_base_patch16_224",
        weights="random",
        img_size=32,
        patch_size=8,
        num_classes=5,
        kwargs=dict(embed_dim=32, depth=2, num_heads=2),
    ),
    "eva": ModelSpec(
        "eva02_tiny_patch14_224",
        weights="random",
        img_size=28,
        patch_size=14,
        num_classes=5,
        kwargs=dict(embed_dim=32, depth=2, num_heads=2),
    ),
}


def _base(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(SPECS[arch]).eval()


def _input(arch: str) -> torch.Tensor:
    size = SPECS[arch].img_size
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def _trained_lora(arch: str, targets: list[str]):
    model = _base(arch)
    method = apply_method(model, LoraConfig(targets=targets, rank=2, alpha=4.0))
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in method.adapter_state_dict(model).values():  # as if trained: B non-zero, the head moved
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval(), method


def _peft_output(arch: str, folder) -> torch.Tensor:
    loaded = peft.PeftModel.from_pretrained(_base(arch), str(folder)).eval()
    with torch.no_grad():
        return loaded(_input(arch))


def _inert_in_peft(arch: str, module: str) -> bool:
    """Ground truth, straight from peft: a LoRA with a non-zero B on ``module`` leaves the output unchanged."""
    base = _base(arch)
    with torch.no_grad():
        before = base(_input(arch))
    wrapped = peft.get_peft_model(base, peft.LoraConfig(r=2, lora_alpha=2, target_modules=[module]))
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_()
        return torch.equal(wrapped(_input(arch)), before)


@pytest.mark.parametrize(
    "arch,targets",
    [("vit", ["attn.q", "attn.v", "mlp.fc1"]), ("beit", ["mlp.fc1", "attn.proj"]), ("eva", ["mlp.fc1", "attn.proj"])],
)
def test_a_lora_written_for_peft_loads_with_our_outputs(arch, targets, tmp_path) -> None:
    model, method = _trained_lora(arch, targets)
    write_peft_adapter(model, method, tmp_path / "peft", model_name=SPECS[arch].name)
    assert {p.name for p in (tmp_path / "peft").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    with torch.no_grad():
        ours, base = model(_input(arch)), _base(arch)(_input(arch))
    theirs = _peft_output(arch, tmp_path / "peft")
    assert not torch.allclose(theirs, base, atol=1e-3)  # the export is not inert
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)


def test_peft_on_the_fused_qkv_of_vit_is_live() -> None:
    assert not _inert_in_peft("vit", "blocks.0.attn.qkv")


@pytest.mark.parametrize("arch", ["beit", "eva"])
def test_an_inert_peft_target_is_refused_naming_the_model_and_the_target(arch, tmp_path) -> None:
    assert _inert_in_peft(arch, "blocks.0.attn.qkv")  # what the refusal guards against, measured in peft itself
    model = _base(arch)
    plan = fixed_plan(model, ["attn.q", "attn.v"], 2_000, method="lora", model_spec=SPECS[arch])
    name = SPECS[arch].name
    with pytest.raises(
        PetlError, match=rf"peft export refused: {name} never calls the forward of blocks\.0\.attn\.qkv"
    ):
        export_peft(plan, model)
    trained, method = _trained_lora(arch, ["attn.q", "attn.v"])
    with pytest.raises(PetlError, match=rf"{name} never calls the forward of blocks\.0\.attn\.qkv"):
        write_peft_adapter(trained, method, tmp_path / "peft", model_name=name)
    assert not (tmp_path / "peft").exists()


def test_kadaptation_exports_as_lokr_labelled_approximate_with_both_counts() -> None:
    model = _base("vit")
    plan = fixed_plan(model, ["attn.q", "attn.v"], 2_000, method="kadaptation", model_spec=SPECS["vit"])
    record = export_peft(plan, model)
    assert record.method == "LOKR" and record.approximate is True
    assert record.trainable["plan"] == plan.trainable["total_excl_head"]
    assert record.trainable["peft"] is not None and record.trainable["peft"] != record.trainable["plan"]
    assert any("approximates KAdaptation" in n for n in record.not_mapped)
    peft.get_peft_model(_base("vit"), peft.get_peft_config(record.peft_config))  # peft reads the config


def test_the_export_peft_command_writes_what_peft_loads_with_our_outputs(tmp_path) -> None:
    from typer.testing import CliRunner

    from petl_analysis.cli.main import app
    from petl_analysis.tuners import save_adapter

    spec = ModelSpec("petl_vit_tiny")  # bundled weights: a base the command can rebuild from the record
    model = create_model(spec, num_classes=10).eval()
    method = apply_method(model, LoraConfig(rank=2))
    with torch.no_grad():
        for p in method.adapter_state_dict(model).values():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(3))
    save_adapter(model, method, tmp_path / "ours", model_spec=spec)
    result = CliRunner().invoke(app, ["export-peft", str(tmp_path / "ours"), "--out", str(tmp_path / "peft")])
    assert result.exit_code == 0, result.output
    x = torch.randn(3, 1, 16, 16)
    loaded = peft.PeftModel.from_pretrained(create_model(spec, num_classes=10), str(tmp_path / "peft")).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=1e-5)
    wrong = CliRunner().invoke(app, ["export-peft", str(tmp_path / "peft"), "--out", str(tmp_path / "again")])
    assert wrong.exit_code != 0 and "is a peft adapter, not a petl-analysis one" in wrong.output
