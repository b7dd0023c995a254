"""Whisper log-mel: Slaney filters, whole-window features vs transformers' WhisperFeatureExtractor, streaming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vita.config import LogMelConfig
from vita.media import fbank as fbank_mod
from vita.media.audio import load_audio
from vita.media.logmel import (
    StreamingLogMel,
    dynamic_range_clamp,
    log_mel,
    log_mel_unclamped,
    mel_filters,
    num_llm_tokens,
    num_logmel_frames,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STREAM_TOL = 1e-6  # streaming vs whole: same per-frame math, only FFT/GEMM batch sizes differ (measured 1.2e-7)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """The bundled spoken question (espeak-ng, 16 kHz, 2.5 s)."""
    return load_audio(EXAMPLES / "emoji_question.wav", target_rate=16000).numpy()


@pytest.fixture(scope="module")
def extractor():
    transformers = pytest.importorskip("transformers")
    return transformers.WhisperFeatureExtractor(feature_size=80)  # builds its own filters, no download


def _reference(extractor, wave: np.ndarray) -> np.ndarray:
    return extractor(wave, sampling_rate=16000, return_tensors="np").input_features[0].T  # [3000, 80]


def test_mel_filters_match_transformers(extractor):
    ours = mel_filters()  # [M, F]
    assert ours.shape == (80, 201)
    np.testing.assert_allclose(ours.numpy(), extractor.mel_filters.T, atol=1e-7, rtol=0)


def test_whole_window_matches_whisper_feature_extractor(extractor, speech):
    rng = np.random.default_rng(0)
    clips = {
        "speech": speech,
        "int16 speech": (speech * 32767).astype(np.int16),
        "noise": (0.1 * rng.standard_normal(16000)).astype(np.float32),
        "150 samples": speech[8000:8150],
        "over 30 s (trimmed)": np.tile(speech, 1 + 30 * 16000 // len(speech)),
    }
    for name, wave in clips.items():
        ours = log_mel(wave)
        ref = _reference(extractor, wave.astype(np.float32) / 32768 if wave.dtype == np.int16 else wave)
        assert ours.shape == (3000, 80), name
        assert np.abs(ours.numpy() - ref).max() < 1e-4, name  # measured: 0.0 on every clip


def test_unclamped_frames_are_the_windows_frames(speech):
    window = log_mel(speech)  # [3000, 80]
    own = log_mel_unclamped(speech)  # [T, 80]
    assert own.shape == (num_logmel_frames(len(speech)), 80) and own.shape[0] < 3000
    assert torch.equal(dynamic_range_clamp(own), window[: own.shape[0]])  # the max lies inside the clip
    assert torch.equal(log_mel(speech, pad_to_window=False), dynamic_range_clamp(own))
    assert float(own.min()) >= -1.5 and float(window[-1].max()) == pytest.approx(float(window.max()) - 2.0)  # floor


def test_streaming_equals_whole(speech):
    stream = StreamingLogMel()
    whole = log_mel_unclamped(speech)
    rng = np.random.default_rng(1)
    for chunking in ("random", "tiny", "one"):
        clip = speech[:3000] if chunking == "tiny" else speech
        ref = log_mel_unclamped(clip) if chunking == "tiny" else whole
        stream.reset()
        outs, i = [], 0
        while i < len(clip):
            k = {"random": int(rng.integers(1, 4000)), "tiny": int(rng.integers(1, 30)), "one": len(clip)}[chunking]
            outs.append(stream.step(clip[i : i + k]))
            i += k
            assert sum(o.shape[0] for o in outs) == stream.num_frames <= num_logmel_frames(i)
        lag = num_logmel_frames(len(clip)) - stream.num_frames
        assert lag <= 2  # only frames whose window reaches past the last sample wait for flush()
        outs.append(stream.flush())
        got = torch.cat(outs)
        assert got.shape == ref.shape and (got - ref).abs().max() <= STREAM_TOL, chunking
    for n in (1, 150, 200, 201, 361):  # clips shorter than the start reflection, and just around it
        stream.reset()
        got = torch.cat([stream.step(speech[: n // 2]), stream.step(speech[n // 2 : n]), stream.flush()])
        ref = log_mel_unclamped(speech[:n])
        assert got.shape == ref.shape == (num_logmel_frames(n), 80) and (got - ref).abs().max() <= STREAM_TOL, n


def test_frame_and_token_counts():
    assert [num_logmel_frames(n) for n in (0, 1, 160, 161, 16000, 480000)] == [0, 1, 1, 2, 100, 3000]
    assert [num_llm_tokens(t) for t in (0, 1, 2, 3, 4, 5, 100, 301, 3000)] == [0, 1, 1, 1, 1, 2, 25, 76, 750]
    assert fbank_mod.num_llm_tokens(301, "whisper") == 76 and fbank_mod.num_llm_tokens(301) == 37
    with pytest.raises(ValueError, match="unknown audio encoder"):
        fbank_mod.num_llm_tokens(10, "wav2vec")
    assert LogMelConfig().window_frames == 3000
    with pytest.raises(ValueError, match="mono PCM"):
        log_mel(np.zeros((2, 10), np.float32))


@pytest.mark.parametrize("stride", [2, 3, 4])
def test_token_count_matches_adapter_output_for_any_stride(stride: int) -> None:
    from vita.config import AudioAdapterConfig
    from vita.models.audio_adapter import AudioAdapter

    adapter = AudioAdapter(AudioAdapterConfig(input_size=8, output_size=4, stride=stride))
    for frames in (1, 2, 5, 99, 301):
        encoder_frames = (frames + 1) // 2
        x, mask = torch.zeros(1, encoder_frames, 8), torch.ones(1, encoder_frames, dtype=torch.bool)
        out, out_mask = adapter(x, mask)
        assert out.shape[1] == out_mask.shape[1] == num_llm_tokens(frames, stride)
        assert fbank_mod.num_llm_tokens(frames, "whisper", stride) == num_llm_tokens(frames, stride)
