"""Scripted duplex scenarios (`vita.duplex.scenarios`) run against a `Session`, scored as in
reference/duplex-design.md.

The run feeds the mic in 20 ms chunks. Time is a virtual clock (`SimClock`) that moves with the audio and, with
`compute_time=True`, also by the measured wall time of every tick; inside a tick it reads the wall time spent so
far, so events and stage stamps made at the end of a long unit of work carry its cost. Latencies then include
this machine's compute (VAD, encoders, prefill, decode, TTS) while the audio still arrives at real-time pace.
With `compute_time=False` every tick takes no time: the figures are algorithmic (VAD hangover, scheduling) and
deterministic. When the session renders speech on its own thread (`vita.speech.tts.SpeechWorker`) and has nothing
else to do, the run waits for it in wall time, which the clock counts. A scenario's `echo_gain` leaks our playback
back into the mic.

Metrics (true times from the script, not from the VAD):
    response latency   first reply audio - true end of a query
    stop latency       our speaker falls silent - true onset of speech over our playback
    resume gap         playback resumed - paused (a dropped non-query)
    stalls             per reply: the silence inside its playback before it ended (the next phrase came late)
    false trigger      a non-query segment produced reply audio or cancelled the playing reply, or a reply started
                       for an utterance no segment explains (our own echo); rate = false triggers / (non-query
                       segments + echo scenarios)
    miss               a query got no reply audio within 3 s of its end; rate = misses / queries
    success-interrupt  a query over our playback cancelled the old reply and got reply audio (rate over barge-ins)
    success-reply      that reply's text is the one scripted for the barge-in question (rate over barge-ins)
    stages             per answered query: vad_end (turn committed - true end), then each stage's time since the
                       previous one, clipped at 0 (features/encoder, prefill, state token, first text, first TTS
                       chunk, first audio); see `vita.duplex.stages.STAGES`
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vita.config import SAMPLE_RATE
from vita.duplex.events import (
    AudioIn,
    AudioOut,
    PlaybackPaused,
    PlaybackResumed,
    ReplyCancelled,
    ReplyFinished,
    ReplyStarted,
    TextDelta,
    UserSpeechEnded,
)
from vita.duplex.roles import Script
from vita.duplex.scenarios import Scenario, Segment, builtin_scenarios
from vita.duplex.stages import STAGES
from vita.processor import Turn

standard_scenarios = builtin_scenarios  # the earlier name


class SimClock:
    """Virtual time `t`; while a tick runs (`begin()` ... `end()`), `now()` adds the wall time spent in it."""

    def __init__(self) -> None:
        self.t = 0.0
        self._t0: float | None = None

    def now(self) -> float:
        return self.t + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    def begin(self) -> None:
        self._t0 = time.perf_counter()

    def end(self) -> None:
        if self._t0 is not None:
            self.t += time.perf_counter() - self._t0
        self._t0 = None


@dataclass
class Result:
    scenario: str
    events: list = field(default_factory=list)
    response_latency: list[float] = field(default_factory=list)
    stop_latency: list[float] = field(default_factory=list)
    resume_gap: list[float] = field(default_factory=list)
    false_triggers: int = 0
    misses: int = 0
    queries: int = 0
    non_queries: int = 0  # false-trigger opportunities: non-query segments (+1 for an echo scenario)
    barge_ins: int = 0
    interrupts_ok: int = 0
    replies_ok: int = 0
    echo_pauses: int = 0  # pauses no user segment explains (our own voice got through the front end)
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    silent_at: list[float] = field(default_factory=list)  # when the speaker fell silent after each pause
    speaker: np.ndarray | None = None  # [N] what the speaker played, on the mic timeline
    stamps: dict[int, dict[str, float]] = field(default_factory=dict)  # the session's stage stamps
    placed: list[tuple[int, int, int]] = field(default_factory=list)  # (reply id, speaker sample, samples) played
    stalls: list[float] = field(default_factory=list)  # per reply: silence inside its playback (underruns), s


class ScenarioForcing:
    """Forces each utterance's reply from the segment whose speech ended last before the job starts; an
    utterance long after every segment (our own echo) is forced to `<2>`; a query without a script is free.
    `free`: only the scenario's first whole query is forced (the answer that later speech may overlap); the model
    decides everything else (states and answers), the first piece of a query the user goes on with after a pause
    (`Segment.continued`) included: taking the turn in that pause or not is the model's decision."""

    def __init__(self, scenario: Scenario, clock, *, free: bool = False) -> None:
        self.scenario, self.clock, self.free = scenario, clock, free

    def __call__(self, turns: Sequence[Turn]) -> Script | None:
        now = self.clock.now()
        ended = [s for s in self.scenario.segments if s.speech_span()[1] <= now + 0.05]
        first = next((s for s in self.scenario.segments if s.kind == "query" and not s.continued), None)
        if not ended or now - ended[-1].speech_span()[1] > 2.0:
            return None if self.free else Script("<2>")
        seg = max(ended, key=lambda s: s.speech_span()[1])
        if self.free and seg is not first:
            return None
        if seg.kind == "query":
            return Script(seg.reply) if seg.reply else None
        return Script("<2>")


def run(
    make_session: Callable[[Scenario, SimClock], object],
    scenario: Scenario,
    *,
    echo_gain: float | None = None,
    echo_delay: float | None = None,
    compute_time: bool = True,
    ticks_per_chunk: int = 50,
    tail: float = 6.0,
) -> Result:
    """Play the scenario into a fresh session (`make_session(scenario, clock)`) and score it. `echo_gain` and
    `echo_delay` override the scenario's own."""
    clock = SimClock()
    session = make_session(scenario, clock)
    gain = scenario.echo_gain if echo_gain is None else echo_gain
    d = int((scenario.echo_delay if echo_delay is None else echo_delay) * SAMPLE_RATE)
    n = 320  # 20 ms
    mic = np.concatenate([scenario.mic(), np.zeros(int(tail * SAMPLE_RATE), np.float32)])
    mic = np.pad(mic, (0, -len(mic) % n))
    speaker = np.zeros(len(mic) + SAMPLE_RATE, np.float32)  # what was played, on the mic timeline
    spk_end = 0
    res = Result(scenario.name)
    for i in range(0, len(mic), n):
        t_chunk = (i + n) / SAMPLE_RATE  # the chunk is complete at this time
        clock.t = max(clock.t, t_chunk)
        chunk = mic[i : i + n].copy()
        if gain and i - d >= 0:
            chunk += gain * speaker[i - d : i - d + n]
        evs = list(session.feed(AudioIn(chunk)))
        # work fills the time until the next chunk arrives (a tick that overruns delays the next feed)
        until = t_chunk + n / SAMPLE_RATE
        for _ in range(ticks_per_chunk):
            if compute_time and clock.t >= until:
                break
            if not session.has_work:
                # speech rendered on its own thread (SpeechWorker): its wall time is the reply's time too
                if not (compute_time and getattr(session, "waiting_for_speech", False)):
                    break
                clock.begin()
                session.tts.wait(max(until - clock.t, 0.0))
                clock.end()
                if not session.has_work:
                    break
            if compute_time:
                clock.begin()
            got = session.tick()
            clock.end()
            evs += got
        for e in evs:
            if isinstance(e, AudioOut):  # the speaker plays samples back to back, from when they arrive
                at = max(spk_end, int(e.t * SAMPLE_RATE))
                seg = e.pcm[: max(len(speaker) - at, 0)]
                speaker[at : at + len(seg)] = seg
                spk_end = at + len(seg)
                res.placed.append((e.reply_id, at, len(seg)))
            elif isinstance(e, PlaybackPaused):  # silent once what the speaker already holds has played
                res.silent_at.append(max(e.t, spk_end / SAMPLE_RATE))
        res.events += evs
    res.speaker = speaker
    res.stamps = {k: dict(v) for k, v in getattr(session, "stages", {}).items()}
    _score(res, scenario, echo=gain > 0)
    return res


def _window(seg: Segment, segments: Sequence[Segment]) -> tuple[float, float, float]:
    """(onset, true end, end of the window in which the VAD's end of this segment may fall)."""
    on, end = seg.speech_span()
    nxt = min([s.speech_span()[0] for s in segments if s.at > seg.at], default=float("inf"))
    return on, end, min(nxt, end + 2.0)


def _score(res: Result, scenario: Scenario, *, echo: bool) -> None:
    ev = res.events
    audio: dict[int, float] = {}  # reply id -> time of its first audio
    for e in ev:
        if isinstance(e, AudioOut):
            audio.setdefault(e.reply_id, e.t)
    starts = [e for e in ev if isinstance(e, ReplyStarted)]
    ended = {e.utterance_id: e.t for e in ev if isinstance(e, UserSpeechEnded)}
    cancels = [e for e in ev if isinstance(e, ReplyCancelled)]
    texts: dict[int, str] = {}
    for e in ev:
        if isinstance(e, TextDelta):
            texts[e.reply_id] = texts.get(e.reply_id, "") + e.text
    finished = {e.reply_id: e.text for e in ev if isinstance(e, ReplyFinished)}
    explained: set[int] = set()  # reply ids a segment accounts for
    spans = []
    for seg in scenario.segments:
        on, end, until = _window(seg, scenario.segments)
        spans.append((on, end))
        before = slice(int(max(on - 0.3, 0) * SAMPLE_RATE), int(on * SAMPLE_RATE))
        spk = res.speaker[before] if res.speaker is not None else []
        playing = bool(np.any(spk != 0))  # our voice was playing when this segment started
        if playing:
            silent = [t for t in res.silent_at if t >= on - 0.05]
            if silent and silent[0] < end + 1.0:
                res.stop_latency.append(silent[0] - on)
        mine = [r for r in starts if on <= ended.get(r.utterance_id, -1.0) < until]  # untimed text: -1
        explained |= {r.reply_id for r in mine}
        cancelled = any(on <= c.t < until for c in cancels)
        if seg.kind == "query":
            res.queries += 1
            firsts = [(audio[r.reply_id], r) for r in mine if r.reply_id in audio]
            got = bool(firsts) and firsts[0][0] - end <= 3.0
            if got:
                t_audio, reply = firsts[0]
                res.response_latency.append(t_audio - end)
                _stages(res, res.stamps.get(reply.utterance_id, {}), end)
            else:
                res.misses += 1
            if playing:
                res.barge_ins += 1
                res.interrupts_ok += int(got and cancelled)
                if got and seg.reply:
                    rid = firsts[0][1].reply_id
                    res.replies_ok += int(finished.get(rid, texts.get(rid, "")).strip() == seg.visible_reply)
        else:
            res.non_queries += 1
            spoke = any(r.reply_id in audio for r in mine)
            res.false_triggers += int(spoke or cancelled)
    res.non_queries += int(echo)
    res.false_triggers += sum(1 for r in starts if r.reply_id not in explained and r.reply_id in audio)
    for e in ev:
        if isinstance(e, PlaybackPaused) and not any(on - 0.05 <= e.t < end + 1.0 for on, end in spans):
            res.echo_pauses += 1
    paused: dict[int, float] = {}
    for e in ev:
        if isinstance(e, PlaybackPaused):
            paused[e.reply_id] = e.t
        elif isinstance(e, PlaybackResumed) and e.reply_id in paused:
            res.resume_gap.append(e.t - paused.pop(e.reply_id))
    res.stalls = _stalls(res.placed, ev)


STALL_S = 0.04  # a silence inside a reply's playback a listener notices


def _stalls(placed: Sequence[tuple[int, int, int]], events: Sequence) -> list[float]:
    """Per reply with audio: the silence between its first sample and its last (an underrun: the next phrase was not
    rendered in time), counted up to the reply's first pause or cancel (a pause is silence on purpose)."""
    stop = {}  # reply id -> speaker sample at which its playback was first stopped on purpose
    for e in events:
        if isinstance(e, (PlaybackPaused, ReplyCancelled)):
            stop.setdefault(e.reply_id, int(e.t * SAMPLE_RATE))
    gaps: dict[int, int] = {}
    end: dict[int, int] = {}
    for rid, at, n in placed:
        if at >= stop.get(rid, 1 << 62):
            continue
        gaps[rid] = gaps.get(rid, 0) + (max(at - end[rid], 0) if rid in end else 0)
        end[rid] = at + n
    return [g / SAMPLE_RATE for g in gaps.values()]


def _stages(res: Result, stamps: dict[str, float], true_end: float) -> None:
    """Each stage's time after the previous one, clipped at 0: work done speculatively before the turn was
    committed (features, prefill, state, first text) costs nothing after it."""
    prev = true_end
    for stage in STAGES:
        if stage in stamps:
            res.stages[stage].append(max(stamps[stage] - prev, 0.0))
            prev = max(prev, stamps[stage])


def _ms(xs: Sequence[float], q: float) -> float | None:
    return round(1000 * float(np.percentile(xs, q)), 1) if len(xs) else None


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def row(res: Result, **extra) -> dict:
    """One scenario's figures (milliseconds, rates in [0, 1]; None where nothing was measured)."""
    return {
        "name": res.scenario, **extra,
        "queries": res.queries, "non_queries": res.non_queries, "barge_ins": res.barge_ins,
        "response_ms_p50": _ms(res.response_latency, 50), "response_ms_p90": _ms(res.response_latency, 90),
        "stop_ms_p50": _ms(res.stop_latency, 50), "stop_ms_p90": _ms(res.stop_latency, 90),
        "resume_gap_ms_p50": _ms(res.resume_gap, 50),
        "stall_ms_max": round(1000 * max(res.stalls), 1) if res.stalls else None,
        "false_triggers": res.false_triggers, "misses": res.misses, "echo_pauses": res.echo_pauses,
        "false_trigger_rate": _rate(res.false_triggers, res.non_queries),
        "miss_rate": _rate(res.misses, res.queries),
        "success_interrupt_rate": _rate(res.interrupts_ok, res.barge_ins),
        "success_reply_rate": _rate(res.replies_ok, res.barge_ins),
        "stages_ms_p50": {s: _ms(v, 50) for s, v in res.stages.items()},
    }


def report(results: Sequence[Result], *, rss_ratio: float | None = None, **extra) -> dict:
    """The `vita bench duplex --json` object: headline figures over all scenarios, `scenarios` rows, `stages`."""
    resp = [x for r in results for x in r.response_latency]
    stop = [x for r in results for x in r.stop_latency]
    stalls = [x for r in results for x in r.stalls]
    stages = {s: [x for r in results for x in r.stages[s]] for s in STAGES}
    return {
        "response_ms_p50": _ms(resp, 50), "response_ms_p90": _ms(resp, 90),
        "stop_ms_p50": _ms(stop, 50), "stop_ms_p90": _ms(stop, 90),
        # replies whose playback fell silent for more than 40 ms before it ended (the speech ran out), and the worst
        "stalled_rate": _rate(sum(x > STALL_S for x in stalls), len(stalls)), "stall_ms_p90": _ms(stalls, 90),
        "false_trigger_rate": _rate(sum(r.false_triggers for r in results), sum(r.non_queries for r in results)),
        "miss_rate": _rate(sum(r.misses for r in results), sum(r.queries for r in results)),
        "rss_two_roles_over_one": rss_ratio,
        "scenarios": [row(r, **extra) for r in results],
        "stages": {s: {"n": len(v), "p50_ms": _ms(v, 50), "p90_ms": _ms(v, 90)} for s, v in stages.items()},
    }


def summary(results: Sequence[Result]) -> dict:
    """p50 / p90 of the latencies (seconds) and the counts, over all results (the earlier short form)."""

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


def markdown(rep: dict, *, model: str, compute_time: bool) -> str:
    """The report as markdown: headline, one row per scenario, the stage breakdown."""

    def f(x, unit: str = "") -> str:
        return "-" if x is None else f"{x:g}{unit}"

    mode = "with this machine's compute time" if compute_time else "no compute time (algorithmic, deterministic)"
    weights = " (random weights: the engine's figures, replies teacher-forced)" if model.endswith("-random") else ""
    lines = [f"# vita bench duplex: model {model}{weights}, {mode}", "",
             f"response p50 {f(rep['response_ms_p50'], ' ms')} p90 {f(rep['response_ms_p90'], ' ms')} | "
             f"stop p50 {f(rep['stop_ms_p50'], ' ms')} p90 {f(rep['stop_ms_p90'], ' ms')} | "
             f"false triggers {f(rep['false_trigger_rate'])} | misses {f(rep['miss_rate'])} | "
             f"RSS two roles / one {f(rep['rss_two_roles_over_one'])}", "",
             "| scenario | setup | response p50/p90 ms | stop p50/p90 ms | false trig. | miss | interrupt ok | "
             "reply ok | echo pauses |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rep["scenarios"]:
        lines.append(f"| {r['name']} | {r.get('setup', '')} | {f(r['response_ms_p50'])} / {f(r['response_ms_p90'])}"
                     f" | {f(r['stop_ms_p50'])} / {f(r['stop_ms_p90'])} | {r['false_triggers']}/{r['non_queries']}"
                     f" | {r['misses']}/{r['queries']} | {f(r['success_interrupt_rate'])} | "
                     f"{f(r['success_reply_rate'])} | {r['echo_pauses']} |")
    lines += ["", "| stage (time since the previous one) | n | p50 ms | p90 ms |", "|---|---|---|---|"]
    for s, v in rep["stages"].items():
        lines.append(f"| {s} | {v['n']} | {f(v['p50_ms'])} | {f(v['p90_ms'])} |")
    return "\n".join(lines)
