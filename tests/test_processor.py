"""Processor: media of every kind in one turn and across turns, explicit markers, exact placeholder counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vita
from vita.errors import MediaError, PromptError
from vita.media.fbank import num_llm_tokens
from vita.processor import Audio, Image, Turn, Video
from vita.tokens import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def model():
    return vita.load("tiny-random")


def test_all_modalities_in_one_turn(model):
    turn = Turn("user", [Image(EXAMPLES / "emoji.png"), Video(EXAMPLES / "moving_dot.mp4"), "\nWhat happens?",
                         Audio(EXAMPLES / "emoji_question.wav")])
    inputs = model.processor([turn])
    per_tile = model.config.vision.tokens_per_tile
    n_tiles = inputs.pixel_values.shape[0]
    assert inputs.modality == "video"
    assert int((inputs.token_ids == IMAGE_TOKEN_ID).sum()) == n_tiles * per_tile
    assert int((inputs.token_ids == AUDIO_TOKEN_ID).sum()) == num_llm_tokens(inputs.fbanks[0].shape[0])
    # image tiles (grid + thumbnail) first, then 5 frames of the 5 s clip at 1 fps
    assert n_tiles - 5 >= 1
    with torch.no_grad():
        embeds = model.model.embed(inputs.token_ids, inputs.pixel_values, inputs.fbanks)
    assert embeds.shape[:2] == inputs.token_ids.shape and torch.isfinite(embeds).all()


def test_media_across_turns_keep_their_order(model):
    turns = [
        Turn("user", [Image(EXAMPLES / "emoji.png"), "\nWhat is this?"]),
        Turn("assistant", "<3>Shapes."),
        Turn("user", [Audio(EXAMPLES / "emoji_question.wav")]),
    ]
    inputs = model.processor(turns)
    ids = inputs.token_ids[0].tolist()
    first_audio = ids.index(AUDIO_TOKEN_ID)
    last_image = len(ids) - 1 - ids[::-1].index(IMAGE_TOKEN_ID)
    assert last_image < first_audio
    assert "bot:<3>Shapes.</s>\nuser:<audio></s>\nbot:" in inputs.prompt


def test_explicit_markers_place_media(model):
    turn = Turn("user", ["Compare <image> with <image>.", Image(EXAMPLES / "emoji.png"),
                         Image(EXAMPLES / "emoji.png")])
    inputs = model.processor([turn])
    assert inputs.prompt.count("Compare <image>") == 1 and inputs.prompt.endswith(".</s>\nbot:")


def test_marker_and_media_counts_must_agree(model):
    with pytest.raises(PromptError, match="more <audio> placeholders"):
        model.processor([Turn("user", ["<audio><audio>", Audio(EXAMPLES / "emoji_question.wav")])])
    with pytest.raises(PromptError, match="2 image input"):
        model.processor([Turn("user", ["<image>", Image(EXAMPLES / "emoji.png"), Image(EXAMPLES / "emoji.png")])])


def test_raw_pcm_needs_a_rate(model):
    wave = torch.zeros(16000)
    with pytest.raises(MediaError, match="sample_rate"):
        model.processor([Turn("user", [Audio(wave.numpy())])])
    inputs = model.processor([Turn("user", [Audio(wave.numpy(), sample_rate=16000)])])
    assert inputs.fbanks[0].shape == (98, 80)
