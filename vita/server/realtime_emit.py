"""Duplex session events -> `/v1/realtime` server events, and the response bookkeeping of one connection.

    UserSpeechStarted   -> input_audio_buffer.speech_started (a new input item id)
    UserSpeechEnded     -> input_audio_buffer.speech_stopped, input_audio_buffer.committed (vendor field
                           `vita_items`: the ids of the waiting conversation items that joined this spoken turn)
    StateDecided        -> (none: the state is kept for the response it may start)
    ReplyStarted        -> response.created (vendor field `vita_state`)
    TextDelta           -> response.audio_transcript.delta (audio modality) | response.text.delta (text only)
    AudioOut            -> response.audio.delta (base64 pcm16, 24 kHz)
    ReplyFinished | ReplyCancelled -> response.done (completed | cancelled: turn_detected, client_cancelled)

The session emits nothing for a turn it only speculates on (`Session.speculating`): every event here comes from
a committed turn, so a speculation that is discarded never reaches the client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vita.config import SAMPLE_RATE
from vita.duplex import events as ev
from vita.server.realtime_events import Settings, encode_pcm16, new_id, response_body


@dataclass
class _Response:
    id: str
    item_id: str
    state: str | None
    audio: bool
    text: str = ""


class Emitter:
    """One connection's translation of session events into server events (sent through `send`)."""

    def __init__(self, settings: Settings, send: Callable[[dict[str, Any]], None]) -> None:
        self.settings, self.send = settings, send
        self.responses: dict[int, _Response] = {}  # session reply id -> wire response
        self.states: dict[int, str | None] = {}  # utterance id -> state token
        self.client_cancelled: set[int] = set()  # reply ids cancelled by response.cancel
        self.cancelling: set[int] = set()  # reply ids a response.cancel on its way to the session will cancel
        self.awaiting = False  # a response.create is being decided (no response.created yet)
        self.item_id: str | None = None  # the input item being spoken
        self.last_item: str | None = None

    @property
    def active(self) -> bool:
        """A response is in progress or being decided (one response at a time)."""
        return any(r not in self.cancelling for r in self.responses) or self.awaiting

    def cancel_all(self) -> None:
        """A response.cancel was received: what is active now counts as cancelled (the session applies it next)."""
        self.cancelling.update(self.responses)
        self.awaiting = False

    def emit(self, out: list, fed: int) -> None:
        """Send the server events of session events `out`; `fed`: 16 kHz samples fed to the session so far."""
        for e in out:
            base = {"event_id": new_id("event")}
            if isinstance(e, ev.UserSpeechStarted):
                self.item_id = new_id("item")
                self.send({"type": "input_audio_buffer.speech_started", **base, "item_id": self.item_id,
                           "audio_start_ms": fed * 1000 // SAMPLE_RATE})
            elif isinstance(e, ev.UserSpeechEnded):
                item, self.item_id = self.item_id or new_id("item"), None
                self.send({"type": "input_audio_buffer.speech_stopped", **base, "item_id": item,
                           "audio_end_ms": fed * 1000 // SAMPLE_RATE})
                self.send({"type": "input_audio_buffer.committed", "event_id": new_id("event"), "item_id": item,
                           "previous_item_id": self.last_item, "vita_items": list(e.items)})
                self.last_item = item
            elif isinstance(e, ev.StateDecided):
                self.awaiting = False
                self.states[e.utterance_id] = e.state
                if len(self.states) > 64:  # utterances never answered leave their entry
                    del self.states[next(iter(self.states))]
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
                self.cancelling.discard(e.reply_id)
                self.send({"type": "response.done", **base, "response": response_body(
                    r.id, r.item_id, "completed" if done else "cancelled", state=r.state,
                    text=e.text if done else e.heard, audio=r.audio, reason=reason)})
