"""The FastAPI app of `vita serve`: OpenAI-compatible routes over one shared model.

    GET  /healthz               {"status": "ok"}; never needs the key (it says nothing else)
    GET  /v1/models             the one served model
    GET  /v1/models/{id}
    POST /v1/chat/completions   text / image / video / audio in; text (+ speech) out; SSE with "stream": true
    GET  /v1/realtime           WebSocket, OpenAI Realtime events over a duplex session (see `realtime.py`)
    GET  /                      redirects to the voice page /static/index.html (`static/`: plain ES modules); the
                                page and its files never need the key (the page sends it on the websocket)

Every error is OpenAI's shape `{"error": {"message", "type", "param", "code"}}` (see `errors.py`); FastAPI's own
422 validation errors become 400s. With an API key (required off loopback, see `auth.py`) every other request needs
`Authorization: Bearer <key>`. Model work runs on the model thread (`worker.py`); a request is admitted (or
refused 429) before its media are decoded. Nothing costly runs on the event loop: the body is parsed and validated
on a thread (after a C-speed count of its JSON values, `--max-json-values`, and before pydantic, the counts of
messages and parts), text that cannot fit the context is refused from its length before it is tokenized, and
remote media (`--allow-remote-media`, `fetch.py`) are fetched on a thread before the model thread sees the request.
A non-streaming request whose client goes away is cancelled at the next token. The realtime websocket and the
browser page attach to the same
`ServerState` (`app.state.vita`): one model, one worker, one set of limits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from vita.errors import VitaError
from vita.server import audio_out, chat
from vita.server.auth import authorized, host_is_loopback, origin_is_loopback, split_host
from vita.server.engine import AudioEvent, DoneEvent, Engine, Params
from vita.server.errors import INTERNAL, APIError, bad_request, error_body, limit_exceeded
from vita.server.limits import Limits, count_json_values
from vita.server.media import MediaDecoder
from vita.server.openai_types import ROLES, ChatRequest, check_supported
from vita.server.realtime import RealtimeConfig
from vita.server.realtime import mount as mount_realtime
from vita.server.worker import ModelWorker

log = logging.getLogger("vita.server")
OPEN_PATHS = frozenset({"/healthz", "/"})
STATIC_DIR = Path(__file__).with_name("static")
STATIC_PREFIX = "/static/"


@dataclass
class ServerState:
    engine: Engine
    model_id: str
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    allow_remote_media: bool = False
    speech: audio_out.SpeechOut = field(default_factory=audio_out.SpeechOut)
    worker: ModelWorker | None = None
    started: int = field(default_factory=lambda: int(time.time()))
    allowed_hosts: tuple[str, ...] = ()  # beyond loopback, in the no-key mode ("*": any)
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.worker is None:
            self.worker = ModelWorker(self.limits.max_queued)

    def web_refusal(self, headers: Any) -> str | None:
        """Without an API key the server trusts the machine it runs on, so only loopback may reach it: a Host
        header that is not loopback is DNS rebinding, an Origin that is not loopback is some web page driving the
        user's browser. None when allowed (always, with a key: then the key decides)."""
        if self.api_key is not None:
            return None
        host = headers.get("host") or ""
        if not (host_is_loopback(host) or _listed(split_host(host.strip()), self.allowed_hosts)):
            return f"Host {host[:80]!r} is not allowed without an API key (loopback only; see --allow-host)"
        origin = headers.get("origin")
        if origin is not None and not (origin_is_loopback(origin) or _listed(origin, self.allowed_origins)):
            return f"Origin {origin[:80]!r} is not allowed without an API key (loopback only; see --allow-origin)"
        return None


def _listed(value: str, allowed: tuple[str, ...]) -> bool:
    return "*" in allowed or value.lower().rstrip("/") in {a.lower().rstrip("/") for a in allowed}


def create_app(engine: Engine, *, model_id: str, limits: Limits | None = None, api_key: str | None = None,
               allow_remote_media: bool = False, speech: audio_out.SpeechOut | None = None,
               realtime: RealtimeConfig | None = None, allowed_hosts: tuple[str, ...] | list[str] = (),
               allowed_origins: tuple[str, ...] | list[str] = ()) -> FastAPI:
    state = ServerState(engine, model_id, limits or Limits(), api_key, allow_remote_media,
                        speech or audio_out.SpeechOut(), allowed_hosts=tuple(allowed_hosts),
                        allowed_origins=tuple(allowed_origins))
    redact_keys_in_logs()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.worker.shutdown()

    app = FastAPI(title="vita", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.vita = state
    _install_errors(app)

    app.add_middleware(_Guard, state=state)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(state)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        _check_model(state, model_id, param=None)
        return _model_card(state)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            return await _chat(state, request)
        except APIError:
            raise
        except ClientDisconnect:  # gone mid-upload: nobody to answer, nothing wrong with the server
            log.info("POST /v1/chat/completions: the client disconnected before its body was read")
            return Response(status_code=400)
        except Exception:  # noqa: BLE001 - logged here, answered as a plain 500 (no traceback to the client)
            log.exception("unhandled error in POST /v1/chat/completions")
            return _error(INTERNAL)

    mount_realtime(app, state, realtime)
    _mount_page(app)
    return app


class _Guard:
    """Host/Origin allow-lists and the API key, for every HTTP request (a plain ASGI middleware: the route keeps
    the server's own `receive`, so a client's disconnect is seen by `Request.is_disconnected`)."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            from starlette.datastructures import Headers

            headers, path = Headers(scope=scope), scope["path"]
            refusal = self.state.web_refusal(headers)
            response = None
            if refusal is not None:
                response = _error(APIError(403, refusal, code="forbidden_origin"))
            elif self.state.api_key is not None and not (path in OPEN_PATHS or path.startswith(STATIC_PREFIX)) \
                    and not authorized(headers.get("authorization"), self.state.api_key):
                response = _error(APIError(401, "invalid or missing API key: send 'Authorization: Bearer <key>'",
                                           code="invalid_api_key"), headers={"WWW-Authenticate": "Bearer"})
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _mount_page(app: FastAPI) -> None:
    """The browser page: `GET /` -> /static/index.html, and the static files under /static/."""
    from fastapi.responses import RedirectResponse
    from fastapi.staticfiles import StaticFiles

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> RedirectResponse:
        # e.g. ?api_key=...&camera=1 is read by the page; the key moves to the fragment, which browsers never send
        # to a server (so no later request or log line carries it)
        from urllib.parse import urlencode

        query = [(k, v) for k, v in request.query_params.multi_items() if k != "api_key"]
        key = request.query_params.get("api_key")
        target = STATIC_PREFIX + "index.html" + (f"?{urlencode(query)}" if query else "")
        return RedirectResponse(target + (f"#{urlencode({'api_key': key})}" if key else ""))

    app.mount(STATIC_PREFIX.rstrip("/"), StaticFiles(directory=STATIC_DIR), name="static")


class _RedactKeys(logging.Filter):
    """Rewrites `api_key=<key>` in log records (uvicorn logs each request line with its query) as `api_key=***`."""

    pattern = re.compile(r"(api_key=)[^&\s\"']*", re.I)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.pattern.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self.pattern.sub(r"\1***", record.msg)
        return True


def redact_keys_in_logs() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactKeys) for f in logger.filters):
            logger.addFilter(_RedactKeys())


# ------------------------------------------------------------------------------------------------- chat route


async def _chat(state: ServerState, request: Request):
    body = await read_body(request, state.limits.max_request_bytes)
    # parsing and validating a large body is CPU work: off the event loop (/healthz and realtime keep running)
    req = await asyncio.to_thread(parse_body, body, state.limits)
    del body
    _check_model(state, req.model, param="model")
    check_supported(req)
    params = chat.params_from_request(req, state.limits.max_new_tokens)
    state.engine.check_text_length(chat.text_chars(req))  # before queueing: a 30 MB text is never tokenized
    streaming = bool(req.stream)
    audio_format = _audio_request(state, req, streaming)
    decoder = MediaDecoder(state.limits, allow_remote=state.allow_remote_media, audio_rate=state.engine.audio_rate)
    ticket = state.worker.admit()
    try:
        if decoder.allow_remote:  # remote media are fetched here, on a thread: never on the model thread
            await asyncio.to_thread(decoder.prefetch, chat.media_urls(req))
        inputs, params, tts = await state.worker.call(_prepare, state, req, decoder, params, audio_format)
    except BaseException:
        ticket.release()
        raise
    completion = chat.Completion(state.model_id, audio_format=audio_format)
    if not streaming:  # the reply runs in slices on the model thread (realtime turns go in between), gathered here
        events = state.worker.stream(lambda cancel: state.engine.reply(inputs, params, cancel, tts),
                                     on_done=ticket.release)
        job = asyncio.ensure_future(_collect(events, audio_format))
        await _until_done_or_gone(job, request, events.cancel)
        return JSONResponse(completion.body(*job.result()))
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    events = state.worker.stream(lambda cancel: state.engine.reply(inputs, params, cancel, tts),
                                 on_done=ticket.release)
    return StreamingResponse(_sse(completion, events, include_usage), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _prepare(state: ServerState, req: ChatRequest, decoder: MediaDecoder, params: Params, audio_format: str | None):
    """On the model thread: decode media, build the prompt, load the voice if speech is wanted (all may fail 400)."""
    try:
        inputs, params = state.engine.prepare(chat.to_turns(req, decoder), params)
        return inputs, params, state.speech.streaming() if audio_format else None
    except APIError:
        raise
    except (VitaError, ValueError) as exc:  # MediaError, PromptError, ConfigError: the input's fault
        raise bad_request(str(exc), "messages") from exc


async def _until_done_or_gone(job: asyncio.Future, request: Request, cancel: threading.Event) -> None:
    """Wait for a non-streaming reply; if the client goes away first, set `cancel` (generation stops at the next
    token) and let the job end on its own."""
    while True:
        done, _ = await asyncio.wait({job}, timeout=0.25)
        if done:
            return
        if await request.is_disconnected():
            cancel.set()
            await job  # ends within a token; its result is dropped
            return


async def _collect(events, audio_format: str | None):
    """A whole reply from its event stream: the done event and the encoded audio (encoded on a thread)."""
    pcm: list[np.ndarray] = []
    done = None
    async for event in events:
        if isinstance(event, AudioEvent):
            pcm.append(event.pcm)
        elif isinstance(event, DoneEvent):
            done = event
    audio = None
    if audio_format and pcm:
        audio = await asyncio.to_thread(audio_out.encode, np.concatenate(pcm), audio_format)
    return done, audio


async def _sse(completion: chat.Completion, events, include_usage: bool):
    try:
        async for event in events:
            for chunk in completion.chunks(event, include_usage=include_usage):
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    except APIError as exc:
        yield f"data: {json.dumps(exc.body())}\n\n"
    except Exception:  # noqa: BLE001 - the status line is gone; report in-band, never a traceback
        log.exception("error while streaming a chat completion")
        yield f"data: {json.dumps(INTERNAL.body())}\n\n"
    finally:
        events.close()
    yield "data: [DONE]\n\n"


def _audio_request(state: ServerState, req: ChatRequest, streaming: bool) -> str | None:
    wants_audio = "audio" in (req.modalities or [])
    if req.audio is not None and not wants_audio:
        raise bad_request('"audio" is given but "modalities" does not include "audio"', "modalities")
    if not wants_audio:
        return None
    if req.audio is None:
        raise bad_request('modalities includes "audio": give "audio": {"voice": ..., "format": ...}', "audio")
    audio_out.check_format(req.audio.format, streaming=streaming)
    state.speech.available()
    return req.audio.format


# ------------------------------------------------------------------------------------------- request parsing


async def read_body(request: Request, max_bytes: int) -> bytearray:
    """The raw body of a JSON request (415 for another content type, 413 over `max_bytes`, read as it streams)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise APIError(415, f"Content-Type must be application/json, got {ctype or 'none'!r}",
                       code="unsupported_media_type")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise bad_request(f"invalid Content-Length header {length!r}")
        if int(length) > max_bytes:
            raise _too_large(int(length), max_bytes)
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > max_bytes:
            raise _too_large(len(body), max_bytes, at_least=True)
    if not body:
        raise bad_request("empty request body: send a JSON object")
    return body


def decode_json(body: bytes | bytearray) -> Any:
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise bad_request(f"invalid JSON body: {exc}", code="invalid_json") from exc


def parse_body(body: bytes | bytearray, limits: Limits) -> ChatRequest:
    """Raw body -> validated request (run on a thread: it may take a while for a large body)."""
    count_json_values(body, limits.max_json_values, "the request body")
    return parse_chat_request(decode_json(body), limits)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _too_large(size: int, cap: int, at_least: bool = False) -> APIError:
    return APIError(413, f"request body is {'over ' if at_least else ''}{size - (1 if at_least else 0)} bytes > "
                    f"--max-request-bytes {cap}", code="request_too_large")


def parse_chat_request(obj: Any, limits: Limits | None = None) -> ChatRequest:
    if not isinstance(obj, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(obj).__name__}")
    messages = obj.get("messages")
    if isinstance(messages, list) and limits is not None:  # before validation: its cost grows with the items
        if len(messages) > limits.max_messages:
            raise limit_exceeded(f"messages: {len(messages)} messages > --max-messages {limits.max_messages}",
                                 "messages")
        parts = sum(len(m["content"]) for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list))
        if parts > limits.max_content_parts:
            raise limit_exceeded(f"messages: {parts} content parts > --max-content-parts {limits.max_content_parts}",
                                 "messages")
    if isinstance(messages, list):
        for i, msg in enumerate(messages):
            role = msg.get("role") if isinstance(msg, dict) else None
            if isinstance(role, str) and role not in ROLES:
                raise bad_request(f"messages[{i}].role: unsupported role {role!r} (supported: {', '.join(ROLES)})",
                                  f"messages[{i}].role")
    try:  # from the parsed object: the strings are not copied again (a 30 MB text stays one 30 MB string)
        return ChatRequest.model_validate(obj)
    except ValidationError as exc:
        raise validation_error(exc, obj) from exc


def validation_error(exc: ValidationError, obj: Any) -> APIError:
    """The most specific pydantic error as a 400, `param` the field path in the request (union labels dropped).

    Errors from the other branches of a union (content: str | list) only restate the same problem and are left out.
    """
    errors = exc.errors(include_url=False)
    best = max(errors, key=lambda e: len(_path(obj, e["loc"])[1]))
    text, _ = _path(obj, best["loc"])
    return bad_request(f"{text or 'body'}: {best['msg']}", text or None)


def _path(obj: Any, loc: tuple) -> tuple[str, list]:
    out: list = []
    tag_skipped: set[int] = set()  # a dict's discriminator label is skipped once (a field may share its name)
    for item in loc:
        if isinstance(item, str) and isinstance(obj, dict) and id(obj) not in tag_skipped \
                and item in (obj.get("type"), obj.get("role")):
            tag_skipped.add(id(obj))
        elif isinstance(item, int) and isinstance(obj, list) and 0 <= item < len(obj):
            obj = obj[item]
            out.append(item)
        elif isinstance(item, str) and isinstance(obj, dict) and item in obj:
            obj = obj[item]
            out.append(item)
        elif isinstance(item, str) and isinstance(obj, dict) and item.isidentifier() and item not in _TYPE_LABELS:
            out.append(item)  # a missing field
            break
        # anything else is a union branch label (a role, a part type, "str", "list[...]"): not part of the path
    text = ""
    for item in out:
        text += f"[{item}]" if isinstance(item, int) else (f".{item}" if text else item)
    return text, out


_TYPE_LABELS = frozenset({"str", "int", "float", "bool", "dict", "list", "none"})


def _check_model(state: ServerState, model_id: str, param: str | None) -> None:
    if model_id != state.model_id:
        raise APIError(404, f"the model {model_id!r} does not exist (this server serves {state.model_id!r})",
                       param=param, code="model_not_found")


def _model_card(state: ServerState) -> dict[str, Any]:
    return {"id": state.model_id, "object": "model", "created": state.started, "owned_by": "vita"}


# ---------------------------------------------------------------------------------------------------- errors


def _error(exc: APIError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(x) for x in first["loc"])
        return _error(bad_request(f"{where}: {first['msg']}", where or None))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse(error_body(message, type="invalid_request_error", code=code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return _error(INTERNAL)
