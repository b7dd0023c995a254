"""End to end against the official code: raw files -> our processor -> model -> logits and greedy ids.

Every case of the fixture set (VITA_REFERENCE_FIXTURES) is checked; nothing here depends on how many there are.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import vita
from vita.media.audio import load_audio
from vita.media.fbank import fft_rounding_floor
from vita.processor import Audio, Image, Turn, Video

pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def model(ref_root):
    return vita.load(str(ref_root / "checkpoint"))


def _media(ref_root, ref_index, case):
    """The official demo's inputs for a case, as parts of one user turn (media first, then text)."""
    parts = []
    if case["kind"] == "image":
        parts.append(Image(ref_root / ref_index["images"][case["image_index"]]["file"]))
    if case["kind"] == "video":
        parts.append(Video([ref_root / f for f in ref_index["video"]["frame_files"]]))
    if parts:
        parts.append("\n")
    if case["question"]:
        parts.append(case["question"])
    if case["audio_index"] is not None:
        parts.append(Audio(ref_root / ref_index["audios"][case["audio_index"]]["file"]))
    return parts


def test_full_cases_from_raw_files(model, ref_root, ref_index):
    assert ref_index["full_cases"]
    for case in ref_index["full_cases"]:
        gold = load_file(str(ref_root / case["file"]))
        inputs = model.processor([Turn("user", _media(ref_root, ref_index, case))])
        assert inputs.prompt == case["prompt"], case["name"]
        assert inputs.modality == case["modality"], case["name"]
        ids = inputs.token_ids[0]
        assert ids.shape[0] == case["spliced_length"], case["name"]
        n_img = int((ids == -200).sum())
        assert n_img == case["num_tiles_or_frames"] * model.config.vision.tokens_per_tile, case["name"]
        n_audio = int((ids == -500).sum())
        if case["audio_index"] is not None:
            assert n_audio == ref_index["audios"][case["audio_index"]]["llm_tokens_from_processor"], case["name"]
        else:
            assert n_audio == 0, case["name"]
        fbanks = inputs.fbanks
        if case["audio_index"] is not None:
            # our fbank agrees with the recorded one up to float32 FFT rounding (test_fbank.py); the model then
            # runs on the recorded one, so 1e-5 / 1e-4 measure the model, not this CPU's FFT kernels
            recorded = load_file(str(ref_root / "cases" / "audio.safetensors"))[f"audio{case['audio_index']}.fbank"]
            clip = ref_root / ref_index["audios"][case["audio_index"]]["file"]
            excess = (fbanks[0] - recorded).abs() - 1e-4 - fft_rounding_floor(load_audio(clip))
            assert excess.max() <= 0, case["name"]
            fbanks = [recorded]
        with torch.no_grad():
            embeds = model.model.embed(inputs.token_ids, inputs.pixel_values, fbanks)
            logits = model.model.llm(input_embeds=embeds)
        torch.testing.assert_close(embeds[0], gold["inputs_embeds"], atol=1e-5, rtol=0, msg=case["name"])
        torch.testing.assert_close(logits[0], gold["logits"], atol=1e-4, rtol=0, msg=case["name"])
        reply = model.generate(
            case["question"] or None,
            images=[ref_root / ref_index["images"][case["image_index"]]["file"]] if case["kind"] == "image" else (),
            video=[ref_root / f for f in ref_index["video"]["frame_files"]] if case["kind"] == "video" else None,
            audio=ref_root / ref_index["audios"][case["audio_index"]]["file"] if case["audio_index"] is not None
            else None,
            max_new_tokens=len(gold["generated_ids"]),
        )
        assert reply.token_ids == gold["generated_ids"].tolist(), case["name"]


def test_recorded_inputs_give_recorded_outputs(model, ref_root, ref_index):
    """The same check from the recorded tensors (pixel values, fbank), isolating the model from the media code."""
    from vita.media.fbank import num_llm_tokens
    from vita.media.prompt import expand_placeholders, tokenize_with_placeholders

    for case in ref_index["full_cases"]:
        gold = load_file(str(ref_root / case["file"]))
        pixels, fbanks = None, []
        if case["images_input"].startswith("cases/"):
            file, key = case["images_input"].split(": ")
            pixels = load_file(str(ref_root / file))[key]
        if case["audios_input"].startswith("cases/"):
            file, key = case["audios_input"].split(": ")
            fbanks = [load_file(str(ref_root / file))[key]]
        ids = tokenize_with_placeholders(model.tokenizer, case["prompt"])
        assert ids == case["input_ids"], case["name"]
        counts = {}
        if pixels is not None:
            counts[-200] = [model.config.vision.tokens_per_tile] * pixels.shape[0]
        if fbanks:
            counts[-500] = [num_llm_tokens(fbanks[0].shape[0])]
        ids = torch.tensor([expand_placeholders(ids, counts)])
        with torch.no_grad():
            embeds = model.model.embed(ids, pixels, fbanks)
        torch.testing.assert_close(embeds[0], gold["inputs_embeds"], atol=1e-5, rtol=0, msg=case["name"])
