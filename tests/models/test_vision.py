"""InternViT tower, pixel shuffle and projector: golden parity plus structural behaviour."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from vita.checkpoint.internvit import PROJECTOR_KEYMAP, PROJECTOR_PREFIX, load_internvit, strip_prefix
from vita.checkpoint.keymap import map_keys
from vita.config import ProjectorConfig, VisionConfig
from vita.media.image import preprocess_image
from vita.models.projector import VisionProjector
from vita.models.vision import InternViT, pixel_shuffle

TOL = 1e-5


def tiny_cfg(**kw) -> VisionConfig:
    base = {"image_size": 112, "patch_size": 14, "hidden_size": 32, "num_heads": 4, "intermediate_size": 128}
    return VisionConfig(**{**base, "num_layers": 2, **kw})


def randomized(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2 + (1.0 if p.ndim == 1 and p.shape[0] > 0 else 0.0))
    return module.eval()


# ---------------------------------------------------------------- golden parity


@pytest.fixture(scope="module")
def reference_models(ref_root: Path, ref_vision_dir: Path) -> tuple[InternViT, VisionProjector]:
    tower = load_internvit(ref_vision_dir)
    main = load_file(ref_root / "checkpoint" / "model.safetensors")
    state = map_keys({k: v for k, v in main.items() if k in PROJECTOR_KEYMAP}, PROJECTOR_KEYMAP)
    state = strip_prefix(state, PROJECTOR_PREFIX)
    projector = VisionProjector(ProjectorConfig(tower.cfg.output_size, state["fc1.weight"].shape[0]))
    projector.load_state_dict(state, strict=True)
    return tower, projector.eval()


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.mark.reference
def test_image_features_match_reference(ref_root: Path, ref_index: dict, reference_models) -> None:
    tower, projector = reference_models
    golden = load_file(ref_root / "cases" / "vision.safetensors")
    for i, case in enumerate(ref_index["images"]):
        pixels = preprocess_image(ref_root / case["file"], tower.cfg)
        with torch.no_grad():
            states = tower.forward_hidden_states(pixels)
            features = tower(pixels)
            projected = projector(features)
        assert len(states) == tower.cfg.num_layers + 1
        for k, state in enumerate(states):
            assert _max_diff(state, golden[f"image{i}.vit_hidden_states.{k}"]) <= TOL, (case["file"], k)
        assert features.shape[1] == case["tokens_per_tile"]
        assert _max_diff(features, golden[f"image{i}.features"]) <= TOL, case["file"]
        assert _max_diff(tower.features(states[-1]), features) == 0.0
        assert _max_diff(projected, golden[f"image{i}.projected"]) <= TOL, case["file"]


@pytest.mark.reference
def test_video_features_match_reference(ref_root: Path, reference_models) -> None:
    tower, projector = reference_models
    golden = load_file(ref_root / "cases" / "vision.safetensors")
    with torch.no_grad():
        features = tower(golden["video.pixel_values"])
        projected = projector(features)
    assert _max_diff(features, golden["video.features"]) <= TOL
    assert _max_diff(projected, golden["video.projected"]) <= TOL


# ---------------------------------------------------------------- pixel shuffle


def test_pixel_shuffle_channel_order() -> None:
    g, c = 4, 3
    rows = torch.arange(g).repeat_interleave(g)  # token t = r * g + col, row-major
    cols = torch.arange(g).repeat(g)
    tokens = (rows * 100 + cols).float()[None, :, None].repeat(1, 1, c)  # [1, 16, 3] value = 100*r + col
    out = pixel_shuffle(tokens, 2)
    assert out.shape == (1, 4, 4 * c)
    for i in range(2):
        for j in range(2):
            blocks = out[0, i * 2 + j].reshape(4, c)[:, 0].tolist()
            expected = [100 * (2 * i) + 2 * j, 100 * (2 * i) + 2 * j + 1, 100 * (2 * i + 1) + 2 * j]
            expected.append(100 * (2 * i + 1) + 2 * j + 1)
            assert blocks == expected


def test_pixel_shuffle_rejects_non_square_grid() -> None:
    with pytest.raises(ValueError, match="square"):
        pixel_shuffle(torch.zeros(1, 12, 4))


# ---------------------------------------------------------------- tower behaviour


def test_output_shape_and_feature_scale() -> None:
    cfg = tiny_cfg()
    tower = randomized(InternViT(cfg))
    pixels = torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        out = tower(pixels)
        last = tower.forward_hidden_states(pixels)[-1]
    assert out.shape == (3, cfg.tokens_per_tile, cfg.output_size) == (3, 16, 128)
    # x0.5 happens before the shuffle: undoing it and un-shuffling gives the raw last-layer patches back
    unshuffled = out.reshape(3, 4, 4, 2, 2, 32).permute(0, 1, 3, 2, 4, 5).reshape(3, 64, 32)  # [N, i, a, j, b, C]
    torch.testing.assert_close(unshuffled / cfg.feature_scale, last[:, 1:], rtol=0, atol=0)


def test_tiles_are_independent() -> None:
    tower = randomized(InternViT(tiny_cfg()))
    pixels = torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        batched = tower(pixels)
        single = torch.cat([tower(pixels[k : k + 1]) for k in range(3)])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-6)


def test_position_table_identity_at_native_grid_and_resampled_otherwise() -> None:
    tower = randomized(InternViT(tiny_cfg()))
    emb = tower.embeddings
    native = emb.patch_positions(8, 8)
    assert torch.equal(native, emb.position_embedding[:, 1:])
    with torch.no_grad():
        emb.position_embedding[:, 1:] = 0.25  # a constant table stays constant under bicubic resampling
    wide = emb.patch_positions(32, 32)
    assert wide.shape == (1, 1024, 32)
    torch.testing.assert_close(wide, torch.full_like(wide, 0.25))
    # the LLM's dummy image (448 x 448 for a 112 px tower) runs through the resampled table
    with torch.no_grad():
        out = tower(torch.zeros(1, 3, 448, 448))
    assert out.shape == (1, 256, 128) and torch.isfinite(out).all()


def test_layer_matches_naive_attention() -> None:
    cfg = tiny_cfg()
    tower = randomized(InternViT(cfg), seed=3)
    layer = tower.layers[0]
    x = torch.randn(2, 65, 32)
    # naive InternViT attention: softmax((q * d^-1/2) k^T) v, heads of width 8
    h = layer.norm1(x)
    q, k, v = layer.attn.qkv(h).reshape(2, 65, 3, 4, 8).permute(2, 0, 3, 1, 4)
    attn = ((q * 8**-0.5) @ k.transpose(-2, -1)).softmax(-1) @ v
    y = x + layer.attn.proj(attn.transpose(1, 2).reshape(2, 65, 32)) * layer.ls1
    mlp = layer.mlp.fc2(0.5 * layer.mlp.fc1(layer.norm2(y)) * (1 + torch.erf(layer.mlp.fc1(layer.norm2(y)) / 2**0.5)))
    expected = y + mlp * layer.ls2
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected.detach(), rtol=0, atol=1e-5)


def test_layer_norm_eps_and_no_final_norm() -> None:
    cfg = tiny_cfg(layer_norm_eps=1e-3)
    tower = InternViT(cfg)
    assert all(layer.norm1.eps == 1e-3 and layer.norm2.eps == 1e-3 for layer in tower.layers)
    names = {name for name, _ in tower.named_parameters()}
    assert not any("post" in n or n.startswith("norm") for n in names)


def test_post_norm_normalises_the_last_layer_before_the_shuffle() -> None:
    cfg = tiny_cfg(post_norm=True, layer_norm_eps=1e-3)
    tower = randomized(InternViT(cfg), seed=4)
    assert {n for n, _ in tower.named_parameters() if n.startswith("post_norm")} == {"post_norm.weight",
                                                                                     "post_norm.bias"}
    assert tower.post_norm.eps == 1e-3
    pixels = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        last = tower.forward_hidden_states(pixels)[-1]  # [N, 1+P, C], before the final norm
        normed = F.layer_norm(last, (32,), tower.post_norm.weight, tower.post_norm.bias, eps=1e-3)[:, 1:]
        torch.testing.assert_close(tower(pixels), pixel_shuffle(normed * cfg.feature_scale), rtol=0, atol=1e-6)


def test_bfloat16_tower_runs() -> None:
    tower = randomized(InternViT(tiny_cfg())).to(torch.bfloat16)
    with torch.no_grad():
        out = tower(torch.randn(2, 3, 112, 112))  # float32 pixels are cast to the tower dtype
    assert out.dtype == torch.bfloat16 and out.shape == (2, 16, 128)


# ---------------------------------------------------------------- projector


def test_projector_is_linear_exact_gelu_linear() -> None:
    proj = randomized(VisionProjector(ProjectorConfig(128, 64)), seed=5)
    x = torch.randn(2, 16, 128)
    h = proj.fc1(x)
    expected = proj.fc2(0.5 * h * (1 + torch.erf(h / math.sqrt(2))))
    with torch.no_grad():
        torch.testing.assert_close(proj(x), expected.detach(), rtol=0, atol=1e-5)
        tanh_gelu = proj.fc2(F.gelu(proj.fc1(x), approximate="tanh"))
        assert (proj(x) - tanh_gelu).abs().max() > 1e-4  # the tanh approximation would be detected
