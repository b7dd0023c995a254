"""`GET /v1/realtime`: OpenAI Realtime-style WebSocket over a duplex `Session` per connection, one shared model.

Client events (JSON text frames; wire details and session fields in `realtime_events.py`):
    session.update              instructions, voice, modalities, input_audio_format, turn_detection (server_vad)
    input_audio_buffer.append   {"audio": base64 pcm16 mono}: 24 kHz (OpenAI's; resampled to 16 kHz here), or 16 kHz
                                when session.update set input_audio_format {"type": "audio/pcm", "rate": 16000}
    input_audio_buffer.commit   end the utterance now (error when no speech is open)
    input_audio_buffer.clear    drop the open (uncommitted) utterance
    conversation.item.create    {"item": {"type": "message", "role": "user", "content": [{"type": "input_text",
                                "text": ...}, {"type": "input_image", "image_url": "data:image/png;base64,..."}]}}
    response.create             answer the items created since the last response (error when there are none)
    response.cancel             cancel the active response (or the undecided query)
Server events:
    session.created, session.updated, input_audio_buffer.speech_started / speech_stopped / committed / cleared,
    response.created, response.text.delta (modalities ["text"]), response.audio.delta (base64 pcm16, 24 kHz) and
    response.audio_transcript.delta (modalities ["audio", "text"]), response.done (status completed | cancelled,
    status_details.reason turn_detected | client_cancelled), error.
`response.created` / `response.done` carry the vendor field `vita_state` (the model's state token: "<1>", "<3>").
Server VAD is always on: speech is answered when the VAD closes it, and the model decides (state `<2>`: not a
query) whether to answer at all: a `<2>` utterance gets no response events. Speech during a reply pauses its
audio; if the model answers it the old reply ends `cancelled` (barge-in) and a new response starts.

Audio out is paced like a speaker (`Playout`, with a `lead_s` head start for the client's jitter buffer), so the
server knows what was heard when the user barges in.

Model work: each connection's driver task feeds its session on the event loop (VAD and echo gate, no model) and
submits `session.tick()` batches (<= `tick_budget_s`) to the server's single model worker, so chat requests and
realtime sessions never run the model concurrently. Each session owns two `RoleCache`s of its own (never the
LLM's default cache, which chat requests reuse).

Auth (with an API key): `Authorization: Bearer <key>`, or, for browsers (which cannot set headers), the query
parameter `?api_key=<key>` or the subprotocol `openai-insecure-api-key.<key>` (offered next to `realtime`, which
the server then selects). Refused: close 1008 before accept. Limits: `--max-realtime-sessions` (an `error` event
code `session_limit`, then close 1013), `--max-realtime-frame-bytes` (error event, connection kept),
`--max-realtime-buffer-seconds` of received-but-unprocessed audio (error event `buffer_full`, the append dropped).
A client that disconnects mid-answer drops its session; the worker finishes at most one tick batch for it.

Session hooks: typed queries with images go to `Session.ask`, `response.cancel` to `Session.cancel`, and
`input_audio_buffer.clear` to `VAD.discard` (the open segment is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from starlette.websockets import WebSocket

from vita.duplex import events as ev
from vita.duplex.roles import Engine as RoleEngine
from vita.duplex.roles import Forcing, RoleCache
from vita.duplex.session import Session, SessionConfig
from vita.processor import Part
from vita.server.errors import APIError
from vita.server.realtime_events import (
    OUTPUT_RATE,
    RealtimeError,
    Resampler,
    Settings,
    decode_pcm16,
    encode_pcm16,
    error_event,
    field_of,
    new_id,
    parse_frame,
    parse_item,
    response_body,
)
from vita.speech.tts import StreamingTTS

log = logging.getLogger("vita.server")
RATE = 16000
KEY_PROTOCOL = "openai-insecure-api-key."


@dataclass
class RealtimeConfig:
    session: Callable[[], SessionConfig] = field(default=lambda: SessionConfig(lead_s=0.2))
    clock: Callable[[], ev.Clock] = ev.MonotonicClock
    forcing: Callable[[], Forcing | None] = field(default=lambda: None)  # tests: scripted replies per connection
    max_new_tokens: int = 512
    max_seq_len: int = 2048
    tick_budget_s: float = 0.02  # model work per worker submission (then audio is fed again)


class _Roles(RoleEngine):
    """Role caches of their own: the LLM's default cache belongs to chat requests (they would overwrite it)."""

    def new_cache(self, *, adopt: bool = False) -> RoleCache:
        return super().new_cache(adopt=False)


class _Voice:
    """The shared synthesizer at 24 kHz, silent (no samples) while the session's modalities are text only."""

    out_rate = OUTPUT_RATE

    def __init__(self, synth: Callable[[str], np.ndarray] | None) -> None:
        self.synth, self.enabled = synth, synth is not None

    def __call__(self, text: str) -> np.ndarray:
        return self.synth(text) if self.enabled and self.synth is not None else np.zeros(0, np.float32)


@dataclass
class _Response:
    id: str
    item_id: str
    state: str | None
    audio: bool
    text: str = ""


class Hub:
    """The realtime endpoint of one app: auth, admission, and the live connections over the shared state."""

    def __init__(self, state: Any, config: RealtimeConfig) -> None:
        self.state, self.config, self.active = state, config, 0
        self.connections: set[Connection] = set()  # open ones (tests and metrics look at them)

    def authorized(self, ws: WebSocket) -> bool:
        from vita.server.app import authorized

        key = self.state.api_key
        if key is None or authorized(ws.headers.get("authorization"), key):
            return True
        candidates = [ws.query_params.get("api_key") or ""]
        candidates += [p[len(KEY_PROTOCOL):] for p in ws.scope.get("subprotocols", []) if p.startswith(KEY_PROTOCOL)]
        return any(hmac.compare_digest(c.encode(), key.encode()) for c in candidates if c)

    async def serve(self, ws: WebSocket) -> None:
        if not self.authorized(ws):
            await ws.close(code=1008, reason="invalid or missing API key")
            return
        model = ws.query_params.get("model")
        if model and model != self.state.model_id:
            await ws.close(code=1008, reason=f"model {model[:64]!r} is not served here ({self.state.model_id!r})")
            return
        await ws.accept(subprotocol="realtime" if "realtime" in ws.scope.get("subprotocols", []) else None)
        cap = self.state.limits.max_realtime_sessions
        if self.active >= cap:
            await ws.send_json(error_event(RealtimeError(
                f"{self.active} realtime sessions are open (--max-realtime-sessions {cap}); retry later",
                code="session_limit", type="rate_limit_error")))
            await ws.close(code=1013)
            return
        self.active += 1
        conn = Connection(self, ws)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            self.active -= 1


class Connection:
    def __init__(self, hub: Hub, ws: WebSocket) -> None:
        self.hub, self.ws, self.state, self.config = hub, ws, hub.state, hub.config
        self.limits = self.state.limits
        self.settings = Settings(self.state.model_id)
        self.outbox: asyncio.Queue[dict | None] = asyncio.Queue()
        self.inbox: deque[tuple] = deque()
        self.wake = asyncio.Event()
        self.buffered = 0  # 16 kHz samples received, not yet fed
        self.fed = 0  # 16 kHz samples fed to the session
        self.pending: list[Part] = []  # conversation items waiting for response.create
        self.responses: dict[int, _Response] = {}  # session reply id -> wire response
        self.states: dict[int, str | None] = {}  # utterance id -> state token
        self.client_cancelled: set[int] = set()
        self.item_id: str | None = None  # the input item being spoken
        self.last_item: str | None = None
        self.resampler = Resampler(self.settings.input_rate)
        self.session: Session | None = None
        self.voice: _Voice | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    async def run(self) -> None:
        sender = asyncio.create_task(self._send_loop())
        driver: asyncio.Task | None = None
        try:
            self.session = await self.state.worker.call(self._build)
            if self.voice is None or self.voice.synth is None:
                self.settings.modalities = ("text",)
            vad = self.session.vad.config  # the server's VAD settings until a session.update changes them
            self.settings.threshold, self.settings.silence_duration_ms = vad.start_threshold, int(vad.min_silence_ms)
            self.settings.prefix_padding_ms = int(vad.pre_roll_ms)
            self.send({"type": "session.created", "event_id": new_id("event"), "session": self.settings.wire()})
            driver = asyncio.create_task(self._drive())
            await self._receive()
        finally:
            for task in (driver, sender):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            self.session = None  # the in-flight tick batch (if any) holds the last reference

    def _build(self) -> Session:
        """On the model thread: role caches, VAD, echo front end, the voice."""
        try:
            synth = self.state.speech.streaming().synth
        except APIError:
            synth = None  # the speech extra is missing: text only
        self.voice = _Voice(synth)
        engine = _Roles(self.state.engine.vita, max_seq_len=self.config.max_seq_len,
                        max_new_tokens=self.config.max_new_tokens, forcing=self.config.forcing())
        return Session(engine, StreamingTTS(self.voice, sample_rate=OUTPUT_RATE), clock=self.config.clock(),
                       config=self.config.session())

    def send(self, event: dict[str, Any]) -> None:
        self.outbox.put_nowait(event)

    async def _send_loop(self) -> None:
        while (event := await self.outbox.get()) is not None:
            try:
                await self.ws.send_json(event)
            except Exception:  # noqa: BLE001 - the client is gone; the receive loop sees the disconnect
                return

    # ---- client events -----------------------------------------------------------------------------------------
    async def _receive(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                self._handle(parse_frame(message, self.limits.max_realtime_frame_bytes))
            except RealtimeError as err:
                self.send(error_event(err))
            except Exception:  # noqa: BLE001 - a bug on one event must not end the connection
                log.exception("realtime event failed")
                self.send(error_event(RealtimeError("internal error (the server log has the details)",
                                                    code="server_error", type="server_error")))

    def _handle(self, obj: dict[str, Any]) -> None:
        kind, eid = obj["type"], obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
        try:
            if kind == "session.update":
                self._update(obj)
            elif kind == "input_audio_buffer.append":
                self._append(field_of(obj, "audio", str, param="audio", required=True))
            elif kind == "conversation.item.create":
                self.pending += parse_item(field_of(obj, "item", dict, param="item", required=True), self.limits)
            elif kind == "response.create":
                if not self.pending:
                    raise RealtimeError("nothing to respond to: create a user item first (spoken input is "
                                        "answered by the server VAD)", code="no_pending_input")
                self._post(("respond", self.pending))
                self.pending = []
            else:  # input_audio_buffer.commit / .clear, response.cancel: decided by the driver
                self._post((kind, eid))
        except RealtimeError as err:
            err.event_id = err.event_id or eid
            raise

    def _post(self, action: tuple) -> None:
        self.inbox.append(action)
        self.wake.set()

    def _update(self, obj: dict[str, Any]) -> None:
        rate = self.settings.input_rate
        self.settings.update(obj)
        if "audio" in self.settings.modalities and (self.voice is None or self.voice.synth is None):
            self.settings.modalities = ("text",)
            raise RealtimeError("audio output unavailable (install the speech extra)", code="audio_unavailable",
                                param="session.modalities")
        if self.settings.input_rate != rate:
            self.resampler = Resampler(self.settings.input_rate)
        self._post(("settings",))
        self.send({"type": "session.updated", "event_id": new_id("event"), "session": self.settings.wire()})

    def _append(self, data: str) -> None:
        pcm = self.resampler(decode_pcm16(data))
        cap = self.limits.max_realtime_buffer_seconds
        if (self.buffered + len(pcm)) / RATE > cap:
            raise RealtimeError(f"{self.buffered / RATE:.1f} s of audio are waiting to be processed "
                                f"(--max-realtime-buffer-seconds {cap}): this append was dropped; send audio in "
                                "real time", code="buffer_full", param="audio")
        self.buffered += len(pcm)
        self._post(("audio", pcm))

    # ---- the driver: the only code that touches the session ----------------------------------------------------
    async def _drive(self) -> None:
        s = self.session
        assert s is not None
        failures = 0
        while True:
            out: list = []
            try:
                while self.inbox:
                    self._apply(self.inbox.popleft(), out)
                if s.has_work:
                    out += await self.state.worker.call(self._work, s)
                elif s.busy:
                    out += s.tick()  # no unit of work: only releases playback (no model)
                failures = 0
            except Exception:  # noqa: BLE001 - one broken reply must not end the connection
                log.exception("realtime tick failed")
                failures += 1
                self.send(error_event(RealtimeError("internal error while answering (the server log has the "
                                                    "details)", code="server_error", type="server_error")))
                s.listening = None
                out += s.cancel()[0]  # the speaking reply, if any
                if failures >= 3:  # not one broken reply: the worker itself (server shutting down)
                    self._emit(out)
                    await self.ws.close(code=1011)
                    return
            self._emit(out)
            if not s.has_work and not self.inbox:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 0.02 if s.busy else None)

    def _work(self, s: Session) -> list:
        """On the model thread: ticks until no work is left or the budget is spent."""
        out, end = [], time.monotonic() + self.config.tick_budget_s
        while True:
            out += s.tick()
            if not s.has_work or time.monotonic() > end:
                return out

    def _apply(self, action: tuple, out: list) -> None:
        s, kind = self.session, action[0]
        assert s is not None
        if kind == "audio":
            self.buffered -= len(action[1])
            self.fed += len(action[1])
            out += s.feed(ev.AudioIn(action[1]))
        elif kind == "settings":
            st = self.settings
            s.vad.config = replace(s.vad.config, start_threshold=st.threshold,
                                   end_threshold=max(st.threshold - 0.15, 0.01),
                                   min_silence_ms=float(st.silence_duration_ms),
                                   pre_roll_ms=float(st.prefix_padding_ms))
            s.engine.system = st.instructions
            if self.voice is not None:
                self.voice.enabled = "audio" in st.modalities and self.voice.synth is not None
        elif kind == "respond":
            out += s.ask(list(action[1]))
        elif kind == "input_audio_buffer.commit":
            if not s.vad.in_speech:
                self.send(error_event(RealtimeError("no speech is open in the input audio buffer",
                                                    code="input_audio_buffer_commit_empty", event_id=action[1])))
            out += s.end_of_input()
        elif kind == "input_audio_buffer.clear":
            s.vad.discard()
            self.item_id = None
            self.send({"type": "input_audio_buffer.cleared", "event_id": new_id("event")})
        elif kind == "response.cancel":
            if s.reply is not None or s.listening is not None:
                events, reply_id = s.cancel()
                if reply_id is not None:
                    self.client_cancelled.add(reply_id)
                out += events
            else:
                self.send(error_event(RealtimeError("there is no active response to cancel",
                                                    code="response_cancel_not_active", event_id=action[1])))

    # ---- session events -> server events -----------------------------------------------------------------------
    def _emit(self, out: list) -> None:
        for e in out:
            base = {"event_id": new_id("event")}
            if isinstance(e, ev.UserSpeechStarted):
                self.item_id = new_id("item")
                self.send({"type": "input_audio_buffer.speech_started", **base, "item_id": self.item_id,
                           "audio_start_ms": self.fed * 1000 // RATE})
            elif isinstance(e, ev.UserSpeechEnded):
                item, self.item_id = self.item_id or new_id("item"), None
                self.send({"type": "input_audio_buffer.speech_stopped", **base, "item_id": item,
                           "audio_end_ms": self.fed * 1000 // RATE})
                self.send({"type": "input_audio_buffer.committed", "event_id": new_id("event"), "item_id": item,
                           "previous_item_id": self.last_item})
                self.last_item = item
            elif isinstance(e, ev.StateDecided):
                self.states[e.utterance_id] = e.state
            elif isinstance(e, ev.ReplyStarted):
                r = _Response(new_id("resp"), new_id("item"), self.states.pop(e.utterance_id, None),
                              "audio" in self.settings.modalities)
                self.responses[e.reply_id] = r
                self.send({"type": "response.created", **base,
                           "response": response_body(r.id, r.item_id, "in_progress", state=r.state)})
            elif isinstance(e, ev.TextDelta) and (r := self.responses.get(e.reply_id)):
                r.text += e.text
                kind = "response.audio_transcript.delta" if r.audio else "response.text.delta"
                self.send({"type": kind, **base, "response_id": r.id, "item_id": r.item_id, "output_index": 0,
                           "content_index": 0, "delta": e.text})
            elif isinstance(e, ev.AudioOut) and (r := self.responses.get(e.reply_id)) and r.audio and len(e.pcm):
                self.send({"type": "response.audio.delta", **base, "response_id": r.id, "item_id": r.item_id,
                           "output_index": 0, "content_index": 0, "delta": encode_pcm16(e.pcm)})
            elif isinstance(e, ev.TERMINAL) and (r := self.responses.pop(e.reply_id, None)):
                done = isinstance(e, ev.ReplyFinished)
                reason = None if done else ("client_cancelled" if e.reply_id in self.client_cancelled
                                            else "turn_detected")
                self.client_cancelled.discard(e.reply_id)
                self.send({"type": "response.done", **base, "response": response_body(
                    r.id, r.item_id, "completed" if done else "cancelled", state=r.state,
                    text=e.text if done else e.heard, audio=r.audio, reason=reason)})


def mount(app: Any, state: Any, config: RealtimeConfig | None = None) -> Hub:
    """Add `GET /v1/realtime` to `app` over `state` (the app's `ServerState`)."""
    hub = Hub(state, config or RealtimeConfig())
    app.state.vita_realtime = hub

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        await hub.serve(ws)

    return hub
