"""Audio loading: formats, rates, channels, raw PCM, strict mode, the resampler, and every error path."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from vita.errors import MediaError
from vita.media.audio import StreamResampler, load_audio, resample

TONES = ((440.0, 0.3), (1000.0, 0.2), (2000.0, 0.1))  # well inside every band we resample through


def _tones(rate: int, seconds: float, scale: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (scale * sum(a * np.sin(2 * np.pi * f * t) for f, a in TONES)).astype(np.float32)


def _expected_16k(num: int, scale: float = 1.0) -> np.ndarray:
    return _tones(16000, num / 16000, scale)[:num]


def _interior_error(y: torch.Tensor, expected: np.ndarray, margin: int = 800) -> float:
    """Max abs error away from the clip edges (filter and codec transients)."""
    return float(np.abs(y.numpy() - expected)[margin:-margin].max())


def _write_pyav(path: Path, x: np.ndarray, rate: int, codec: str, container: str, packed_s16: bool = False) -> None:
    """Encode channels-first float samples [C, N] with an FFmpeg encoder, 1024-sample frames.

    packed_s16: feed interleaved int16 frames (for PCM codecs, whose decoders then return packed samples).
    """
    layout = "stereo" if x.shape[0] == 2 else "mono"
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        for start in range(0, x.shape[1], 1024):
            block = x[:, start : start + 1024]  # [C, n]
            if packed_s16:
                block = np.round(block * 32767).astype(np.int16).T.reshape(1, -1)  # [1, n * C] interleaved
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(block), format="s16" if packed_s16 else "fltp", layout=layout
            )
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


# ------------------------------------------------------------------------------------------------ formats / rates


def test_wav_16k_mono_is_exact_int16_scaling(tmp_path):
    pcm = (np.random.default_rng(0).standard_normal(8000) * 3000).astype(np.int16)
    sf.write(tmp_path / "a.wav", pcm, 16000, subtype="PCM_16")
    y = load_audio(tmp_path / "a.wav")
    assert y.dtype == torch.float32 and y.shape == (8000,)
    assert torch.equal(y, torch.from_numpy(pcm.astype(np.float32) / 32768))
    assert torch.equal(load_audio((tmp_path / "a.wav").read_bytes()), y)  # bytes give the same samples
    assert torch.equal(load_audio(str(tmp_path / "a.wav")), y)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_soundfile_formats_are_resampled_to_16k(tmp_path, rate, fmt):
    path = tmp_path / f"a_{rate}.{fmt}"
    sf.write(path, _tones(rate, 1.0), rate, subtype="PCM_16")
    y = load_audio(path)
    assert y.shape == (16000,)
    assert _interior_error(y, _expected_16k(16000)) < 2e-3


def test_stereo_is_averaged(tmp_path):
    left, right = _tones(44100, 1.0, 1.4), _tones(44100, 1.0, 0.6)  # mean = _tones(., 1.0)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    y = load_audio(tmp_path / "s.wav")
    assert y.shape == (16000,)
    assert _interior_error(y, _expected_16k(16000)) < 2e-3


def test_ogg_vorbis_via_soundfile(tmp_path):
    sf.write(tmp_path / "v.ogg", _tones(44100, 1.0)[:, None].repeat(2, axis=1), 44100, format="OGG", subtype="VORBIS")
    y = load_audio(tmp_path / "v.ogg")
    assert y.shape == (16000,)
    assert _interior_error(y, _expected_16k(16000)) < 0.02  # lossy codec


def test_ogg_opus_via_pyav_encoder(tmp_path):
    x = np.stack([_tones(48000, 1.0, 1.5), _tones(48000, 1.0, 0.5)])
    _write_pyav(tmp_path / "o.ogg", x, 48000, "libopus", "ogg")
    y = load_audio(tmp_path / "o.ogg")
    assert y.shape == (16000,)
    assert _interior_error(y, _expected_16k(16000)) < 0.02  # lossy codec


def test_mp3_via_pyav(tmp_path):
    x = np.stack([_tones(44100, 1.0, 1.2), _tones(44100, 1.0, 0.8)])
    _write_pyav(tmp_path / "m.mp3", x, 44100, "libmp3lame", "mp3")
    y = load_audio(tmp_path / "m.mp3")
    assert abs(y.numel() - 16000) <= 160
    assert _interior_error(y[:16000], _expected_16k(min(16000, y.numel()))[:16000]) < 0.05  # lossy codec
    assert torch.equal(load_audio((tmp_path / "m.mp3").read_bytes()), y)


def test_packed_pcm_in_matroska_via_pyav(tmp_path):
    x = np.stack([_tones(22050, 1.0, 1.5), _tones(22050, 1.0, 0.5)])
    _write_pyav(tmp_path / "p.mka", x, 22050, "pcm_s16le", "matroska", packed_s16=True)
    y = load_audio(tmp_path / "p.mka")
    assert y.shape == (16000,)
    assert _interior_error(y, _expected_16k(16000)) < 2e-3  # lossless codec: only resampling and int16 rounding


# ------------------------------------------------------------------------------------------------------- raw PCM


def test_raw_pcm_arrays():
    pcm = (np.random.default_rng(1).standard_normal(1600) * 1000).astype(np.int16)
    assert torch.equal(load_audio(pcm, 16000), torch.from_numpy(pcm.astype(np.float32) / 32768))
    floats = torch.rand(1600) - 0.5
    assert torch.equal(load_audio(floats, 16000), floats)  # float passthrough
    stereo = torch.stack([floats, -floats * 3])
    torch.testing.assert_close(load_audio(stereo, 16000), -floats, rtol=0, atol=1e-7)
    up = load_audio(torch.from_numpy(_tones(8000, 0.5)), 8000)
    assert up.shape == (8000,) and _interior_error(up, _expected_16k(8000)) < 2e-3


def test_raw_pcm_needs_rate_and_sane_shape():
    with pytest.raises(MediaError, match="sample_rate"):
        load_audio(np.zeros(1600, np.float32))
    with pytest.raises(MediaError, match=r"\[C, N\]"):
        load_audio(np.zeros((1600, 2), np.float32), 16000)
    with pytest.raises(MediaError, match="sample type"):
        load_audio(np.zeros(1600, np.complex64), 16000)


# ---------------------------------------------------------------------------------------------------- strict mode


def test_strict_mode_refuses_other_rates_and_stereo(tmp_path):
    sf.write(tmp_path / "8k.wav", _tones(8000, 0.5), 8000)
    sf.write(tmp_path / "st.wav", np.stack([_tones(16000, 0.5)] * 2, axis=1), 16000)
    sf.write(tmp_path / "ok.wav", _tones(16000, 0.5), 16000)
    with pytest.raises(MediaError, match="8k.wav.*8000 Hz"):
        load_audio(tmp_path / "8k.wav", require_rate=16000)
    with pytest.raises(MediaError, match="st.wav.*2 channel"):
        load_audio(tmp_path / "st.wav", require_rate=16000)
    assert load_audio(tmp_path / "ok.wav", require_rate=16000).shape == (8000,)
    assert load_audio(tmp_path / "8k.wav").shape == (8000,)  # default: resample
    with pytest.raises(MediaError, match="22050"):
        load_audio(tmp_path / "ok.wav", sample_rate=22050)  # a given rate must match the file


# --------------------------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(MediaError, match=f"{path}.*no such"):
        load_audio(path)


def test_corrupt_files(tmp_path):
    bad_wav = tmp_path / "bad.wav"
    bad_wav.write_bytes(b"RIFF\x00\x10\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    for path in (bad_wav, garbage):
        with pytest.raises(MediaError, match=str(path)):
            load_audio(path)


def test_truncated_files(tmp_path):
    for fmt in ("wav", "flac"):
        full = tmp_path / f"full.{fmt}"
        sf.write(full, _tones(16000, 1.0), 16000, subtype="PCM_16")
        cut = tmp_path / f"cut.{fmt}"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        with pytest.raises(MediaError, match=f"{cut}.*(truncated|corrupt)"):
            load_audio(cut)


def test_empty_and_too_short(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(MediaError, match="empty.wav.*(empty|no samples)"):
        load_audio(tmp_path / "empty.wav")
    sf.write(tmp_path / "short.wav", np.zeros(399, np.float32), 16000)
    with pytest.raises(MediaError, match="short.wav.*too short"):
        load_audio(tmp_path / "short.wav")
    assert load_audio(np.zeros(400, np.float32), 16000).shape == (400,)
    with pytest.raises(MediaError, match="empty"):
        load_audio(b"")


def test_non_audio_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not audio\n" * 50)
    with pytest.raises(MediaError, match="notes.txt"):
        load_audio(text)
    png = tmp_path / "picture.png"
    from PIL import Image

    Image.new("RGB", (16, 16), "red").save(png)
    with pytest.raises(MediaError, match="picture.png.*(no audio|corrupt)"):
        load_audio(png)


def test_nan_and_inf(tmp_path):
    x = _tones(16000, 0.5)
    x[100] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(MediaError, match="nan.wav.*NaN"):
        load_audio(tmp_path / "nan.wav")
    with pytest.raises(MediaError, match="infinite"):
        load_audio(torch.tensor([0.0, math.inf] * 400), 16000)


# ------------------------------------------------------------------------------------------------------ resampler


@pytest.mark.parametrize(
    "rates",
    [
        (8000, 16000),
        (44100, 16000),
        (48000, 16000),
        (22050, 16000),
        (16000, 44100),
        (16000, 8000),
        (11025, 16000),
        (12345, 16000),  # many phases: the gather path
        (44101, 16000),  # co-prime rates: 16000 phases
    ],
)
def test_resampler_matches_scipy_resample_poly(rates):
    signal = pytest.importorskip("scipy.signal")
    orig, new = rates
    rng = np.random.default_rng(3)
    x = (_tones(orig, 0.7) + 0.05 * rng.standard_normal(int(orig * 0.7))).astype(np.float32)
    g = math.gcd(orig, new)
    expected = signal.resample_poly(x.astype(np.float64), new // g, orig // g)
    y = resample(torch.from_numpy(x), orig, new).numpy()
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("n", [1, 2, 5, 441])
def test_resampler_on_tiny_inputs(n):
    signal = pytest.importorskip("scipy.signal")
    x = np.random.default_rng(n).standard_normal(n)
    expected = signal.resample_poly(x, 160, 441)
    y = resample(torch.from_numpy(x), 44100, 16000).numpy()
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() <= 1e-4 * max(np.abs(expected).max(), 1e-3)


def test_resampler_keeps_leading_dims_and_identity():
    x = torch.randn(2, 3, 1000)
    assert resample(x, 48000, 16000).shape == (2, 3, 334)
    assert torch.equal(resample(x, 16000, 16000), x)


@pytest.mark.parametrize("rates", [(24000, 16000), (22050, 16000), (8000, 16000), (16000, 16000), (44101, 16000)])
def test_stream_resampler_equals_the_whole_stream_resampled(rates):
    """Chunks of any size: the concatenated output is `resample` of the whole input, less a short held-back tail."""
    rng = np.random.default_rng(7)
    x = (0.3 * rng.standard_normal(rates[0])).astype(np.float32)  # 1 s
    stream, out, i = StreamResampler(*rates), [], 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        out.append(stream(x[i : i + n]))
        i += n
    y, whole = np.concatenate(out), resample(x, *rates)
    assert len(whole) - 40 <= len(y) <= len(whole)  # at most the outputs waiting for their future taps
    assert np.abs(y - whole[: len(y)]).max() <= 1e-5

