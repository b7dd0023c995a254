"""Scripted duplex scenarios run against a `Session`, with the metrics of reference/duplex-design.md.

A scenario places user segments (a query, a barge-in, chatter not meant for us, noise) on a mic timeline; each
spoken segment carries the reply the model is forced to give (`<1> ...` or `<2>`), so random weights behave like
a trained model. The run feeds the mic in 20 ms chunks. Time is a virtual clock that moves with the audio and,
with `compute_time=True`, also by the measured wall time of every tick: latencies then include this machine's
real compute (VAD, encoders, prefill, decode, TTS), while the audio still arrives at real-time pace.
Optionally our playback leaks back into the mic (`echo_gain`, `echo_delay`), like a laptop speaker.

Metrics (seconds; true times from the script, not from the VAD):
    response latency   first reply audio - true end of a query
    stop latency       playback paused - true onset of speech over our playback
    false trigger      a non-query segment produced reply audio or cancelled the playing reply
    miss               a query got no reply audio within 3 s of its end
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vita.duplex.events import (
    AudioIn,
    AudioOut,
    FakeClock,
    PlaybackPaused,
    ReplyCancelled,
    ReplyStarted,
    UserSpeechEnded,
)
from vita.duplex.roles import Script
from vita.processor import Turn

RATE = 16000
Kind = Literal["query", "chatter", "noise"]


@dataclass
class Segment:
    at: float  # start on the mic timeline (s)
    audio: np.ndarray  # [N] float32 16 kHz
    kind: Kind
    reply: str = ""  # the forced reply ("<1> ..." for a query, "<2>" otherwise)

    def speech_span(self, floor_db: float = -45.0) -> tuple[float, float]:
        """True onset and end (s on the timeline): first and last 10 ms frame above floor_db."""
        frames = len(self.audio) // 160
        lv = [20 * np.log10(np.sqrt(np.mean(self.audio[i * 160 : (i + 1) * 160] ** 2)) + 1e-12) for i in range(frames)]
        on = [i for i, v in enumerate(lv) if v > floor_db]
        if not on:
            return self.at, self.at
        return self.at + on[0] * 0.01, self.at + (on[-1] + 1) * 0.01


@dataclass
class Scenario:
    name: str
    segments: list[Segment]
    duration: float  # seconds of mic audio in total (silence where no segment plays)

    def mic(self) -> np.ndarray:
        x = np.zeros(int(self.duration * RATE), np.float32)
        for s in self.segments:
            a = int(s.at * RATE)
            n = min(len(s.audio), len(x) - a)
            x[a : a + n] += s.audio[:n]
        return x


@dataclass
class Result:
    scenario: str
    events: list = field(default_factory=list)
    response_latency: list[float] = field(default_factory=list)
    stop_latency: list[float] = field(default_factory=list)
    false_triggers: int = 0
    misses: int = 0
    silent_at: list[float] = field(default_factory=list)  # when the speaker fell silent after each pause
    speaker: np.ndarray | None = None  # [N] what the speaker played, on the mic timeline


class ScenarioForcing:
    """Forces each utterance's reply from the segment that ended last before the job starts."""

    def __init__(self, scenario: Scenario, clock: FakeClock) -> None:
        self.scenario, self.clock = scenario, clock

    def __call__(self, turns: Sequence[Turn]) -> Script | None:
        now = self.clock.now()
        spoken = [s for s in self.scenario.segments if s.kind != "noise" and s.speech_span()[1] <= now + 0.05]
        if not spoken:
            return Script("<2>")
        return Script(spoken[-1].reply or "<2>")


def run(
    make_session: Callable[[Scenario, FakeClock], object],
    scenario: Scenario,
    *,
    echo_gain: float = 0.0,
    echo_delay: float = 0.04,
    compute_time: bool = True,
    ticks_per_chunk: int = 50,
    tail: float = 6.0,
) -> Result:
    """Play the scenario into a fresh session (`make_session(scenario, clock)`) and score it."""
    clock = FakeClock()
    session = make_session(scenario, clock)
    n = 320  # 20 ms
    mic = np.concatenate([scenario.mic(), np.zeros(int(tail * RATE), np.float32)])
    mic = np.pad(mic, (0, -len(mic) % n))
    speaker = np.zeros(len(mic) + RATE, np.float32)  # what was played, on the mic timeline
    spk_end = 0
    res = Result(scenario.name)
    for i in range(0, len(mic), n):
        t_chunk = (i + n) / RATE  # the chunk is complete at this time
        clock.t = max(clock.t, t_chunk)
        chunk = mic[i : i + n].copy()
        if echo_gain:
            d = int(echo_delay * RATE)
            if i - d >= 0:
                chunk += echo_gain * speaker[i - d : i - d + n]
        evs = list(session.feed(AudioIn(chunk)))
        # work fills the time until the next chunk arrives (a tick that overruns delays the next feed)
        for _ in range(ticks_per_chunk):
            if not session.has_work or (compute_time and clock.t >= t_chunk + n / RATE):
                break
            t0 = time.perf_counter()
            got = session.tick()
            if compute_time:
                clock.t += time.perf_counter() - t0
            evs += got
        for e in evs:
            if isinstance(e, AudioOut):  # the speaker plays samples back to back, from when they arrive
                at = max(spk_end, int(e.t * RATE))
                seg = e.pcm[: max(len(speaker) - at, 0)]
                speaker[at : at + len(seg)] = seg
                spk_end = at + len(seg)
            elif isinstance(e, PlaybackPaused):  # silent once what the speaker already holds has played
                res.silent_at.append(max(e.t, spk_end / RATE))
        res.events += evs
    res.speaker = speaker
    _score(res, scenario)
    return res


def _score(res: Result, scenario: Scenario) -> None:
    ev = res.events
    audio = [e for e in ev if isinstance(e, AudioOut)]
    starts = {e.reply_id: e for e in ev if isinstance(e, ReplyStarted)}
    ended = {e.utterance_id: e.t for e in ev if isinstance(e, UserSpeechEnded)}
    for seg in scenario.segments:
        on, end = seg.speech_span()
        nxt = min([s.at for s in scenario.segments if s.at > seg.at], default=float("inf"))
        spk = res.speaker[int(max(on - 0.3, 0) * RATE) : int(on * RATE)] if res.speaker is not None else []
        if np.any(spk != 0):  # our voice was playing when this segment started
            silent = [t for t in res.silent_at if t >= on - 0.05]
            if silent and silent[0] < end + 1.0:
                res.stop_latency.append(silent[0] - on)
        # replies that started for an utterance ending inside this segment's window
        mine = [r for r in starts.values() if on <= ended.get(r.utterance_id, -1) < min(nxt, end + 2.0)]
        if seg.kind == "query":
            firsts = [a.t for a in audio if mine and a.reply_id in {r.reply_id for r in mine}]
            if firsts and firsts[0] - end <= 3.0:
                res.response_latency.append(firsts[0] - end)
            else:
                res.misses += 1
        else:
            spoke = any(a.reply_id in {r.reply_id for r in mine} for a in audio)
            cancelled = any(isinstance(c, ReplyCancelled) and on <= c.t < min(nxt, end + 2.0) for c in ev)
            res.false_triggers += int(spoke or cancelled)


def summary(results: Sequence[Result]) -> dict:
    """p50 / p90 of the latencies and the counts, over all results."""

    def pct(xs: list[float]) -> dict:
        if not xs:
            return {"n": 0}
        return {"n": len(xs), "p50": float(np.percentile(xs, 50)), "p90": float(np.percentile(xs, 90))}

    return {
        "response_latency_s": pct([x for r in results for x in r.response_latency]),
        "stop_latency_s": pct([x for r in results for x in r.stop_latency]),
        "false_triggers": sum(r.false_triggers for r in results),
        "misses": sum(r.misses for r in results),
    }


def standard_scenarios(voice: Callable[[str], np.ndarray]) -> list[Scenario]:
    """Four scenario families spoken by `voice` (text -> 16 kHz pcm): answer, barge-in, chatter, noise."""
    q = 0.5 * voice("What is the weather like today?")
    barge = 0.5 * voice("Tell me a joke instead.")
    chatter = 0.5 * voice("Yes, I will call you back after lunch.")
    noise = np.random.default_rng(0).normal(0, 0.03, RATE).astype(np.float32)
    long = ("<1> The weather today is sunny and warm, with a light breeze from the west. Later it gets cloudy, "
            "and in the evening there may be a little rain.")
    t_q = 0.5 + len(q) / RATE
    return [
        Scenario("answer", [Segment(0.5, q, "query", long)], t_q + 8.0),
        Scenario("barge-in", [Segment(0.5, q, "query", long), Segment(t_q + 2.5, barge, "query",
                                                                      "<1> Here is one, about a cat.")], t_q + 9.0),
        Scenario("chatter", [Segment(0.5, q, "query", long), Segment(t_q + 2.5, chatter, "chatter", "<2>")],
                 t_q + 9.0),
        Scenario("noise", [Segment(0.5, q, "query", long), Segment(t_q + 2.5, noise, "noise")], t_q + 8.0),
    ]
