"""One `/v1/realtime` connection: its transport (receive, validate, send with a bounded outbox) and the driver that
alone touches its duplex session.

    client frames --_receive--> validated events --_handle / _post--> inbox (audio, actions)
    inbox --_drive--> audio resampled and fed on the hub's audio threads (echo gate, VAD); other actions on the loop
          --> session events emitted at once (a commit's response and first deltas never wait for the model)
          --> `session.tick()` batches on the model worker: URGENT while the user waits on a turn (decided,
              speculated on, or its reply without speech yet: `Session.turn_pending`), SOON while the reply's
              queued audio runs low (`Session.starving`), NORMAL otherwise; sessions' decode steps run together
              (`realtime_batch`)
    session events --Emitter (`realtime_emit.py`)--> server events --outbox--> _send_loop

Everything the session does happens in one task (`_drive`): it awaits each audio batch and each model batch, and
while a model batch still waits its turn the driver's own steps hold it off (`realtime_gate.BatchGate`), so the
session is never touched by two threads at once. A connection that closes stops its in-flight model batch at
the next tick (`closed`); its finished turns' stage times go to `Hub.stages`. The endpoint (config, auth,
admission) is `realtime.py`, which documents the wire protocol and the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.websockets import WebSocket

from vita.config import SAMPLE_RATE
from vita.duplex import events as ev
from vita.duplex.session import Session
from vita.errors import PromptError
from vita.media.audio import StreamResampler
from vita.processor import Image
from vita.server.errors import APIError
from vita.server.limits import count_json_values
from vita.server.realtime_batch import TAG as BATCH_TAG
from vita.server.realtime_batch import Batch
from vita.server.realtime_batch import run as run_batch
from vita.server.realtime_emit import Emitter
from vita.server.realtime_events import (
    OUTPUT_RATE,
    RealtimeError,
    Settings,
    decode_pcm16,
    error_event,
    field_of,
    new_id,
    parse_frame,
    parse_item,
)
from vita.server.realtime_gate import FREE, BatchGate
from vita.server.realtime_roles import BoundedRoles, Voice
from vita.server.worker import NORMAL, SOON, URGENT
from vita.speech.tts import SpeechWorker

if TYPE_CHECKING:
    from vita.server.realtime import Hub

log = logging.getLogger("vita.server")


class Connection:
    def __init__(self, hub: Hub, ws: WebSocket) -> None:
        self.hub, self.ws, self.state, self.config = hub, ws, hub.state, hub.config
        self.limits = self.state.limits
        self.settings = Settings(self.state.model_id)
        self.outbox: asyncio.Queue[dict | None] = asyncio.Queue()
        self.inbox: deque[tuple] = deque()
        self.wake = asyncio.Event()
        self._wake_soon: Callable[[], object] = lambda: None  # sets `wake` from another thread (set in `run`)
        self.buffered = 0  # 16 kHz samples received (counted at their input rate), not yet fed
        self.fed = 0  # 16 kHz samples fed to the session
        # conversation items waiting for the next user turn (response.create or a committed spoken one): id -> its
        # image count; their parts are the session's (`ev.Attach`), which reports the ones a spoken turn took
        self.pending: dict[str, int] = {}
        self.closing = asyncio.Event()  # set with `close_reason` to end the connection (slow reader)
        self.close_reason: RealtimeError | None = None
        self.out = Emitter(self.settings, self.send)  # session events -> server events, response bookkeeping
        self.resampler = StreamResampler(self.settings.input_rate)  # -> 16 kHz
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
        loop = asyncio.get_running_loop()
        self._wake_soon = lambda: loop.call_soon_threadsafe(self.wake.set)  # from other threads (speech ready)
        try:
            self.session = await self.state.worker.call(self._build)
            if self.voice is None or self.voice.synth is None:
                self.settings.modalities = ("text",)
            vad = self.session.vad_config  # the server's VAD settings until a session.update changes them
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
        # a finished phrase wakes the driver at once (the first one is what the user waits for)
        self.speech = SpeechWorker(self.voice, sample_rate=OUTPUT_RATE, on_ready=self._speech_ready)
        return Session(engine, self.speech, clock=self.config.clock(), config=self.config.session(),
                       vad=self.config.vad())

    def _speech_ready(self) -> None:
        """On the speech thread: a chunk is ready; the driver may sleep in `wake.wait()` (closed loop: ignored)."""
        with contextlib.suppress(RuntimeError):
            self._wake_soon()

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
        text = message.get("text")
        if text is not None:
            try:
                count_json_values(text, self.limits.max_json_values, "the frame")
            except APIError as exc:
                raise RealtimeError(exc.message, code="limit_exceeded") from None
        return parse_frame(message, self.limits.max_realtime_frame_bytes)

    async def _create_item(self, obj: dict[str, Any]) -> None:
        """conversation.item.create: bounded pending items and images; images decoded on a thread. The item waits for
        the next user turn: response.create, or a spoken turn the VAD (or input_audio_buffer.commit) commits."""
        eid = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
        try:
            cap = self.limits.max_realtime_pending_items
            if len(self.pending) >= cap:
                raise RealtimeError(f"{len(self.pending)} items are waiting for the next turn "
                                    f"(--max-realtime-pending-items {cap})", code="limit_exceeded", param="item")
            item = field_of(obj, "item", dict, param="item", required=True)
            item_id = field_of(item, "id", str, param="item.id") or new_id("item")
            if not 0 < len(item_id) <= 64 or item_id in self.pending:
                raise RealtimeError("item.id must be 1 to 64 characters and not an id of a waiting item",
                                    code="invalid_value", param="item.id")
            content = item.get("content")
            images = sum(isinstance(c, dict) and c.get("type") == "input_image" for c in content) \
                if isinstance(content, list) else 0
            waiting = sum(self.pending.values())
            if waiting + images > self.limits.max_images:
                raise RealtimeError(f"{waiting + images} images would wait for the next turn (--max-images "
                                    f"{self.limits.max_images})", code="limit_exceeded", param="item.content")
            parts = await asyncio.to_thread(parse_item, item, self.limits)
        except RealtimeError as err:
            err.event_id = err.event_id or eid
            raise
        self.pending[item_id] = sum(isinstance(p, Image) for p in parts)
        self._post(("attach", ev.Attach(item_id, tuple(parts))))

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
                self._post(("respond", eid))
                self.pending, self.out.awaiting = {}, True
            elif kind == "conversation.item.delete":
                item_id = field_of(obj, "item_id", str, param="item_id", required=True)
                if self.pending.pop(item_id, None) is None:
                    raise RealtimeError(f"no waiting item has the id {item_id[:64]!r} (a turn may have taken it)",
                                        code="item_not_found", param="item_id")
                self._post(("delete", ev.Detach(item_id)))
                self.send({"type": "conversation.item.deleted", "event_id": new_id("event"), "item_id": item_id})
            elif kind == "response.cancel":
                # applied in order: a response.create right after it finds no active response (the page's typed
                # question during a reply); the driver cancels what is active when it gets there
                self.out.cancel_all()
                self._post((kind, eid))
            else:  # input_audio_buffer.commit / .clear: decided by the driver
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
            self.resampler = StreamResampler(self.settings.input_rate)
        self._post(("settings",))
        self.send({"type": "session.updated", "event_id": new_id("event"), "session": self.settings.wire()})

    def _append(self, data: str) -> None:
        cap = self.limits.max_realtime_buffer_seconds
        claimed = len(data) * 3 // 8 / self.settings.input_rate  # seconds, from the base64 length alone
        if (self.buffered / SAMPLE_RATE) + claimed > cap + 0.1:
            raise RealtimeError(f"{self.buffered / SAMPLE_RATE:.1f} s of audio are waiting and this append holds "
                                f"{claimed:.1f} s (--max-realtime-buffer-seconds {cap}): this append was dropped; "
                                "send audio in real time", code="buffer_full", param="audio")
        raw = decode_pcm16(data).astype(np.float32) / 32768.0  # resampled on an audio thread (`_feed`), in order
        n = round(len(raw) * SAMPLE_RATE / self.settings.input_rate)  # its length at 16 kHz (within a sample)
        if (self.buffered + n) / SAMPLE_RATE > cap:
            raise RealtimeError(f"{self.buffered / SAMPLE_RATE:.1f} s of audio are waiting to be processed "
                                f"(--max-realtime-buffer-seconds {cap}): this append was dropped; send audio in "
                                "real time", code="buffer_full", param="audio")
        self.buffered += n
        self._post(("audio", (raw, self.resampler, n)))

    # ---- the driver: the only code that touches the session ----------------------------------------------------
    async def _drive(self) -> None:
        s = self.session
        assert s is not None
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            out: list = []
            try:
                await self._between(s, loop)  # input, rendered speech, playback: never behind the model worker
                if s.has_work:
                    out += await self._batch(s, loop)
                elif s.busy:
                    out += s.tick()  # no unit of work: only releases playback (no model)
                failures = 0
            except PromptError as exc:  # the utterance cannot fit: the client's to fix, not an internal error
                speculative = s.speculating
                out += s.feed(ev.DropTurn())
                if not speculative:  # a speculation is redone at the commit, which reports it (once)
                    self.send(error_event(RealtimeError(str(exc), code="context_length_exceeded")))
                    self.out.awaiting = False
            except Exception:  # noqa: BLE001 - one broken reply must not end the connection
                log.exception("realtime tick failed")
                failures += 1
                self.send(error_event(RealtimeError("internal error while answering (the server log has the "
                                                    "details)", code="server_error", type="server_error")))
                out += s.feed(ev.DropTurn())
                self.out.awaiting = False
                out += s.feed(ev.Cancel())  # the speaking reply, if any
                if failures >= 3:  # not one broken reply: the worker itself (server shutting down)
                    self._emit(out)
                    await self.ws.close(code=1011)
                    return
            self._emit(out)
            if not s.has_work and not self.inbox:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 0.02 if s.busy else None)

    async def _between(self, s: Session, loop: asyncio.AbstractEventLoop, gate: BatchGate | None = None) -> None:
        """What needs no model, sent at once: the client's actions and audio that came meanwhile, in order (the audio
        fed on an audio thread: a commit's response and first deltas never wait for the model worker), then the
        phrases the speech thread rendered (the first sound is what the user awaits) and the playback due. With a
        `gate` (a batch waiting on the model worker) each step runs only while the batch has not started."""
        gate = gate or FREE
        out: list = []
        while self.inbox:
            if self.inbox[0][0] != "audio":
                if not gate.enter():
                    break
                try:
                    self._apply(self.inbox.popleft(), out)
                finally:
                    gate.exit()
                continue
            chunks = []
            while self.inbox and self.inbox[0][0] == "audio":
                chunks.append(self.inbox.popleft()[1])
            fed = await loop.run_in_executor(self.hub.audio, self._feed, s, chunks, gate)
            if fed is None:  # the batch started meanwhile: fed after it
                self.inbox.extendleft(("audio", c) for c in reversed(chunks))
                break
            self.buffered -= sum(n for _, _, n in chunks)
            out += fed
        self._emit(out)
        if gate.enter():
            try:
                out = []
                while s.next_unit == "tts":
                    out += s.tick()
                self._emit(out + s.release())
            finally:
                gate.exit()

    async def _batch(self, s: Session, loop: asyncio.AbstractEventLoop) -> list:
        """One batch of model work on the shared worker. While it waits its turn behind the other sessions' work it
        has not touched the session (`BatchGate`), so the driver goes on with `_between` meanwhile; once it runs (on
        its own or joined to another session's: `realtime_batch`), the driver waits for its events."""
        priority = URGENT if s.turn_pending else SOON if s.starving else NORMAL
        gate = BatchGate()
        batch = Batch(s, priority, gate, self.config, lambda: self.closed)
        worker = self.state.worker
        job = asyncio.wrap_future(worker.submit(run_batch, batch, worker, priority=priority, tag=BATCH_TAG))
        try:
            while not job.done():
                self.wake.clear()
                woken = asyncio.ensure_future(self.wake.wait())
                try:
                    await asyncio.wait({job, woken}, timeout=0.02, return_when=asyncio.FIRST_COMPLETED)
                finally:  # also when this task is cancelled (the connection closing): no waiter left pending
                    woken.cancel()
                if not job.done() and not gate.started:
                    await self._between(s, loop, gate)
        except Exception:
            with contextlib.suppress(Exception):
                await job  # the batch ends before anything else touches the session
            raise
        return job.result()

    def _feed(self, s: Session, chunks: list, gate: BatchGate) -> list | None:
        """On an audio thread (the driver awaits it; a batch that starts meanwhile waits for it): the events, or None
        when a batch of the session has started (nothing fed)."""
        if not gate.enter():
            return None
        try:
            out: list = []
            for raw, resampler, _ in chunks:  # (input-rate pcm, the resampler when it came, its 16 kHz length)
                pcm = resampler(raw)
                self.fed += len(pcm)
                out += s.feed(ev.AudioIn(pcm))
            return out
        finally:
            gate.exit()

    def _apply(self, action: tuple, out: list) -> None:
        """A client action other than audio, on the event loop (cheap: no model, no audio)."""
        s, kind = self.session, action[0]
        assert s is not None
        if kind == "settings":
            st = self.settings
            vad = replace(s.vad_config, start_threshold=st.threshold, end_threshold=max(st.threshold - 0.15, 0.01),
                          min_silence_ms=float(st.silence_duration_ms), pre_roll_ms=float(st.prefix_padding_ms))
            out += s.feed(ev.Configure(vad, st.instructions))
            if self.voice is not None:
                self.voice.enabled = "audio" in st.modalities and self.voice.synth is not None
        elif kind in ("attach", "delete"):
            out += s.feed(action[1])
        elif kind == "respond":
            if s.pending_items:
                out += s.feed(ev.Ask(()))
            else:  # a spoken turn committed meanwhile took them
                self.out.awaiting = False
                self.send(error_event(RealtimeError("nothing to respond to: a spoken turn took the waiting items",
                                                    code="no_pending_input", event_id=action[1])))
        elif kind == "input_audio_buffer.commit":
            if not s.user_speaking:
                self.send(error_event(RealtimeError("no speech is open in the input audio buffer",
                                                    code="input_audio_buffer_commit_empty", event_id=action[1])))
            out += s.feed(ev.Commit())
        elif kind == "input_audio_buffer.clear":
            out += s.feed(ev.Clear())
            self.out.item_id = None
            self.send({"type": "input_audio_buffer.cleared", "event_id": new_id("event")})
        elif kind == "response.cancel":
            if s.responding:
                events = s.feed(ev.Cancel())
                self.out.client_cancelled.update(e.reply_id for e in events if isinstance(e, ev.ReplyCancelled))
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
                for item_id in e.items:  # used by this spoken turn: no longer waiting
                    self.pending.pop(item_id, None)
            elif isinstance(e, ev.ReplyStarted):
                self._utterances[e.reply_id] = e.utterance_id
            elif isinstance(e, ev.TERMINAL) and (uid := self._utterances.pop(e.reply_id, None)) is not None \
                    and s is not None and uid in s.stages:
                self.hub.stages.append({"spoken": float(uid in self._spoken), **s.stages[uid]})
