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

Turn-taking with server VAD is the duplex session's (`vita.duplex.session`): at the user's first short silence the
session already encodes the utterance, prefills it, reads the state token and decodes the first phrase, emitting
nothing; the VAD's end of speech (or 250 ms of silence once the state says "answer") commits it, and the
speech_stopped, response.created and first deltas go out at once; speech again discards it without a trace (no
event, nothing in the history, the role cache keeps only rows a later prompt reuses exactly). While a turn is only
speculated on, nothing is active for the client: `response.cancel` is refused as usual, a prompt that does not fit
is reported at the commit, `input_audio_buffer.clear` drops the speculation with the audio.

Work off the event loop, bounded per session: each connection's driver task feeds its session's audio (echo gate,
VAD) on the hub's audio threads and submits `session.tick()` batches (<= `tick_budget_s`) to the server's single
model worker, so chat requests and realtime sessions never run the model concurrently. A batch deciding or
speculating on a user's turn (`Session.next_unit == "listen"`) is submitted URGENT (ahead of the other sessions'
decode steps and of chat requests; `turn_budget_s`), everything else NORMAL. Each session owns two `RoleCache`s
of its own (never the LLM's default cache, which chat requests reuse). The model side of a connection (role
caches, prompts bounded by positions, the voice) is in `realtime_roles.py`; session events -> server events in
`realtime_emit.py`; a connection's finished turns leave their stage times in `Hub.stages` (`realtime_stats.py`).

Auth (with an API key): `Authorization: Bearer <key>`, or, for browsers (which cannot set headers), the query
parameter `?api_key=<key>` or the subprotocol `openai-insecure-api-key.<key>` (offered next to `realtime`, which
the server then selects). Refused: close 1008 before accept. Limits: `--max-realtime-sessions` and
`--max-realtime-sessions-per-client` (an `error` event code `session_limit`, then close 1013),
`--max-realtime-frame-bytes` and `--max-json-values` (error event, connection kept; frames over 64 KB are parsed
on a thread), `--max-realtime-buffer-seconds` of received-but-unprocessed audio (error event `buffer_full`, the
append dropped, judged from its base64 length before decoding), `--max-realtime-pending-items` and `--max-images`
for items waiting for response.create (images decoded on a thread), `--max-realtime-instructions-chars`,
`--max-realtime-outbox-events` (a client that does not read is dropped: error `slow_consumer`, close 1008),
`--max-realtime-idle-seconds` (no client frame and nothing to do: error `idle_timeout`, close). One response at a
time: `response.create` while one is active is an error `conversation_already_has_active_response`. The history
is kept to `SessionConfig.history_turns` turns and every prompt is trimmed by positions (`_BoundedJob`) so it fits
the role cache; an utterance that cannot fit even alone is an error `context_length_exceeded`.
A client that disconnects mid-answer drops its session; the worker finishes at most one tick batch for it.

Session hooks: typed queries with images go to `Session.ask`, `response.cancel` to `Session.cancel`, and
`input_audio_buffer.clear` to `VAD.discard` (the open segment is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.websockets import WebSocket

from vita.duplex import events as ev
from vita.duplex.roles import Forcing
from vita.duplex.session import Session, SessionConfig
from vita.errors import PromptError
from vita.processor import Image, Part
from vita.server.cli import is_loopback
from vita.server.errors import APIError
from vita.server.realtime_emit import Emitter
from vita.server.realtime_events import (
    OUTPUT_RATE,
    RATE,
    RealtimeError,
    Resampler,
    Settings,
    decode_pcm16,
    error_event,
    field_of,
    new_id,
    parse_frame,
    parse_item,
)
from vita.server.realtime_roles import BoundedRoles, Voice
from vita.server.worker import NORMAL, URGENT
from vita.speech.tts import SpeechWorker
from vita.speech.vad import StreamingVAD, VADConfig

log = logging.getLogger("vita.server")
KEY_PROTOCOL = "openai-insecure-api-key."
MAX_STAGE_RECORDS = 4096  # finished turns' stage times kept by a hub (`Hub.stages`)


def session_config(**vad: Any) -> SessionConfig:
    """The server's duplex session settings. The VAD keeps as much audio after the speech as the pause that starts
    a speculation has heard (96 ms), so a committed speculation's utterance is, sample for sample, the one the end of
    speech gives (with the VAD's 100 ms it would lack the last 4 ms)."""
    return SessionConfig(lead_s=0.2, vad=VADConfig(**{"end_pad_ms": VADConfig().pause_ms, **vad}))


@dataclass
class RealtimeConfig:
    session: Callable[[], SessionConfig] = session_config
    clock: Callable[[], ev.Clock] = ev.MonotonicClock
    forcing: Callable[[], Forcing | None] = field(default=lambda: None)  # tests: scripted replies per connection
    vad: Callable[[], StreamingVAD | None] = field(default=lambda: None)  # tests: a VAD of their own (None: Silero)
    max_new_tokens: int = 512
    max_seq_len: int = 2048
    tick_budget_s: float = 0.02  # model work per worker submission (then audio is fed again)
    turn_budget_s: float = 0.05  # the same for an URGENT submission (a turn being decided or speculated on)
    audio_threads: int = 2  # the hub's threads feeding sessions' audio (echo gate, VAD) off the event loop
    # torch threads of the model worker while realtime sessions are open: one core left to their audio work
    # (`ModelWorker.threads`; None: unchanged). `vita serve --threads N` sets N.
    model_threads: int | None = field(default_factory=lambda: max(1, (os.cpu_count() or 1) - 1))


class Hub:
    """The realtime endpoint of one app: auth, admission, and the live connections over the shared state."""

    def __init__(self, state: Any, config: RealtimeConfig) -> None:
        self.state, self.config, self.active = state, config, 0
        self.connections: set[Connection] = set()  # open ones (tests and metrics look at them)
        self.per_client: Counter[str] = Counter()  # open sessions per client address
        self.stages: deque[dict[str, float]] = deque(maxlen=MAX_STAGE_RECORDS)  # closed sessions' turns (stats)
        self._audio: ThreadPoolExecutor | None = None

    @property
    def audio(self) -> ThreadPoolExecutor:
        """Threads that feed sessions' audio (echo gate, VAD): never the event loop, never the model thread."""
        if self._audio is None:
            self._audio = ThreadPoolExecutor(self.config.audio_threads, thread_name_prefix="vita-audio")
        return self._audio

    def authorized(self, ws: WebSocket) -> bool:
        from vita.server.app import authorized

        key = self.state.api_key
        if key is None or authorized(ws.headers.get("authorization"), key):
            return True
        candidates = [ws.query_params.get("api_key") or ""]
        candidates += [p[len(KEY_PROTOCOL):] for p in ws.scope.get("subprotocols", []) if p.startswith(KEY_PROTOCOL)]
        return any(hmac.compare_digest(c.encode(), key.encode()) for c in candidates if c)

    async def serve(self, ws: WebSocket) -> None:
        refusal = self.state.web_refusal(ws.headers)
        if refusal is not None:  # a web page on another origin (or DNS rebinding): refused before accept
            log.info("realtime connection refused: %s", refusal)
            await ws.close(code=1008, reason=refusal[:120])
            return
        if not self.authorized(ws):
            await ws.close(code=1008, reason="invalid or missing API key")
            return
        model = ws.query_params.get("model")
        if model and model != self.state.model_id:
            await ws.close(code=1008, reason=f"model {model[:64]!r} is not served here ({self.state.model_id!r})")
            return
        await ws.accept(subprotocol="realtime" if "realtime" in ws.scope.get("subprotocols", []) else None)
        limits, client = self.state.limits, ws.client.host if ws.client else "?"
        cap, per_client = limits.max_realtime_sessions, limits.max_realtime_sessions_per_client
        refusal = None
        if self.active >= cap:
            refusal = f"{self.active} realtime sessions are open (--max-realtime-sessions {cap}); retry later"
        elif self.per_client[client] >= per_client and not is_loopback(client):  # loopback: one address for all
            refusal = (f"this client has {self.per_client[client]} realtime sessions open "
                       f"(--max-realtime-sessions-per-client {per_client}); retry later")
        if refusal is not None:
            await ws.send_json(error_event(RealtimeError(refusal, code="session_limit", type="rate_limit_error")))
            await ws.close(code=1013)
            return
        self.active += 1
        self.per_client[client] += 1
        self.state.worker.threads = self.config.model_threads
        conn = Connection(self, ws)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            self.active -= 1
            self.per_client[client] -= 1
            if not self.active:
                self.state.worker.threads = None
            if not self.per_client[client]:
                del self.per_client[client]


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
        self.pending_items = 0
        self.closing = asyncio.Event()  # set with `close_reason` to end the connection (slow reader)
        self.close_reason: RealtimeError | None = None
        self.out = Emitter(self.settings, self.send)  # session events -> server events, response bookkeeping
        self.resampler = Resampler(self.settings.input_rate)
        self.session: Session | None = None
        self.voice: Voice | None = None
        self.speech: SpeechWorker | None = None
        self.closed = False  # the connection is gone: a tick batch still running stops at its next tick
        self._utterances: dict[int, int] = {}  # reply id -> utterance id (stage records at the reply's end)
        self._spoken: deque[int] = deque(maxlen=64)  # ids of the latest spoken utterances (the rest were typed)

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
            receiver = asyncio.create_task(self._receive())
            closer = asyncio.create_task(self.closing.wait())
            try:
                await asyncio.wait({receiver, closer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (receiver, closer):
                    task.cancel()
            if self.close_reason is not None:
                await self._close(self.close_reason, code=1000 if self.close_reason.code == "idle_timeout" else 1008)
        finally:
            for task in (driver, sender):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            self.closed = True
            self.session = None  # the in-flight tick batch (if any) holds the last reference
            if self.speech is not None:
                self.speech.close()

    def _build(self) -> Session:
        """On the model thread: role caches, VAD, echo front end, the voice."""
        try:
            synth = self.state.speech.streaming().synth
        except APIError:
            synth = None  # the speech extra is missing: text only
        self.voice = Voice(synth)
        engine = BoundedRoles(self.state.engine.vita, max_seq_len=self.config.max_seq_len,
                              max_new_tokens=self.config.max_new_tokens, forcing=self.config.forcing())
        # phrases are rendered on the worker's own thread, never on the model thread (closed with the connection)
        self.speech = SpeechWorker(self.voice, sample_rate=OUTPUT_RATE)
        return Session(engine, self.speech, clock=self.config.clock(), config=self.config.session(),
                       vad=self.config.vad())

    def send(self, event: dict[str, Any]) -> None:
        if self.closing.is_set():
            return
        cap = self.limits.max_realtime_outbox_events
        if self.outbox.qsize() >= cap:  # the client does not read: drop it rather than buffer without bound
            self.close_reason = RealtimeError(
                f"the client is not reading: {cap} server events are waiting (--max-realtime-outbox-events {cap})",
                code="slow_consumer")
            self.closing.set()
            return
        self.outbox.put_nowait(event)

    async def _close(self, err: RealtimeError, code: int = 1008) -> None:
        """Best effort: the error event, then a close frame (each given a second: the socket may be stuck)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.send_json(error_event(err)), 1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code, reason=err.code), 1.0)

    async def _send_loop(self) -> None:
        while (event := await self.outbox.get()) is not None:
            try:
                await self.ws.send_json(event)
            except Exception:  # noqa: BLE001 - the client is gone; the receive loop sees the disconnect
                return

    # ---- client events -----------------------------------------------------------------------------------------
    async def _receive(self) -> None:
        idle = self.limits.max_realtime_idle_seconds
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), idle)
            except TimeoutError:
                s = self.session
                if (s is not None and s.busy) or self.inbox or not self.outbox.empty():
                    continue
                self.close_reason = RealtimeError(f"no client event for {idle:g} s (--max-realtime-idle-seconds "
                                                  f"{idle:g}): closing the session", code="idle_timeout")
                self.closing.set()
                return
            if message["type"] == "websocket.disconnect":
                return
            try:
                text = message.get("text")
                if text is not None and len(text) > 1 << 16:  # a large frame is parsed off the event loop
                    obj = await asyncio.to_thread(self._parse, message)
                else:
                    obj = self._parse(message)
                if obj["type"] == "conversation.item.create":
                    await self._create_item(obj)
                else:
                    self._handle(obj)
            except RealtimeError as err:
                self.send(error_event(err))
            except Exception:  # noqa: BLE001 - a bug on one event must not end the connection
                log.exception("realtime event failed")
                self.send(error_event(RealtimeError("internal error (the server log has the details)",
                                                    code="server_error", type="server_error")))

    def _parse(self, message: dict[str, Any]) -> dict[str, Any]:
        from vita.server.app import count_json_values

        text = message.get("text")
        if text is not None:
            try:
                count_json_values(text, self.limits.max_json_values, "the frame")
            except APIError as exc:
                raise RealtimeError(exc.message, code="limit_exceeded") from None
        return parse_frame(message, self.limits.max_realtime_frame_bytes)

    async def _create_item(self, obj: dict[str, Any]) -> None:
        """conversation.item.create: bounded pending items and images; images decoded on a thread."""
        eid = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
        try:
            cap = self.limits.max_realtime_pending_items
            if self.pending_items >= cap:
                raise RealtimeError(f"{self.pending_items} items are waiting for response.create "
                                    f"(--max-realtime-pending-items {cap})", code="limit_exceeded", param="item")
            item = field_of(obj, "item", dict, param="item", required=True)
            content = item.get("content")
            images = sum(isinstance(c, dict) and c.get("type") == "input_image" for c in content) \
                if isinstance(content, list) else 0
            waiting = sum(isinstance(p, Image) for p in self.pending)
            if waiting + images > self.limits.max_images:
                raise RealtimeError(f"{waiting + images} images would wait for response.create (--max-images "
                                    f"{self.limits.max_images})", code="limit_exceeded", param="item.content")
            parts = await asyncio.to_thread(parse_item, item, self.limits)
        except RealtimeError as err:
            err.event_id = err.event_id or eid
            raise
        self.pending += parts
        self.pending_items += 1

    def _handle(self, obj: dict[str, Any]) -> None:
        kind, eid = obj["type"], obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
        try:
            if kind == "session.update":
                self._update(obj)
            elif kind == "input_audio_buffer.append":
                self._append(field_of(obj, "audio", str, param="audio", required=True))
            elif kind == "response.create":
                if self.out.active:
                    raise RealtimeError("a response is in progress: wait for its response.done (or send "
                                        "response.cancel) before response.create",
                                        code="conversation_already_has_active_response")
                if not self.pending:
                    raise RealtimeError("nothing to respond to: create a user item first (spoken input is "
                                        "answered by the server VAD)", code="no_pending_input")
                self._post(("respond", self.pending))
                self.pending, self.pending_items, self.out.awaiting = [], 0, True
            else:  # input_audio_buffer.commit / .clear, response.cancel: decided by the driver
                self._post((kind, eid))
        except RealtimeError as err:
            err.event_id = err.event_id or eid
            raise

    def _post(self, action: tuple) -> None:
        self.inbox.append(action)
        self.wake.set()

    def _update(self, obj: dict[str, Any]) -> None:
        session, cap = obj.get("session"), self.limits.max_realtime_instructions_chars
        text = session.get("instructions") if isinstance(session, dict) else None
        if isinstance(text, str) and len(text) > cap:
            raise RealtimeError(f"session.instructions has {len(text)} characters > "
                                f"--max-realtime-instructions-chars {cap}", code="limit_exceeded",
                                param="session.instructions")
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
        cap = self.limits.max_realtime_buffer_seconds
        claimed = len(data) * 3 // 8 / self.settings.input_rate  # seconds, from the base64 length alone
        if (self.buffered / RATE) + claimed > cap + 0.1:
            raise RealtimeError(f"{self.buffered / RATE:.1f} s of audio are waiting and this append holds "
                                f"{claimed:.1f} s (--max-realtime-buffer-seconds {cap}): this append was dropped; "
                                "send audio in real time", code="buffer_full", param="audio")
        pcm = self.resampler(decode_pcm16(data))
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
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            out: list = []
            try:
                while self.inbox:
                    action = self.inbox.popleft()
                    if action[0] != "audio":
                        self._apply(action, out)
                        continue
                    chunks = [action[1]]  # the audio that came meanwhile: fed on an audio thread, chunk by chunk
                    while self.inbox and self.inbox[0][0] == "audio":
                        chunks.append(self.inbox.popleft()[1])
                    self.buffered -= sum(map(len, chunks))
                    out += await loop.run_in_executor(self.hub.audio, self._feed, s, chunks)
                self._emit(out)  # now: a commit's response and first deltas never wait for the model worker
                out = []
                if s.has_work:
                    urgent = s.next_unit == "listen"
                    out += await self.state.worker.call(self._work, s, urgent,
                                                        priority=URGENT if urgent else NORMAL)
                elif s.busy:
                    out += s.tick()  # no unit of work: only releases playback (no model)
                failures = 0
                if len(s.history) > s.config.history_turns:  # the session reads only these: drop the rest
                    del s.history[: len(s.history) - s.config.history_turns]
            except PromptError as exc:  # the utterance cannot fit: the client's to fix, not an internal error
                speculative = s.speculating
                s.drop_utterance()
                if not speculative:  # a speculation is redone at the commit, which reports it (once)
                    self.send(error_event(RealtimeError(str(exc), code="context_length_exceeded")))
                    self.out.awaiting = False
            except Exception:  # noqa: BLE001 - one broken reply must not end the connection
                log.exception("realtime tick failed")
                failures += 1
                self.send(error_event(RealtimeError("internal error while answering (the server log has the "
                                                    "details)", code="server_error", type="server_error")))
                s.drop_utterance()
                self.out.awaiting = False
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

    def _work(self, s: Session, urgent: bool) -> list:
        """On the model thread: ticks until no work is left or the budget is spent (an URGENT batch also ends when
        the turn's work is done: the rest waits its turn behind the other sessions)."""
        budget = self.config.turn_budget_s if urgent else self.config.tick_budget_s
        out, end = [], time.monotonic() + budget
        while not self.closed:
            out += s.tick()
            if not s.has_work or time.monotonic() > end or (urgent and s.next_unit != "listen"):
                break
        return out

    def _feed(self, s: Session, chunks: list) -> list:
        """On an audio thread (the driver awaits it: nothing else touches the session meanwhile)."""
        out: list = []
        for pcm in chunks:
            self.fed += len(pcm)
            out += s.feed(ev.AudioIn(pcm))
        return out

    def _apply(self, action: tuple, out: list) -> None:
        """A client action other than audio, on the event loop (cheap: no model, no audio)."""
        s, kind = self.session, action[0]
        assert s is not None
        if kind == "settings":
            st = self.settings
            s.set_vad(replace(s.vad.config, start_threshold=st.threshold,
                              end_threshold=max(st.threshold - 0.15, 0.01),
                              min_silence_ms=float(st.silence_duration_ms), pre_roll_ms=float(st.prefix_padding_ms)))
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
            out += s.clear_input()
            self.out.item_id = None
            self.send({"type": "input_audio_buffer.cleared", "event_id": new_id("event")})
        elif kind == "response.cancel":
            self.out.awaiting = False
            if s.reply is not None or (s.listening is not None and not s.speculating):
                events, reply_id = s.cancel()
                if reply_id is not None:
                    self.out.client_cancelled.add(reply_id)
                out += events
            else:  # (a turn only speculated on is not a response: the client cannot see it)
                self.send(error_event(RealtimeError("there is no active response to cancel",
                                                    code="response_cancel_not_active", event_id=action[1])))

    # ---- session events -> server events -----------------------------------------------------------------------
    def _emit(self, out: list) -> None:
        self.out.emit(out, self.fed)
        s = self.session
        for e in out:  # a reply's end: its turn's stage times go to the hub (`vita bench serve` reads them)
            if isinstance(e, ev.UserSpeechEnded):
                self._spoken.append(e.utterance_id)
            elif isinstance(e, ev.ReplyStarted):
                self._utterances[e.reply_id] = e.utterance_id
            elif isinstance(e, ev.TERMINAL) and (uid := self._utterances.pop(e.reply_id, None)) is not None \
                    and s is not None and uid in s.stages:
                self.hub.stages.append({"spoken": float(uid in self._spoken), **s.stages[uid]})


def mount(app: Any, state: Any, config: RealtimeConfig | None = None) -> Hub:
    """Add `GET /v1/realtime` to `app` over `state` (the app's `ServerState`)."""
    hub = Hub(state, config or RealtimeConfig())
    app.state.vita_realtime = hub

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        await hub.serve(ws)

    return hub
