"""1,600 generated malformed inputs (seeded): HTTP bodies, media files, WebSocket frames -> 0 5xx, 0 hangs.

Each input is a valid request, media file or client event with random damage: keys dropped or retyped, values
swapped for junk (huge numbers, deep nesting, wrong types, control characters, template markers), bytes flipped,
header fields of PNG / WAV / FLAC / MP3 / MP4 / AVI overwritten with random numbers, files truncated or padded.
Every HTTP answer must be a 2xx or an OpenAI-shaped 4xx within 5 s; every WebSocket frame must be followed by the
answer to a sentinel event (the session is alive and in order) with no `server_error`. Replies are teacher-forced
(`ScriptedEngine`), so the time goes to parsing, validation and media decoding, which is what is fuzzed.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import random
import time

import numpy as np
import pytest

from tests.server import realtime_helpers
from vita.server.audio_out import SpeechOut
from vita.server.limits import Limits
from vita.server.realtime import RealtimeConfig

M = "tiny-random"
LIMITS = Limits(max_request_bytes=2_000_000, max_audio_seconds=5.0, max_image_pixels=2_000_000, max_frames=8,
                max_new_tokens=8, max_video_seconds=30.0, max_realtime_frame_bytes=1_000_000)
SEED = int(os.environ.get("VITA_FUZZ_SEED", "18"))  # another seed explores other damage
JUNK = [None, True, False, 0, -1, 1.5, 2**64, -(2**70), 1e308, "", "x" * 5000, "<|im_start|>system\n", "</s>",
        "\x00\x01", "\ud7ff", [], [None], {}, {"a": {"b": {"c": []}}}, [[[[[]]]]], "data:image/png;base64,AAAA",
        "http://127.0.0.1:1/", "file:///etc/passwd", "NaN", 3.0]


def media_files() -> dict[str, bytes]:
    import av
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(0)
    out = {}
    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP"):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buf, fmt)
        out[fmt.lower()] = buf.getvalue()
    for fmt, sub in (("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")):
        buf = io.BytesIO()
        sf.write(buf, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000, format=fmt, subtype=sub)
        out[fmt.lower()] = buf.getvalue()
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as f:
        s = f.add_stream("libmp3lame", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for p in [*s.encode(frame), *s.encode()]:
            f.mux(p)
    out["mp3"] = buf.getvalue()
    for container, mime in (("mp4", "video/mp4"), ("avi", "video/x-msvideo"), ("matroska", "video/webm")):
        buf = io.BytesIO()
        with av.open(buf, "w", format=container) as f:
            s = f.add_stream("mpeg4", rate=4)
            s.width, s.height, s.pix_fmt = 32, 24, "yuv420p"
            for _ in range(4):
                for p in s.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8),
                                                             format="rgb24")):
                    f.mux(p)
            for p in s.encode():
                f.mux(p)
        out[mime] = buf.getvalue()
    return out


def damage(data: bytes, rng: random.Random) -> bytes:
    """Random damage, mostly in the header (where sizes, rates and counts live)."""
    b = bytearray(data)
    kind = rng.randrange(6) if len(b) > 8 else 3
    if kind == 0:  # overwrite a 4-byte field near the start with a random number
        at = rng.randrange(0, min(len(b) - 4, 200) + 1)
        b[at:at + 4] = rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, rng.getrandbits(32), 50_000_000]).to_bytes(4, "little")
    elif kind == 1:  # flip bytes
        for _ in range(rng.randrange(1, 20)):
            at = rng.randrange(min(len(b), 400))
            b[at] ^= 1 << rng.randrange(8)
    elif kind == 2:  # truncate
        b = b[: rng.randrange(1, max(len(b), 2))]
    elif kind == 3:  # junk appended or inserted
        at = rng.randrange(len(b) + 1)
        b[at:at] = rng.randbytes(rng.randrange(1, 3000))
    elif kind == 4:  # big-endian field (PNG, MP4 boxes)
        at = rng.randrange(0, min(len(b) - 4, 200) + 1)
        b[at:at + 4] = rng.choice([0, 1, 0xFFFFFFFF, 100_000, rng.getrandbits(32)]).to_bytes(4, "big")
    else:  # the file's signature kept, the rest random
        b = b[:16] + bytearray(rng.randbytes(rng.randrange(16, 2000)))
    return bytes(b)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def valid_bodies(files: dict[str, bytes]) -> list[dict]:
    url = lambda key, mime: f"data:{mime};base64,{b64(files[key])}"  # noqa: E731
    return [
        {"model": M, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        {"model": M, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [
            {"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": url("png", "image/png")}}]}],
         "temperature": 0.5, "top_p": 0.9, "seed": 3, "stream": True},
        {"model": M, "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": b64(files["wav"]), "format": "wav"}}]},
            {"role": "assistant", "content": "ok", "vita_state": "<1>"}, {"role": "user", "content": "and?"}]},
        {"model": M, "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": url("video/mp4", "video/mp4")}}]}], "max_tokens": 3},
        {"model": M, "messages": [{"role": "user", "content": [
            {"type": "video_frames", "video_frames": [url("jpeg", "image/jpeg")] * 2}, {"type": "text", "text": "?"}]}],
         "stop": ["x"], "stream_options": {"include_usage": True}, "stream": True},
    ]


def mutate(obj, rng: random.Random, depth: int = 0):
    """One random structural change somewhere in a JSON value."""
    if isinstance(obj, dict) and obj and (depth == 0 or rng.random() < 0.7):
        key = rng.choice(list(obj))
        action = rng.randrange(4)
        if action == 0:
            obj.pop(key)
        elif action == 1:
            obj[key] = copy.deepcopy(rng.choice(JUNK))
        elif action == 2:
            obj[rng.choice(["x", "type", "role", "content", "url", "data", "format", key + "_"])] = \
                copy.deepcopy(rng.choice(JUNK))
        else:
            obj[key] = mutate(obj[key], rng, depth + 1)
        return obj
    if isinstance(obj, list) and obj:
        i = rng.randrange(len(obj))
        action = rng.randrange(3)
        if action == 0:
            obj[i] = copy.deepcopy(rng.choice(JUNK))
        elif action == 1:
            obj.insert(i, copy.deepcopy(obj[i] if rng.random() < 0.5 else rng.choice(JUNK)))
        else:
            obj[i] = mutate(obj[i], rng, depth + 1)
        return obj
    return copy.deepcopy(rng.choice(JUNK))


def http_cases(files: dict[str, bytes], n_bodies: int, n_media: int) -> list[tuple[str, bytes]]:
    rng = random.Random(SEED)
    bodies = valid_bodies(files)
    cases = []
    for i in range(n_bodies):
        body = copy.deepcopy(rng.choice(bodies))
        for _ in range(rng.randrange(1, 4)):
            body = mutate(body, rng)
        raw = json.dumps(body).encode()
        if i % 5 == 0:  # raw-byte damage of the JSON text itself
            raw = damage(raw, rng)
        cases.append((f"body-{i}", raw))
    kinds = [("png", "image"), ("jpeg", "image"), ("gif", "image"), ("webp", "image"), ("bmp", "image"),
             ("wav", "audio"), ("flac", "audio"), ("ogg", "audio"), ("mp3", "audio"),
             ("video/mp4", "video"), ("video/x-msvideo", "video"), ("video/webm", "video")]
    for i in range(n_media):
        key, kind = kinds[i % len(kinds)]
        data = damage(files[key], rng)
        if kind == "image":
            part = {"type": "image_url", "image_url": {"url": f"data:image/{key};base64,{b64(data)}"}}
        elif kind == "audio":
            part = {"type": "input_audio", "input_audio": {"data": b64(data), "format": key}}
        else:
            part = {"type": "video_url", "video_url": {"url": f"data:{key};base64,{b64(data)}"}}
        body = {"model": M, "messages": [{"role": "user", "content": [part, {"type": "text", "text": "?"}]}],
                "max_tokens": 2}
        cases.append((f"media-{key}-{i}", json.dumps(body).encode()))
    return cases


def ws_cases(files: dict[str, bytes], n: int) -> list[str | bytes]:
    rng = random.Random(SEED + 1)
    pcm = b64(np.zeros(2400, "<i2").tobytes())
    image = f"data:image/png;base64,{b64(files['png'])}"
    valid = [
        {"type": "session.update", "session": {"instructions": "Be brief.", "modalities": ["text"],
                                               "input_audio_format": {"type": "audio/pcm", "rate": 16000},
                                               "turn_detection": {"type": "server_vad", "threshold": 0.5}}},
        {"type": "input_audio_buffer.append", "audio": pcm},
        {"type": "input_audio_buffer.commit"}, {"type": "input_audio_buffer.clear"},
        {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "say hi"}, {"type": "input_image", "image_url": image}]}},
        {"type": "response.create"}, {"type": "response.cancel"},
    ]
    out: list[str | bytes] = []
    for i in range(n):
        r = i % 10
        if r == 0:
            out.append(rng.randbytes(rng.randrange(1, 200)))  # binary frame
        elif r == 1:
            out.append(damage(json.dumps(rng.choice(valid)).encode(), rng).decode("utf-8", "replace"))
        elif r == 2:
            item = copy.deepcopy(valid[4])
            item["item"]["content"][1]["image_url"] = f"data:image/png;base64,{b64(damage(files['png'], rng))}"
            out.append(json.dumps(item))
        else:
            event = copy.deepcopy(rng.choice(valid))
            for _ in range(rng.randrange(1, 3)):
                event = mutate(event, rng)
            if isinstance(event, dict) and rng.random() < 0.8:
                event.setdefault("type", rng.choice(valid)["type"])
            out.append(json.dumps(event))
    return out


@pytest.fixture(scope="module")
def files():
    return media_files()


@pytest.fixture(scope="module")
def app(model, kit):
    engine = kit.ScriptedEngine(model, "<1> ok")
    return kit.make_app(engine, limits=LIMITS, realtime=RealtimeConfig(),
                        speech=SpeechOut(factory=lambda: (lambda text: np.zeros(0, np.float32))))


def test_http_bodies_and_media_files(app, kit, files):
    client = kit.client(app)
    cases = http_cases(files, 600, 600)
    statuses: dict[int, int] = {}
    slowest = (0.0, "")
    for name, raw in cases:
        t = time.monotonic()
        r = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
        took = time.monotonic() - t
        slowest = max(slowest, (took, name))
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (name, r.text[:300])
        assert took < 5, (name, took)  # no hang
        if r.status_code >= 400:
            err = r.json()["error"]
            assert set(err) == {"message", "type", "param", "code"} and err["message"], (name, err)
            assert "Traceback" not in r.text and "/tmp/" not in r.text
    assert client.get("/healthz").json() == {"status": "ok"}
    print(f"\n{len(cases)} HTTP cases: statuses {dict(sorted(statuses.items()))}, slowest {slowest[0] * 1000:.0f} ms "
          f"({slowest[1]})")


def test_websocket_frames(app, kit, files):
    client = kit.client(app)
    frames = ws_cases(files, 400)
    seen: dict[str, int] = {}
    with client.websocket_connect("/v1/realtime") as ws:
        def recv(timeout: float = 5.0) -> dict:
            return realtime_helpers.recv(ws, timeout)  # asserts a `websocket.send`: never closed on us

        assert recv()["type"] == "session.created"
        for i, frame in enumerate(frames):
            if isinstance(frame, bytes):
                ws.send_bytes(frame)
            else:
                ws.send_text(frame)
            ws.send_json({"type": "sentinel", "event_id": f"s{i}"})  # unknown type: an error naming s{i}
            while True:
                event = recv()
                seen[event["type"]] = seen.get(event["type"], 0) + 1
                if event["type"] == "error":
                    assert event["error"]["code"] != "server_error", (i, frame[:300], event)
                    if event["error"]["event_id"] == f"s{i}":
                        break
    print(f"\n{len(frames)} websocket frames: server events {dict(sorted(seen.items()))}")
