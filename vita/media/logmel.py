"""Whisper's log-mel front end (80 bins, 16 kHz), whole-clip and streaming, with no torchaudio / librosa.

Recipe (openai/whisper `audio.py`, `WhisperFeatureExtractor`), float32 like the original:

1. optionally pad (zeros) or trim the clip to the 30 s window (480000 samples);
2. centred frames: frame t covers samples [160 t - 200, 160 t + 200); the first 200 samples are reflected in front
   of the clip (`torch.stft(center=True)`), samples after the clip's end are zeros (and, at the end of the padded
   window, reflected zeros); the last STFT frame is dropped, so a clip of N samples has ceil(N / 160) frames
   (3000 for the window);
3. periodic Hann(400) window, |rFFT|^2 (201 bins);
4. Slaney-normalised mel filters on the Slaney mel scale, 0 .. 8000 Hz, computed here in float64;
5. log10(max(mel, 1e-10)), then (x + 4) / 4;
6. dynamic-range clamp x = max(x, max(x) - 2) (= max - 8 before step 5's scaling) over the whole window.

Step 6 is the only step that looks at the whole clip. `log_mel_unclamped` (and `StreamingLogMel`) stop before it:
that is what the processor stores for a clip (its own ceil(N / 160) frames), and the encoder applies the clamp
once the clip is complete (`vita.models.whisper.prepare_clip`), since its full attention needs the whole clip anyway.
So streaming equals whole-clip bit for bit, and `log_mel(pad_to_window=True)` equals Whisper's input features.

Shapes: N samples, T frames, L = n_fft (400), F = n_fft // 2 + 1 (201), M = mel bins (80). Features are time-major
[T, M] like `vita.media.fbank` (Whisper's own layout is [M, T]).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vita.config import LogMelConfig

__all__ = [
    "LOG_FLOOR",
    "StreamingLogMel",
    "dynamic_range_clamp",
    "log_mel",
    "log_mel_unclamped",
    "mel_filters",
    "num_llm_tokens",
    "num_logmel_frames",
]

# (log10(1e-10) + 4) / 4: the value of a silent (all-zero) frame before the dynamic-range clamp.
LOG_FLOOR = -1.5
DYNAMIC_RANGE = 2.0  # 8 decades of power, in the (x + 4) / 4 units


def num_logmel_frames(num_samples: int, config: LogMelConfig | None = None) -> int:
    """Frames a clip of `num_samples` yields: one per frame centre inside the clip, ceil(N / hop)."""
    cfg = config or LogMelConfig()
    return (max(num_samples, 0) + cfg.hop_length - 1) // cfg.hop_length


def num_llm_tokens(num_frames: int, adapter_stride: int = 2) -> int:
    """LLM tokens of a clip of `num_frames` log-mel frames: conv stride 2, then the adapter's stride (2 by default).

    Both are ceil(T / stride) (kernel 3 pad 1, and kernel k with a right pad of k - 1): 100 -> 50 -> 25,
    301 -> 151 -> 76; with adapter stride 4, 301 -> 151 -> 38.
    """
    encoder_frames = (max(num_frames, 0) + 1) // 2
    return (encoder_frames + adapter_stride - 1) // adapter_stride


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (3 bins per 200 Hz), logarithmic above (27 bins per factor 6.4)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = math.log(6.4) / 27.0
    linear = freq / f_sp
    log = min_log_hz / f_sp + np.log(np.maximum(freq, 1e-10) / min_log_hz) / logstep
    return np.where(freq >= min_log_hz, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filters(config: LogMelConfig | None = None) -> torch.Tensor:
    """Slaney mel filter bank [M, F] in float32 (librosa's default `filters.mel`, as Whisper ships it)."""
    cfg = config or LogMelConfig()
    fft_freqs = np.linspace(0.0, cfg.sample_rate / 2, 1 + cfg.n_fft // 2)  # [F]
    mel_max = _hz_to_mel(np.array(cfg.sample_rate / 2.0))
    edges = _mel_to_hz(np.linspace(0.0, float(mel_max), cfg.num_mel_bins + 2))  # [M + 2] in Hz
    widths = np.diff(edges)  # [M + 1]
    ramps = edges[:, None] - fft_freqs[None, :]  # [M + 2, F]
    lower = -ramps[:-2] / widths[:-1, None]  # [M, F]
    upper = ramps[2:] / widths[1:, None]  # [M, F]
    weights = np.maximum(0.0, np.minimum(lower, upper))  # [M, F]
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # Slaney norm: constant energy per filter
    return torch.from_numpy(weights.astype(np.float32))


class _LogMelKernel:
    """Per-frame math shared by the whole-clip and streaming paths (so they agree bit for bit)."""

    def __init__(self, config: LogMelConfig) -> None:
        self.config = config
        self.half = config.n_fft // 2
        self.window = torch.hann_window(config.n_fft, periodic=True, dtype=torch.float32)  # [L]
        self.filters = mel_filters(config)  # [M, F]

    def frames(self, padded: torch.Tensor, count: int) -> torch.Tensor:
        """`count` frames [T, L] of a signal that already holds the 200 reflected samples in front."""
        if count == 0:
            return padded.new_zeros(0, self.config.n_fft)
        return padded.contiguous().as_strided((count, self.config.n_fft), (self.config.hop_length, 1))  # [T, L]

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """(log10(mel power) + 4) / 4 [T, M] of frames [T, L] (no dynamic-range clamp)."""
        if frames.shape[0] == 0:
            return frames.new_zeros(0, self.config.num_mel_bins)
        power = torch.fft.rfft(frames * self.window).abs().pow(2)  # [T, F]
        mel = power @ self.filters.T  # [T, M]
        return (mel.clamp_min(1e-10).log10() + 4.0) / 4.0

    def left_pad(self, samples: torch.Tensor) -> torch.Tensor:
        """Reflect samples[1 : 201] in front (samples must hold at least 201 values; zero-extend short clips)."""
        return torch.cat([samples[1 : self.half + 1].flip(0), samples])  # [200 + N]


def _as_samples(pcm: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Mono PCM [N] -> float32 in [-1, 1] (int16 input is divided by 32768)."""
    tensor = torch.as_tensor(pcm)
    if tensor.dim() != 1:
        raise ValueError(f"log-mel expects mono PCM of shape [N], got {tuple(tensor.shape)}")
    if tensor.dtype == torch.int16:
        return tensor.to(torch.float32) / 32768.0
    if not tensor.is_floating_point():
        raise ValueError(f"log-mel expects float PCM in [-1, 1] or int16 PCM, got dtype {tensor.dtype}")
    return tensor.to(torch.float32)


def dynamic_range_clamp(features: torch.Tensor) -> torch.Tensor:
    """Whisper's clamp over one whole clip/window: x = max(x, max(x) - 2) on [T, M] (or [..., T, M] per item)."""
    top = features.amax(dim=(-2, -1), keepdim=True)  # [..., 1, 1]
    return torch.maximum(features, top - DYNAMIC_RANGE)


def log_mel_unclamped(waveform: torch.Tensor | np.ndarray, config: LogMelConfig | None = None) -> torch.Tensor:
    """The clip's own ceil(N / hop) frames [T, M], as in Whisper's 30 s window but before the clamp.

    Frames past the clip's end see zeros, exactly as in the zero-padded window (no end reflection).
    """
    cfg = config or LogMelConfig()
    kernel = _LogMelKernel(cfg)
    samples = _as_samples(waveform)  # [N]
    count = num_logmel_frames(samples.numel(), cfg)
    # Zeros after the clip: enough for the last frame's window and for the reflection of very short clips.
    padded = kernel.left_pad(torch.cat([samples, samples.new_zeros(cfg.n_fft + 1)]))  # [200 + N + 401]
    return kernel.features(kernel.frames(padded, count))  # [T, M]


def log_mel(
    waveform: torch.Tensor | np.ndarray, config: LogMelConfig | None = None, *, pad_to_window: bool = True
) -> torch.Tensor:
    """Whisper's input features [T, M] (transpose for Whisper's [M, T]).

    pad_to_window=True: the clip zero-padded or trimmed to `chunk_seconds` (T = 3000), equal to
    `WhisperFeatureExtractor` / openai-whisper. False: the clip's own frames, clamped by their own maximum.
    """
    cfg = config or LogMelConfig()
    if not pad_to_window:
        return dynamic_range_clamp(log_mel_unclamped(waveform, cfg))
    kernel = _LogMelKernel(cfg)
    size = cfg.chunk_seconds * cfg.sample_rate
    samples = _as_samples(waveform)[:size]  # [<= 480000]
    samples = torch.cat([samples, samples.new_zeros(size - samples.numel())])  # [480000]
    # torch.stft(center=True) reflects both ends; the last of its size // hop + 1 frames is dropped.
    padded = torch.cat([kernel.left_pad(samples), samples[-kernel.half - 1 : -1].flip(0)])  # [200 + 480000 + 200]
    return dynamic_range_clamp(kernel.features(kernel.frames(padded, size // cfg.hop_length)))  # [3000, M]


class StreamingLogMel:
    """Incremental `log_mel_unclamped`: feed PCM chunks of any size, get the frames completed so far.

    Frame t needs samples up to 160 t + 200 (and frame 0 the first 201 for its reflection), so output lags the
    input by 12.5 ms; `flush()` ends the clip and returns the remaining frames (which see zeros after the end).
    Concatenating `step` outputs over any chunking, plus `flush()`, equals `log_mel_unclamped(clip)` exactly.
    """

    def __init__(self, config: LogMelConfig | None = None) -> None:
        self.config = config or LogMelConfig()
        self._kernel = _LogMelKernel(self.config)
        self.reset()

    def reset(self) -> None:
        """Forget everything (start a new clip)."""
        self._buffer = torch.zeros(0)  # [n] signal from the next frame's first sample (incl. the reflected head)
        self._head: torch.Tensor | None = torch.zeros(0)  # the clip's first samples until the reflection is built
        self.num_samples = 0  # samples received since the last reset
        self.num_frames = 0  # frames emitted since the last reset

    def _emit(self, ready: int) -> torch.Tensor:
        out = self._kernel.features(self._kernel.frames(self._buffer, ready))  # [k, M]
        self._buffer = self._buffer[ready * self.config.hop_length :].clone()
        self.num_frames += ready
        return out

    def step(self, pcm_chunk: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Append a chunk [n] (float in [-1, 1], or int16) and return the newly completed frames [k, M]."""
        chunk = _as_samples(pcm_chunk)  # [n]
        self.num_samples += chunk.numel()
        if self._head is not None:
            self._head = torch.cat([self._head, chunk])
            if self._head.numel() <= self._kernel.half:  # not enough for the reflection yet
                return torch.zeros(0, self.config.num_mel_bins)
            self._buffer, self._head = self._kernel.left_pad(self._head), None  # [200 + n]
        else:
            self._buffer = torch.cat([self._buffer, chunk])
        # A frame is complete once its whole window [start, start + L) is in the buffer.
        complete = max(0, (self._buffer.numel() - self.config.n_fft) // self.config.hop_length + 1)
        ready = min(complete, num_logmel_frames(self.num_samples, self.config) - self.num_frames)
        return self._emit(ready)

    def flush(self) -> torch.Tensor:
        """End of clip: the remaining frames [k, M] (zeros after the end, as in the whole-clip path); resets."""
        zeros = torch.zeros(self.config.n_fft + 1)
        if self._head is not None:  # a clip shorter than the reflection: zero-extend it first
            self._buffer, self._head = self._kernel.left_pad(torch.cat([self._head, zeros])), None
        else:
            self._buffer = torch.cat([self._buffer, zeros])
        out = self._emit(num_logmel_frames(self.num_samples, self.config) - self.num_frames)
        self.reset()
        return out
