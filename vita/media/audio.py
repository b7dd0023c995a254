"""Audio loading: any file, bytes or PCM array -> float32 mono waveform at 16 kHz, with clear errors.

Decoders: WAV / FLAC / Ogg (Vorbis, Opus) / AIFF through soundfile (libsndfile); everything else (mp3, m4a, the
audio track of a video, ...) through PyAV (FFmpeg). Samples are normalised to [-1, 1] (int16 / 32768, like
`torchaudio.load`), channels are averaged to mono and other rates are resampled to 16 kHz with a band-limited
polyphase resampler (`resample`). The fbank front end then scales by 2**15 itself (`vita.media.fbank`).

Shapes: N = samples, C = channels.
"""

from __future__ import annotations

import io
import math
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from vita.config import SAMPLE_RATE, FbankConfig
from vita.errors import MediaError

__all__ = ["AudioSource", "AudioTooLong", "MAX_RATE", "MIN_RATE", "SAMPLE_RATE", "StreamResampler", "load_audio",
           "resample"]

AudioSource = str | Path | bytes | bytearray | np.ndarray | torch.Tensor

# File signatures libsndfile handles; anything else goes to PyAV.
_SOUNDFILE_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM")
_MAX_CHANNELS = 64
_DENSE_RESAMPLE_LIMIT = 1 << 22  # conv weight entries; above it the gather path is cheaper
_HEAD_BYTES = 1 << 16  # enough to reach the data chunk header of any sane WAV
# Sample rates accepted from a file or an array header, checked before anything is decoded or resampled (a WAV
# declaring 1 Hz would otherwise be resampled x16,000).
MIN_RATE, MAX_RATE = 4000, 384_000
_MAX_PHASES = 50_000  # rate pairs needing more polyphase phases (a filter of 1 M taps) are approximated
_UNKNOWN_FRAMES = 1 << 62  # libsndfile's "length unknown" counts are huge


class AudioTooLong(MediaError):
    """More audio than `max_seconds`: known from the header (`at_least` False), or decoding stopped past it."""

    def __init__(self, what: str, seconds: float, limit: float, *, at_least: bool) -> None:
        self.seconds, self.limit, self.at_least = seconds, limit, at_least
        verb = "decoding stopped after more than" if at_least else "the header declares"
        super().__init__(f"{what}: {verb} {seconds:.1f} s of audio > max_seconds {limit:g}")


# --------------------------------------------------------------------------------------------------- resampling


def _lowpass_filter(up: int, down: int) -> torch.Tensor:
    """Kaiser-windowed (beta 5) sinc low-pass for rational resampling, cutoff at the lower Nyquist, gain `up`.

    Length 2 * half + 1 with half = 10 * max(up, down); the same design as scipy's `resample_poly` default, so the
    two agree to float rounding.
    """
    rate = max(up, down)
    half = 10 * rate
    cutoff = 1.0 / rate  # in units of the (upsampled) Nyquist frequency
    taps = torch.arange(2 * half + 1, dtype=torch.float64) - half  # [K]
    h = cutoff * torch.sinc(cutoff * taps)  # [K]
    h = h * torch.kaiser_window(2 * half + 1, periodic=False, beta=5.0, dtype=torch.float64)
    return h / h.sum() * up  # unit DC gain after zero-stuffing by `up`


def _polyphase(up: int, down: int) -> tuple[torch.Tensor, int, int]:
    """Filter phases H [up, J] with y[m] = sum_j x[m*down // up - j] * H[(m*down) % up, j], j = j_min .. j_max."""
    h = _lowpass_filter(up, down)  # [K], K = 2 * half + 1
    half = (h.numel() - 1) // 2
    # y[m] = sum_i x[i] * h[half + m*down - i*up]; with i = q - j (q = m*down // up, r = m*down % up) the tap is
    # h[half + r + j*up]. One j range covers every phase r; taps outside the filter are zero.
    j_min, j_max = -((half + up - 1) // up), half // up
    j = torch.arange(j_min, j_max + 1)  # [J]
    tap = half + torch.arange(up)[:, None] + j[None, :] * up  # [up, J]
    valid = (tap >= 0) & (tap < h.numel())
    phases = torch.where(valid, h[tap.clamp(0, h.numel() - 1)], torch.zeros((), dtype=h.dtype))  # [up, J]
    return phases.to(torch.float32), j_min, j_max


def _ratio(orig_rate: int, new_rate: int) -> tuple[int, int]:
    """(up, down): the reduced rational resampling factor."""
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    g = math.gcd(orig_rate, new_rate)
    up, down = new_rate // g, orig_rate // g
    if max(up, down) > _MAX_PHASES:
        # e.g. 383,999 -> 16,000 Hz: an exact filter would have 7.7 M taps. A ratio within ~1e-6 of it costs a
        # few thousand (a tempo change of a few samples per minute).
        ratio = Fraction(up, down).limit_denominator(1024)
        up, down = ratio.numerator, ratio.denominator
    return up, down


def resample(waveform: torch.Tensor | np.ndarray, orig_rate: int, new_rate: int) -> torch.Tensor | np.ndarray:
    """Band-limited resampling of [..., N] from `orig_rate` to `new_rate` Hz -> float32 [..., ceil(N * new / orig)].

    Polyphase FIR (Kaiser-windowed sinc); output sample m sits at input time m * down / up, with no delay. A numpy
    array comes back as a numpy array (the one resampler of vita: files, TTS voices, echo references, training
    augmentation; `StreamResampler` is its streaming form).
    """
    if isinstance(waveform, np.ndarray):
        return resample(torch.from_numpy(np.asarray(waveform, dtype=np.float32)), orig_rate, new_rate).numpy()
    up, down = _ratio(orig_rate, new_rate)
    if up == down:
        return waveform.clone()
    lead, n_in = waveform.shape[:-1], waveform.shape[-1]
    n_out = -(-n_in * up // down)
    if n_in == 0:
        return torch.zeros(*lead, 0)
    x = waveform.reshape(-1, n_in).to(torch.float32)  # [B, N]
    phases, j_min, j_max = _polyphase(up, down)  # [up, J]
    x = F.pad(x, (j_max, -j_min))  # [B, N + J - 1]: x_pad[n] = x[n - j_max]
    if up * (down + phases.shape[1]) <= _DENSE_RESAMPLE_LIMIT:
        y = _resample_conv(x, phases, up, down, n_out)
    else:
        y = _resample_gather(x, phases, up, down, n_out, j_min, j_max)
    return y.reshape(*lead, n_out)


class StreamResampler:
    """`resample` over a stream of mono float32 chunks: the output equals `resample` of the whole stream, less its
    last few samples (each output waits for the |j_min| input samples after it: under 1 ms at common rates).

    Keeps the input its next outputs need, from a multiple of `down` on, so that the phases line up.
    """

    def __init__(self, orig_rate: int, new_rate: int = SAMPLE_RATE) -> None:
        self.up, self.down = _ratio(orig_rate, new_rate)
        _, self._j_min, self._j_max = _polyphase(self.up, self.down) if self.up != self.down else (None, 0, 0)
        self._buf = np.zeros(0, np.float32)
        self._base = 0  # stream index of _buf[0]
        self._emitted = 0  # output samples returned so far

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if self.up == self.down:
            return pcm.copy()
        up, down = self.up, self.down
        self._buf = np.concatenate([self._buf, pcm])
        last = self._base + len(self._buf) - 1 + self._j_min  # the last input index an output may centre on
        ready = -(-(last + 1) * up // down) if last >= 0 else 0  # outputs m with m * down // up <= last
        if ready <= self._emitted:
            return np.zeros(0, np.float32)
        first = self._base * up // down  # the buffer's output 0 (base is a multiple of down)
        y = resample(self._buf, down, up)[self._emitted - first : ready - first]
        self._emitted = ready
        keep = max((ready * down // up - self._j_max) // down * down, self._base)  # the next output's first tap
        self._buf, self._base = self._buf[keep - self._base :], keep
        return y


def _resample_conv(x: torch.Tensor, phases: torch.Tensor, up: int, down: int, n_out: int) -> torch.Tensor:
    """Common rates (few phases): one strided conv1d whose `up` output channels are the phases.

    Output m = k*up + s reads x_pad[k*down + q_s + j_max - j] (q_s = s*down // up), so phase s is a kernel of
    length down + J - 1 with the phase taps placed (reversed) at offset q_s.
    """
    taps = phases.shape[1]
    s = torch.arange(up)
    q, r = (s * down) // up, (s * down) % up  # [up]
    weight = torch.zeros(up, down + taps - 1)  # [up, L]
    cols = q[:, None] + (taps - 1 - torch.arange(taps))[None, :]  # [up, J]: j = j_min + t sits at q_s + J - 1 - t
    weight.scatter_(1, cols, phases[r])
    blocks = -(-n_out // up)
    need = (blocks - 1) * down + weight.shape[1]
    x = F.pad(x, (0, max(0, need - x.shape[1])))[:, None, :need]  # [B, 1, need]
    y = F.conv1d(x, weight[:, None, :], stride=down)  # [B, up, blocks]
    return y.transpose(1, 2).reshape(x.shape[0], -1)[:, :n_out]  # [B, n_out]: interleave the phases


def _resample_gather(
    x: torch.Tensor, phases: torch.Tensor, up: int, down: int, n_out: int, j_min: int, j_max: int
) -> torch.Tensor:
    """Unusual rate pairs (many phases): gather each output's taps directly, in bounded chunks."""
    taps = phases.shape[1]
    offsets = j_max - torch.arange(j_min, j_max + 1)  # [J]: x_pad index = q + j_max - j
    out = []
    step = max(1, _DENSE_RESAMPLE_LIMIT // taps)
    for start in range(0, n_out, step):
        m = torch.arange(start, min(n_out, start + step))  # [M]
        q, r = (m * down) // up, (m * down) % up  # [M]
        window = x[:, q[:, None] + offsets[None, :]]  # [B, M, J]
        out.append((window * phases[r]).sum(-1))  # [B, M]
    return torch.cat(out, dim=1)  # [B, n_out]


# ----------------------------------------------------------------------------------------------------- decoding


def _describe(source: AudioSource, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return f"<array {tuple(source.shape)}>"


def _int_to_float(samples: np.ndarray, what: str) -> np.ndarray:
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    if samples.dtype == np.int32:
        return (samples.astype(np.float64) / 2147483648.0).astype(np.float32)
    if samples.dtype == np.uint8:
        return (samples.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(samples.dtype, np.floating):
        return samples.astype(np.float32)
    raise MediaError(f"{what}: unsupported sample type {samples.dtype} (expected int16, int32 or float PCM)")


def _check_riff_length(head: bytes, size: int, what: str) -> None:
    """A WAV whose data chunk claims more bytes than the file holds is truncated (libsndfile silently reads less).

    head: the first bytes of the file (enough to reach the data chunk header), size: the file size in bytes.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(head):
        chunk, length = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if chunk == b"data":
            available = size - pos - 8
            # 0 and 0xFFFFFFFF are "unknown length" markers of streaming writers, not a truncation.
            if length not in (0, 0xFFFFFFFF) and length > available:
                raise MediaError(
                    f"{what}: truncated WAV file (data chunk: {length} bytes declared, {available} present)"
                )
            return
        pos += 8 + length + (length & 1)


def _open(data: Path | bytes) -> Any:
    return str(data) if isinstance(data, Path) else io.BytesIO(data)


def _check_rate(rate: int, what: str) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise MediaError(f"{what}: sample rate {rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")


def _check_channels(channels: int, what: str) -> None:
    if not 1 <= channels <= _MAX_CHANNELS:
        raise MediaError(f"{what}: {channels} channels (1..{_MAX_CHANNELS} supported)")


def _budget(rate: int, max_seconds: float | None) -> int | None:
    """Samples (per channel) allowed by `max_seconds` at `rate`."""
    return None if max_seconds is None else int(math.floor(max_seconds * rate))


def _mono(block: np.ndarray) -> np.ndarray:
    """[C, n] -> [n]: the channel average, block by block, so a many-channel file never sits in memory whole."""
    return block[0] if block.shape[0] == 1 else torch.from_numpy(block).mean(dim=0).numpy()


def _read_soundfile(data: Path | bytes, what: str, max_seconds: float | None) -> tuple[np.ndarray, int, int]:
    import soundfile as sf

    blocks: list[np.ndarray] = []
    try:
        with sf.SoundFile(_open(data)) as f:
            rate, channels, declared = f.samplerate, f.channels, f.frames
            _check_rate(rate, what)  # from the header, before a sample is decoded
            _check_channels(channels, what)
            budget = _budget(rate, max_seconds)
            known = 0 < declared < _UNKNOWN_FRAMES
            if budget is not None and known and declared > budget:
                raise AudioTooLong(what, declared / rate, max_seconds, at_least=False)
            count = 0
            while True:  # one second at a time: a header that lies (or says nothing) cannot make us decode more
                chunk = f.read(rate, dtype="float32", always_2d=True)  # [n, C]
                if not len(chunk):
                    break
                count += len(chunk)
                if budget is not None and count > budget:
                    raise AudioTooLong(what, count / rate, max_seconds, at_least=True)
                blocks.append(_mono(np.ascontiguousarray(chunk.T)))
    except MediaError:
        raise
    except (sf.LibsndfileError, RuntimeError) as exc:
        reason = getattr(exc, "error_string", None) or str(exc)
        raise MediaError(f"{what}: corrupt or unsupported audio file ({reason})") from exc
    if known and count < declared:
        raise MediaError(f"{what}: truncated audio file ({count} of {declared} samples decoded)")
    return (np.concatenate(blocks) if blocks else np.zeros(0, np.float32)), rate, channels


def _frame_to_array(frame: Any, what: str) -> np.ndarray:
    array = frame.to_ndarray()  # planar: [C, n]; packed: [1, n * C]
    if not frame.format.is_planar:
        array = array.reshape(-1, len(frame.layout.channels)).T  # [C, n]
    return _int_to_float(array, what)


def _read_pyav(data: Path | bytes, what: str, max_seconds: float | None) -> tuple[np.ndarray, int, int]:
    import av

    try:
        with av.open(_open(data), mode="r") as container:
            if not container.streams.audio:
                raise MediaError(f"{what}: no audio stream (not an audio file?)")
            stream = container.streams.audio[0]
            rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
            if rate:
                _check_rate(rate, what)
            if channels:
                _check_channels(channels, what)
            if max_seconds is not None and stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
                if seconds > 2 * max_seconds:  # an estimate (from the bit rate) for some formats: only a clear lie
                    raise AudioTooLong(what, seconds, max_seconds, at_least=False)
            chunks, rate, count = [], 0, 0
            for frame in container.decode(stream):
                if rate and frame.sample_rate != rate:
                    raise MediaError(f"{what}: sample rate changes inside the stream ({rate} -> {frame.sample_rate})")
                if not rate:
                    _check_rate(frame.sample_rate, what)
                rate = frame.sample_rate
                channels = len(frame.layout.channels)
                _check_channels(channels, what)
                count += frame.samples
                budget = _budget(rate, max_seconds)
                if budget is not None and count > budget:
                    raise AudioTooLong(what, count / rate, max_seconds, at_least=True)
                chunks.append(_mono(_frame_to_array(frame, what)))
    except MediaError:
        raise
    except (av.FFmpegError, ValueError, EOFError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise MediaError(f"{what}: corrupt or unsupported audio file ({reason})") from exc
    if not chunks:
        raise MediaError(f"{what}: the audio stream has no samples (empty or truncated file)")
    return np.concatenate(chunks), rate, channels  # [N] mono


def _decode(data: Path | bytes, what: str, max_seconds: float | None = None) -> tuple[np.ndarray, int, int]:
    """Decode a file (by path, read lazily) or file bytes -> (mono samples [N], rate, channels in the file).

    Rate and channel count are checked from the header before decoding; with `max_seconds` decoding stops (and
    `AudioTooLong` is raised) as soon as the samples decoded pass it, whatever the header said.
    """
    if isinstance(data, Path):
        with data.open("rb") as f:
            head = f.read(_HEAD_BYTES)
        size = data.stat().st_size
    else:
        head, size = data[:_HEAD_BYTES], len(data)
    if head[:4] in _SOUNDFILE_MAGIC:
        _check_riff_length(head, size, what)
        return _read_soundfile(data, what, max_seconds)
    return _read_pyav(data, what, max_seconds)


def _array_to_channels(source: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    array = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else np.asarray(source)
    if array.ndim == 1:
        array = array[None]  # [1, N]
    elif array.ndim != 2:
        raise MediaError(f"{what}: PCM must be [N] or [C, N], got shape {array.shape}")
    elif array.shape[0] > _MAX_CHANNELS and array.shape[1] <= _MAX_CHANNELS:
        raise MediaError(f"{what}: PCM of shape {array.shape} looks like [N, C]; pass it as [C, N] (channels first)")
    return _int_to_float(array, what)  # [C, N]


def load_audio(
    source: AudioSource,
    sample_rate: int | None = None,
    *,
    require_rate: int | None = None,
    target_rate: int = SAMPLE_RATE,
    name: str | None = None,
    max_seconds: float | None = None,
) -> torch.Tensor:
    """Load an audio clip as a float32 mono waveform [N] in [-1, 1] at `target_rate` (16 kHz).

    source: a file path; the bytes of a file; or a raw PCM array / tensor [N] or [C, N] (int16 is divided by
        32768, float is taken as is), for which `sample_rate` is required.
    sample_rate: the rate of a raw PCM array. For files it is read from the file; a given value must match it.
    require_rate: strict mode: raise instead of resampling or down-mixing unless the input is already mono at
        exactly this rate (e.g. 16000 for a pipeline that must see the original samples).
    name: how errors name the input (default: the path, or a description of the bytes / array).
    max_seconds: a decode budget: `AudioTooLong` when the header declares more, or as soon as decoding passes it.

    Raises `MediaError` naming the input for: a missing file, a corrupt, truncated or non-audio file, a clip with
    no samples or shorter than one 25 ms fbank frame, NaN / inf samples, or (strict mode) a rate / channel mismatch.
    """
    what = _describe(source, name)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise MediaError(f"{what}: no such audio file")
        mono, rate, channels = _decode(path, what, max_seconds)
        if sample_rate is not None and sample_rate != rate:
            raise MediaError(f"{what}: file is {rate} Hz but sample_rate={sample_rate} was given")
    elif isinstance(source, (bytes, bytearray)):
        if not source:
            raise MediaError(f"{what}: empty audio data")
        mono, rate, channels = _decode(bytes(source), what, max_seconds)
        if sample_rate is not None and sample_rate != rate:
            raise MediaError(f"{what}: data is {rate} Hz but sample_rate={sample_rate} was given")
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        if sample_rate is None:
            raise MediaError(f"{what}: raw PCM needs its sample_rate")
        _check_rate(sample_rate, what)
        samples, rate = _array_to_channels(source, what), sample_rate
        channels = samples.shape[0]
        if max_seconds is not None and samples.shape[1] > _budget(rate, max_seconds):
            raise AudioTooLong(what, samples.shape[1] / rate, max_seconds, at_least=False)
        mono = _mono(samples)
    else:
        raise MediaError(f"{what}: unsupported audio source type {type(source).__name__}")

    count = mono.shape[0]
    if count == 0:
        raise MediaError(f"{what}: empty audio clip (0 samples)")
    if not np.isfinite(mono).all():
        raise MediaError(f"{what}: audio contains NaN or infinite samples")
    if require_rate is not None and (rate != require_rate or channels != 1):
        raise MediaError(
            f"{what}: expected mono audio at {require_rate} Hz, got {channels} channel(s) at {rate} Hz "
            "(strict mode: no resampling or down-mixing)"
        )
    wave = torch.from_numpy(np.ascontiguousarray(mono))  # [N]: channels averaged while decoding
    if rate != target_rate:
        # The official VITA-1.0 processor resampled but then told fbank the *original* rate (fixed in 1.5). We
        # resample and the features are always computed at the rate the samples really have.
        wave = resample(wave, rate, target_rate)  # [N']
    min_samples = FbankConfig(sample_rate=target_rate).frame_length
    if wave.numel() < min_samples:
        raise MediaError(
            f"{what}: audio clip too short ({wave.numel()} samples at {target_rate} Hz; one 25 ms frame needs "
            f"{min_samples})"
        )
    return wave.contiguous()
