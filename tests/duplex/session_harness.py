"""The harness of the duplex session tests (`test_session.py`): a session on tiny random weights with teacher-forced
replies and a fake clock (`make`), a scripted real-time run that feeds the mic every 20 ms and ticks (`Run`, with our
playback leaking back into the mic when asked), Piper replies memoized per clause (`Voice`), and the invariants
every run must keep (`check_reply_invariants`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vita.duplex.events import TERMINAL, AudioIn, AudioOut, FakeClock, ReplyStarted
from vita.duplex.roles import Engine, ScriptedReplies
from vita.duplex.session import Session, SessionConfig
from vita.speech.echo import GateConfig
from vita.speech.tts import StreamingTTS
from vita.speech.vad import VADConfig

RATE = 16000
ANSWER_1 = "<1> The weather today is sunny and warm, with a light breeze from the west. Later it gets cloudy."
ANSWER_2 = "<1> Here is one, about a cat."
ANSWER_LONG = ANSWER_1 + (" Tomorrow it rains in the morning, and the afternoon stays grey and cool."
                          " The weekend looks better again, with sun on both days and very little wind.")


class Voice:
    """Piper, memoized per clause: replies are real speech (the echo gate sees what it would see live)."""

    out_rate = RATE

    def __init__(self, piper) -> None:
        self.piper, self.memo = piper, {}

    def __call__(self, text: str) -> np.ndarray:
        if text not in self.memo:
            self.memo[text] = self.piper(text)
        return self.memo[text]

    def chunks(self, text: str) -> list:
        """The chunks `StreamingTTS` (as `make` builds it) produces for `text`, phrase by phrase."""
        tts = StreamingTTS(self, min_chars=8)
        return tts.step(text) + tts.flush()

    def samples(self, text: str) -> int:
        """Samples `StreamingTTS` produces for `text`."""
        return sum(len(c.pcm) for c in self.chunks(text))

    def chars_heard(self, text: str, played: int) -> float:
        """Characters of `text` covered by the first `played` samples (linear inside a phrase)."""
        chars = 0.0
        for c in self.chunks(text):
            n = len(c.pcm)
            if played < n:
                return chars + len(c.text) * played / n
            chars, played = chars + len(c.text), played - n
        return chars


def make(tiny, scripts, *, synth, gate: GateConfig | None = None, capture: list | None = None, min_silence_ms=300,
         **config):
    forcing = ScriptedReplies(scripts)
    if capture is not None:
        inner = forcing

        def forcing(turns):  # noqa: F811
            capture.append(list(turns))
            return inner(turns)

    engine = Engine(tiny, max_seq_len=2048, max_new_tokens=512, prefill_chunk=64, forcing=forcing)
    config = SessionConfig(vad=VADConfig(min_silence_ms=min_silence_ms), gate=gate or GateConfig(), **config)
    clock = FakeClock()
    return Session(engine, StreamingTTS(synth, min_chars=8), clock=clock, config=config), clock


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


@dataclass
class Run:
    """A scripted real-time run: each 20 ms the clock advances, the mic chunk is fed, then up to `ticks` ticks."""

    session: object
    clock: object
    events: list = field(default_factory=list)
    ticks_of: list = field(default_factory=list)  # events, grouped per call, for same-tick checks
    speaker: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # what was played, on mic time
    mic_pos: int = 0
    echo_gain: float = 0.0  # our playback leaks into the mic at this gain (speaker setups) ...
    echo_delay: float = 0.04  # ... this late
    jobs: list = field(default_factory=list)  # reply jobs, when a test records them

    def play(self, mic: np.ndarray, *, ticks: int = 3, step: float = 0.02, echo_gain: float | None = None,
             until_idle: bool = False, max_s: float = 30.0) -> None:
        n = int(step * RATE)
        echo_gain = self.echo_gain if echo_gain is None else echo_gain
        i, limit = 0, int(max_s * RATE)
        while i < len(mic) or (until_idle and self.session.busy and i < limit):
            chunk = mic[i : i + n] if i < len(mic) else np.zeros(0, np.float32)
            chunk = np.pad(chunk, (0, n - len(chunk)))
            if echo_gain:
                chunk = chunk + echo_gain * self._segment(self.mic_pos - int(self.echo_delay * RATE), n)
            self.clock.advance(step)
            self._collect(self.session.feed(AudioIn(chunk)))
            for _ in range(ticks):
                self._collect(self.session.tick())
            self.mic_pos += n
            i += n

    def _segment(self, a: int, n: int) -> np.ndarray:
        """speaker[a : a + n], zeros outside what was played."""
        out = np.zeros(n, np.float32)
        lo, hi = max(a, 0), min(a + n, len(self.speaker))
        if hi > lo:
            out[lo - a : hi - a] = self.speaker[lo:hi]
        return out

    def _collect(self, evs: list) -> None:
        self.ticks_of.append(evs)
        self.events += evs
        for e in evs:
            if isinstance(e, AudioOut):
                start = max(len(self.speaker), self.mic_pos)
                self.speaker = np.concatenate([self.speaker, np.zeros(start - len(self.speaker), np.float32), e.pcm])

    def of(self, *types) -> list:
        return [e for e in self.events if isinstance(e, types)]


def check_reply_invariants(run: Run) -> None:
    """Exactly one terminal event per reply, and nothing of a reply after its terminal event."""
    started = [e.reply_id for e in run.of(ReplyStarted)]
    terminals = [e.reply_id for e in run.of(*TERMINAL)]
    assert sorted(terminals) == sorted(started) and len(set(terminals)) == len(terminals)
    closed: set[int] = set()
    for e in run.events:
        rid = getattr(e, "reply_id", None)
        assert rid not in closed, f"stale {type(e).__name__} after the end of reply {rid}"
        if isinstance(e, TERMINAL):
            closed.add(rid)


def audio_of(run: Run, reply_id: int) -> int:
    return sum(len(e.pcm) for e in run.of(AudioOut) if e.reply_id == reply_id)
