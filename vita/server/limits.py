"""Request limits of `vita serve`: one dataclass field per limit, one CLI flag per field (`vita.cli.serve`).

Every refusal names the limit (as its CLI flag) and the value that broke it, e.g.
"request body is 40000000 bytes > --max-request-bytes 33554432".
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from vita.server.errors import limit_exceeded


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = field(default=32 << 20, metadata={"help": "largest request body in bytes (413 above)"})
    max_audio_seconds: float = field(default=120.0, metadata={"help": "total input audio per request, seconds"})
    max_image_pixels: int = field(default=25_000_000, metadata={"help": "largest image or video frame, pixels"})
    max_image_aspect_ratio: float = field(default=200.0, metadata={
        "help": "longest image side over its shortest (a 1 x 2,500,000 strip is refused before decoding)"})
    max_images: int = field(default=16, metadata={"help": "images per request"})
    max_frames: int = field(default=32, metadata={"help": "video frames per request (all videos together)"})
    max_video_seconds: float = field(default=600.0, metadata={
        "help": "longest video clip, seconds (from its header, and while decoding)"})
    max_audio_clips: int = field(default=8, metadata={"help": "audio clips per request"})
    max_messages: int = field(default=2048, metadata={"help": "messages per chat request"})
    max_content_parts: int = field(default=1024, metadata={"help": "content parts per chat request (all messages)"})
    max_json_values: int = field(default=100_000, metadata={
        "help": "JSON values per request body or realtime frame (',', '{' and '[' counted before parsing)"})
    max_remote_media_seconds: float = field(default=10.0, metadata={
        "help": "with --allow-remote-media: total time to fetch a request's URLs, seconds"})
    max_new_tokens: int = field(default=2048, metadata={"help": "largest max_tokens a request may ask for"})
    max_queued: int = field(default=8, metadata={"help": "requests waiting behind the running one (429 above)"})
    max_realtime_sessions: int = field(default=4, metadata={"help": "open /v1/realtime sessions (close 1013 above)"})
    max_realtime_sessions_per_client: int = field(default=4, metadata={
        "help": "open /v1/realtime sessions per client address (loopback clients share one address: not counted)"})
    max_realtime_idle_seconds: float = field(default=300.0, metadata={
        "help": "a realtime session with no client frame and nothing to do for this long is closed"})
    max_realtime_outbox_events: int = field(default=1024, metadata={
        "help": "server events waiting for a slow realtime client (disconnected above)"})
    max_realtime_pending_items: int = field(default=16, metadata={
        "help": "realtime conversation items waiting for the next turn (response.create or a spoken one)"})
    max_realtime_instructions_chars: int = field(default=16384, metadata={
        "help": "longest realtime session.instructions, characters"})
    max_realtime_frame_bytes: int = field(default=8 << 20, metadata={"help": "largest realtime client frame, bytes"})
    max_realtime_buffer_seconds: float = field(default=30.0, metadata={
        "help": "realtime audio received but not yet processed, seconds"})

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0 or (value == 0 and f.name != "max_queued"):
                raise ValueError(f"--{flag(f.name)} must be positive, got {value}")

    def uvicorn(self) -> dict[str, Any]:
        """The websocket settings `vita serve` runs uvicorn with: a frame over `ws_max_size` is closed by uvicorn
        (1009), so it sits above our cap and the cap gets an error event; no permessage-deflate: realtime frames are
        base64 PCM, which zlib barely shrinks, and compressing and inflating ~400 of them a second (8 sessions)
        cost the server and its clients a tenth of a core for nothing."""
        return {"ws_max_size": 2 * self.max_realtime_frame_bytes, "ws_per_message_deflate": False}


def flag(name: str) -> str:
    return name.replace("_", "-")


def count_json_values(data: bytes | bytearray | str, cap: int, what: str) -> None:
    """Refuse, before parsing, a body with more than `cap` JSON values (',', '{', '[' counted, strings included:
    a crude but C-speed bound on what json.loads and validation would build and walk)."""
    n = data.count("," if isinstance(data, str) else b",") + data.count("{" if isinstance(data, str) else b"{") \
        + data.count("[" if isinstance(data, str) else b"[")
    if n > cap:
        raise limit_exceeded(f"{what} has {n} JSON separators (',', '{{', '[') > --max-json-values {cap}")
