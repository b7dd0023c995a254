"""Streaming voice activity detection with the Silero VAD model bundled in the `silero-vad` wheel (no download).

Two layers, both with the house streaming shape `reset()` / `step(pcm) -> ...` and any input chunk size:
    SileroModel    pcm [N] float32 16 kHz -> one speech probability per complete 512-sample (32 ms) window
    StreamingVAD   pcm [N] -> typed events: SpeechStarted(t), SpeechEnded(t, audio), SpeechDiscarded(t), and
                   inside a segment SpeechPaused(t, audio) after a first short silence (`pause_ms`: the moment a
                   turn-taker may start work speculatively) and SpeechResumed(t) when speech comes back before the end

The model runs in onnxruntime (`silero_vad.onnx`, one intra-op thread). The file is located with
`importlib.util.find_spec`, which does NOT execute `silero_vad/__init__.py`: importing that package calls
`torch.set_num_threads(1)` for the whole process. Each model call sees 64 context samples + 512 new ones and carries
an LSTM state [2, 1, 128], so feeding a signal in any chunking gives exactly the same probabilities as feeding it
whole.

Times `t` are stream seconds since the last `reset()` (samples / 16000).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vita.config import SAMPLE_RATE

WINDOW = 512  # samples per model call at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the model sees in front of each new one


def bundled_model_path(name: str = "silero_vad.onnx") -> Path:
    """Path of a model file shipped inside the `silero-vad` wheel (without importing the package)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or spec.origin is None:
        raise ImportError("the `silero-vad` package is not installed (pip install 'vita[speech]')")
    path = Path(spec.origin).parent / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the silero-vad package")
    return path


def as_float_pcm(pcm: np.ndarray) -> np.ndarray:
    """int16 or float PCM [N] -> float32 [N] in [-1, 1]."""
    pcm = np.asarray(pcm)
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    return pcm.astype(np.float32, copy=False).reshape(-1)


class SileroModel:
    """Silero VAD v6 in onnxruntime: streaming probabilities, one per 512-sample window."""

    def __init__(self, path: str | Path | None = None, *, threads: int = 1) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(path or bundled_model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)  # LSTM (h, c)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)  # samples of an incomplete window

    @property
    def pending(self) -> np.ndarray:
        """The samples [P] (P < 512, float32) of the incomplete window that the next `step` completes first."""
        return self._pending

    def window(self, x: np.ndarray) -> float:
        """One complete window x [512] -> speech probability."""
        inp = np.concatenate([self._context, x])[None]  # [1, 576]
        prob, self._state = self.session.run(None, {"input": inp, "state": self._state, "sr": self._sr})
        self._context = x[-CONTEXT:]
        return float(prob[0, 0])

    def step(self, pcm: np.ndarray) -> np.ndarray:
        """pcm [N] (any N) -> probabilities [W] of the windows completed by this chunk (W may be 0)."""
        buf = np.concatenate([self._pending, as_float_pcm(pcm)])
        n = len(buf) // WINDOW
        probs = np.array([self.window(buf[i * WINDOW : (i + 1) * WINDOW]) for i in range(n)], dtype=np.float32)
        self._pending = buf[n * WINDOW :]
        return probs


# ---- events -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeechStarted:
    t: float  # stream time of the first window judged speech


@dataclass(frozen=True)
class SpeechEnded:
    t: float  # stream time where the speech ended (end of the last speech window)
    audio: np.ndarray  # [N] float32 16 kHz: pre-roll + utterance + end pad
    speech_s: float = 0.0  # span of the speech, first to last speech window

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True)
class SpeechDiscarded:
    t: float  # a started segment ended shorter than min_utterance_ms: nothing to answer


@dataclass(frozen=True)
class SpeechPaused:
    t: float  # stream time where the speech paused (end of the last speech window)
    audio: np.ndarray  # [N] float32 16 kHz: the segment so far, as SpeechEnded would give it if it ended here
    speech_s: float  # span of the segment's speech so far (first to last speech window)


@dataclass(frozen=True)
class SpeechResumed:
    t: float  # speech came back inside the segment after a SpeechPaused


VADEvent = SpeechStarted | SpeechEnded | SpeechDiscarded | SpeechPaused | SpeechResumed


@dataclass
class VADConfig:
    start_threshold: float = 0.5  # a window at or above starts speech
    end_threshold: float = 0.35  # windows below count as silence (hysteresis)
    onset_windows: int = 1  # consecutive windows >= start_threshold before SpeechStarted
    min_silence_ms: float = 500.0  # silence that ends an utterance
    # a first short silence inside a segment: SpeechPaused (0: never). 96 -> 64 ms gave reply audio ~25 ms sooner
    # (vita bench duplex p50 495-500 -> 468-473 ms), 64 -> 32 (one window) ~30 ms more (479 -> 446-457, 2026-12-06);
    # pieces speculated on and then dropped cost only CPU
    pause_ms: float = 32.0
    pre_roll_ms: float = 200.0  # audio kept before the first speech window (the first syllable)
    end_pad_ms: float = 100.0  # audio kept after the last speech window
    min_utterance_ms: float = 250.0  # shorter segments (speech windows span) are discarded
    max_utterance_s: float = 30.0  # a longer utterance is cut and ended here


class StreamingVAD:
    """Segments a 16 kHz stream into utterances: `step(pcm) -> list[VADEvent]`, any chunk size."""

    def __init__(self, config: VADConfig | None = None, model: SileroModel | None = None) -> None:
        self.config = config or VADConfig()
        self.model = model or SileroModel()
        self.reset()

    def reset(self) -> None:
        self.model.reset()
        self.probs: list[float] = []  # every window's probability since reset (tests and metrics)
        self._n = 0  # windows seen
        self._history = np.zeros(0, dtype=np.float32)  # recent samples (pre-roll source) while not in speech
        self._speech: list[np.ndarray] = []  # windows of the current segment (pre-roll first)
        self._in_speech = False
        self._onset = 0  # consecutive windows above start_threshold (before speech)
        self._first = 0  # index of the first speech window
        self._last = 0  # index of the last window above end_threshold
        self._silence = 0  # consecutive silent windows inside a segment
        self._paused = False  # SpeechPaused was emitted for the current silence run
        self.hold_ms = 0.0  # a turn-taker's longer hangover for the open segment (`hold`)

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def silence_ms(self) -> float:
        """Silence at the end of the open segment so far (0 outside a segment)."""
        return self._silence * WINDOW * 1000 / SAMPLE_RATE if self._in_speech else 0.0

    @property
    def speech_s(self) -> float:
        """Span of the open segment's speech so far, first to last speech window (0 outside a segment)."""
        return (self._last + 1 - self._first) * WINDOW / SAMPLE_RATE if self._in_speech else 0.0

    def hold(self, ms: float) -> None:
        """The open segment ends after `ms` of silence if that is longer than `min_silence_ms` (a turn-taker thinks
        the user has not finished); 0 goes back to `min_silence_ms`. A new segment starts without a hold."""
        self.hold_ms = float(ms)

    def end_now(self) -> list[VADEvent]:
        """Close the open segment here (a turn-taker decided the turn is over before `min_silence_ms`)."""
        return self._end() if self._in_speech else []

    def _t(self, window_index: int) -> float:
        return window_index * WINDOW / SAMPLE_RATE

    def step(self, pcm: np.ndarray) -> list[VADEvent]:
        pcm = as_float_pcm(pcm)
        buf = np.concatenate([self.model.pending, pcm])  # the windows this chunk completes start at buf[0]
        probs = self.model.step(pcm)
        events: list[VADEvent] = []
        for i, p in enumerate(probs):
            events += self._window(buf[i * WINDOW : (i + 1) * WINDOW], float(p))
        return events

    def discard(self) -> None:
        """Drop the open segment, if any, without an event (a client cleared its input buffer)."""
        self._in_speech, self._onset, self._speech, self._paused = False, 0, [], False

    def flush(self) -> list[VADEvent]:
        """End of stream: close an open segment (the incomplete last window is not scored)."""
        return self._end() if self._in_speech else []

    def _window(self, w: np.ndarray, p: float) -> list[VADEvent]:
        cfg = self.config
        idx = self._n
        self._n += 1
        self.probs.append(p)
        if not self._in_speech:
            self._onset = self._onset + 1 if p >= cfg.start_threshold else 0
            keep = int(cfg.pre_roll_ms * SAMPLE_RATE / 1000) + WINDOW * cfg.onset_windows
            self._history = np.concatenate([self._history, w])[-keep:]
            if self._onset < cfg.onset_windows:
                return []
            self._in_speech = True
            self._first = idx - cfg.onset_windows + 1
            self._last = idx
            self._silence = 0
            self._paused = False
            self._speech = [self._history.copy()]  # pre-roll + the onset windows
            self._history = np.zeros(0, dtype=np.float32)
            return [SpeechStarted(self._t(self._first))]
        self._speech.append(w)
        events: list[VADEvent] = []
        if p >= cfg.end_threshold:
            if self._paused:
                events.append(SpeechResumed(self._t(idx)))
                self._paused = False
            self._last, self._silence = idx, 0
        else:
            self._silence += 1
        silent_ms = self._silence * WINDOW * 1000 / SAMPLE_RATE
        too_long = (idx - self._first + 1) * WINDOW / SAMPLE_RATE >= cfg.max_utterance_s
        if silent_ms >= max(cfg.min_silence_ms, self.hold_ms) or too_long:
            return events + self._end()
        if cfg.pause_ms and not self._paused and silent_ms >= cfg.pause_ms:
            self._paused = True
            events.append(SpeechPaused(self._t(self._last + 1), self._segment_audio(), self.speech_s))
        return events

    def _segment_audio(self) -> np.ndarray:
        """The open segment's audio [N], cut `end_pad_ms` after its last speech window."""
        audio = np.concatenate(self._speech)
        trailing = (self._n - 1 - self._last) * WINDOW  # samples after the last speech window
        pad = int(self.config.end_pad_ms * SAMPLE_RATE / 1000)
        return audio[: len(audio) - max(trailing - pad, 0)]

    def _end(self) -> list[VADEvent]:
        cfg = self.config
        whole = np.concatenate(self._speech)
        keep = int(cfg.pre_roll_ms * SAMPLE_RATE / 1000) + WINDOW * cfg.onset_windows
        self._history = whole[-keep:].copy()  # pre-roll for a segment that starts right after this one
        audio = self._segment_audio()
        t_end = self._t(self._last + 1)
        span_ms = (self._last + 1 - self._first) * WINDOW * 1000 / SAMPLE_RATE
        self._in_speech, self._onset, self._speech, self._paused = False, 0, [], False
        self.hold_ms = 0.0
        if span_ms < cfg.min_utterance_ms:
            return [SpeechDiscarded(t_end)]
        return [SpeechEnded(t_end, audio, span_ms / 1000)]
