"""Kaldi fbank: parity with the official processor, streaming == whole clip, token counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vita.config import FbankConfig
from vita.media.audio import load_audio
from vita.media.fbank import StreamingFbank, fbank, fft_rounding_floor, mel_banks, num_fbank_frames, num_llm_tokens

# Streaming and whole-clip runs feed the same frames through the same ops; only the BLAS blocking of the mel matmul
# (which depends on how many frames one call holds) can change the last float32 bit of an energy.
STREAM_ATOL = 1e-5


def _signal(seconds: float, seed: int = 0) -> torch.Tensor:
    """Chirp + noise in [-1, 1] at 16 kHz."""
    n = int(seconds * 16000)
    t = torch.arange(n, dtype=torch.float64) / 16000
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, generator=gen, dtype=torch.float64)
    x = 0.4 * torch.sin(2 * math.pi * (200 * t + 900 * t**2)) + 0.05 * noise
    return x.to(torch.float32)


@pytest.mark.reference
def test_fbank_matches_official_features(ref_root, ref_index):
    golden = load_file(ref_root / "cases" / "audio.safetensors")
    assert ref_index["audios"], "fixture lists no audio clips"
    for i, clip in enumerate(ref_index["audios"]):
        wave = load_audio(ref_root / clip["file"])
        assert wave.numel() == clip["num_samples"]
        feats = fbank(wave)
        expected = golden[f"audio{i}.fbank"]
        assert feats.shape == expected.shape == (clip["fbank_frames"], 80)
        # 1e-4 plus what float32 FFT rounding alone moves a bin by (the recording machine's FFT kernels are not
        # this machine's; ~1e-6 in bins with energy, up to ~1e-2 in the nearly empty ones)
        excess = (feats - expected).abs() - 1e-4 - fft_rounding_floor(wave)  # [T, M]
        assert excess.max().item() <= 0, f"{clip['file']}: fbank exceeds 1e-4 + FFT rounding by {excess.max()}"
        strict = (feats - expected).abs() <= 1e-4
        assert strict.float().mean() > 0.98, f"{clip['file']}: only {strict.float().mean():.1%} of bins within 1e-4"


@pytest.mark.reference
def test_token_counts_match_official_processor(ref_index):
    for clip in ref_index["audios"]:
        frames = num_fbank_frames(clip["num_samples"])
        assert frames == clip["fbank_frames"]
        assert num_llm_tokens(frames) == clip["llm_tokens_from_processor"]


def test_token_counts_known_values():
    assert [num_llm_tokens(t) for t in (128, 268, 400)] == [16, 33, 50]
    # 1 s, 2 s and 3.54 s clips at 16 kHz (about 12.5 tokens per second).
    assert [num_llm_tokens(num_fbank_frames(round(s * 16000))) for s in (1.0, 2.0, 3.54)] == [12, 24, 44]
    assert num_llm_tokens(0) == 0 and num_llm_tokens(2) == 0


def test_frame_count_snip_edges():
    assert num_fbank_frames(399) == 0
    assert num_fbank_frames(400) == 1
    assert num_fbank_frames(559) == 1 and num_fbank_frames(560) == 2
    assert fbank(torch.zeros(399)).shape == (0, 80)
    assert fbank(_signal(0.5)).shape == (num_fbank_frames(8000), 80)


def test_tone_peaks_in_the_right_mel_band():
    t = torch.arange(16000, dtype=torch.float64) / 16000
    feats = fbank((0.5 * torch.sin(2 * math.pi * 1000.0 * t)).float())  # [T, 80]
    banks = mel_banks()  # [80, 257]
    expected_band = int(banks[:, round(1000.0 / 31.25)].argmax())  # the filter with most weight at 1 kHz
    assert abs(int(feats.mean(0).argmax()) - expected_band) <= 1
    assert torch.all(banks[:, -1] == 0)  # Kaldi gives the Nyquist bin no weight


def test_int16_input_equals_float_input():
    pcm = (_signal(0.3) * 32767).round().to(torch.int16)
    torch.testing.assert_close(fbank(pcm), fbank(pcm.float() / 32768), rtol=0, atol=0)


def test_silence_is_floored_not_nan():
    feats = fbank(torch.zeros(1600))
    assert torch.isfinite(feats).all()
    assert torch.allclose(feats, torch.tensor(math.log(torch.finfo(torch.float32).eps)))


def _stream(x: torch.Tensor, sizes) -> torch.Tensor:
    stream = StreamingFbank()
    out, pos = [], 0
    for size in sizes:
        if pos >= x.numel():
            break
        out.append(stream.step(x[pos : pos + size]))
        pos += size
    out.append(stream.flush())
    return torch.cat(out)


@pytest.mark.parametrize("chunking", ["10ms", "random", "one-sample", "whole", "odd"])
def test_streaming_equals_whole_clip(chunking):
    x = _signal(0.35 if chunking == "one-sample" else 1.37, seed=1)
    rng = np.random.default_rng(7)
    sizes = {
        "10ms": [160] * x.numel(),
        "random": rng.integers(1, 2000, size=x.numel()).tolist(),
        "one-sample": [1] * x.numel(),
        "whole": [x.numel()],
        "odd": [399, 1, 400, 161, 159, 3] * 1000,
    }[chunking]
    streamed = _stream(x, sizes)
    whole = fbank(x)
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, rtol=0, atol=STREAM_ATOL)


def test_streaming_reset_and_numpy_chunks():
    stream = StreamingFbank()
    stream.step(_signal(0.2, seed=3))  # another utterance, then forgotten
    stream.reset()
    x = _signal(0.6, seed=4)
    parts = [stream.step(chunk.numpy()) for chunk in x.split(777)]
    assert stream.num_frames == num_fbank_frames(x.numel())
    torch.testing.assert_close(torch.cat(parts), fbank(x), rtol=0, atol=STREAM_ATOL)


def test_dither_is_seeded_and_off_by_default():
    x = _signal(0.3)
    cfg = FbankConfig(dither=1.0)
    a = fbank(x, cfg, generator=torch.Generator().manual_seed(5))
    b = fbank(x, cfg, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, fbank(x))
    assert torch.equal(fbank(x), fbank(x))  # dither 0: deterministic


def test_rejects_bad_pcm():
    with pytest.raises(ValueError, match="mono"):
        fbank(torch.zeros(2, 800))
    with pytest.raises(ValueError, match="dtype"):
        fbank(torch.zeros(800, dtype=torch.int64))
