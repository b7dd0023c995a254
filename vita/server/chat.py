"""Chat completions: an OpenAI request -> `Turn`s and generation params; reply events -> response bodies.

Message mapping (each user part becomes a `vita.processor` part, in order):
    text -> str;  image_url -> Image (or Video for a data:video/... URL);  video_url -> Video (sampled at 1 fps,
    4..16 frames, the official rule);  video_frames -> Video of exactly those frames;  input_audio -> Audio.
    After a run of images / video a "\\n" is put in unless the next text starts with one: the official demo's
    `<image>\\n question` layout, so [image, "hi", audio] prompts exactly as `Vita.generate("hi", images=[...],
    audio=...)`. Text parts are joined as given (no separator). A `system` / `developer` message (first only)
    replaces the template's system prompt. An assistant message's `vita_state` is put back in front of its text.

The reply's state token never appears in the text: it is `choices[0].message.vita_state` (non-streaming) and
`choices[0].delta.vita_state` in the first chunk of a stream (with `role`). A `<2>` reply (not a query) has
content "" and finish_reason "stop". Defaults follow OpenAI: temperature 1.0, top_p 1.0.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from vita.generation.sampling import SamplingConfig
from vita.processor import Part, Turn
from vita.server.engine import AudioEvent, DoneEvent, Event, Params, StateEvent, TextEvent
from vita.server.errors import bad_request, limit_exceeded
from vita.server.media import MediaDecoder
from vita.server.openai_types import (
    AssistantMessage,
    AudioPart,
    ChatRequest,
    ImagePart,
    SystemMessage,
    TextPart,
    UserMessage,
    VideoFramesPart,
    VideoURLPart,
)

AUDIO_TTL_S = 3600


def params_from_request(req: ChatRequest, max_new_tokens_limit: int) -> Params:
    name = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    wanted = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if wanted is not None and wanted > max_new_tokens_limit:
        raise limit_exceeded(f"{name}={wanted} > --max-new-tokens {max_new_tokens_limit}", name)
    sampling = SamplingConfig(
        temperature=1.0 if req.temperature is None else float(req.temperature),
        top_k=req.top_k or 0,
        top_p=1.0 if req.top_p is None else float(req.top_p),
    )
    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    return Params(wanted, sampling, ("</s>", *stops), req.seed)


def text_chars(req: ChatRequest) -> int:
    """Characters of text in all messages (for the length check done before tokenizing)."""
    n = 0
    for msg in req.messages:
        if isinstance(msg.content, str):
            n += len(msg.content)
        elif msg.content is not None:
            n += sum(len(p.text) for p in msg.content if isinstance(p, TextPart))
    return n


def media_urls(req: ChatRequest) -> list[str]:
    """Every http(s) media URL of the request, in order (fetched before the model thread sees the request)."""
    urls: list[str] = []
    for msg in req.messages:
        if isinstance(msg, UserMessage) and not isinstance(msg.content, str):
            for part in msg.content:
                if isinstance(part, ImagePart):
                    urls.append(part.image_url.url)
                elif isinstance(part, VideoURLPart):
                    urls.append(part.video_url.url)
                elif isinstance(part, VideoFramesPart):
                    urls += part.video_frames
    return [u for u in urls if u.startswith(("http://", "https://"))]


def _text(content: str | list[TextPart] | None) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else "".join(p.text for p in content)


def to_turns(req: ChatRequest, decoder: MediaDecoder) -> list[Turn]:
    """Decode the messages' media (on the model thread: it is CPU work) and build the conversation."""
    turns: list[Turn] = []
    for i, msg in enumerate(req.messages):
        if isinstance(msg, SystemMessage):
            if i != 0:
                raise bad_request(f"messages[{i}]: a {msg.role} message is only allowed first", f"messages[{i}].role")
            turns.append(Turn("system", _text(msg.content)))
        elif isinstance(msg, AssistantMessage):
            turns.append(Turn("assistant", (msg.vita_state or "") + _text(msg.content)))
        else:
            turns.append(Turn("user", _user_parts(msg, decoder, f"messages[{i}].content")))
    return turns


def _user_parts(msg: UserMessage, decoder: MediaDecoder, param: str) -> str | list[Part]:
    if isinstance(msg.content, str):
        return msg.content
    parts: list[Part] = []
    after_visual = False
    for j, part in enumerate(msg.content):
        where = f"{param}[{j}]"
        if isinstance(part, (ImagePart, VideoURLPart, VideoFramesPart)):
            if isinstance(part, ImagePart):
                parts.append(decoder.image_url(part.image_url.url, f"{where}.image_url.url"))
            elif isinstance(part, VideoURLPart):
                parts.append(decoder.video_url(part.video_url.url, f"{where}.video_url.url"))
            else:
                parts.append(decoder.video_frames(part.video_frames, f"{where}.video_frames"))
            after_visual = True
            continue
        if after_visual and not (isinstance(part, TextPart) and part.text.startswith("\n")):
            parts.append("\n")
        after_visual = False
        if isinstance(part, TextPart):
            parts.append(part.text)
        elif isinstance(part, AudioPart):
            parts.append(decoder.audio(part.input_audio.data, part.input_audio.format, f"{where}.input_audio.data"))
    if after_visual:
        parts.append("\n")
    return parts


def usage(done: DoneEvent) -> dict[str, int]:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def finish_reason(done: DoneEvent) -> str:
    return "stop" if done.finish_reason == "cancelled" else done.finish_reason


class Completion:
    """Ids and timestamps of one response, and its bodies (whole or as stream chunks)."""

    def __init__(self, model: str, *, audio_format: str | None = None) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.audio_format = audio_format
        self.audio_id = f"audio_{uuid.uuid4().hex}" if audio_format else None

    def body(self, done: DoneEvent, audio: bytes | None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": done.text, "refusal": None,
                                   "vita_state": done.state}
        if self.audio_format and audio is not None:
            message["audio"] = {"id": self.audio_id, "data": base64.b64encode(audio).decode("ascii"),
                                "expires_at": self.created + AUDIO_TTL_S, "transcript": done.text}
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(done)}],
                "usage": usage(done)}

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [choice], **extra}

    def chunks(self, event: Event, *, include_usage: bool = False) -> list[dict[str, Any]]:
        """The stream chunks one engine event becomes."""
        from vita.server.audio_out import encode

        if isinstance(event, StateEvent):
            return [self.chunk({"role": "assistant", "content": "", "vita_state": event.state})]
        if isinstance(event, TextEvent):
            return [self.chunk({"content": event.text})]
        if isinstance(event, AudioEvent):
            data = base64.b64encode(encode(event.pcm, "pcm16", event.sample_rate)).decode("ascii")
            return [self.chunk({"audio": {"id": self.audio_id, "data": data, "transcript": event.transcript,
                                          "expires_at": self.created + AUDIO_TTL_S}})]
        out = [self.chunk({}, finish_reason(event))]
        if include_usage:
            out.append({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": usage(event)})
        return out
