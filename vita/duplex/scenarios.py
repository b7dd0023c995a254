"""Duplex scenarios for `vita bench duplex`: user clips on a mic timeline, built in or read from a JSON file.

A `Scenario` places `Segment`s (a query, speech not meant for us, noise) on a mic timeline. Each spoken segment
carries the reply the model is forced to give (`<1> ...` for a query, `<2>` otherwise), so random weights behave
like a trained model; a query without a forced reply is answered freely. `echo_gain` > 0 makes our own playback
leak back into the mic (a laptop speaker) and turns the echo front end (AEC3 when installed + gate) on.

Built-in scenarios (`builtin_scenarios(voice)`, spoken by a Piper voice):
    question     one query, a long answer
    barge-in     a query, then a second query while the answer plays (it must stop the old answer and be answered)
    background   speech not meant for us, before the query and while the answer plays (`<2>`: dropped, resumed)
    noise        noise bursts before the query and while the answer plays
    pause        a query with a 0.3 s pause inside it (one utterance: answered once, after its real end)
    echo         a query answered through a speaker: our voice leaks back at -6 dB after 40 ms

Scenario file (JSON, UTF-8), `load_scenario_file(path)`:

    {"scenarios": [                               # or the list alone
      {"name": "weather",                         # required, unique, non-empty
       "duration": 12.0,                          # optional: seconds of mic audio (default: last clip end + 8)
       "echo_gain": 0.0,                          # optional, >= 0: our playback leaks into the mic at this gain
       "clips": [                                 # required, at least one
         {"audio": "clips/q1.wav",                # required: audio file, relative to the JSON file's folder
          "start": 0.5,                           # required, >= 0: seconds on the mic timeline
          "query": true,                          # required: is it meant for the assistant?
          "reply": "<1> Sunny and warm.",         # optional (queries only): forced reply; "<1> " is added when
                                                  #   it has no state token; absent: the model answers freely
          "noise": false,                         # optional (non-queries only): true = not speech (no state token
                                                  #   is forced; the model should stay silent)
          "gain": 1.0}]}]}                        # optional, > 0: scale the clip

Unknown keys, wrong types, missing files and undecodable audio are errors (`ScenarioError`, a `VitaError`) whose
message starts with the file name and the JSON path of the bad value, e.g. `s.json: scenarios[0].clips[1].start:
expected a number >= 0, got -1`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vita.config import SAMPLE_RATE
from vita.errors import VitaError
from vita.tokens import STATE_TOKENS

Kind = Literal["query", "chatter", "noise"]


class ScenarioError(VitaError, ValueError):
    """A scenario file cannot be used; the message starts with `file: json.path:`."""


@dataclass
class Segment:
    at: float  # start on the mic timeline (s)
    audio: np.ndarray  # [N] float32 16 kHz
    kind: Kind
    reply: str = ""  # the forced reply ("<1> ..." for a query, "<2>" otherwise; "" for a query: free generation)
    continued: bool = False  # a query's first piece that the user goes on with after a pause: not a turn of its
    # own (whether to take the turn in that pause is what a pause-handling test asks of the model)

    def speech_span(self, floor_db: float = -45.0) -> tuple[float, float]:
        """True onset and end (s on the timeline): first and last 10 ms frame above floor_db."""
        frames = len(self.audio) // 160
        x = self.audio[: frames * 160].reshape(frames, 160).astype(np.float64)
        lv = 20 * np.log10(np.sqrt(np.mean(x**2, axis=1)) + 1e-12)
        on = np.nonzero(lv > floor_db)[0]
        if len(on) == 0:
            return self.at, self.at
        return self.at + on[0] * 0.01, self.at + (on[-1] + 1) * 0.01

    @property
    def visible_reply(self) -> str:
        """The forced reply without its state token (what a correct answer shows)."""
        text = self.reply.strip()
        for token in STATE_TOKENS:
            if text.startswith(token):
                return text[len(token) :].strip()
        return text


@dataclass
class Scenario:
    name: str
    segments: list[Segment]
    duration: float  # seconds of mic audio in total (silence where no segment plays)
    echo_gain: float = 0.0  # our playback leaks into the mic at this gain (speaker setup) ...
    echo_delay: float = 0.04  # ... this late

    def mic(self) -> np.ndarray:
        x = np.zeros(int(self.duration * SAMPLE_RATE), np.float32)
        for s in self.segments:
            a = int(s.at * SAMPLE_RATE)
            n = min(len(s.audio), len(x) - a)
            if n > 0:
                x[a : a + n] += s.audio[:n]
        return x


LONG = ("<1> The weather today is sunny and warm, with a light breeze from the west. Later it gets cloudy, "
        "and in the evening there may be a little rain.")


def _bursts(rng: np.random.Generator, n: int, length: float = 0.15, std: float = 0.08, gap: float = 0.6):
    """n decaying noise bursts (door knocks, clatter) separated by `gap` s: [N] float32."""
    k = int(length * SAMPLE_RATE)
    env = np.exp(-np.arange(k) / (0.3 * k)).astype(np.float32)
    out = np.zeros(int((n * (length + gap)) * SAMPLE_RATE), np.float32)
    for i in range(n):
        a = int(i * (length + gap) * SAMPLE_RATE)
        out[a : a + k] = env * rng.normal(0, std, k).astype(np.float32)
    return out


def builtin_scenarios(voice: Callable[[str], np.ndarray]) -> list[Scenario]:
    """The six built-in scenarios, spoken by `voice` (text -> 16 kHz pcm) at half scale."""
    q = 0.5 * voice("What is the weather like today?")
    barge = 0.5 * voice("Tell me a joke instead.")
    chatter = 0.5 * voice("Yes, I will call you back after lunch.")
    head, tail = 0.5 * voice("What is the weather like"), 0.5 * voice("in Paris today?")
    paused = np.concatenate([head, np.zeros(int(0.3 * SAMPLE_RATE), np.float32), tail])
    rng = np.random.default_rng(0)
    t_q = 0.5 + len(q) / SAMPLE_RATE
    during = t_q + 2.5  # the answer plays by then
    c_end = 0.5 + len(chatter) / SAMPLE_RATE
    return [
        Scenario("question", [Segment(0.5, q, "query", LONG)], t_q + 8.0),
        Scenario("barge-in", [Segment(0.5, q, "query", LONG),
                              Segment(during, barge, "query", "<1> Here is one, about a cat.")], t_q + 9.0),
        Scenario("background", [Segment(0.5, chatter, "chatter", "<2>"), Segment(c_end + 1.0, q, "query", LONG),
                                Segment(c_end + 1.0 + during, chatter, "chatter", "<2>")],
                 c_end + 1.0 + t_q + 9.0),
        Scenario("noise", [Segment(0.3, _bursts(rng, 2), "noise"), Segment(2.0, q, "query", LONG),
                           Segment(2.0 + during, _bursts(rng, 3), "noise")], 2.0 + t_q + 8.0),
        Scenario("pause", [Segment(0.5, paused, "query", "<1> It is sunny in Paris today.")],
                 0.5 + len(paused) / SAMPLE_RATE + 6.0),
        Scenario("echo", [Segment(0.5, q, "query", LONG)], t_q + 8.0, echo_gain=0.5),
    ]


# ---- scenario files ---------------------------------------------------------------------------------------------

_SCENARIO_KEYS = {"name", "duration", "echo_gain", "clips"}
_CLIP_KEYS = {"audio", "start", "query", "reply", "noise", "gain"}


def _fail(file: Path, where: str, problem: str) -> ScenarioError:
    return ScenarioError(f"{file.name}: {where}: {problem}")


def _number(file: Path, where: str, value: Any, *, low: float = 0.0, strict: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or (value <= low if strict else value < low):
        raise _fail(file, where, f"expected a number {'>' if strict else '>='} {low:g}, got {json.dumps(value)}")
    return float(value)


def _keys(file: Path, where: str, obj: Any, allowed: set[str], required: set[str]) -> dict:
    if not isinstance(obj, dict):
        raise _fail(file, where, f"expected an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _fail(file, where, f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(obj))
    if missing:
        raise _fail(file, where, f"missing key {missing[0]!r}")
    return obj


def _clip(file: Path, where: str, obj: Any) -> Segment:
    from vita.media.audio import load_audio

    c = _keys(file, where, obj, _CLIP_KEYS, {"audio", "start", "query"})
    if not isinstance(c["audio"], str) or not c["audio"]:
        raise _fail(file, f"{where}.audio", "expected a file path (string)")
    start = _number(file, f"{where}.start", c["start"])
    if not isinstance(c["query"], bool):
        raise _fail(file, f"{where}.query", f"expected true or false, got {json.dumps(c['query'])}")
    gain = _number(file, f"{where}.gain", c.get("gain", 1.0), strict=True)
    noise = c.get("noise", False)
    if not isinstance(noise, bool):
        raise _fail(file, f"{where}.noise", f"expected true or false, got {json.dumps(noise)}")
    if noise and c["query"]:
        raise _fail(file, f"{where}.noise", "a query cannot be noise")
    reply = c.get("reply")
    if reply is not None:
        if not c["query"]:
            raise _fail(file, f"{where}.reply", "only a query has a forced reply (a non-query is forced to <2>)")
        if not isinstance(reply, str) or not reply.strip():
            raise _fail(file, f"{where}.reply", "expected a non-empty string")
        if not any(reply.lstrip().startswith(t) for t in STATE_TOKENS):
            reply = "<1> " + reply.strip()
        elif reply.lstrip().startswith("<2>"):
            raise _fail(file, f"{where}.reply", "a query's reply cannot be <2> (make the clip a non-query)")
    path = Path(c["audio"]) if Path(c["audio"]).is_absolute() else file.parent / c["audio"]
    if not path.is_file():
        raise _fail(file, f"{where}.audio", f"no such file: {path}")
    try:
        pcm = load_audio(path, target_rate=SAMPLE_RATE).numpy().astype(np.float32)
    except VitaError as exc:
        raise _fail(file, f"{where}.audio", str(exc)) from None
    if len(pcm) == 0:
        raise _fail(file, f"{where}.audio", f"{path.name} is empty")
    kind: Kind = "query" if c["query"] else "noise" if noise else "chatter"
    return Segment(start, gain * pcm, kind, reply or ("" if c["query"] else "<2>" if not noise else ""))


def read_json(file: Path) -> Any:
    """A JSON file's content; a missing, unreadable or malformed file is a `ScenarioError` naming it."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{file.name}: no such file ({file})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{file.name}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{file.name}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None


def load_scenario_file(path: str | Path) -> list[Scenario]:
    """Read and strictly validate a scenario file (schema in the module docstring)."""
    file = Path(path)
    data = read_json(file)
    if isinstance(data, dict):
        data = _keys(file, "(top level)", data, {"scenarios"}, {"scenarios"})["scenarios"]
    if not isinstance(data, list) or not data:
        raise _fail(file, "scenarios", "expected a non-empty list of scenarios")
    out: list[Scenario] = []
    for i, obj in enumerate(data):
        where = f"scenarios[{i}]"
        s = _keys(file, where, obj, _SCENARIO_KEYS, {"name", "clips"})
        name = s["name"]
        if not isinstance(name, str) or not name.strip():
            raise _fail(file, f"{where}.name", "expected a non-empty string")
        if name in {o.name for o in out}:
            raise _fail(file, f"{where}.name", f"duplicate scenario name {name!r}")
        clips = s["clips"]
        if not isinstance(clips, list) or not clips:
            raise _fail(file, f"{where}.clips", "expected a non-empty list of clips")
        segments = [_clip(file, f"{where}.clips[{j}]", c) for j, c in enumerate(clips)]
        last = max(seg.at + len(seg.audio) / SAMPLE_RATE for seg in segments)
        duration = _number(file, f"{where}.duration", s["duration"], strict=True) if "duration" in s else last + 8.0
        if duration < last:
            raise _fail(file, f"{where}.duration", f"{duration:g} s ends before the last clip ({last:.2f} s)")
        echo = _number(file, f"{where}.echo_gain", s.get("echo_gain", 0.0))
        out.append(Scenario(name.strip(), sorted(segments, key=lambda g: g.at), duration, echo_gain=echo))
    return out
