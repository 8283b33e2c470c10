"""Weights as timm users expect them, each case found by trying it as a new user would (issue 23, item 3).

No network: timm's pretrained weights and ``hf-hub:`` models are read from a fake Hugging Face cache
(``models--org--name/snapshots/<rev>/...`` with ``refs/main``) in a temporary folder, with offline mode on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants as hf_constants
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

from petl_analysis.artefacts import key_json
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec, WeightsLoad, create_model, save_weights, spec_with_load

#: A 2-block, 32-wide vit_tiny_patch16_224: its checkpoints are kilobytes.
TINY = dict(embed_dim=32, depth=2, num_heads=2)
#: timm's hub id of vit_tiny_patch16_224's default pretrained tag.
TIMM_HUB_ID = "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"


@pytest.fixture()
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache, offline (as CI runs: HF_HUB_OFFLINE=1)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return cache


def _cache_repo(cache: Path, repo: str, files: dict[str, bytes | dict]) -> None:
    """Lay out ``repo`` in the cache as huggingface_hub does: a snapshot folder named by a revision, and refs/main."""
    rev = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / rev
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(rev)
    for name, content in files.items():
        if isinstance(content, dict):
            save_file(content, str(snap / name))
        else:
            (snap / name).write_bytes(content)


def _tiny_state(seed: int = 0, **arch) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, **{**TINY, **arch})
    return {k: v.contiguous() for k, v in net.state_dict().items()}


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


# -- --weights default on a model other than the bundled one ---------------------------------------------------------


def test_default_weights_not_cached_offline_is_a_one_line_error_saying_what_to_pass(hf_cache) -> None:
    with pytest.raises(PetlError) as e:
        create_model(ModelSpec("vit_tiny_patch16_224", img_size=32, kwargs=TINY))
    text = _one_line(e)
    assert "'vit_tiny_patch16_224': pretrained weights unavailable" in text
    assert "not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in text
    assert "--weights random" in text and "local checkpoint path" in text and "--weights hub" in text
    with pytest.raises(PetlError, match="--weights dinov2-s14"):
        create_model(ModelSpec("vit_small_patch14_dinov2", img_size=28, kwargs=dict(depth=1)))


def test_default_weights_are_timm_pretrained_from_the_cache(hf_cache) -> None:
    state = _tiny_state(seed=3)  # 1000-class head, 14x14 grid (224 px)
    _cache_repo(hf_cache, TIMM_HUB_ID, {"model.safetensors": state})
    model = create_model(ModelSpec("vit_tiny_patch16_224", img_size=32, num_classes=7, kwargs=TINY))
    assert torch.equal(model.blocks[1].attn.qkv.weight, state["blocks.1.attn.qkv.weight"])
    expected_pos = resample_abs_pos_embed(state["pos_embed"], new_size=(2, 2), num_prefix_tokens=1)
    torch.testing.assert_close(model.pos_embed, expected_pos)
    record = model.petl_weights
    assert (record.source, record.location, record.head, record.checkpoint_classes) == (
        "timm-pretrained",
        TIMM_HUB_ID,
        "dropped",
        1000,
    )
    assert (record.pos_embed_from, record.pos_embed_to) == ([14, 14], [2, 2])
    # hub is the same source for a timm model
    assert torch.equal(
        create_model(
            ModelSpec("vit_tiny_patch16_224", weights="hub", img_size=32, num_classes=7, kwargs=TINY)
        ).pos_embed,
        model.pos_embed,
    )


def test_random_is_still_random_and_says_so(hf_cache) -> None:
    model = create_model(ModelSpec("vit_tiny_patch16_224", weights="random", img_size=32, kwargs=TINY))
    assert model.petl_weights == WeightsLoad("random")


# -- local checkpoints of another head, or none ----------------------------------------------------------------------


def _backbone_equal(model, state) -> None:
    for k, v in model.state_dict().items():
        if not k.startswith("head.") and k != "pos_embed":
            assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_checkpoint_with_another_class_count_loads_with_its_head_dropped(tmp_path, suffix: str) -> None:
    state = _tiny_state(img_size=32, num_classes=10)
    path = tmp_path / f"ten{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save({"model": state}, path)
    model = create_model(
        ModelSpec("vit_tiny_patch16_224", weights=str(path), img_size=32, num_classes=62, kwargs=TINY)
    )
    _backbone_equal(model, state)
    assert torch.equal(model.pos_embed, state["pos_embed"])
    assert model.head.out_features == 62
    record = model.petl_weights
    assert (record.source, record.head, record.checkpoint_classes) == ("file", "dropped", 10)
    assert record.pos_embed_to is None
    assert "checkpoint head (10 classes) dropped" in record.describe()


def test_headless_checkpoint_at_another_resolution_loads_resampled(tmp_path) -> None:
    """A DINOv2/CLIP-style backbone: no head, trained at another input size (224 px: a 14x14 grid)."""
    state = {k: v for k, v in _tiny_state(num_classes=0).items() if not k.startswith("head.")}
    path = tmp_path / "backbone.safetensors"
    save_file(state, str(path))
    model = create_model(ModelSpec("vit_tiny_patch16_224", weights=str(path), img_size=32, num_classes=5, kwargs=TINY))
    _backbone_equal(model, state)
    expected_pos = resample_abs_pos_embed(state["pos_embed"], (2, 2), num_prefix_tokens=1)
    torch.testing.assert_close(model.pos_embed, expected_pos)
    record = model.petl_weights
    assert (record.head, record.checkpoint_classes) == ("absent", None)
    assert (record.pos_embed_from, record.pos_embed_to) == ([14, 14], [2, 2])
    assert "position embedding resampled 14x14 -> 2x2" in record.describe()


def test_dinov2_original_layout_is_converted_by_timms_filter(tmp_path) -> None:
    """Facebook's DINOv2 files name the ViT's parts as timm does but add a ``mask_token`` (dropped by timm)."""
    state = {k: v for k, v in _tiny_state(img_size=32, num_classes=0).items() if not k.startswith("head.")}
    path = tmp_path / "dinov2.pth"
    torch.save({**state, "mask_token": torch.zeros(1, 32)}, path)
    model = create_model(ModelSpec("vit_tiny_patch16_224", weights=str(path), img_size=32, num_classes=3, kwargs=TINY))
    _backbone_equal(model, state)
    assert model.petl_weights.head == "absent"


def test_rgb_checkpoint_into_a_grayscale_model_adapts_the_stem(tmp_path) -> None:
    state = _tiny_state(img_size=32)
    path = tmp_path / "rgb.safetensors"
    save_file(state, str(path))
    model = create_model(ModelSpec("vit_tiny_patch16_224", weights=str(path), img_size=32, in_chans=1, kwargs=TINY))
    torch.testing.assert_close(model.patch_embed.proj.weight, state["patch_embed.proj.weight"].sum(1, keepdim=True))
    assert model.petl_weights.in_chans_from == 3 and model.petl_weights.head == "loaded"


def test_a_checkpoint_of_another_architecture_is_still_refused_in_one_line(tmp_path, tiny_vit) -> None:
    wide = tmp_path / "wide.safetensors"
    save_file(_tiny_state(img_size=32, embed_dim=64), str(wide))
    with pytest.raises(PetlError) as e:
        create_model(ModelSpec("vit_tiny_patch16_224", weights=str(wide), img_size=32, kwargs=TINY))
    assert "has shape (64,), the model expects (32,)" in _one_line(e)
    deeper = tmp_path / "deeper.safetensors"
    save_file(_tiny_state(img_size=32, depth=3), str(deeper))
    with pytest.raises(PetlError) as e:
        create_model(ModelSpec("vit_tiny_patch16_224", weights=str(deeper), img_size=32, kwargs=TINY))
    assert "tensor(s) the model does not, e.g. 'blocks.2." in _one_line(e)
    shallow = tmp_path / "bundled.safetensors"
    save_weights(tiny_vit, shallow)  # another family member: no class token, 64 wide
    with pytest.raises(PetlError) as e:
        create_model(ModelSpec("vit_tiny_patch16_224", weights=str(shallow), img_size=32, kwargs=TINY))
    assert "wrong architecture" in _one_line(e) or "the model expects" in _one_line(e)


def test_the_load_record_goes_into_artefacts_and_old_ones_still_load(tmp_path) -> None:
    from helpers import synthetic_probe

    from petl_analysis.plan import Plan, plan_for_budget
    from petl_analysis.select import rank_from_probe
    from petl_analysis.train.run import RunResult  # noqa: F401 - artefacts carry a ModelSpec the same way

    path = tmp_path / "ten.safetensors"
    bundled = create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=10))
    save_weights(bundled, path)
    spec = ModelSpec("petl_vit_tiny", weights=str(path))
    net = create_model(spec, num_classes=4)
    plan = plan_for_budget(rank_from_probe(synthetic_probe()), net, 5000, model_spec=spec)
    assert plan.model.load.head == "dropped" and plan.model.load.checkpoint_classes == 10
    again = Plan.load(plan.save(tmp_path / "plan.json"))
    assert again.model.load == plan.model.load
    assert key_json(spec_with_load(spec, net)) == key_json(spec)  # trial keys ignore the record
    old = json.loads((tmp_path / "plan.json").read_text())
    del old["model"]["load"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert Plan.load(tmp_path / "old.json").model.load is None


# -- hf-hub: model names ---------------------------------------------------------------------------------------------


def _hub_config(**model_args) -> bytes:
    return json.dumps(
        {
            "architecture": "vit_tiny_patch16_224",
            "num_classes": 10,
            "pretrained_cfg": {
                "input_size": [3, 32, 32],
                "mean": [0.5] * 3,
                "std": [0.5] * 3,
                "num_classes": 10,
                "classifier": "head",
                "first_conv": "patch_embed.proj",
            },
            "model_args": {**TINY, "img_size": 32, **model_args},
        }
    ).encode()


def test_hf_hub_model_names_load_from_the_cache(hf_cache) -> None:
    state = _tiny_state(seed=5, img_size=32, num_classes=10)
    _cache_repo(hf_cache, "someone/tiny-vit", {"config.json": _hub_config(), "model.safetensors": state})
    model = create_model(ModelSpec("hf-hub:someone/tiny-vit", num_classes=4))
    _backbone_equal(model, state)
    assert torch.equal(model.pos_embed, state["pos_embed"]) and model.head.out_features == 4
    record = model.petl_weights
    assert (record.source, record.location, record.head, record.checkpoint_classes) == (
        "timm-pretrained",
        "someone/tiny-vit",
        "dropped",
        10,
    )
    random = create_model(ModelSpec("hf-hub:someone/tiny-vit", weights="random"))  # the config alone
    assert random.embed_dim == 32
    assert not torch.equal(random.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight)


def test_hf_hub_errors_are_one_line(hf_cache) -> None:
    with pytest.raises(PetlError) as e:
        create_model(ModelSpec("hf-hub:someone/not-cached"))
    text = _one_line(e)
    assert "'hf-hub:someone/not-cached': its config and weights unavailable" in text and "HF_HUB_OFFLINE" in text
    with pytest.raises(PetlError) as e:
        create_model(ModelSpec("hf-hub:no-slash"))
    assert "expected hf-hub:org/name" in _one_line(e)


# -- from the command line -------------------------------------------------------------------------------------------


def test_cli_default_weights_offline_is_one_error_line_and_random_works(hf_cache, tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from petl_analysis.cli.main import app

    monkeypatch.chdir(tmp_path)
    sizes = ["--img-size", "32", "--patch-size", "16"]
    result = CliRunner().invoke(app, ["info", "--model", "vit_tiny_patch16_224", *sizes])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert "pretrained weights unavailable" in errors[0] and "--weights random" in errors[0]
    result = CliRunner().invoke(app, ["info", "--model", "hf-hub:someone/absent", "--weights", "random"])
    assert result.exit_code == 2 and "its config and weights unavailable" in result.output
    state = {k: v for k, v in _tiny_state(num_classes=0).items() if not k.startswith("head.")}
    save_file(state, str(tmp_path / "backbone.safetensors"))
    result = CliRunner().invoke(
        app,
        [
            "info",
            "--model",
            "vit_tiny_patch16_224",
            "--weights",
            "backbone.safetensors",
            *sizes,
            "--targets",
            "blocks[0].attn.v",
        ],
    )
    # the real vit_tiny is 192 wide: the 32-wide backbone is refused in one line, naming the mismatch
    assert result.exit_code == 2 and "the model expects" in result.output
