"""Processor: media of every kind in one turn and across turns, explicit markers, exact placeholder counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vita
from vita.errors import MediaError, PromptError
from vita.media.fbank import num_llm_tokens
from vita.media.image import find_grid, load_image, normalize, resize_bicubic
from vita.media.video import load_video
from vita.processor import Audio, Image, Turn, Video
from vita.tokens import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def model():
    return vita.load("tiny-random")


def _dot_column(frame: torch.Tensor) -> float:
    """Mean column of the pixels that stand out from the background in one normalized frame [3, S, S]."""
    gray = frame.mean(0)  # [S, S]
    away = (gray - gray.median()).abs()
    return float(torch.nonzero(away > 0.5 * away.max())[:, 1].float().mean())


def test_all_modalities_in_one_turn(model):
    turn = Turn("user", [Image(EXAMPLES / "emoji.png"), Video(EXAMPLES / "moving_dot.mp4"), "\nWhat happens?",
                         Audio(EXAMPLES / "emoji_question.wav")])
    inputs = model.processor([turn])
    cfg = model.config.vision
    per_tile, S = cfg.tokens_per_tile, cfg.image_size
    assert inputs.modality == "video"
    # the image's tiles first, in InternVL order (the 2x2 grid row by row, then the thumbnail), built here by hand
    img = load_image(EXAMPLES / "emoji.png")
    cols, rows = find_grid(img.width, img.height, S, cfg.min_tiles, cfg.max_tiles)
    assert (cols, rows) == (2, 2)
    grid = resize_bicubic(img, (S * cols, S * rows))
    tiles = [grid.crop((c * S, r * S, (c + 1) * S, (r + 1) * S)) for r in range(rows) for c in range(cols)]
    image = normalize([*tiles, resize_bicubic(img, (S, S))], cfg)  # [5, 3, S, S]
    # then the clip's frames in time order: the dot moves from right to left
    frames = load_video(EXAMPLES / "moving_dot.mp4", cfg)  # [F, 3, S, S]
    columns = [_dot_column(f) for f in frames]
    assert len(columns) >= 4 and all(a > b + S / 8 for a, b in zip(columns, columns[1:], strict=False)), columns
    assert torch.equal(inputs.pixel_values, torch.cat([image, frames]))
    # the token ids in the same order: every tile's placeholders, the question, then the clip's
    ids = inputs.token_ids[0]
    image_at = torch.nonzero(ids == IMAGE_TOKEN_ID)[:, 0]
    audio_at = torch.nonzero(ids == AUDIO_TOKEN_ID)[:, 0]
    assert len(image_at) == (len(image) + len(frames)) * per_tile
    assert int(image_at[-1] - image_at[0]) + 1 == len(image_at)  # one run: the image, then the video at once
    assert len(audio_at) == num_llm_tokens(inputs.fbanks[0].shape[0]) and int(audio_at[0]) > int(image_at[-1]) + 1
    question = model.tokenizer.encode("\nWhat happens?", add_special_tokens=False)
    between = ids[int(image_at[-1]) + 1 : int(audio_at[0])].tolist()
    assert any(between[i : i + len(question)] == question for i in range(len(between)))
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


def test_a_reader_puts_the_words_of_a_picture_right_after_its_rows(model, monkeypatch):
    """With `reader` in the config, the picture reader's words (`vita.media.ocr`) follow the image's placeholders,
    as text of the same message; a picture without words and a video's frames add nothing."""
    import dataclasses

    from vita.config import ReaderConfig
    from vita.errors import ConfigError
    from vita.processor import Processor

    try:
        from vita.media.ocr import bundled_files

        bundled_files()
    except ConfigError as exc:
        pytest.skip(str(exc))
    config = dataclasses.replace(model.config, reader=ReaderConfig(template=" (it reads {words})"))
    proc = Processor(model.processor.tokenizer, config)
    inputs = proc([Turn("user", [Image(EXAMPLES / "sign.png"), "What word is written?"])])
    assert "(it reads STRANGER)What word is written?" in inputs.prompt
    ids = inputs.token_ids[0].tolist()
    last_image = max(i for i, t in enumerate(ids) if t == IMAGE_TOKEN_ID)
    assert proc.tokenizer.decode(ids[last_image + 1:]).startswith(" (it reads STRANGER)")
    plain = proc([Turn("user", [Image(EXAMPLES / "emoji.png"), Video(EXAMPLES / "moving_dot.mp4"), "Hi"])])
    assert "reads" not in plain.prompt
    same = model.processor([Turn("user", [Image(EXAMPLES / "emoji.png"), Video(EXAMPLES / "moving_dot.mp4"), "Hi"])])
    assert plain.prompt == same.prompt and torch.equal(plain.token_ids, same.token_ids)
    import vita.media.ocr as ocr

    def never(*_):
        raise AssertionError("image_tiles read the picture")

    monkeypatch.setattr(ocr, "reader_text", never)  # tiles alone (e.g. tower pretraining) need no reading
    assert torch.equal(proc.image_tiles(EXAMPLES / "sign.png"), model.processor.image_tiles(EXAMPLES / "sign.png"))


def test_inputs_say_whether_the_last_turn_was_typed(model):
    clip = Audio(torch.zeros(16000).numpy(), sample_rate=16000)
    assert model.processor([Turn("user", "Hello")]).typed
    assert model.processor([Turn("user", [Image(EXAMPLES / "emoji.png"), "\n", "What is it?"])]).typed
    assert model.processor([Turn("user", ["Transcribe the speech.", clip])]).typed
    assert not model.processor([Turn("user", [clip])]).typed
    assert not model.processor([Turn("user", [Image(EXAMPLES / "emoji.png"), "\n  ", clip])]).typed
    assert not model.processor([Turn("user", "Hi"), Turn("assistant", "Hello!")]).typed
    assert not model.processor([Turn("user", "Hi"), Turn("assistant", "Hello!"), Turn("user", [clip])]).typed


def test_video_rows_mark_the_frames_in_prompt_order(model):
    turn = Turn("user", [Image(EXAMPLES / "emoji.png"), Video(EXAMPLES / "moving_dot.mp4"), "\nWhat happens?"])
    inputs = model.processor([turn])
    tiles = model.processor.image_tiles(EXAMPLES / "emoji.png").shape[0]
    frames = model.processor.video_frames(EXAMPLES / "moving_dot.mp4").shape[0]
    assert inputs.video_rows.dtype == torch.bool and tiles > 1 and frames > 1
    assert inputs.video_rows.tolist() == [False] * tiles + [True] * frames
    later = model.processor([Turn("user", [Video(EXAMPLES / "moving_dot.mp4"), "Then?"]),
                             Turn("assistant", "A dot."), Turn("user", [Image(EXAMPLES / "emoji.png"), "And?"])])
    assert later.video_rows.tolist() == [True] * frames + [False] * tiles
    assert model.processor([Turn("user", "no media")]).video_rows is None
