"""Training carries which pixel rows are video frames (`video_rows`) beside pixel_values: sample, batch, packed row,
and the loss reaches a video projector through the frames only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from vita.checkpoint.load import random_model
from vita.presets import byte_tokenizer, preset
from vita.processor import Processor
from vita.training.collate import collate
from vita.training.packing import pack_row
from vita.training.sample import build_sample
from vita.training.train import LossModule

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _with_video():
    config = preset("tiny-random")
    return dataclasses.replace(config, video_projector=dataclasses.replace(config.vision_projector))


@pytest.fixture(scope="module")
def samples():
    proc = Processor(byte_tokenizer(), _with_video())
    image = build_sample(proc, {"conversations": [{"from": "human", "value": "<image>\nWhat?"},
                                                  {"from": "gpt", "value": "A face."}], "image": "emoji.png"},
                         "i:1", EXAMPLES)
    text = build_sample(proc, {"conversations": [{"from": "human", "value": "Hi"},
                                                 {"from": "gpt", "value": "Hello."}]}, "t:1", EXAMPLES)
    video = build_sample(proc, {"conversations": [{"from": "human", "value": "<video>\nWhat happens?"},
                                                  {"from": "gpt", "value": "A dot moves."}],
                                "video": "moving_dot.mp4"}, "v:1", EXAMPLES)
    return image, text, video


def test_a_sample_marks_its_frames(samples) -> None:
    image, text, video = samples
    assert image.video_rows.tolist() == [False] * image.pixel_values.shape[0]
    assert video.video_rows.tolist() == [True] * video.pixel_values.shape[0] and len(video.video_rows) >= 4
    assert text.pixel_values is None and text.video_rows is None


def test_batches_and_packed_rows_concatenate_the_masks_like_the_pixels(samples) -> None:
    image, text, video = samples
    n_img, n_vid = image.pixel_values.shape[0], video.pixel_values.shape[0]
    for order, want in (((image, text, video), [False] * n_img + [True] * n_vid),
                        ((video, image), [True] * n_vid + [False] * n_img)):
        batch = collate(order, pad_id=0)
        row = pack_row(list(order))
        for got in (batch, row):
            assert got.video_rows.tolist() == want
            assert got.video_rows.shape[0] == got.pixel_values.shape[0]
    assert collate([text], pad_id=0).video_rows is None and pack_row([text]).video_rows is None
    # a sample built before the mask existed (video_rows None) counts as tiles
    old = dataclasses.replace(image, video_rows=None)
    assert collate([old, video], pad_id=0).video_rows.tolist() == [False] * n_img + [True] * n_vid


def test_the_loss_reaches_the_video_projector_through_frames_only(samples) -> None:
    image, _, video = samples
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = random_model(_with_video())
        loss = LossModule(model)
        grads = {}
        for name, sample in (("image", image), ("video", video)):
            model.zero_grad(set_to_none=True)
            b = collate([sample], pad_id=0)
            loss(b.token_ids, b.labels, None, b.pixel_values, b.fbanks, None, b.video_rows).backward()
            grads[name] = {p: model.get_parameter(f"{p}.fc1.weight").grad for p in ("vision_projector",
                                                                                     "video_projector")}
    finally:
        torch.set_num_threads(threads)
    assert grads["image"]["vision_projector"].abs().sum() > 0
    assert grads["image"]["video_projector"] is None or not grads["image"]["video_projector"].any()
    assert grads["video"]["video_projector"].abs().sum() > 0
    assert grads["video"]["vision_projector"] is None or not grads["video"]["vision_projector"].any()
