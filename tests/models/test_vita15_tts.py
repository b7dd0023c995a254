"""VITA-1.5's speech decoder against the official code: text -> embedding rows -> pre-NN -> codec tokens (greedy
identical, step logits) -> codec waveform -> the official streamed segments; and the voice as a `Synthesizer`.

Reads `cases/tts.safetensors` and `index.json -> tts` of VITA15_REFERENCE_FIXTURES; sizes come from the set's files.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vita
from vita.checkpoint.vita15_tts import TTS_FOLDER, decoder_config, load_codec
from vita.errors import CheckpointError
from vita.speech.vita15_tts import FIRST, StreamConfig, Vita15Voice, prepare_text, quiet_cut, stream_audio

pytestmark = pytest.mark.reference

FEATURES = 1e-5
LOGITS = 1e-4
WAVE = 1e-4


@pytest.fixture(scope="module")
def tts(ref15_index) -> dict:
    return ref15_index["tts"]


@pytest.fixture(scope="module")
def gold(ref15_root) -> dict[str, torch.Tensor]:
    return load_file(ref15_root / "cases" / "tts.safetensors")


@pytest.fixture(scope="module")
def model(ref15_root):
    return vita.load(str(ref15_root / "checkpoint"))


@pytest.fixture(scope="module")
def voice(ref15_root, model, tts) -> Vita15Voice:
    return Vita15Voice.load(ref15_root / "checkpoint", model, max_codes=tts["max_tokens"])


def _max(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return (a.float() - b.float()).abs().max().item()


def _stream_config(stream: dict) -> StreamConfig:
    return StreamConfig(chunk=stream["codec_chunk_size"], padding=stream["codec_padding_size"],
                        threshold=stream["seg_threshold"], window=stream["N"])


def test_text_to_decoder_input(voice, model, tts, gold):
    text = prepare_text(tts["response_text"], first=tts["first_sentence_mode"])
    assert text == tts["tts_input_text"]
    assert model.tokenizer.encode(text) == tts["text_ids"] == gold["text_ids"].tolist()
    assert torch.equal(model.model.llm.tok_embeddings.weight[gold["text_ids"]], gold["llm_embeddings"])
    rows = voice.hidden(text)
    assert rows.shape[0] == len(tts["text_ids"]) * tts["idim_rows_per_llm_token"]
    assert torch.equal(rows, gold["decoder_input"])


def test_decoder_config_and_special_tokens(voice, tts):
    cfg = voice.decoder.config
    idim, odim, args = tts["decoder_model_json"]
    assert (cfg.hidden_size, cfg.num_codes, cfg.num_layers) == (idim, odim, args["transformer_num_blocks"])
    assert (cfg.bos_marker, cfg.start, cfg.eos, cfg.pad) == (
        tts["bos_marker_token"], tts["start_token"], tts["eos_token"], tts["pad_token"])
    assert len(voice.decoder.pre_nn) == args["transformer_num_blocks"] // 2
    with pytest.raises(CheckpointError, match="kv_cache_prefix_finetune"):
        decoder_config([idim, odim, {**args, "kv_cache_prefix_finetune": 1}], "model.json")


def test_pre_nn(voice, gold):
    with torch.no_grad():
        assert _max(voice.decoder.pre(gold["decoder_input"]), gold["prenn_out"]) <= FEATURES


def test_greedy_codes_identical(voice, tts, gold):
    loop = voice.codes(gold["decoder_input"])
    assert list(loop) == gold["greedy.tokens"].tolist() == tts["greedy_tokens"]
    assert loop.finish_reason == ("stop" if tts["greedy_stopped_on_eos"] else "length")


@pytest.mark.parametrize("name", ["greedy", "topk2_seeded"])
def test_step_logits_teacher_forced(voice, gold, name):
    """The logits at every step, given the recorded codes (checkable for the sampled run too)."""
    tokens, expected = gold[f"{name}.tokens"], gold[f"{name}.step_logits"]
    voice.codes(gold["decoder_input"])  # the prefix, bidirectional, in the voice's cache
    lm = voice.decoder.lm
    rows = torch.cat([voice.decoder.start_row(), lm.tok_embeddings.weight[tokens[: expected.shape[0] - 1]]])
    first = gold["decoder_input"].shape[0] + 1
    with torch.inference_mode():
        logits = lm(input_embeds=rows[None], input_pos=torch.arange(first, first + rows.shape[0]),
                    cache=voice.cache.kv)[0]
    assert _max(logits, expected) <= LOGITS


def test_top_k_sampling_stays_in_the_top_k(voice, gold):
    torch.manual_seed(0)
    codes = list(voice.codes(gold["decoder_input"], top_k=2, max_codes=12))
    assert 0 < len(codes) <= 12 and all(0 <= c < voice.decoder.config.num_codes for c in codes)


def test_codec_one_call(voice, tts, gold):
    codec = voice.codec
    assert codec.config.samples_per_code * len(tts["greedy_tokens"]) == tts["waveform_one_call_samples"]
    assert codec.config.global_tokens == tuple(tts["global_tokens"])
    assert _max(codec.embed(gold["greedy.tokens"]), gold["codec.quant_emb"]) == 0.0
    assert _max(codec.global_features(), gold["codec.global_features"]) == 0.0
    with torch.no_grad():
        assert _max(codec(gold["greedy.tokens"]), gold["codec.waveform_one_call"]) <= WAVE


def test_streams_equal_the_recorded_ones(voice, tts, gold):
    assert tts["streams"]
    for s, stream in enumerate(tts["streams"]):
        segments = list(stream_audio(iter(gold["greedy.tokens"].tolist()), voice.codec, _stream_config(stream)))
        assert [x.shape[0] for x in segments] == stream["segment_lengths"], s
        for j, segment in enumerate(segments):
            assert _max(segment, gold[f"stream{s}.segment{j}"]) <= WAVE, (s, j)


def test_text_to_streamed_audio_end_to_end(voice, tts, gold):
    """Reply text (state token and all) -> prepared text -> codes -> the recorded segments, through the voice."""
    for s, stream in enumerate(tts["streams"]):
        segments = list(voice.stream(tts["response_text"], first=tts["first_sentence_mode"],
                                     config=_stream_config(stream)))
        assert [x.shape[0] for x in segments] == stream["segment_lengths"], s
        for j, segment in enumerate(segments):
            assert _max(segment, gold[f"stream{s}.segment{j}"]) <= WAVE, (s, j)
        assert voice.last_first_audio_s is not None and voice.last_first_audio_s > 0


def test_voice_is_a_synthesizer(voice, tts, gold):
    """`voice(text)` = the segments joined (24 kHz), or resampled; what StreamingTTS and the servers call."""
    pcm = voice(tts["response_text"], first=True)
    assert pcm.dtype == np.float32 and pcm.shape[0] == tts["waveform_one_call_samples"]
    first = [st for st in tts["streams"] if (st["codec_chunk_size"], st["seg_threshold"]) == (FIRST.chunk,
                                                                                              FIRST.threshold)]
    for stream in first:  # the recorded run with the server's first-sentence settings
        s = tts["streams"].index(stream)
        joined = torch.cat([gold[f"stream{s}.segment{j}"] for j in range(stream["num_segments"])])
        assert _max(torch.from_numpy(pcm), joined) <= WAVE
    assert voice("☞").shape == (0,)  # nothing to say
    from vita.speech.tts import StreamingTTS

    chunks = StreamingTTS(voice, sample_rate=voice.out_rate).step("Sure, the red car is on the left side. ")
    chunks += StreamingTTS(voice, sample_rate=voice.out_rate).flush()
    assert chunks and all(c.sample_rate == voice.out_rate for c in chunks) and any(c.pcm.size for c in chunks)


def test_quiet_cut_rule():
    quiet = torch.ones(12000)
    quiet[7000:9500] = 0.001
    quiet[8000] = 0.0
    assert quiet_cut(quiet, 2401, threshold=0.1) == 8000  # the quietest sample inside the quietest window
    assert quiet_cut(torch.ones(12000), 2401, threshold=0.1) is None  # nothing quiet: keep buffering
    assert quiet_cut(torch.zeros(100), 2401, threshold=0.1) is None  # shorter than the window


def test_streamed_audio_covers_every_code(voice, gold):
    """Whatever the chunking, the segments add up to 600 samples a code and the first comes before the end."""
    codes = gold["greedy.tokens"].tolist()
    for chunk, padding in ((5, 2), (8, 4), (20, 10)):
        segments = list(stream_audio(iter(codes), voice.codec, StreamConfig(chunk=chunk, padding=padding,
                                                                               threshold=10.0)))
        assert sum(x.shape[0] for x in segments) == len(codes) * voice.codec.config.samples_per_code
        assert len(segments) > 1 or len(codes) < chunk + padding  # a chunk was decoded before the end


def test_missing_and_bad_files_are_named(ref15_root, tmp_path):
    import shutil

    folder = tmp_path / TTS_FOLDER
    shutil.copytree(ref15_root / "checkpoint" / TTS_FOLDER, folder)
    parts = torch.load(folder / "codec" / "final.pt", weights_only=True)
    parts["quantizer"]["extra.weight"] = torch.zeros(2)
    torch.save(parts, folder / "codec" / "final.pt")
    with pytest.raises(CheckpointError, match="extra.weight"):
        load_codec(folder / "codec")
    (folder / "codec" / "final.pt").unlink()
    with pytest.raises(CheckpointError, match="final.pt"):
        load_codec(folder / "codec")
