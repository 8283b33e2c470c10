"""Shared fixtures: tiny random models, determinism, no network."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # an accidental hub download fails at once instead of retrying for a minute

import pytest
import torch

torch.set_num_threads(2)

#: Tiny configs of four timm architectures (random weights): fused qkv (vit, deit), q/v biases held apart (beit),
#: and separate q/k/v Linears (eva with qkv_fused=False).
TINY_ARCHS: dict[str, dict] = {
    "vit": dict(
        name="vit_tiny_patch16_224", img_size=32, patch_size=8, kwargs=dict(embed_dim=32, depth=2, num_heads=2)
    ),
    "deit": dict(
        name="deit_tiny_patch16_224", img_size=32, patch_size=8, kwargs=dict(embed_dim=32, depth=2, num_heads=2)
    ),
    "beit": dict(
        name="beit_base_patch16_224", img_size=32, patch_size=8, kwargs=dict(embed_dim=32, depth=2, num_heads=2)
    ),
    "eva": dict(
        name="eva02_tiny_patch14_224",
        img_size=28,
        patch_size=14,
        kwargs=dict(embed_dim=32, depth=2, num_heads=2, qkv_fused=False),
    ),
}

#: Gated (SwiGLU) MLPs in timm's two layouts: separate ``fc1_g``/``fc1_x`` Linears (EVA-02 B, ``scale_mlp=True``) and
#: one packed ``fc1`` of twice the width (EVA-02 Ti, ``GluMlp``). Width 48 gives a hidden width of 128 (int(48 * 8/3)).
GLU_ARCHS: dict[str, dict] = {
    "eva_swiglu": dict(
        name="eva02_base_patch14_224", img_size=28, patch_size=14, kwargs=dict(embed_dim=48, depth=2, num_heads=2)
    ),
    "eva_packed": dict(
        name="eva02_tiny_patch14_224", img_size=28, patch_size=14, kwargs=dict(embed_dim=48, depth=2, num_heads=2)
    ),
}


def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def single_thread():
    """One torch thread for the test (training tests on a shared 2-core machine), restored afterwards."""
    yield from _one_torch_thread()


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a whole test module (its module-scoped fixtures train too), restored afterwards."""
    yield from _one_torch_thread()


def make_tiny(arch: str, num_classes: int = 5, seed: int = 0) -> torch.nn.Module:
    from petl_analysis.models import ModelSpec, create_model

    torch.manual_seed(seed)
    cfg = TINY_ARCHS[arch] if arch in TINY_ARCHS else GLU_ARCHS[arch]
    spec = ModelSpec(
        cfg["name"],
        weights="random",
        img_size=cfg["img_size"],
        patch_size=cfg["patch_size"],
        num_classes=num_classes,
        kwargs=dict(cfg["kwargs"]),
    )
    return create_model(spec)


@pytest.fixture
def tiny_vit() -> torch.nn.Module:
    """The bundled architecture with random weights and a 5-class head."""
    from petl_analysis.models import ModelSpec, create_model

    torch.manual_seed(0)
    return create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=5))
