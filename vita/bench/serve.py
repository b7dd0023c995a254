"""`vita bench serve`: N concurrent `/v1/realtime` sessions speaking in real time to one `vita serve` process.

    vita bench serve [--sessions 8] [--seconds 60] [--model vita-mini] [--chunk-ms 40] [--json]

The server (the real app, uvicorn, server VAD and audio out through Piper) runs in this process on a thread of its
own; the clients run on one asyncio loop in a spawned child process (its own GIL, no torch), each streaming 16 kHz
pcm16 in `--chunk-ms` appends paced by the wall clock (silence between questions, like an open microphone). Each
session repeats a cycle until `--seconds`:

    1. a typed item "say Mark <tag> cycle <n>."   -> answered "Mark <tag> cycle <n>."       (forced, see below)
    2. a spoken question (Piper speech), a pause   -> answered "Here is answer <n> for <tag>."

Replies are teacher-forced on the tiny weights (the model still runs every prompt and forced token): a typed
"say X" is answered X; a spoken question is answered from the newest "Mark <tag> cycle <n>" found in the prompt
turns the session's engine is given (its own history). So an answer names the session and cycle whose history
produced it: a wrong tag or cycle means history or events crossed sessions (leakage), and so does an event for a
response id this socket never saw created.

Latency (spoken questions) = first response delta (`response.audio.delta` or the transcript / text delta,
whichever comes first) minus the end of the user's speech (the time the client sent the question's last voiced
sample); `audio_ms` the same for the first `response.audio.delta`, the first sound the user hears. Both include
the server VAD's end-of-speech silence (`silence_duration_ms`). Also shown: the same from the `speech_stopped`
event's arrival, and typed latency (response.create sent -> first delta). The server's side
(`vita.server.realtime_stats`): each finished turn's stages (features, prefill, state token, first text, first TTS
phrase, first audio) in ms from its commit, negative when done speculatively before it, the model worker's queueing
delays (urgent: a turn being decided or speculated on; normal: decode steps, chat requests) and its decode rounds.

Beside them, a `/v1/chat/completions` request (a short sum, 16 tokens at most) every 2 s must answer 200.
Midway, one extra client asks for a long answer and vanishes (TCP abort) at its first audio delta; then
`/healthz` must answer ok and a new session must answer; after the run no session may be left open on the server.
Exit status 1 on any error event, timeout, leakage, a chat status other than 200, or a failed disconnect check.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import re
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vita.bench.playback import STALL_S, Player
from vita.config import SAMPLE_RATE
from vita.server import realtime_stats
from vita.server.audio_out import OUTPUT_RATE
from vita.server.limits import Limits

QUESTIONS = ("What is the weather like today?", "Can you tell me a short story?", "How far away is the moon?")
MARK = re.compile(r"Mark (?P<tag>s\d+-[0-9a-f]+) cycle (?P<n>\d+)")
LONG = "The weather today is sunny and warm, with a light breeze from the west. " * 4


@dataclass
class BenchResult:
    sessions: int
    seconds: float
    model: str
    spoken: int = 0  # spoken questions answered
    typed: int = 0
    latency_ms: list[float] = field(default_factory=list)  # end of speech -> first delta
    audio_ms: list[float] = field(default_factory=list)  # end of speech -> first audio delta (the first sound)
    stall_ms: list[float] = field(default_factory=list)  # per reply with audio: silence inside it (`Player`)
    dry_after_s: list[float] = field(default_factory=list)  # per stalled reply: audio played before it first ran dry
    from_stopped_ms: list[float] = field(default_factory=list)  # speech_stopped arrival -> first delta
    typed_ms: list[float] = field(default_factory=list)
    chat_ms: list[float] = field(default_factory=list)  # /v1/chat/completions interleaved: request -> response
    chat_status: dict[str, int] = field(default_factory=dict)  # HTTP status -> count
    errors: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    disconnect: dict[str, Any] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)  # 1-min load average before and after (others' CPU use)
    stages: dict[str, Any] = field(default_factory=dict)  # the server's view: where a turn's time goes

    @property
    def ok(self) -> bool:
        chat_ok = bool(self.chat_status) and set(self.chat_status) == {"200"}
        return not self.errors and not self.leaks and bool(self.disconnect.get("ok")) and self.spoken > 0 and chat_ok

    def summary(self) -> dict[str, Any]:
        timed = ("latency_ms", "audio_ms", "from_stopped_ms", "typed_ms", "chat_ms")
        out = {k: v for k, v in asdict(self).items() if k not in (*timed, "stall_ms", "dry_after_s")}
        out["stalls"] = {"replies": len(self.stall_ms), "stalled": sum(ms > 1000 * STALL_S for ms in self.stall_ms),
                         "p90_ms": pct(self.stall_ms, 90), "max_ms": max(self.stall_ms, default=None),
                         "dry_after_s_p50": pct(self.dry_after_s, 50)}
        for name in timed:
            values = getattr(self, name)
            out[name] = {"p50": pct(values, 50), "p90": pct(values, 90), "max": max(values, default=None),
                         "n": len(values)}
        out["ok"] = self.ok
        return out


def pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def make_forcing():
    """Per connection: typed "say X" -> X; anything else -> named after the newest Mark in the prompt turns."""
    from vita.duplex.roles import Script

    def texts(turn) -> list[str]:
        return [turn.content] if isinstance(turn.content, str) else [p for p in turn.content if isinstance(p, str)]

    def forcing(turns):
        for text in texts(turns[-1]):
            if text.startswith("say "):
                return Script("<1> " + text[4:])
        for turn in reversed(turns[:-1]):
            for text in texts(turn):
                if m := MARK.search(text):
                    # ordinary words first, as a real answer's first phrase (a tag spelled out costs ~10 tokens)
                    return Script(f"<1> Here is answer {m['n']} for {m['tag']}.")
        return Script("<1> There is no mark in my history.")
    return forcing


class Server:
    """The app on uvicorn at 127.0.0.1:<free port>, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **Limits().uvicorn()))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="bench-uvicorn")

    def __enter__(self) -> Server:
        self.thread.start()
        end = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
        self.app.state.vita.worker.shutdown()


def build_app(model_name: str, sessions: int, forcing: Callable[[], Any] = make_forcing, *, device: Any = "cpu",
              dtype: str | None = None) -> tuple[Any, Any]:
    """The served app on `model_name` (on `device`, `vita.devices`) with forced replies, and a Piper voice at
    16 kHz for the questions."""
    import vita
    from vita.server.app import create_app
    from vita.server.audio_out import SpeechOut
    from vita.server.engine import Engine
    from vita.server.realtime import RealtimeConfig
    from vita.speech.tts import PiperSynth

    model = vita.load(model_name, device=device, dtype=dtype)
    voice = PiperSynth(out_rate=24000)
    app = create_app(Engine(model), model_id=model_name, limits=Limits(max_realtime_sessions=sessions + 2),
                     speech=SpeechOut(factory=lambda: voice), realtime=RealtimeConfig(forcing=forcing))
    return app, PiperSynth(out_rate=SAMPLE_RATE)


class Client:
    """One realtime session: a paced microphone task, a receiver task, and the cycle driver."""

    def __init__(self, url: str, tag: str, chunk: int, res: BenchResult) -> None:
        self.url, self.tag, self.chunk, self.res = url, tag, chunk, res
        self.ws: Any = None
        self.pending = np.zeros(0, np.int16)  # queued mic samples (silence when empty)
        self.speech_end: tuple[int, asyncio.Future] | None = None  # samples left to the speech end, its time
        self.created: dict[str, float] = {}  # response id -> arrival
        self.first: dict[str, float] = {}  # response id -> first delta arrival
        self.first_audio: dict[str, float] = {}  # response id -> first audio delta arrival
        self.players: dict[str, Player] = {}  # response id -> its playback
        self.texts: dict[str, str] = {}
        self.dones: asyncio.Queue[dict] = asyncio.Queue()
        self.stopped: list[float] = []

    def error(self, what: str) -> None:
        self.res.errors.append(f"{self.tag}: {what}"[:300])

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, open_timeout=30, max_size=None)
        first = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
        if first["type"] != "session.created":
            raise RuntimeError(f"expected session.created, got {first}")
        await self.ws.send(json.dumps({"type": "session.update", "session": {
            "instructions": f"You are bench session {self.tag}.",
            "input_audio_format": {"type": "audio/pcm", "rate": SAMPLE_RATE}}}))

    async def mic(self) -> None:
        """Sends `chunk` samples per chunk period on the wall clock: queued speech, else silence."""
        loop, period = asyncio.get_running_loop(), self.chunk / SAMPLE_RATE
        t0, i = loop.time(), 0
        while True:
            block, self.pending = self.pending[:self.chunk], self.pending[self.chunk:]
            block = np.concatenate([block, np.zeros(self.chunk - len(block), np.int16)])
            await self.ws.send(json.dumps({"type": "input_audio_buffer.append",
                                           "audio": base64.b64encode(block.astype("<i2").tobytes()).decode()}))
            now = time.monotonic()
            if self.speech_end is not None:
                left, fut = self.speech_end
                if left <= self.chunk:  # the last voiced sample went out with this block
                    fut.set_result(now - (self.chunk - left) / SAMPLE_RATE)
                    self.speech_end = None
                else:
                    self.speech_end = (left - self.chunk, fut)
            i += 1
            await asyncio.sleep(max(t0 + i * period - loop.time(), 0))

    async def receive(self) -> None:
        async for raw in self.ws:
            now = time.monotonic()
            e = json.loads(raw)
            kind, rid = e["type"], e.get("response_id")
            if kind == "error":
                self.error(f"error event {e['error'].get('code')}: {e['error'].get('message')}")
            elif kind == "input_audio_buffer.speech_stopped":
                self.stopped.append(now)
            elif kind == "response.created":
                self.created[e["response"]["id"]] = now
            elif kind in ("response.audio.delta", "response.audio_transcript.delta", "response.text.delta"):
                if rid not in self.created:
                    self.res.leaks.append(f"{self.tag}: {kind} for response {rid} not created on this socket")
                self.first.setdefault(rid, now)
                if kind == "response.audio.delta":
                    self.first_audio.setdefault(rid, now)
                    self.players.setdefault(rid, Player()).add(now, len(base64.b64decode(e["delta"])) / 2 / OUTPUT_RATE)
                else:
                    self.texts[rid] = self.texts.get(rid, "") + e["delta"]
            elif kind == "response.done":
                r = e["response"]
                if r["id"] not in self.created:
                    self.res.leaks.append(f"{self.tag}: response.done for {r['id']} not created on this socket")
                if (player := self.players.pop(r["id"], None)) is not None and r["status"] == "completed":
                    self.res.stall_ms.append(1000 * player.stall)
                    if player.stall > STALL_S and player.dry_after is not None:
                        self.res.dry_after_s.append(player.dry_after)
                await self.dones.put({**r, "t": now, "text": self.texts.get(r["id"], "")})

    async def answer(self, timeout: float = 60.0) -> dict:
        done = await asyncio.wait_for(self.dones.get(), timeout)
        if done["status"] != "completed":
            self.error(f"response {done['id']} ended {done['status']}")
        return done

    async def cycles(self, deadline: float, questions: list[np.ndarray]) -> None:
        """Typed mark, spoken question, repeated until `deadline` (the first cycle always runs whole)."""
        n = 0
        while n == 0 or time.monotonic() < deadline:
            n += 1
            mark = f"Mark {self.tag} cycle {n}."
            sent = time.monotonic()
            await self.ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": f"say {mark}"}]}}))
            await self.ws.send(json.dumps({"type": "response.create"}))
            done = await self.answer()
            self.check(done, mark)
            if done["id"] in self.first:
                self.res.typed_ms.append(1000 * (self.first[done["id"]] - sent))
            self.res.typed += 1
            if n > 1 and time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.3)
            q = questions[n % len(questions)]
            end = np.flatnonzero(np.abs(q) > 300)[-1] + 1  # the last voiced sample (pcm16 > -40 dBFS)
            ended: asyncio.Future = asyncio.get_running_loop().create_future()
            self.speech_end, self.pending = (int(len(self.pending) + end), ended), np.concatenate([self.pending, q])
            done = await self.answer()
            self.check(done, f"Here is answer {n} for {self.tag}.")
            self.res.spoken += 1
            t_end, first = await ended, self.first.get(done["id"])
            if done["id"] in self.first_audio:
                self.res.audio_ms.append(1000 * (self.first_audio[done["id"]] - t_end))
            if first is not None:
                self.res.latency_ms.append(1000 * (first - t_end))
                before = [t for t in self.stopped if t <= first]
                if before:
                    self.res.from_stopped_ms.append(1000 * (first - before[-1]))
            await asyncio.sleep(0.5)

    def check(self, done: dict, expected: str) -> None:
        content = (done["output"] or [{"content": [{}]}])[0]["content"][0]
        text = content.get("transcript", content.get("text", ""))
        if text != expected or done["text"] != expected:
            found = MARK.search(text) or re.search(r"s\d+-[0-9a-f]+", text)
            crossed = found is not None and self.tag not in text
            (self.res.leaks if crossed else self.res.errors).append(
                f"{self.tag}: expected {expected!r}, got {text!r} (deltas {done['text']!r})")


async def disconnect_check(url: str, http: str, res: BenchResult) -> None:
    """A client asks for a long answer, aborts its TCP connection at the first audio delta; then the checks."""
    out: dict[str, Any] = {}
    gone = Client(url, "gone", 640, res)
    await gone.open()
    await gone.ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "say " + LONG}]}}))
    await gone.ws.send(json.dumps({"type": "response.create"}))
    while json.loads(await asyncio.wait_for(gone.ws.recv(), 60))["type"] != "response.audio.delta":
        pass
    gone.ws.transport.abort()  # vanishes mid-answer: no close frame
    health = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(f"{http}/healthz", timeout=10).read()))
    out["healthz"] = health
    fresh = Client(url, "fresh", 640, res)
    await fresh.open()
    receiver = asyncio.create_task(fresh.receive())
    try:
        await fresh.ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "say Fine after that."}]}}))
        await fresh.ws.send(json.dumps({"type": "response.create"}))
        done = await fresh.answer()
        out["new_session"] = done["status"] == "completed" and done["text"] == "Fine after that."
    finally:
        receiver.cancel()
        await fresh.ws.close()
    out["ok"] = health == {"status": "ok"} and out["new_session"]
    res.disconnect = out


CHAT_EVERY_S = 2.0  # one interleaved chat request per this many seconds


def _post_chat(http: str, model: str, n: int) -> tuple[int, float]:
    body = json.dumps({"model": model, "max_tokens": 16, "messages": [
        {"role": "user", "content": f"What is {n % 9 + 1} plus {n % 7 + 1}?"}]}).encode()
    req = urllib.request.Request(f"{http}/v1/chat/completions", data=body,
                                 headers={"content-type": "application/json"})
    t = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            json.loads(r.read())
            return r.status, (time.monotonic() - t) * 1000
    except urllib.error.HTTPError as e:
        return e.code, (time.monotonic() - t) * 1000


async def chat_loop(http: str, deadline: float, res: BenchResult) -> None:
    """`/v1/chat/completions` requests interleaved with the realtime sessions: every one must answer 200."""
    n = 0
    while time.monotonic() < deadline:
        try:
            status, ms = await asyncio.to_thread(_post_chat, http, res.model, n)
        except (OSError, ValueError) as exc:  # refused, reset, timed out, a body that is not JSON
            status, ms = 0, 0.0
            res.errors.append(f"chat request {n}: {type(exc).__name__}: {exc}")
        res.chat_status[str(status)] = res.chat_status.get(str(status), 0) + 1
        if status == 200:
            res.chat_ms.append(ms)
        elif status:
            res.errors.append(f"chat request {n}: HTTP {status}")
        n += 1
        await asyncio.sleep(CHAT_EVERY_S)


async def warm_up(url: str) -> None:
    """One unmeasured typed answer: the first forward passes and Piper's first run are slow."""
    c = Client(url, "warm", 640, BenchResult(1, 0, ""))
    await c.open()
    receiver = asyncio.create_task(c.receive())
    await c.ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "say Warm up."}]}}))
    await c.ws.send(json.dumps({"type": "response.create"}))
    await c.answer()
    receiver.cancel()
    await c.ws.close()


async def drive(port: int, res: BenchResult, questions: list[np.ndarray], chunk: int) -> None:
    url, http = f"ws://127.0.0.1:{port}/v1/realtime", f"http://127.0.0.1:{port}"
    await warm_up(url)
    clients = [Client(url, f"s{k}-{secrets.token_hex(3)}", chunk, res) for k in range(res.sessions)]
    await asyncio.gather(*(c.open() for c in clients))
    deadline = time.monotonic() + res.seconds
    tasks = []
    for k, c in enumerate(clients):
        tasks += [asyncio.create_task(c.mic()), asyncio.create_task(c.receive())]
        await asyncio.sleep(min(0.4, res.seconds / 20))  # stagger the starts, like real users
        qs = questions[k % len(questions):] + questions[:k % len(questions)]
        tasks.append(asyncio.create_task(c.cycles(deadline, qs)))
    drivers = tasks[2::3]
    chats = asyncio.create_task(chat_loop(http, deadline, res))
    await asyncio.sleep(res.seconds / 2)
    try:
        await asyncio.wait_for(disconnect_check(url, http, res), 60)
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the bench goes on
        res.disconnect = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    for c, d in zip(clients, drivers, strict=True):
        try:
            await d
        except Exception as exc:  # noqa: BLE001 - a timeout or a dropped socket is one error of the run
            c.error(f"{type(exc).__name__}: {exc}")
    await chats
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(c.ws.close() for c in clients), return_exceptions=True)


def run(sessions: int = 8, seconds: float = 60.0, model: str = "vita-mini", chunk_ms: int = 40,
        forcing: Callable[[], Any] = make_forcing, *, device: Any = "cpu", dtype: str | None = None) -> BenchResult:
    """The bench; `forcing` (a per-connection factory) is replaceable, e.g. by a leaky one to test the check."""
    from vita.server import realtime_stats

    app, synth = build_app(model, sessions, forcing, device=device, dtype=dtype)
    silence = np.zeros(SAMPLE_RATE // 2, np.float32)
    questions = [(np.concatenate([silence, 0.5 * synth(q), 2 * silence]) * 32767).astype(np.int16)
                 for q in QUESTIONS]
    res = BenchResult(sessions, seconds, model, load=[os.getloadavg()[0]])
    ctx = multiprocessing.get_context("spawn")  # the clients get a process (and a GIL) of their own
    mine, theirs = ctx.Pipe()
    with Server(app) as server:
        chunk = SAMPLE_RATE * chunk_ms // 1000
        clients = ctx.Process(target=_clients, args=(server.port, res, questions, chunk, theirs),
                              name="bench-clients", daemon=True)
        clients.start()
        try:
            if not mine.poll(seconds + 600):
                raise RuntimeError("the client process did not report")
            res = mine.recv()
        finally:
            clients.join(timeout=10)
            if clients.is_alive():
                clients.terminate()
        hub, end = app.state.vita_realtime, time.monotonic() + 10
        while hub.active and time.monotonic() < end:  # every session is gone, the aborted one too
            time.sleep(0.05)
        res.disconnect["all_closed"] = hub.active == 0
        res.stages = realtime_stats.breakdown(hub)
        res.disconnect["ok"] = bool(res.disconnect.get("ok")) and hub.active == 0
    res.load.append(os.getloadavg()[0])
    return res


def _clients(port: int, res: BenchResult, questions: list[np.ndarray], chunk: int, conn: Any) -> None:
    """The client process: every session on one asyncio loop; the result goes back through `conn`."""
    try:
        asyncio.run(drive(port, res, questions, chunk))
    except Exception as exc:  # noqa: BLE001 - reported as an error of the run
        res.errors.append(f"client process: {type(exc).__name__}: {exc}")
    conn.send(res)


def report(res: BenchResult) -> str:
    s = res.summary()
    lat, stop, typed, audio = s["latency_ms"], s["from_stopped_ms"], s["typed_ms"], s["audio_ms"]
    lines = [
        f"vita bench serve: {res.sessions} realtime sessions x {res.seconds:g} s on {res.model} (audio out, Piper); "
        f"load average {res.load[0]:.1f} -> {res.load[-1]:.1f} on {os.cpu_count()} CPUs",
        f"  answered: {res.spoken} spoken questions, {res.typed} typed items",
        f"  latency, end of user speech -> first response delta: p50 {lat['p50']} ms, p90 {lat['p90']} ms, "
        f"max {None if lat['max'] is None else round(lat['max'], 1)} ms (n={lat['n']}; includes the VAD's "
        "end-of-speech silence)",
        f"  latency, end of user speech -> first audio delta (the first sound): p50 {audio['p50']} ms, "
        f"p90 {audio['p90']} ms (n={audio['n']})",
        f"  playback stalls (a reply's audio ran dry for > {1000 * STALL_S:.0f} ms): {s['stalls']['stalled']} of "
        f"{s['stalls']['replies']} replies, stall p90 {s['stalls']['p90_ms']} ms, max "
        f"{None if s['stalls']['max_ms'] is None else round(s['stalls']['max_ms'], 1)} ms, first running dry after "
        f"p50 {s['stalls']['dry_after_s_p50']} s of the reply's audio",
        f"  latency, speech_stopped -> first delta: p50 {stop['p50']} ms, p90 {stop['p90']} ms",
        f"  latency, typed (response.create -> first delta): p50 {typed['p50']} ms, p90 {typed['p90']} ms",
        f"  chat completions interleaved: {sum(res.chat_status.values())} requests, statuses {res.chat_status}, "
        f"p50 {s['chat_ms']['p50']} ms, p90 {s['chat_ms']['p90']} ms",
        f"  errors: {len(res.errors)}" + "".join(f"\n    {e}" for e in res.errors[:10]),
        f"  leakage: {'none' if not res.leaks else len(res.leaks)} ({res.spoken + res.typed} answers checked)"
        + "".join(f"\n    {e}" for e in res.leaks[:10]),
        f"  disconnect mid-answer: {'ok' if res.disconnect.get('ok') else 'FAILED'} {res.disconnect}",
    ]
    if res.stages:
        lines.append(realtime_stats.report(res.stages))
    return "\n".join(lines)
