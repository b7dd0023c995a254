"""The chat-completions request schema (OpenAI wire format plus a few `vita` extensions), validated strictly.

Strict: unknown fields are refused (extra="forbid") and no type is coerced ("1" is not 1, 1 is not true).
OpenAI fields we accept but cannot honour are accepted only at their neutral value (`n` 1, penalties 0, ...);
`check_supported` refuses anything else with a message naming the field.

Content parts of a user message:
    {"type": "text", "text": ...}
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,...", "detail": "auto"}}
        (a `data:video/...` URL here is taken as a video clip)
    {"type": "input_audio", "input_audio": {"data": "<base64>", "format": "wav" | "mp3" | "ogg" | "flac"}}
    {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,..."}}            (vendor, as vLLM's)
    {"type": "video_frames", "video_frames": ["data:image/jpeg;base64,...", ...]}         (vendor: frames as given)
Extensions: `top_k` on the request; `vita_state` ("<1>" | "<2>" | "<3>") on an assistant message of the history.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vita.server.errors import bad_request


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageURL(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(_Strict):
    data: str
    format: Literal["wav", "mp3", "ogg", "flac"]


class AudioPart(_Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class VideoURL(_Strict):
    url: str


class VideoURLPart(_Strict):
    type: Literal["video_url"]
    video_url: VideoURL


class VideoFramesPart(_Strict):
    type: Literal["video_frames"]
    video_frames: list[str] = Field(min_length=1)


UserPart = Annotated[ImagePart | TextPart | AudioPart | VideoURLPart | VideoFramesPart, Field(discriminator="type")]


class SystemMessage(_Strict):
    role: Literal["system", "developer"]
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(_Strict):
    role: Literal["user"]
    content: str | Annotated[list[UserPart], Field(min_length=1)]
    name: str | None = None


class AssistantMessage(_Strict):
    role: Literal["assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    refusal: str | None = None
    vita_state: Literal["<1>", "<2>", "<3>"] | None = None  # vendor: the state token of this earlier reply


Message = Annotated[SystemMessage | UserMessage | AssistantMessage, Field(discriminator="role")]
ROLES = ("system", "developer", "user", "assistant")


class AudioOutput(_Strict):
    voice: str
    format: str


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**64)  # what a torch.Generator takes
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioOutput | None = None
    # accepted at their neutral value only (check_supported)
    n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    # informational, ignored
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None


def check_supported(req: ChatRequest) -> None:
    """Raise a 400 `APIError` for an OpenAI option set to something this server cannot do."""
    neutral: dict[str, tuple[Any, ...]] = {
        "n": (None, 1), "presence_penalty": (None, 0), "frequency_penalty": (None, 0),
        "logprobs": (None, False), "top_logprobs": (None, 0), "logit_bias": (None, {}), "tools": (None, []),
        "tool_choice": (None, "none", "auto"), "parallel_tool_calls": (None, True, False),
    }
    for name, allowed in neutral.items():
        value = getattr(req, name)
        if value not in allowed:
            raise bad_request(f"{name}={value!r} is not supported by this server", param=name, code="unsupported")
    if req.response_format is not None and req.response_format != {"type": "text"}:
        raise bad_request("response_format: only {'type': 'text'} is supported", param="response_format",
                          code="unsupported")
    stops = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
    if len(stops) > 4 or any(not s for s in stops):
        raise bad_request("stop: give up to 4 non-empty strings", param="stop")
