"""Wire types of `GET /v1/realtime`: client-event parsing and validation, session settings, server-event bodies.

    parse_frame / field_of / parse_item   a client frame -> a validated event / field / prompt parts
    decode_pcm16, encode_pcm16            base64 pcm16 in (24 or 16 kHz; `vita.media.audio.StreamResampler` makes it
                                          16 kHz float32) and out (24 kHz)
    Settings                              the session (`session.update` applied, `session.created` body)
    error_event, response_body            server event bodies

Every client frame is one JSON object (a text frame) with a string `type`; anything else (bad JSON, a binary frame,
an unknown type, a field of the wrong type, invalid base64, a frame over `--max-realtime-frame-bytes`) raises
`RealtimeError`, which the connection answers with OpenAI's error event and then keeps serving:

    {"type": "error", "event_id": "event_...", "error": {"type": "invalid_request_error", "code": "...",
     "message": "...", "param": "...", "event_id": "<the client's event_id, if it gave one>"}}

Session settings (`session.update` -> `session.updated`), every field optional:
    instructions          str: the system prompt of later replies
    voice                 str: accepted and echoed; one packaged Piper voice speaks every name
    modalities            ["text"] (text deltas only, nothing synthesized) or ["audio", "text"] (the default:
                          audio deltas + audio transcript deltas)
    input_audio_format    "pcm16" (16-bit little-endian mono at 24 kHz, OpenAI's), or the object
                          {"type": "audio/pcm", "rate": 16000 | 24000} (vendor: 16 kHz input skips the resampling)
    output_audio_format   "pcm16" only: 24 kHz mono, like OpenAI's
    turn_detection        {"type": "server_vad", "threshold": 0..1, "prefix_padding_ms": int,
                          "silence_duration_ms": int}; null is refused (server VAD is always on)
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vita.config import SAMPLE_RATE
from vita.processor import Part
from vita.server.audio_out import OUTPUT_RATE
from vita.server.errors import APIError
from vita.server.limits import Limits
from vita.server.media import MediaDecoder

INPUT_RATES = (SAMPLE_RATE, OUTPUT_RATE)  # vendor 16 kHz (no resampling), or OpenAI's 24 kHz pcm16
MODALITIES = (("text",), ("audio", "text"))
CLIENT_EVENTS = ("session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
                 "input_audio_buffer.clear", "conversation.item.create", "conversation.item.delete", "response.create",
                 "response.cancel")


class RealtimeError(Exception):
    """A refused client event: answered with an `error` event (the connection stays open)."""

    def __init__(self, message: str, *, code: str = "invalid_request_error", param: str | None = None,
                 event_id: str | None = None, type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message, self.code, self.param, self.event_id, self.type = message, code, param, event_id, type


_counter = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}{next(_counter):04d}"


def error_event(err: RealtimeError) -> dict[str, Any]:
    return {"type": "error", "event_id": new_id("event"), "error": {
        "type": err.type, "code": err.code, "message": err.message, "param": err.param, "event_id": err.event_id}}


def parse_frame(message: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """One ASGI websocket.receive message -> a client event object with a known `type` (or RealtimeError)."""
    text = message.get("text")
    if text is None:
        raise RealtimeError("binary frames are not supported: send each event as a JSON text frame",
                            code="invalid_frame")
    size = len(text.encode())
    if size > max_bytes:
        raise RealtimeError(f"frame is {size} bytes > --max-realtime-frame-bytes {max_bytes}",
                            code="frame_too_large")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RealtimeError(f"invalid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(obj, dict):
        raise RealtimeError(f"an event must be a JSON object, got {type(obj).__name__}", code="invalid_event")
    event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise RealtimeError("the event has no string 'type'", code="invalid_event", param="type", event_id=event_id)
    if kind not in CLIENT_EVENTS:
        raise RealtimeError(f"unknown event type {kind[:64]!r} (supported: {', '.join(CLIENT_EVENTS)})",
                            code="unknown_event", param="type", event_id=event_id)
    return obj


def field_of(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], *, param: str,
             required: bool = False, default: Any = None) -> Any:
    """obj[name] checked against `kind` (bool is not an int here); RealtimeError names `param`."""
    if name not in obj or (obj[name] is None and not required):
        if required:
            raise RealtimeError(f"missing required field '{param}'", code="missing_field", param=param,
                                event_id=obj.get("event_id") if isinstance(obj.get("event_id"), str) else None)
        return default
    value = obj[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise RealtimeError(f"'{param}' must be {names}, got {type(value).__name__}", code="invalid_type",
                            param=param, event_id=obj.get("event_id") if isinstance(obj.get("event_id"), str)
                            else None)
    return value


def decode_pcm16(data: str, *, param: str = "audio") -> np.ndarray:
    """base64 pcm16 little-endian -> int16 [N]; truncated or invalid base64, or an odd byte count, is refused."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RealtimeError(f"'{param}' is not valid base64 ({exc})", code="invalid_base64", param=param) from exc
    if len(raw) % 2:
        raise RealtimeError(f"'{param}' has {len(raw)} bytes: pcm16 needs an even count", code="invalid_audio",
                            param=param)
    return np.frombuffer(raw, dtype="<i2").astype(np.int16)


def parse_item(item: dict[str, Any], limits: Limits) -> list[Part]:
    """A user message item -> prompt parts: decoded images first, then the texts (RealtimeError if invalid). An item
    of images alone is fine: it waits for the next turn, which may be spoken."""
    if item.get("type", "message") != "message" or item.get("role") != "user":
        raise RealtimeError("only user message items are supported ({'type': 'message', 'role': 'user'})",
                            code="unsupported_item", param="item.role")
    parts: list[Part] = []
    for i, c in enumerate(field_of(item, "content", list, param="item.content", required=True)):
        p = f"item.content[{i}]"
        kind = c.get("type") if isinstance(c, dict) else None
        if kind == "input_text":
            parts.append(field_of(c, "text", str, param=f"{p}.text", required=True))
        elif kind == "input_image":
            url = field_of(c, "image_url", str, param=f"{p}.image_url", required=True)
            try:
                parts.insert(0, MediaDecoder(limits).image_url(url, f"{p}.image_url"))
            except APIError as exc:
                raise RealtimeError(exc.message, code=exc.code or "invalid_image", param=exc.param) from exc
        else:
            raise RealtimeError(f"{p}.type must be 'input_text' or 'input_image'", code="invalid_value",
                                param=f"{p}.type")
    if not parts:
        raise RealtimeError("a user item needs an input_text or input_image part", code="missing_field",
                            param="item.content")
    return parts


def encode_pcm16(pcm: np.ndarray) -> str:
    """float32 [N] in [-1, 1] -> base64 pcm16 little-endian."""
    return base64.b64encode((np.clip(pcm, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()).decode()


@dataclass
class Settings:
    """The session as `session.created` / `session.updated` show it."""

    model: str
    id: str = field(default_factory=lambda: new_id("sess"))
    instructions: str | None = None
    voice: str = "joe"
    modalities: tuple[str, ...] = ("audio", "text")
    input_rate: int = OUTPUT_RATE
    threshold: float = 0.5
    prefix_padding_ms: int = 200
    silence_duration_ms: int = 500

    def update(self, obj: dict[str, Any]) -> None:
        """Apply a `session.update` event's `session` object (validated whole before anything changes)."""
        s = field_of(obj, "session", dict, param="session", required=True)
        new = dict(self.__dict__)
        new["instructions"] = field_of(s, "instructions", str, param="session.instructions",
                                       default=self.instructions)
        new["voice"] = field_of(s, "voice", str, param="session.voice", default=self.voice)
        mods = field_of(s, "modalities", list, param="session.modalities")
        if mods is not None:
            if not all(isinstance(m, str) for m in mods) or len(mods) != len(set(mods)) \
                    or tuple(sorted(mods)) not in MODALITIES:
                raise RealtimeError(f"session.modalities must be ['text'] or ['audio', 'text'], got {mods!r}"[:200],
                                    code="invalid_value", param="session.modalities")
            new["modalities"] = tuple(sorted(mods))
        fmt = s.get("input_audio_format")
        if fmt is not None:
            new["input_rate"] = _input_rate(fmt)
        out = field_of(s, "output_audio_format", str, param="session.output_audio_format")
        if out is not None and out != "pcm16":
            raise RealtimeError(f"session.output_audio_format {out!r} is not supported (only 'pcm16', 24 kHz)",
                                code="invalid_value", param="session.output_audio_format")
        if "turn_detection" in s:
            td = s["turn_detection"]
            if not isinstance(td, dict) or td.get("type", "server_vad") != "server_vad":
                raise RealtimeError("session.turn_detection must be {'type': 'server_vad', ...} (server VAD is "
                                    "always on)", code="invalid_value", param="session.turn_detection")
            p = "session.turn_detection."
            new["threshold"] = field_of(td, "threshold", (int, float), param=p + "threshold",
                                        default=self.threshold)
            new["prefix_padding_ms"] = field_of(td, "prefix_padding_ms", int, param=p + "prefix_padding_ms",
                                                default=self.prefix_padding_ms)
            new["silence_duration_ms"] = field_of(td, "silence_duration_ms", int, param=p + "silence_duration_ms",
                                                  default=self.silence_duration_ms)
            if not 0.0 < new["threshold"] < 1.0:
                raise RealtimeError("threshold must be in (0, 1)", code="invalid_value", param=p + "threshold")
            for name in ("prefix_padding_ms", "silence_duration_ms"):
                if not 0 <= new[name] <= 10_000:
                    raise RealtimeError(f"{name} must be in [0, 10000]", code="invalid_value", param=p + name)
        self.__dict__.update(new)

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "realtime.session", "model": self.model, "modalities": list(self.modalities),
            "instructions": self.instructions or "", "voice": self.voice,
            "input_audio_format": "pcm16" if self.input_rate == OUTPUT_RATE else {"type": "audio/pcm",
                                                                            "rate": self.input_rate},
            "output_audio_format": "pcm16",
            "turn_detection": {"type": "server_vad", "threshold": self.threshold,
                               "prefix_padding_ms": self.prefix_padding_ms,
                               "silence_duration_ms": self.silence_duration_ms},
        }


def _input_rate(fmt: Any) -> int:
    param = "session.input_audio_format"
    if fmt == "pcm16":
        return OUTPUT_RATE
    if isinstance(fmt, dict) and fmt.get("type") == "audio/pcm" and fmt.get("rate") in INPUT_RATES \
            and not isinstance(fmt.get("rate"), bool):
        return int(fmt["rate"])
    raise RealtimeError(f"{param} must be 'pcm16' (24 kHz) or {{'type': 'audio/pcm', 'rate': 16000 | 24000}}, "
                        f"got {json.dumps(fmt)[:80]}", code="invalid_value", param=param)


def response_body(resp_id: str, item_id: str, status: str, *, state: str | None, text: str = "",
                  audio: bool = False, reason: str | None = None) -> dict[str, Any]:
    """A `realtime.response` (for response.created / response.done); `vita_state` is the model's state token."""
    content = [{"type": "audio", "transcript": text} if audio else {"type": "text", "text": text}]
    body: dict[str, Any] = {"id": resp_id, "object": "realtime.response", "status": status, "status_details": None,
                            "output": [] if status == "in_progress" else [
                                {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                                 "status": "completed" if status == "completed" else "incomplete",
                                 "content": content}],
                            "vita_state": state}
    if reason is not None:
        body["status_details"] = {"type": status, "reason": reason}
    return body
