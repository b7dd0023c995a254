"""`GET /v1/realtime`: OpenAI Realtime-style WebSocket over a duplex `Session` per connection, one shared model.

Client events (JSON text frames; wire details and session fields in `realtime_events.py`):
    session.update              instructions, voice, modalities, input_audio_format, turn_detection (server_vad)
    input_audio_buffer.append   {"audio": base64 pcm16 mono}: 24 kHz (OpenAI's; resampled to 16 kHz here), or 16 kHz
                                when session.update set input_audio_format {"type": "audio/pcm", "rate": 16000}
    input_audio_buffer.commit   end the utterance now (error when no speech is open)
    input_audio_buffer.clear    drop the open (uncommitted) utterance
    conversation.item.create    {"item": {"type": "message", "role": "user", "id": optional, "content": [{"type":
                                "input_text", "text": ...}, {"type": "input_image", "image_url": "data:..."}]}}
                                (text, images or both): it waits for the next user turn, as in OpenAI's API
    conversation.item.delete    {"item_id": ...}: take back a waiting item (error item_not_found when none waits)
    response.create             answer the waiting items (error when there are none)
    response.cancel             cancel the active response (or the undecided query); applied in order, so a
                                response.create right after it is not refused as one while a response is active
Server events:
    session.created, session.updated, input_audio_buffer.speech_started / speech_stopped / committed / cleared,
    conversation.item.deleted,
    response.created, response.text.delta (modalities ["text"]), response.audio.delta (base64 pcm16, 24 kHz) and
    response.audio_transcript.delta (modalities ["audio", "text"]), response.done (status completed | cancelled,
    status_details.reason turn_detected | client_cancelled), error.
`response.created` / `response.done` carry the vendor field `vita_state` (the model's state token: "<1>", "<3>").
Server VAD is always on: speech is answered when the VAD closes it, and the model decides (state `<2>`: not a
query) whether to answer at all: a `<2>` utterance gets no response events. Speech during a reply pauses its
audio; if the model answers it the old reply ends `cancelled` (barge-in) and a new response starts.
Waiting items join the next user turn, typed (response.create) or spoken (committed by the VAD or
input_audio_buffer.commit; the items go before the audio: a picked image goes with the spoken question), once:
`input_audio_buffer.committed` names them in the vendor field `vita_items`; a spoken turn takes them even when the
model then finds it is no query (`<2>`).

Audio out is paced like a speaker (`Playout`, with a `lead_s` head start for the client's jitter buffer), so the
server knows what was heard when the user barges in.

Turn-taking with server VAD is the duplex session's (`vita.duplex.session`): at the user's first short silence the
session already encodes the utterance, prefills it, reads the state token and decodes the first phrase, emitting
nothing; the VAD's end of speech (or 250 ms of silence once the state says "answer") commits it, and the
speech_stopped, response.created and first deltas go out at once; speech again discards it without a trace (no
event, nothing in the history, the role cache keeps only rows a later prompt reuses exactly), and so does an item
created meanwhile (the turn is prepared again with it). While a turn is only
speculated on, nothing is active for the client: `response.cancel` is refused as usual, a prompt that does not fit
is reported at the commit, `input_audio_buffer.clear` drops the speculation with the audio.

Work off the event loop, bounded per session: each connection's driver task feeds its session's audio (echo gate,
VAD) on the hub's audio threads and submits `session.tick()` batches (<= `tick_budget_s`) to the server's single
model worker, so chat requests and realtime sessions never run the model concurrently. A batch for a turn the
user waits on (decided or speculated on, or its reply without speech yet: `Session.turn_pending`) is submitted
URGENT (ahead of the other sessions' decode steps and of chat requests; up to its state token in one batch,
`turn_max_s`), the decoding of a reply whose queued audio runs low (`Session.starving`) SOON, everything else NORMAL.
Each session owns two `RoleCache`s of its own (never the LLM's default cache, which chat requests reuse). The
model side of a connection (role caches, prompts bounded by positions, the voice) is in `realtime_roles.py`;
session events -> server events in `realtime_emit.py`; one connection's transport and driver in
`realtime_connection.py`; its finished turns leave their stage times in `Hub.stages` (`realtime_stats.py`). This
file: the endpoint (config, auth, admission).

Auth (with an API key): `Authorization: Bearer <key>`, or, for browsers (which cannot set headers), the query
parameter `?api_key=<key>` or the subprotocol `openai-insecure-api-key.<key>` (offered next to `realtime`, which
the server then selects). Refused: close 1008 before accept. Limits: `--max-realtime-sessions` and
`--max-realtime-sessions-per-client` (an `error` event code `session_limit`, then close 1013),
`--max-realtime-frame-bytes` and `--max-json-values` (error event, connection kept; frames over 64 KB are parsed
on a thread), `--max-realtime-buffer-seconds` of received-but-unprocessed audio (error event `buffer_full`, the
append dropped, judged from its base64 length before decoding), `--max-realtime-pending-items` and `--max-images`
for items waiting for the next turn (images decoded on a thread), `--max-realtime-instructions-chars`,
`--max-realtime-outbox-events` (a client that does not read is dropped: error `slow_consumer`, close 1008),
`--max-realtime-idle-seconds` (no client frame and nothing to do: error `idle_timeout`, close). One response at a
time: `response.create` while one is active is an error `conversation_already_has_active_response`. The history
is kept to `SessionConfig.history_turns` turns and every prompt is trimmed by positions (`BoundedJob`) so it fits
the role cache; an utterance that cannot fit even alone is an error `context_length_exceeded`.
A client that disconnects mid-answer drops its session; the worker finishes at most one tick batch for it.

Session inputs (typed events, `vita.duplex.events`; the server never touches the session's state): a created item
is `Attach` (deleted: `Detach`), response.create is `Ask`, `input_audio_buffer.commit` is `Commit`,
`input_audio_buffer.clear` is `Clear` (the open segment and its speculation are dropped), `response.cancel` is
`Cancel`, turn detection settings and instructions are `Configure`.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket

from vita.duplex import events as ev
from vita.duplex.roles import Forcing
from vita.duplex.session import SessionConfig
from vita.server.auth import authorized, is_loopback
from vita.server.realtime_connection import Connection
from vita.server.realtime_events import RealtimeError, error_event
from vita.speech.vad import StreamingVAD, VADConfig

log = logging.getLogger("vita.server")
KEY_PROTOCOL = "openai-insecure-api-key."
MAX_STAGE_RECORDS = 4096  # finished turns' stage times kept by a hub (`Hub.stages`)


def session_config(**vad: Any) -> SessionConfig:
    """The server's duplex session settings. The VAD keeps as much audio after the speech as the pause that starts
    a speculation has heard (`VADConfig.pause_ms`), so a committed speculation's utterance is, sample for sample, the
    one the end of speech gives."""
    return SessionConfig(lead_s=0.2, min_chunk_s=0.06, vad=VADConfig(**{"end_pad_ms": VADConfig().pause_ms, **vad}))


@dataclass
class RealtimeConfig:
    session: Callable[[], SessionConfig] = session_config
    clock: Callable[[], ev.Clock] = ev.MonotonicClock
    forcing: Callable[[], Forcing | None] = field(default=lambda: None)  # tests: scripted replies per connection
    vad: Callable[[], StreamingVAD | None] = field(default=lambda: None)  # tests: a VAD of their own (None: Silero)
    max_new_tokens: int = 512
    max_seq_len: int = 2048
    tick_budget_s: float = 0.02  # model work per worker submission (then audio is fed again)
    turn_budget_s: float = 0.05  # an URGENT submission (a turn being decided or speculated on) once its state is read,
    # and a SOON one (a reply whose queued audio runs low)
    turn_max_s: float = 0.3  # ... and before: the state token is what the commit waits for
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


def mount(app: Any, state: Any, config: RealtimeConfig | None = None) -> Hub:
    """Add `GET /v1/realtime` to `app` over `state` (the app's `ServerState`)."""
    hub = Hub(state, config or RealtimeConfig())
    app.state.vita_realtime = hub

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        await hub.serve(ws)

    return hub
