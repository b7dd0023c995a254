"""The optional video projector: config round trip and checks, and frames through it while tiles keep theirs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import vita
from vita.config import ProjectorConfig, VitaConfig
from vita.errors import ConfigError, PromptError
from vita.models.vita import VitaModel
from vita.presets import preset
from vita.processor import Image, Turn, Video
from vita.tokens import IMAGE_TOKEN_ID

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _with_video(config: VitaConfig) -> VitaConfig:
    return dataclasses.replace(config, video_projector=dataclasses.replace(config.vision_projector))


def test_config_round_trip_with_and_without_video_projector() -> None:
    plain = preset("tiny-random")
    assert "video_projector" not in plain.to_dict()  # config files written without one are unchanged
    assert VitaConfig.from_dict(plain.to_dict()) == plain and plain.video_projector is None
    two = _with_video(plain)
    data = two.to_dict()
    assert data["video_projector"] == dataclasses.asdict(plain.vision_projector)
    back = VitaConfig.from_dict(data)
    assert back == two and isinstance(back.video_projector, ProjectorConfig)


def test_config_refuses_a_video_projector_that_does_not_fit() -> None:
    plain = preset("tiny-random")
    wide = dataclasses.replace(plain.vision_projector, input_size=plain.vision_projector.input_size + 1)
    with pytest.raises(ConfigError, match="video_projector input"):
        dataclasses.replace(plain, video_projector=wide)
    tall = dataclasses.replace(plain.vision_projector, output_size=plain.llm.hidden_size * 2)
    with pytest.raises(ConfigError, match="video_projector output"):
        VitaConfig.from_dict({**plain.to_dict(), "video_projector": dataclasses.asdict(tall)})
    with pytest.raises(ConfigError, match="video_projector needs a vision encoder"):
        VitaConfig(llm=plain.llm, video_projector=plain.vision_projector)


@pytest.fixture(scope="module")
def models():
    """(the tiny model, the same model with video_projector = a copy of its vision_projector, inputs of a prompt
    holding an image then a video)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    vm = vita.load("tiny-random")
    two = VitaModel(_with_video(vm.model.config)).eval()
    state = vm.model.state_dict()
    state |= {"video_projector." + k.removeprefix("vision_projector."): v.clone()
              for k, v in state.items() if k.startswith("vision_projector.")}
    two.load_state_dict(state, strict=True)
    inputs = vm.processor([Turn("user", [Image(EXAMPLES / "emoji.png"), Video(EXAMPLES / "moving_dot.mp4"), "Hi"])])
    yield vm, two, inputs
    torch.set_num_threads(threads)


def _embed(model: VitaModel, inputs, video_rows=None) -> torch.Tensor:
    with torch.no_grad():
        return model.embed(inputs.token_ids, inputs.pixel_values, inputs.fbanks, video_rows=video_rows)[0]


def test_a_copied_video_projector_embeds_bit_for_bit_as_the_shared_one(models) -> None:
    vm, two, inputs = models
    assert inputs.video_rows is not None and inputs.video_rows.any() and not inputs.video_rows.all()
    base = _embed(vm.model, inputs)
    assert torch.equal(_embed(two, inputs, inputs.video_rows), base)
    assert torch.equal(_embed(vm.model, inputs, inputs.video_rows), base)  # no video projector: the mask is moot
    with torch.no_grad():
        assert torch.equal(two(inputs.token_ids, inputs.pixel_values, video_rows=inputs.video_rows),
                           vm.model(inputs.token_ids, inputs.pixel_values))


def test_frames_go_through_the_video_projector_and_tiles_keep_theirs(models) -> None:
    vm, two, inputs = models
    base = _embed(vm.model, inputs)
    moved = VitaModel(two.config).eval()
    moved.load_state_dict(two.state_dict())
    with torch.no_grad():
        moved.video_projector.fc2.bias.add_(0.5)
    out = _embed(moved, inputs, inputs.video_rows)
    at = torch.nonzero(inputs.token_ids[0] == IMAGE_TOKEN_ID)[:, 0]  # every tile's and frame's rows, in order
    per_row = torch.repeat_interleave(inputs.video_rows, vm.config.vision.tokens_per_tile)  # [len(at)]
    frame_at, tile_at = at[per_row], at[~per_row]
    assert torch.equal(out[tile_at], base[tile_at])  # the picture's rows: exactly as before
    assert not torch.isclose(out[frame_at], base[frame_at]).all(dim=-1).any()  # every frame row moved
    assert torch.allclose(out[frame_at], base[frame_at] + 0.5, atol=1e-5)
    rest = torch.ones(len(out), dtype=torch.bool)
    rest[at] = False
    assert torch.equal(out[rest], base[rest])  # the text rows too
    # video_rows None: today's behaviour, every row through vision_projector (the moved copy is unused)
    assert torch.equal(_embed(moved, inputs, None), base)


def test_a_bad_mask_is_refused(models) -> None:
    _, two, inputs = models
    with pytest.raises(PromptError, match="video_rows must be a bool tensor"):
        _embed(two, inputs, inputs.video_rows[1:])
    with pytest.raises(PromptError, match="video_rows must be a bool tensor"):
        _embed(two, inputs, inputs.video_rows.long())


def test_pictures_alone_skip_the_video_projector_at_inference_but_not_in_training(models, monkeypatch) -> None:
    vm, two, inputs = models
    calls = []
    monkeypatch.setattr(two.video_projector, "forward", lambda x: calls.append(x.shape) or torch.zeros_like(
        two.vision_projector(x)))
    tiles = torch.zeros_like(inputs.video_rows)  # every row a picture's tile (a camera frame, an image prompt)
    with torch.inference_mode():
        out = two.embed(inputs.token_ids, inputs.pixel_values, inputs.fbanks, video_rows=tiles)[0]
    assert not calls and torch.equal(out, _embed(vm.model, inputs))
    two.embed(inputs.token_ids, inputs.pixel_values, inputs.fbanks, video_rows=tiles)  # gradients on: in the graph
    assert len(calls) == 1  # every trainable parameter gets a gradient each step (DDP)
