"""Keep the assistant's own voice out of barge-in: a playback reference line, AEC3, and a reference-aware gate.

In speaker setups our reply leaks back into the microphone. Before the VAD sees the mic, `MicFrontEnd`:
  1. runs WebRTC AEC3 (`pywebrtc-audio`, when installed, or as configured) with our playback as the far-end
     reference, which removes most of the echo (35-43 dB measured here, reference/echo-cancellation.md);
  2. gates every 10 ms frame against the reference: a frame whose level is not clearly above what the recent
     playback could explain (`reference envelope + coupling + margin_db`) is replaced by silence. When nothing
     has been played for `window_ms`, the gate is open and the mic passes unchanged.

Without AEC the gate alone is safe but effectively half-duplex (a barge-in must be louder than the echo + 6 dB);
with AEC in front the residual echo is ~35 dB down, so the default coupling of -30 dB lets a normal-level barge-in
through. Known limit: while AEC3 has not yet seen an echo path (headphones, or the first second of playback), it
also attenuates the user, so a barge-in is detected later; `GateConfig(enabled=False)` for headphones.

Timeline: everything is in mic samples at 16 kHz. `play(pcm)` writes what was just sent to the speaker at the
current mic position (the session calls it as it releases audio), so the reference lines up with the mic samples
recorded at the same moment, up to the device delay, which the envelope window (`window_ms`) covers.
Shapes: pcm [N] float32; frames of FRAME = 160 samples.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from vita.config import SAMPLE_RATE
from vita.speech.vad import as_float_pcm

FRAME = 160  # 10 ms
_SILENT_DB = -120.0


def level_db(x: np.ndarray) -> float:
    """RMS level in dBFS of x [N] (float, full scale 1.0)."""
    if len(x) == 0:
        return _SILENT_DB
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 1e-6 else _SILENT_DB


def aec_available() -> bool:
    return importlib.util.find_spec("pywebrtc_audio") is not None


@dataclass
class GateConfig:
    aec: bool | None = None  # WebRTC AEC3 (pywebrtc-audio) in front of the gate; None: when installed
    # loudest echo at the gate relative to the playback level; None: -30 dB after AEC (residual ~35-40 dB down),
    # 0 dB without (the raw echo is at most as loud as what we play: safe, but a barge-in must beat the echo)
    coupling_db: float | None = None
    margin_db: float = 6.0  # the user must exceed the explained echo by this much
    window_ms: float = 500.0  # playback envelope lookback: covers device delay and room reverb
    ref_silent_db: float = -60.0  # playback below this level counts as silence (gate open)
    enabled: bool = True  # False: mic straight to the VAD (headphones; tests' control runs)

    @property
    def use_aec(self) -> bool:
        return self.enabled and (aec_available() if self.aec is None else self.aec)

    @property
    def coupling(self) -> float:
        if self.coupling_db is not None:
            return self.coupling_db
        return -30.0 if self.use_aec else 0.0


class EchoCanceller:
    """WebRTC AEC3 through `pywebrtc-audio`: process(mic [k*160], ref [k*160]) -> cleaned mic [k*160]."""

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        from pywebrtc_audio import EchoCanceller as _AEC3

        self._aec = _AEC3(sample_rate=sample_rate, num_channels=1, stream_delay_ms=0)  # 0: AEC3 estimates the delay

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return np.asarray(self._aec.process(mic.astype(np.float32), ref.astype(np.float32)), dtype=np.float32)

    def reset(self) -> None:
        self._aec.reset()


class MicFrontEnd:
    """Mic -> (AEC) -> reference gate -> clean mic for the VAD. `play(ref)`, `step(mic) -> out`, any chunk size.

    `step` returns whole 10 ms frames only (a partial frame waits for the next call).
    """

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()
        self.aec = EchoCanceller() if self.config.use_aec else None
        self.reset()

    def reset(self) -> None:
        self.mic_pos = 0  # mic samples consumed (whole frames)
        self._pending = np.zeros(0, np.float32)
        self._ref = np.zeros(0, np.float32)  # reference samples for mic positions [_ref_start, _ref_start + len)
        self._ref_start = 0
        self._ref_levels: dict[int, float] = {}  # frame index -> playback level (dB)
        self.gated_frames = 0  # frames replaced by silence (stats and tests)
        if self.aec is not None:
            self.aec.reset()

    @property
    def received(self) -> int:
        """Mic samples handed to `step` so far (consumed frames and the partial frame waiting)."""
        return self.mic_pos + len(self._pending)

    # ---- reference ---------------------------------------------------------------------------------------------
    def play(self, pcm: np.ndarray, at: int | None = None) -> None:
        """Audio just sent to the speaker (16 kHz float). It starts at mic sample `at`, the mic position recorded at
        the moment it plays (default: the mic samples consumed so far; pass `at` when the mic input may lag)."""
        pcm = np.asarray(pcm, np.float32).reshape(-1)
        if len(pcm) == 0:
            return
        end = self._ref_start + len(self._ref)
        start = max(end, self.received if at is None else at)
        if start > end:
            self._ref = np.concatenate([self._ref, np.zeros(start - end, np.float32)])
        self._ref = np.concatenate([self._ref, pcm])
        first = start // FRAME
        last = (start + len(pcm) - 1) // FRAME
        for f in range(first, last + 1):
            a = max(f * FRAME - self._ref_start, 0)
            self._ref_levels[f] = level_db(self._ref[a : a + FRAME])
        # keep about two windows of samples behind the mic
        keep_from = self.mic_pos - 2 * self._window_samples()
        if keep_from > self._ref_start:
            cut = min(keep_from - self._ref_start, len(self._ref))
            self._ref, self._ref_start = self._ref[cut:], self._ref_start + cut
            for f in [f for f in self._ref_levels if f < keep_from // FRAME]:
                del self._ref_levels[f]

    def _window_samples(self) -> int:
        return int(self.config.window_ms * SAMPLE_RATE / 1000)

    def _ref_samples(self, pos: int, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        a, b = max(pos, self._ref_start), min(pos + n, self._ref_start + len(self._ref))
        if b > a:
            out[a - pos : b - pos] = self._ref[a - self._ref_start : b - self._ref_start]
        return out

    # ---- mic -----------------------------------------------------------------------------------------------------
    def step(self, mic: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self._pending, as_float_pcm(mic)])  # int16 or float in, float32 [-1, 1]
        n = len(buf) // FRAME * FRAME
        frames, self._pending = buf[:n].copy(), buf[n:]
        if n == 0:
            return frames
        if self.aec is not None:
            frames = self.aec.process(frames, self._ref_samples(self.mic_pos, n))
        cfg = self.config
        if not cfg.enabled:
            self.mic_pos += n
            return frames
        coupling = cfg.coupling
        k, first, lookback = n // FRAME, self.mic_pos // FRAME, self._window_samples() // FRAME
        if not self._ref_levels or max(self._ref_levels) < first - lookback:  # nothing played within the window
            self.mic_pos += n
            return frames
        # the playback levels the k frames' lookback windows cover, looked up once; a frame's reference level is
        # the loudest playback frame in the window ending at it
        levels = np.array([self._ref_levels.get(f, _SILENT_DB) for f in range(first - lookback, first + k)])
        for i in range(k):
            ref_db = float(levels[i : i + lookback + 1].max())
            if ref_db < cfg.ref_silent_db:
                continue  # nothing played recently: the gate is open
            x = frames[i * FRAME : (i + 1) * FRAME]
            if level_db(x) <= ref_db + coupling + cfg.margin_db:
                x[:] = 0.0
                self.gated_frames += 1
        self.mic_pos += n
        return frames
