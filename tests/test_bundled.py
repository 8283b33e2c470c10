"""The bundled pretrained backbone: present, small, loadable, and as accurate on held-out source data as its card says."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import torch

from petl_analysis.data import SplitSpec, load_dataset, make_splits, to_model_input
from petl_analysis.engine import evaluate
from petl_analysis.models import BUNDLED_ARCH, ModelSpec, bundled_weights_path, create_model, model_input_config

MAX_WEIGHTS_BYTES = 10 * 2**20
#: Allowed difference between the re-measured and the recorded accuracy: 0.5 points (5 of the 1,000 images), room
#: for float differences between machines and thread counts; a wrong or retrained checkpoint misses it by far more.
TOLERANCE = 0.005


def _models_dir():
    return resources.files("petl_analysis.models")


@pytest.fixture(scope="module")
def metrics() -> dict:
    return json.loads((_models_dir() / "_weights" / "source_metrics.json").read_text())


def test_weights_are_bundled_and_small() -> None:
    path = bundled_weights_path()
    assert path is not None, "petl_analysis/models/_weights/petl_vit_tiny.safetensors is missing"
    assert path.stat().st_size <= MAX_WEIGHTS_BYTES


def test_metrics_describe_this_architecture(metrics) -> None:
    assert metrics["model"] == "petl_vit_tiny"
    assert metrics["arch"] == json.loads(json.dumps(BUNDLED_ARCH))


def test_source_accuracy_is_what_the_card_says(metrics) -> None:
    model = create_model("petl_vit_tiny")  # weights="default": the bundled file
    held_out = metrics["source_accuracy"]
    splits = make_splits(load_dataset(held_out["dataset"]), SplitSpec.from_dict(held_out["split"]))
    part = getattr(splits, held_out["part"])
    assert len(part) == held_out["n"]
    cfg = model_input_config(model)
    data = to_model_input(part, cfg["img_size"], cfg["in_chans"], cfg["mean"], cfg["std"])
    acc, _ = evaluate(model, data)
    assert acc == pytest.approx(held_out["accuracy"], abs=TOLERANCE)
    assert acc > 0.9  # a trained digit classifier, not chance
    card = (_models_dir() / "MODEL_CARD.md").read_text()
    assert f"{100 * held_out['accuracy']:.1f}%" in card, "MODEL_CARD.md does not quote the recorded source accuracy"


def test_random_weights_differ_and_fresh_heads_keep_the_backbone() -> None:
    pretrained = create_model("petl_vit_tiny")
    random = create_model(ModelSpec("petl_vit_tiny", weights="random"))
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(pretrained(x), random(x))
    for name, p in random.named_parameters():
        assert not torch.equal(p, pretrained.get_parameter(name)), f"{name} equals the bundled weights"
    fresh = create_model(ModelSpec("petl_vit_tiny", num_classes=5))  # bundled backbone, new 5-class head
    assert fresh.get_classifier().out_features == 5
    for name, p in fresh.named_parameters():
        if not name.startswith("head."):
            assert torch.equal(p, pretrained.get_parameter(name)), name
