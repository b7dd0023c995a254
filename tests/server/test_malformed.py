"""200+ malformed requests: each gets the right 4xx in OpenAI's error shape, and the server stays healthy."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from vita.server.limits import Limits

M = "tiny-random"
LIMITS = Limits(max_request_bytes=1_000_000, max_images=2, max_frames=4, max_audio_seconds=2.0,
                max_image_pixels=1_000_000, max_audio_clips=2, max_new_tokens=64)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _png(w: int = 32, h: int = 24) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _wav(seconds: float = 0.3, rate: int = 16000, dtype: str = "PCM_16", values: np.ndarray | None = None) -> bytes:
    import soundfile as sf

    pcm = values if values is not None else 0.1 * np.sin(np.arange(int(seconds * rate)) / 5.0)
    buf = io.BytesIO()
    sf.write(buf, pcm.astype(np.float32), rate, format="WAV", subtype=dtype)
    return buf.getvalue()


PNG, WAV = _png(), _wav()
IMG = f"data:image/png;base64,{_b64(PNG)}"
GOOD_MSG = [{"role": "user", "content": "hi"}]


def body(**over) -> dict:
    out = {"model": M, "messages": GOOD_MSG, "max_tokens": 2}
    out.update(over)
    return {k: v for k, v in out.items() if v is not _DROP}


_DROP = object()


def user(*parts) -> list:
    return [{"role": "user", "content": list(parts)}]


def img(url) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def aud(data, fmt="wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


# ---------------------------------------------------------------------------------------------------- cases
# (id, request kwargs for TestClient.request, status, expected error code or None)
CASES: list[tuple[str, dict, int, str | None]] = []


def raw(name: str, data: bytes, status: int = 400, code: str | None = "invalid_json",
        ctype: str | None = "application/json") -> None:
    headers = {"content-type": ctype} if ctype is not None else {}
    CASES.append((name, {"method": "POST", "url": "/v1/chat/completions", "content": data, "headers": headers},
                  status, code))


def js(name: str, payload, status: int = 400, code: str | None = None) -> None:
    CASES.append((name, {"method": "POST", "url": "/v1/chat/completions", "content": json.dumps(payload).encode(),
                         "headers": {"content-type": "application/json"}}, status, code))


# bad JSON
for i, data in enumerate([b"{", b"[", b'{"model":', b'{"model": "x",}', b"{'model': 1}", b'{"a": NaN}',
                          b'{"a": Infinity}', b'{"a": -Infinity}', b"\xff\xfe\x00", b"{} x", b'{"a": tru}',
                          b'{"messages": [}', b"nul", b'"unterminated', b"[" * 100000 + b"]" * 100000,
                          b'{"a": "\\ud800"', b"\x00\x01\x02", b"\xef\xbb", b"{\"a\":1 \"b\":2}",
                          b"<xml/>"]):
    raw(f"json-{i}", data)
raw("empty-body", b"", code=None)
for i, data in enumerate([b"null", b"123", b'"text"', b"[]", b"[1, 2]", b"true", b"1.5"]):
    raw(f"not-object-{i}", data, code=None)
# content type
for ctype in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
              "application/jsonx", "text/json", "image/png", "", None]:
    raw(f"ctype-{ctype}", json.dumps(body()).encode(), status=415, code="unsupported_media_type", ctype=ctype)
# top-level fields
BAD_FIELDS = {
    "model": [1, None, [], {}, True],
    "messages": ["hi", {}, None, 1, [], [1], ["hi"], [None], [[]], _DROP],
    "max_tokens": ["5", 0, -1, 1.5, True, [], {}],
    "max_completion_tokens": ["5", 0, -3, 2.5, False],
    "temperature": ["1", -0.1, 2.5, True, [], {}],
    "top_p": [0, 1.5, -1, "x", False],
    "top_k": [-1, "a", 1.5],
    "stop": [1, [1], ["a", "b", "c", "d", "e"], [""], "", {"a": 1}, [None]],
    "seed": ["1", 1.5, True, []],
    "stream": ["true", 1, 0, "yes", []],
    "stream_options": ["x", {"foo": 1}, {"include_usage": "yes"}, []],
    "modalities": ["text", ["video"], [1], {}, ["text", None]],
    "audio": ["x", {"voice": 1, "format": "wav"}, {"voice": "a"}, {"format": "wav"}, [],
              {"voice": "a", "format": "wav", "speed": 2}],
    "n": [2, 0, "1", 1.5],
    "presence_penalty": [0.5, "0", -1.0],
    "frequency_penalty": [1, 0.2],
    "logprobs": [True, "false"],
    "top_logprobs": [3, "x"],
    "logit_bias": [{"1": 5}, "x", [1]],
    "response_format": [{"type": "json_object"}, {"type": "json_schema"}, "text"],
    "tools": [[{"type": "function", "function": {"name": "f"}}], "x", {}],
    "tool_choice": ["required", {"type": "function"}, 1],
    "parallel_tool_calls": ["yes", 1],
    "user": [1, []],
    "metadata": ["x", {"a": 1}],
    "store": ["no"],
}
for field_name, values in BAD_FIELDS.items():
    for i, value in enumerate(values):
        js(f"field-{field_name}-{i}", body(**{field_name: value}))
for name in ["foo", "Model", "max_new_tokens", "functions", "prompt", "echo", "best_of", "suffix", "image"]:
    js(f"unknown-field-{name}", {**body(), name: 1})
# messages and roles
for i, role in enumerate(["tool", "function", "bot", "", "USER", "System", "human", "model"]):
    js(f"role-{i}", body(messages=[{"role": role, "content": "x"}]))
BAD_MESSAGES = [
    [{"role": None, "content": "x"}], [{"role": 1, "content": "x"}], [{"content": "x"}], [{"role": "user"}],
    [{"role": "user", "content": 1}], [{"role": "user", "content": None}], [{"role": "user", "content": {}}],
    [{"role": "user", "content": [1]}], [{"role": "user", "content": [None]}], [{"role": "user", "content": ["x"]}],
    [{"role": "user", "content": [{}]}], [{"role": "user", "content": [{"type": "foo"}]}],
    [{"role": "user", "content": [{"type": "text"}]}], [{"role": "user", "content": [{"type": "text", "text": 1}]}],
    [{"role": "user", "content": [{"type": "text", "text": "a", "x": 1}]}], [{"role": "user", "content": []}],
    [{"role": "user", "content": "a", "foo": 1}], [{"role": "user", "content": "a", "name": 1}],
    [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": IMG}}]}],
    [{"role": "assistant", "content": [aud(_b64(WAV))]}], [{"role": "assistant", "content": 5}],
    [{"role": "assistant", "content": "x", "vita_state": "<4>"}], [{"role": "assistant", "tool_calls": []}],
    [{"role": "user", "content": "a"}, {"role": "system", "content": "late"}],
    [{"role": "developer", "content": None}], [{"role": "user", "content": [{"type": "TEXT", "text": "a"}]}],
    [{"role": "user", "content": [{"type": "image", "image": "x"}]}],
    [{"role": "user", "content": [{"type": "audio", "audio": "x"}]}],
    [{"role": "user", "content": [{"type": "text", "text": "<image> where"}]}],
    [{"role": "user", "content": "<audio> what"}], [{"role": "user", "content": "two <image><image>"}],
    "not-a-list-item",
]
for i, msgs in enumerate(BAD_MESSAGES):
    js(f"message-{i}", body(messages=msgs if isinstance(msgs, list) else [msgs]))
# image_url
TRUNC_B64 = _b64(PNG)[:-3]
BAD_IMAGE_URLS = [
    ("missing-url", {"type": "image_url", "image_url": {}}, None),
    ("url-int", {"type": "image_url", "image_url": {"url": 1}}, None),
    ("url-null", {"type": "image_url", "image_url": {"url": None}}, None),
    ("image_url-str", {"type": "image_url", "image_url": IMG}, None),
    ("detail", {"type": "image_url", "image_url": {"url": IMG, "detail": "ultra"}}, None),
    ("extra", {"type": "image_url", "image_url": {"url": IMG, "x": 1}}, None),
    ("empty", img(""), "invalid_url"), ("word", img("not a url"), "invalid_url"),
    ("no-base64", img("data:image/png,abc"), "invalid_url"), ("bad-chars", img("data:image/png;base64,@@@@"),
                                                              "invalid_base64"),
    ("truncated-b64", img(f"data:image/png;base64,{TRUNC_B64}"), "invalid_base64"),
    ("empty-data", img("data:image/png;base64,"), None), ("random", img(f"data:image/png;base64,{_b64(b'x' * 64)}"),
                                                          "invalid_image"),
    ("truncated-png", img(f"data:image/png;base64,{_b64(PNG[: len(PNG) // 2])}"), "invalid_image"),
    ("header-only", img(f"data:image/png;base64,{_b64(PNG[:16])}"), "invalid_image"),
    ("http", img("http://127.0.0.1:1/x.png"), "remote_media_disabled"),
    ("https", img("https://example.com/x.png"), "remote_media_disabled"),
    ("ftp", img("ftp://x/y.png"), "invalid_url"), ("file", img("file:///etc/passwd"), "invalid_url"),
    ("text-mime", img(f"data:text/plain;base64,{_b64(b'hello world')}"), "invalid_image"),
    ("gif-junk", img(f"data:image/gif;base64,{_b64(b'GIF89a' + bytes(20))}"), "invalid_image"),
    ("jpeg-junk", img(f"data:image/jpeg;base64,{_b64(bytes([0xFF, 0xD8, 0xFF]) + bytes(40))}"), "invalid_image"),
    ("spaces", img(f"data:image/png;base64,{_b64(PNG)[:20]} {_b64(PNG)[20:]}"), "invalid_base64"),
    ("urlsafe", img("data:image/png;base64,-_-_"), "invalid_base64"),
    ("too-many", None, "limit_exceeded"),
    ("too-big", img(f"data:image/png;base64,{_b64(_png(1100, 1000))}"), "limit_exceeded"),
]
for name, part, code in BAD_IMAGE_URLS:
    msgs = user(img(IMG), img(IMG), img(IMG)) if part is None else user(part, {"type": "text", "text": "?"})
    js(f"image-{name}", body(messages=msgs), code=code)
# input_audio
WAV_TRUNC = WAV[: len(WAV) // 2]
NAN_WAV = _wav(values=np.full(4000, np.nan), dtype="FLOAT")
BAD_AUDIO = [
    ("missing-data", {"type": "input_audio", "input_audio": {"format": "wav"}}, None),
    ("missing-format", {"type": "input_audio", "input_audio": {"data": _b64(WAV)}}, None),
    ("format-aac", aud(_b64(WAV), "aac"), None), ("format-upper", aud(_b64(WAV), "WAV"), None),
    ("format-int", aud(_b64(WAV), 1), None), ("data-int", aud(1), None), ("data-list", aud([1, 2]), None),
    ("input_audio-str", {"type": "input_audio", "input_audio": _b64(WAV)}, None),
    ("bad-b64", aud("!!!!"), "invalid_base64"), ("truncated-b64", aud(_b64(WAV)[:-2]), "invalid_base64"),
    ("data-url", aud(f"data:audio/wav;base64,{_b64(WAV)}"), "invalid_base64"), ("empty", aud(""), None),
    ("random-as-wav", aud(_b64(bytes(range(256)) * 4)), "invalid_audio"),
    ("wav-as-mp3", aud(_b64(WAV), "mp3"), "invalid_audio"), ("wav-as-flac", aud(_b64(WAV), "flac"), "invalid_audio"),
    ("png-as-wav", aud(_b64(PNG)), "invalid_audio"), ("truncated-wav", aud(_b64(WAV_TRUNC)), "invalid_audio"),
    ("riff-header-only", aud(_b64(WAV[:12])), "invalid_audio"),
    ("ogg-junk", aud(_b64(b"OggS" + bytes(100)), "ogg"), "invalid_audio"),
    ("flac-junk", aud(_b64(b"fLaC" + bytes(100)), "flac"), "invalid_audio"),
    ("mp3-junk", aud(_b64(b"ID3" + bytes(100)), "mp3"), "invalid_audio"),
    ("too-short", aud(_b64(_wav(0.01))), "invalid_audio"), ("nan", aud(_b64(NAN_WAV)), "invalid_audio"),
    ("too-long", aud(_b64(_wav(2.5))), "limit_exceeded"),
    ("too-many", None, "limit_exceeded"),
]
for name, part, code in BAD_AUDIO:
    msgs = user(aud(_b64(WAV)), aud(_b64(WAV)), aud(_b64(WAV))) if part is None else user(part)
    js(f"audio-{name}", body(messages=msgs), code=code)
# video
BAD_VIDEO = [
    ("url-missing", {"type": "video_url", "video_url": {}}, None),
    ("bad-b64", {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,%%%"}}, "invalid_base64"),
    ("junk-mp4", {"type": "video_url", "video_url": {"url": f"data:video/mp4;base64,{_b64(bytes(500))}"}},
     "invalid_video"),
    ("ftyp-junk", {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,"
                                                         + _b64(b"\x00\x00\x00\x18ftypmp42" + bytes(200))}},
     "invalid_video"),
    ("junk-in-image_url", img(f"data:video/webm;base64,{_b64(b'x' * 300)}"), "invalid_video"),
    ("remote", {"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}}, "remote_media_disabled"),
    ("frames-empty", {"type": "video_frames", "video_frames": []}, None),
    ("frames-str", {"type": "video_frames", "video_frames": IMG}, None),
    ("frames-int", {"type": "video_frames", "video_frames": [1]}, None),
    ("frames-corrupt", {"type": "video_frames", "video_frames": [f"data:image/png;base64,{_b64(b'junk')}"]},
     "invalid_image"),
    ("frames-too-many", {"type": "video_frames", "video_frames": [IMG] * 5}, "limit_exceeded"),
    ("frames-remote", {"type": "video_frames", "video_frames": ["http://127.0.0.1:1/f.png"]},
     "remote_media_disabled"),
]
for name, part, code in BAD_VIDEO:
    js(f"video-{name}", body(messages=user(part)), code=code)
# sizes, model, context, routes
HUGE = json.dumps(body(messages=[{"role": "user", "content": "x" * 1_100_000}])).encode()
CASES.append(("huge-body", {"method": "POST", "url": "/v1/chat/completions", "headers": {
    "content-type": "application/json"}, "content": HUGE}, 413, "request_too_large"))
CASES.append(("huge-image", {"method": "POST", "url": "/v1/chat/completions", "headers": {
    "content-type": "application/json"}, "content": json.dumps(body(messages=user(img(
        "data:image/png;base64," + "A" * 1_200_000)))).encode()}, 413, "request_too_large"))
CASES.append(("lying-length", {"method": "POST", "url": "/v1/chat/completions", "headers": {
    "content-type": "application/json", "content-length": "abc"}, "content": b"{}"}, 400, None))
js("unknown-model", body(model="gpt-4o"), 404, "model_not_found")
js("empty-model", body(model=""), 404, "model_not_found")
js("context", body(messages=[{"role": "user", "content": "x" * 5000}], max_tokens=4), 400, "context_length_exceeded")
js("max-tokens-limit", body(max_tokens=65), 400, "limit_exceeded")
js("max-completion-tokens-limit", body(max_completion_tokens=1000), 400, "limit_exceeded")
for method, url, status in [("GET", "/v1/chat/completions", 405), ("PUT", "/v1/chat/completions", 405),
                            ("POST", "/v1/models", 405), ("GET", "/v1/nothing", 404), ("POST", "/v1/completions", 404),
                            ("GET", "/nothing", 404), ("DELETE", "/v1/models/tiny-random", 405),
                            ("GET", "/v1/models/gpt-4", 404), ("POST", "/healthz", 405)]:
    CASES.append((f"route-{method}-{url}", {"method": method, "url": url}, status, None))


def test_there_are_enough_cases():
    assert len(CASES) >= 200, len(CASES)
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def http(model, kit):
    from vita.server.engine import Engine

    return kit.client(kit.make_app(Engine(model), limits=LIMITS))


@pytest.mark.parametrize(("name", "request_kw", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_malformed(http, name, request_kw, status, code):
    r = http.request(**request_kw)
    assert r.status_code == status, (name, r.text[:500])
    err = r.json()
    assert set(err) == {"error"} and set(err["error"]) == {"message", "type", "param", "code"}, err
    assert err["error"]["type"] == "invalid_request_error" and err["error"]["message"]
    assert "Traceback" not in r.text
    if code is not None:
        assert err["error"]["code"] == code, err
    assert http.get("/healthz").json() == {"status": "ok"}


def test_still_serving_after_all(http):
    r = http.post("/v1/chat/completions", json=body(messages=user(img(IMG), {"type": "text", "text": "hi"})))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"


def test_malformed_over_real_http(model, kit):
    """A sample of the cases through uvicorn's own HTTP parser."""
    import httpx

    from vita.server.engine import Engine

    sample = [c for c in CASES if c[0].startswith(("json-1", "ctype", "field-max_tokens", "role-", "audio-bad"))
              and c[0] not in ("json-14",)]
    with kit.LiveServer(kit.make_app(Engine(model), limits=LIMITS)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        for name, request_kw, status, _ in sample:
            r = client.request(**request_kw)
            assert r.status_code == status, (name, r.text[:300])
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.post("/v1/chat/completions", json=body()).status_code == 200
