"""Kaldi log-mel filterbank, computed exactly as the official VITA-1.0 audio processor computes it.

The official processor feeds `torchaudio.compliance.kaldi.fbank` with the waveform scaled to int16 range, 80 mel
bins, 25 ms frames every 10 ms, dither 0 and energy floor 0. Every step below runs in float32 in the same order as
that code so that the features are bit-for-bit identical:

1. frames of 400 samples every 160 (snip_edges: T = 1 + (N - 400) // 160, partial frames dropped);
2. (optional) dither: + dither * N(0, 1) per sample;
3. subtract each frame's mean (DC removal);
4. pre-emphasis x[j] - 0.97 * x[max(0, j - 1)];
5. multiply by the povey window = symmetric Hann(400) ** 0.85;
6. zero-pad to 512, power spectrum |rFFT|^2 (257 bins);
7. 80 triangular filters on the Kaldi mel scale 1127 ln(1 + f / 700), 20 Hz .. 8000 Hz, Nyquist weight 0;
8. natural log of max(energy, float32 eps).

Shapes: N = samples, T = fbank frames, L = frame length (400), P = padded length (512), F = P // 2 + 1 (257),
M = mel bins (80).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vita.config import FbankConfig
from vita.media import logmel

__all__ = [
    "INT16_SCALE", "StreamingFbank", "fbank", "fft_rounding_floor", "mel_banks", "num_fbank_frames", "num_llm_tokens",
]

# The official processor reads audio normalised to [-1, 1] and multiplies by 2**15 before the Kaldi features, whose
# mel energies (and therefore the global CMVN statistics of the checkpoint) are in int16 units.
INT16_SCALE = 32768.0
PREEMPHASIS = 0.97
POVEY_POWER = 0.85
LOW_FREQ = 20.0


def num_fbank_frames(num_samples: int, config: FbankConfig | None = None) -> int:
    """Frames a clip of `num_samples` yields with snip_edges (0 when shorter than one frame)."""
    cfg = config or FbankConfig()
    if num_samples < cfg.frame_length:
        return 0
    return 1 + (num_samples - cfg.frame_length) // cfg.frame_shift


def num_llm_tokens(num_fbank_frames: int, encoder: str = "whale", adapter_stride: int = 2) -> int:
    """LLM tokens the official processor counts for a clip of `num_fbank_frames` frames.

    Whale: it slices a length-T mask as `[2::2][2::2][0::2]` (two stride-2 convs, then the stride-2 adapter);
    slicing a `range` does the same arithmetic without building the mask. 128 -> 16, 268 -> 33, 400 -> 50.
    `encoder="whisper"` (the audio config's `kind`): the frames are Whisper log-mel frames instead, see
    `vita.media.logmel.num_llm_tokens`. `adapter_stride` is the adapter's (`AudioAdapterConfig.stride`).
    """
    if encoder == "whisper":
        return logmel.num_llm_tokens(num_fbank_frames, adapter_stride)
    if encoder != "whale":
        raise ValueError(f"unknown audio encoder {encoder!r} (whale or whisper)")
    return len(range(max(num_fbank_frames, 0))[2::2][2::2][0::adapter_stride])


def _padded_length(frame_length: int) -> int:
    return 1 << (frame_length - 1).bit_length()  # next power of two (400 -> 512)


def mel_banks(config: FbankConfig | None = None) -> torch.Tensor:
    """Kaldi triangular mel filters [M, F] in float32 (last column, the Nyquist bin, is 0)."""
    cfg = config or FbankConfig()
    padded = _padded_length(cfg.frame_length)
    num_fft_bins = padded // 2
    high_freq = 0.5 * cfg.sample_rate  # Kaldi's high_freq 0 means "the Nyquist frequency"
    bin_width = cfg.sample_rate / padded

    def mel(freq: float) -> float:
        return 1127.0 * math.log(1.0 + freq / 700.0)

    mel_low, mel_high = mel(LOW_FREQ), mel(high_freq)
    delta = (mel_high - mel_low) / (cfg.num_mel_bins + 1)
    # Same float32 op order as Kaldi's torch port: edges from an integer index times a Python-float delta.
    index = torch.arange(cfg.num_mel_bins).unsqueeze(1)  # [M, 1]
    left = mel_low + index * delta  # [M, 1]
    center = mel_low + (index + 1.0) * delta  # [M, 1]
    right = mel_low + (index + 2.0) * delta  # [M, 1]
    fft_mel = 1127.0 * (1.0 + bin_width * torch.arange(float(num_fft_bins)) / 700.0).log()  # [F - 1]
    fft_mel = fft_mel.unsqueeze(0)  # [1, F - 1]
    up = (fft_mel - left) / (center - left)  # [M, F - 1]
    down = (right - fft_mel) / (right - center)  # [M, F - 1]
    banks = torch.clamp(torch.minimum(up, down), min=0.0)  # [M, F - 1]
    return torch.nn.functional.pad(banks, (0, 1))  # [M, F]: the Nyquist bin gets weight 0


def povey_window(frame_length: int) -> torch.Tensor:
    """Kaldi's povey window [L]: symmetric Hann computed in float32, raised to 0.85."""
    return torch.hann_window(frame_length, periodic=False, dtype=torch.float32).pow(POVEY_POWER)


class _FbankKernel:
    """Per-frame feature math shared by the whole-clip and the streaming front ends (identical results)."""

    def __init__(self, config: FbankConfig) -> None:
        self.config = config
        self.frame_length = config.frame_length
        self.frame_shift = config.frame_shift
        self.padded = _padded_length(config.frame_length)
        self.window = povey_window(config.frame_length)  # [L]
        self.banks_t = mel_banks(config).T.contiguous()  # [F, M]
        self.eps = torch.tensor(torch.finfo(torch.float32).eps)

    def frames(self, samples: torch.Tensor) -> torch.Tensor:
        """Overlapping frames [T, L] of int16-scaled float32 samples [N] (a view, snip_edges)."""
        count = num_fbank_frames(samples.numel(), self.config)
        if count == 0:
            return samples.new_zeros(0, self.frame_length)
        return samples.contiguous().as_strided((count, self.frame_length), (self.frame_shift, 1))  # [T, L]

    def windowed(self, frames: torch.Tensor) -> torch.Tensor:
        """DC removal, pre-emphasis, povey window and zero padding: frames [T, L] -> [T, P] (the FFT's input)."""
        frames = frames - frames.mean(dim=1, keepdim=True)  # [T, L]
        # Pre-emphasis against the previous sample; the first sample is paired with itself (replicate padding).
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # [T, L]
        frames = frames - PREEMPHASIS * previous
        frames = frames * self.window.to(frames.device)  # [T, L]
        frames = torch.nn.functional.pad(frames, (0, self.padded - self.frame_length))  # [T, P]
        return frames

    def features(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Log-mel features [T, M] of frames [T, L]."""
        if frames.shape[0] == 0:
            return frames.new_zeros(0, self.config.num_mel_bins)
        if self.config.dither != 0.0:
            noise = torch.randn(frames.shape, generator=generator, dtype=frames.dtype, device=frames.device)  # [T, L]
            frames = frames + noise * self.config.dither
        power = torch.fft.rfft(self.windowed(frames)).abs().pow(2.0)  # [T, F]
        energies = torch.mm(power, self.banks_t.to(power.device))  # [T, M]
        return torch.maximum(energies, self.eps.to(power.device)).log()


def _as_float_samples(pcm: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Mono PCM [N] -> float32 in [-1, 1] (int16 input is divided by 32768)."""
    tensor = torch.as_tensor(pcm)
    if tensor.dim() != 1:
        raise ValueError(f"fbank expects mono PCM of shape [N], got {tuple(tensor.shape)}")
    if tensor.dtype == torch.int16:
        return tensor.to(torch.float32) / INT16_SCALE
    if not tensor.is_floating_point():
        raise ValueError(f"fbank expects float PCM in [-1, 1] or int16 PCM, got dtype {tensor.dtype}")
    return tensor.to(torch.float32)


def fbank(
    waveform: torch.Tensor | np.ndarray,
    config: FbankConfig | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Log-mel features [T, M] of a mono waveform [N] (float in [-1, 1], or int16) at `config.sample_rate`.

    The waveform is scaled by 2**15 first, as the official processor does. A clip shorter than one frame gives
    [0, M]. With `config.dither > 0` the noise comes from `generator` (or the global torch RNG).
    """
    kernel = _FbankKernel(config or FbankConfig())
    samples = _as_float_samples(waveform) * INT16_SCALE  # [N]
    return kernel.features(kernel.frames(samples), generator)


def fft_rounding_floor(waveform: torch.Tensor | np.ndarray, config: FbankConfig | None = None) -> torch.Tensor:
    """Per-bin scale [T, M] of the log-fbank change that float32 FFT rounding alone can cause.

    A float32 FFT's error on every bin is about eps * ||X|| (the frame's spectral norm), whatever the algorithm,
    so a mel bin of energy E_m = sum_k w_mk |X_k|^2 may move in the log domain by about
    eps * ||X|| * sum_k w_mk |X_k| / E_m. Low-energy bins (below ~100 Hz after pre-emphasis) reach ~1e-2: two
    correct implementations on different CPUs (MKL picks its FFT kernels by instruction set) differ there by that
    much, while bins with real energy agree to ~1e-6. Parity checks use this as the allowance beyond 1e-4.
    """
    kernel = _FbankKernel(config or FbankConfig())
    samples = _as_float_samples(waveform).double() * INT16_SCALE  # [N]
    spectrum = torch.fft.rfft(kernel.windowed(kernel.frames(samples))).abs()  # [T, F] float64
    banks_t = kernel.banks_t.double()  # [F, M]
    norm = spectrum.pow(2).sum(dim=1, keepdim=True).sqrt()  # [T, 1]
    energies = spectrum.pow(2) @ banks_t  # [T, M]
    eps = torch.finfo(torch.float32).eps
    return (eps * norm * (spectrum @ banks_t) / energies.clamp(min=1e-30)).float()  # [T, M]


class StreamingFbank:
    """Incremental fbank: feed PCM chunks of any size, get the frames completed so far.

    Concatenating the outputs of `step` over any chunking of a clip equals `fbank(clip)` (with dither 0); frames
    never depend on samples after their own window, so nothing is left over for a `flush` (snip_edges drops the
    incomplete tail exactly as the whole-clip path does).
    """

    def __init__(self, config: FbankConfig | None = None, *, generator: torch.Generator | None = None) -> None:
        self.config = config or FbankConfig()
        self._kernel = _FbankKernel(self.config)
        self._generator = generator
        self.reset()

    def reset(self) -> None:
        """Forget all buffered samples (start a new utterance)."""
        self._buffer = torch.zeros(0)  # [n] int16-scaled samples not yet consumed by a frame start
        self.num_frames = 0  # frames emitted since the last reset

    def step(self, pcm_chunk: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Append a chunk [n] (float in [-1, 1], or int16) and return the newly completed frames [k, M]."""
        chunk = _as_float_samples(pcm_chunk) * INT16_SCALE  # [n]
        self._buffer = torch.cat([self._buffer.to(chunk.device), chunk])  # [n_buf]
        frames = self._kernel.frames(self._buffer)  # [k, L]
        out = self._kernel.features(frames, self._generator)  # [k, M]
        # Keep only the samples a future frame can still use: from the start of the next frame on.
        consumed = frames.shape[0] * self._kernel.frame_shift
        self._buffer = self._buffer[consumed:].clone()  # [n_buf - consumed]
        self.num_frames += frames.shape[0]
        return out

    def flush(self) -> torch.Tensor:
        """End of stream: no further frames (the incomplete tail is dropped, as snip_edges does); resets."""
        self.reset()
        return torch.zeros(0, self.config.num_mel_bins)
