"""VITA-1.5 against the official code, stage by stage: tokenizer and template, tiling and vision, fbank and every
audio stage (with the 1.5 `lengths_for_llm` truncation), and the full model from raw files to greedy ids.

Every case of the fixture set (VITA15_REFERENCE_FIXTURES, default ../shared/fixtures/vita15_tiny) is checked; names,
sizes and counts come from the set's own config.json / cases/index.json. Tolerances: ids, counts and pixels exact;
features and embeddings 1e-5; hidden states, logits and generate scores 1e-4 (the fixture README's suggestions).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import vita
from vita.media.audio import load_audio
from vita.media.fbank import fbank, fft_rounding_floor, num_fbank_frames, num_llm_tokens
from vita.media.image import find_grid, preprocess_image
from vita.media.prompt import SYSTEM_PROMPTS, Message, render, tokenize_with_placeholders
from vita.media.video import load_video, sample_frame_indices
from vita.processor import Audio, Image, Turn, Video
from vita.tokens import STATE_TOKENS_V15, split_state

pytestmark = pytest.mark.reference

FEATURES = 1e-5
LOGITS = 1e-4


@pytest.fixture(scope="module")
def model(ref15_root):
    return vita.load(str(ref15_root / "checkpoint"))


def _max(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return (a.float() - b.float()).abs().max().item()


# ------------------------------------------------------------------------------------------- tokenizer, template


def test_system_prompts_and_template(ref15_index, model):
    tok = ref15_index["tokenizer"]
    assert list(tok["system_prompts"]) == [SYSTEM_PROMPTS[m] for m in ("image", "video", "lang")]
    assert model.config.template == "qwen2p5_instruct"
    for case in tok["cases"]:
        prompt = render([Message("user", case["qs"])], template="qwen2p5_instruct", modality=case["modality"])
        assert prompt == case["prompt"], case["name"]
        assert tokenize_with_placeholders(model.tokenizer, prompt) == case["tokenizer_image_audio_token"], case["name"]
        text_chunks = [c for c in case["plain_tokenizer_call_on_chunks"]]
        assert [model.tokenizer.encode(chunk) for chunk in _chunks(prompt)] == text_chunks, case["name"]


def _chunks(prompt: str) -> list[str]:
    import re

    return re.split(r"<image>|<audio>", prompt)


def test_probe_strings_state_tokens_and_stop_ids(ref15_index, model):
    tok, tokenizer = ref15_index["tokenizer"], model.tokenizer
    for text, ids in tok["probe_strings"].items():
        assert tokenizer.encode(text) == ids, text
        assert tokenizer.decode(ids) == tok["decode_probes"][text], text
    assert len(tokenizer) == tok["len_tokenizer"]
    assert tokenizer.bos_id == tok["bos_token_id"] and tokenizer.eos_id == tok["eos_token_id"]
    for char, ids in tok["state_token_ids"].items():
        assert len(ids) == 1 and tokenizer.encode(char) == ids and char in STATE_TOKENS_V15
    # the official generate stops at eos and at the demo's keyword `conv.sep`
    assert set(tokenizer.stop_ids) == {tok["eos_token_id"], *(i for [i] in tok["stop_keyword_ids"])}


def test_state_tokens_split_off_replies(ref15_index):
    for char, state in STATE_TOKENS_V15.items():
        assert split_state(char + "Sure.") == (state, "Sure.")
    assert split_state(ref15_index["tts"]["response_text"])[0] == STATE_TOKENS_V15["☞"]


# ------------------------------------------------------------------------------------------------------ vision


def test_tiling_and_sampling_probes(ref15_index, model):
    probe, cfg = ref15_index["tiling_probe"], model.config.vision
    assert (probe["image_size"], probe["min_num"], probe["max_num"]) == (cfg.image_size, cfg.min_tiles, cfg.max_tiles)
    for row in probe["rows"]:
        assert list(find_grid(row["width"], row["height"], cfg.image_size, cfg.min_tiles, cfg.max_tiles)) == \
            row["grid_cols_rows"], row
    for row in ref15_index["video"]["sampling_probe"]:
        assert sample_frame_indices(row["num_frames"], row["avg_fps"]) == row["sampled_positions"], row


def test_vision_stages_from_raw_files(ref15_root, ref15_index, model):
    golden = load_file(ref15_root / "cases" / "vision.safetensors")
    tower, projector, cfg = model.model.vision, model.model.vision_projector, model.config.vision
    inputs = [(f"image{i}", preprocess_image(ref15_root / case["file"], cfg)) for i, case in
              enumerate(ref15_index["images"])]
    inputs.append(("video", load_video([ref15_root / f for f in ref15_index["video"]["frame_files"]], cfg)))
    for name, pixels in inputs:
        assert torch.equal(pixels, golden[f"{name}.pixel_values"]), name
        with torch.no_grad():
            features = tower(pixels)  # [n, T_img, 4C]
            projected = projector(features)  # [n, T_img, D]
        if name != "video":
            states = tower.forward_hidden_states(pixels)
            assert len(states) == cfg.num_layers + 1
            for k, state in enumerate(states):
                assert _max(state, golden[f"{name}.vit_hidden_states.{k}"]) <= FEATURES, (name, k)
        assert _max(features, golden[f"{name}.features"]) <= FEATURES, name
        assert _max(projected, golden[f"{name}.projected"]) <= FEATURES, name
    for i, case in enumerate(ref15_index["images"]):
        assert golden[f"image{i}.pixel_values"].shape[0] == case["num_tiles"]
        assert case["num_tiles"] * cfg.tokens_per_tile == case["total_image_tokens"]


# ------------------------------------------------------------------------------------------------------- audio


def _audio_stages(encoder, adapter, feats: torch.Tensor) -> dict[str, torch.Tensor]:
    """One clip [T, 80] through the encoder and adapter, every recorded stage captured (batch dim dropped)."""
    stages: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(_module, _inputs, output):
            if name == "pos_enc":
                stages["scaled_input"], stages["pos_emb"] = output[0][0], output[1]
            else:
                stages[name] = output[0]
        return hook

    named = {"cmvn_out": encoder.cmvn, "subsampling_out": encoder.subsampling, "input_layer_out": encoder.input_layer,
             "pos_enc": encoder.pos_enc, **{f"block{k}_out": b for k, b in enumerate(encoder.blocks)}}
    handles = [m.register_forward_hook(keep(n)) for n, m in named.items()]
    try:
        with torch.no_grad():
            out, mask = encoder(feats[None], torch.tensor([float(feats.shape[0])]))  # float lengths, as the demo
            emb, emb_mask = adapter(out, mask)
    finally:
        for h in handles:
            h.remove()
    stages.update(encoder_out=out[0], adapter_out=emb[0], adapter_mask=emb_mask[0])
    return stages


def test_fbank_and_lengths_for_llm(ref15_root, ref15_index):
    golden = load_file(ref15_root / "cases" / "audio.safetensors")
    for i, clip in enumerate(ref15_index["audios"]):
        wave = load_audio(ref15_root / clip["file"])
        assert wave.numel() == clip["num_samples"]
        frames = num_fbank_frames(clip["num_samples"])
        assert frames == clip["fbank_frames"]
        assert num_llm_tokens(frames) == clip["lengths_for_llm_from_processor"] == clip["adapter_frames"]
        feats = fbank(wave)
        # 1e-4 plus float32 FFT rounding (this CPU's FFT kernels are not the recording machine's; test_fbank.py)
        assert ((feats - golden[f"audio{i}.fbank"]).abs() - 1e-4 - fft_rounding_floor(wave)).max() <= 0


def test_every_audio_stage(ref15_root, ref15_index, model):
    golden = load_file(ref15_root / "cases" / "audio.safetensors")
    encoder, adapter = model.model.audio_encoder, model.model.audio_adapter
    for i, clip in enumerate(ref15_index["audios"]):
        stages = _audio_stages(encoder, adapter, golden[f"audio{i}.fbank"])
        recorded = sorted(k.split(".", 1)[1] for k in golden if k.startswith(f"audio{i}."))
        assert set(recorded) - {"fbank"} <= set(stages), "a recorded stage is not captured"
        assert stages["encoder_out"].shape[0] == clip["encoder_frames"]
        assert torch.equal(stages["adapter_mask"], golden[f"audio{i}.adapter_mask"])
        for name in recorded:
            if name not in ("fbank", "adapter_mask"):
                assert _max(stages[name], golden[f"audio{i}.{name}"]) <= FEATURES, (i, name)


def test_padded_batch_truncated_to_lengths_for_llm(ref15_root, model):
    """1.5 splices adapter_out[b][:lengths_for_llm[b]]: in a padded batch that drops the frames made of padding."""
    golden = load_file(ref15_root / "cases" / "audio.safetensors")
    encoder, adapter = model.model.audio_encoder, model.model.audio_adapter
    lengths, keep = golden["batch.lengths"], golden["batch.lengths_for_llm"]
    feats = [golden[f"audio{b}.fbank"] for b in range(len(lengths))]
    assert [f.shape[0] for f in feats] == lengths.tolist()
    assert [num_llm_tokens(int(t)) for t in lengths] == keep.tolist()
    batch = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)  # [B, T_max, 80], zero padded
    with torch.no_grad():
        out, mask = encoder(batch, lengths.float())
        emb, emb_mask = adapter(out, mask)
    assert torch.equal(emb_mask, golden["batch.adapter_mask"])
    for b, n in enumerate(keep.tolist()):
        assert _max(out[b, mask[b]], golden["batch.encoder_out"][b, mask[b]]) <= FEATURES
        assert _max(emb[b, :n], golden["batch.adapter_out"][b, :n]) <= FEATURES
        alone = model.model.encode_audio([feats[b]])  # what the splice receives for this clip
        assert alone.shape[0] == n and _max(alone, golden["batch.adapter_out"][b, :n]) <= FEATURES


# ------------------------------------------------------------------------------------------------- full model


def _parts(root, index, case) -> list:
    """The demo's user turn for a case: media first, "\\n", then the question or the clip."""
    parts: list = []
    if case["kind"] == "image":
        parts.append(Image(root / index["images"][case["image_index"]]["file"]))
    if case["kind"] == "video":
        parts.append(Video([root / f for f in index["video"]["frame_files"]]))
    if parts:
        parts.append("\n")
    if case["question"]:
        parts.append(case["question"])
    if case["audio_index"] is not None:
        parts.append(Audio(root / index["audios"][case["audio_index"]]["file"]))
    return parts


def _layer_outputs(llm, embeds: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    outs: list[torch.Tensor] = []
    handles = [layer.register_forward_hook(lambda _m, _i, o: outs.append(o)) for layer in llm.layers]
    try:
        with torch.no_grad():
            logits, hidden = llm(input_embeds=embeds, return_hidden=True)
    finally:
        for h in handles:
            h.remove()
    return outs, hidden[0], logits[0]


def test_full_cases(model, ref15_root, ref15_index):
    """Raw files -> processor -> splice -> every LLM layer -> logits -> greedy ids and the scores on the way."""
    assert ref15_index["full_cases"]
    audio_gold = load_file(ref15_root / "cases" / "audio.safetensors")
    for case in ref15_index["full_cases"]:
        name, gold = case["name"], load_file(str(ref15_root / case["file"]))
        inputs = model.processor([Turn("user", _parts(ref15_root, ref15_index, case))])
        assert inputs.prompt == case["prompt"] and inputs.modality == case["modality"], name
        ids = inputs.token_ids[0]
        assert ids.shape[0] == case["spliced_length"], name
        assert int((ids == -200).sum()) == case["num_tiles_or_frames"] * model.config.vision.tokens_per_tile, name
        expected_audio = 0
        fbanks = inputs.fbanks
        if case["audio_index"] is not None:
            clip = ref15_index["audios"][case["audio_index"]]
            expected_audio = clip["lengths_for_llm_from_processor"]
            fbanks = [audio_gold[f"audio{case['audio_index']}.fbank"]]  # the model on the recorded fbank (above)
            assert fbanks[0].shape == inputs.fbanks[0].shape, name
        assert int((ids == -500).sum()) == expected_audio, name
        with torch.no_grad():
            embeds = model.model.embed(inputs.token_ids, inputs.pixel_values, fbanks)  # [1, L, D]
        assert _max(embeds[0], gold["inputs_embeds"]) <= FEATURES, name
        layers, hidden, logits = _layer_outputs(model.model.llm, embeds)
        for k, out in enumerate(layers):
            assert _max(out[0], gold[f"layer_out.{k}"]) <= LOGITS, (name, k)
        assert _max(hidden, gold["final_hidden"]) <= LOGITS, name
        if "logits" in gold:
            assert _max(logits, gold["logits"]) <= LOGITS, name
        first, last = case["logits_tail_positions"]  # inclusive
        assert _max(logits[first : last + 1], gold["logits_tail"]) <= LOGITS, name
        # greedy continuation, from the raw files through the public API (the model's own fbank included)
        reply = model.generate(
            case["question"] or None,
            images=[ref15_root / ref15_index["images"][case["image_index"]]["file"]] if case["kind"] == "image"
            else (),
            video=[ref15_root / f for f in ref15_index["video"]["frame_files"]] if case["kind"] == "video" else None,
            audio=ref15_root / ref15_index["audios"][case["audio_index"]]["file"] if case["audio_index"] is not None
            else None,
            max_new_tokens=len(gold["generated_ids"]),
        )
        assert reply.token_ids == gold["generated_ids"].tolist(), name
        assert model.tokenizer.decode(reply.token_ids) == case["generated_text"], name
        # the scores generate saw at each step = a full forward over prompt + generated ids
        new = model.model.llm.embed(gold["generated_ids"][None, :-1])
        with torch.no_grad():
            full = model.model.llm(input_embeds=torch.cat([embeds, new], dim=1))[0]  # [L + n - 1, V]
        L = embeds.shape[1]
        assert _max(full[L - 1:], gold["generate_scores"]) <= LOGITS, name
