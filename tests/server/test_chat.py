"""Chat completions on tiny-random: structure, streaming, equality with `Vita.generate`, state, limits, auth."""

from __future__ import annotations

import base64
import io
import threading

import httpx
import numpy as np
import pytest

from vita.generation.sampling import SamplingConfig
from vita.server.limits import Limits

GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def app_client(model, kit):
    from vita.server.engine import Engine

    return kit.client(kit.make_app(Engine(model)))


def post(c, **body):
    return c.post("/v1/chat/completions", json={"model": "tiny-random", **body})


def error_of(r, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_health_and_models(app_client):
    assert app_client.get("/healthz").json() == {"status": "ok"}
    models = app_client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny-random"]
    assert app_client.get("/v1/models/tiny-random").json()["id"] == "tiny-random"
    assert error_of(app_client.get("/v1/models/nope"), 404)["code"] == "model_not_found"


def test_text_matches_generate(app_client, model):
    r = post(app_client, messages=[{"role": "user", "content": "hi"}], max_tokens=12, **GREEDY)
    assert r.status_code == 200, r.text
    body = r.json()
    ref = model.generate("hi", max_new_tokens=12)
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == ref.text
    assert choice["message"]["vita_state"] == ref.state
    assert choice["finish_reason"] == ref.finish_reason
    usage = body["usage"]
    assert usage["completion_tokens"] == len(ref.token_ids)
    assert usage["prompt_tokens"] == model.inputs("hi").token_ids.shape[1]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    again = post(app_client, messages=[{"role": "user", "content": "hi"}], max_tokens=12, **GREEDY).json()
    assert again["choices"][0]["message"]["content"] == choice["message"]["content"]  # deterministic


def test_media_matches_generate(app_client, model, kit):
    png, wav = kit.png(), kit.wav()
    content = [kit.image_part(png), kit.text_part("what is it?"), kit.audio_part(wav)]
    body = post(app_client, messages=kit.user(*content), max_completion_tokens=10, **GREEDY).json()
    ref = model.generate("what is it?", images=[png], audio=wav, max_new_tokens=10)
    assert body["choices"][0]["message"]["content"] == ref.text
    assert body["usage"]["prompt_tokens"] == model.inputs("what is it?", images=[png], audio=wav).token_ids.shape[1]
    # audio alone, and an image alone (the official "<image>\n" layout)
    body = post(app_client, messages=kit.user(kit.audio_part(wav)), max_tokens=6, **GREEDY).json()
    assert body["choices"][0]["message"]["content"] == model.generate(audio=wav, max_new_tokens=6).text
    body = post(app_client, messages=kit.user(kit.image_part(png)), max_tokens=6, **GREEDY).json()
    assert body["choices"][0]["message"]["content"] == model.generate(images=[png], max_new_tokens=6).text


def test_video_frames_and_mp4(app_client, model, kit, tmp_path):
    frames = [kit.png(seed=i) for i in range(4)]
    part = {"type": "video_frames", "video_frames": [kit.data_url(f, "image/png") for f in frames]}
    body = post(app_client, messages=kit.user(part, kit.text_part("and?")), max_tokens=6, **GREEDY).json()
    assert body["choices"][0]["message"]["content"] == model.generate("and?", video=frames, max_new_tokens=6).text
    clip = kit.mp4(tmp_path / "clip.mp4")
    ref = model.generate("and?", video=str(tmp_path / "clip.mp4"), max_new_tokens=6).text
    for part in ({"type": "video_url", "video_url": {"url": kit.data_url(clip, "video/mp4")}},
                 {"type": "image_url", "image_url": {"url": kit.data_url(clip, "video/mp4")}}):
        body = post(app_client, messages=kit.user(part, kit.text_part("and?")), max_tokens=6, **GREEDY).json()
        assert body["choices"][0]["message"]["content"] == ref


def test_streaming(app_client, model, kit):
    png = kit.png()
    r = post(app_client, messages=kit.user(kit.image_part(png), kit.text_part("hi")), max_tokens=12, stream=True,
             stream_options={"include_usage": True}, **GREEDY)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = kit.sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and "vita_state" in first
    assert sum("vita_state" in c["choices"][0]["delta"] for c in chunks if c["choices"]) == 1
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 12
    final = chunks[-2]["choices"][0]
    assert final["finish_reason"] == "length" and final["delta"] == {}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    ref = model.generate("hi", images=[png], max_new_tokens=12)
    assert text.strip() == ref.text
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 1  # incremental


def test_seeded_sampling_is_reproducible(app_client, model):
    msgs = [{"role": "user", "content": "tell me"}]
    a = post(app_client, messages=msgs, max_tokens=10, temperature=1.0, top_p=0.9, seed=7).json()
    b = post(app_client, messages=msgs, max_tokens=10, temperature=1.0, top_p=0.9, seed=7).json()
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    ref = model.generate("tell me", max_new_tokens=10, sampling=SamplingConfig(temperature=1.0, top_p=0.9), seed=7)
    assert a["choices"][0]["message"]["content"] == ref.text


def test_history_and_system(app_client, model):
    from vita.processor import Turn

    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "vita_state": "<3>"}, {"role": "user", "content": "again"}]
    body = post(app_client, messages=msgs, max_tokens=8, **GREEDY).json()
    turns = [Turn("system", "be brief"), Turn("user", "hi"), Turn("assistant", "<3>hello"), Turn("user", "again")]
    inputs = model.processor(turns)
    gen = model.stream(inputs, max_new_tokens=8)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            ref = stop.value
            break
    assert body["choices"][0]["message"]["content"] == ref.text
    assert body["usage"]["prompt_tokens"] == inputs.token_ids.shape[1]


@pytest.mark.parametrize("stream", [False, True])
def test_state_two_is_silent(model, kit, stream):
    c = kit.client(kit.make_app(kit.ScriptedEngine(model, "<2> not for me")))
    r = post(c, messages=[{"role": "user", "content": "hm"}], max_tokens=20, stream=stream)
    if not stream:
        choice = r.json()["choices"][0]
        assert choice["message"]["content"] == "" and choice["message"]["vita_state"] == "<2>"
        assert choice["finish_reason"] == "stop"
        return
    chunks = [e for e in kit.sse_events(r.text) if e != "[DONE]"]
    assert chunks[0]["choices"][0]["delta"]["vita_state"] == "<2>"
    assert not any(ch["choices"][0]["delta"].get("content") for ch in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_state_token_never_in_text_and_stop_strings(model, kit):
    c = kit.client(kit.make_app(kit.ScriptedEngine(model, "<1> Hello there. STOP more")))
    body = post(c, messages=[{"role": "user", "content": "hm"}], max_tokens=40, stop="STOP").json()
    msg = body["choices"][0]["message"]
    assert msg["vita_state"] == "<1>" and msg["content"] == "Hello there."
    assert body["choices"][0]["finish_reason"] == "stop"
    r = post(c, messages=[{"role": "user", "content": "hm"}], max_tokens=40, stream=True, stop=["STOP"])
    chunks = [e for e in kit.sse_events(r.text) if e != "[DONE]"]
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks)
    assert "<1>" not in text and text.strip() == "Hello there."
    assert chunks[0]["choices"][0]["delta"]["vita_state"] == "<1>"


def _tts_or_skip():
    pytest.importorskip("piper")
    pytest.importorskip("onnxruntime")


def test_audio_out(model, kit):
    _tts_or_skip()
    import soundfile as sf

    c = kit.client(kit.make_app(kit.ScriptedEngine(model, "<1> Hello there, how are you today?")))
    body = post(c, messages=[{"role": "user", "content": "hm"}], max_tokens=60, modalities=["text", "audio"],
                audio={"voice": "alloy", "format": "wav"})
    assert body.status_code == 200, body.text
    msg = body.json()["choices"][0]["message"]
    assert msg["audio"]["transcript"] == msg["content"] == "Hello there, how are you today?"
    pcm, rate = sf.read(io.BytesIO(base64.b64decode(msg["audio"]["data"])))
    assert rate == 24000 and len(pcm) > 2400 and np.abs(pcm).max() > 0.01
    r = post(c, messages=[{"role": "user", "content": "hm"}], max_tokens=60, stream=True,
             modalities=["text", "audio"], audio={"voice": "alloy", "format": "pcm16"})
    chunks = [e for e in kit.sse_events(r.text) if e != "[DONE]"]
    audio = [ch["choices"][0]["delta"]["audio"] for ch in chunks if "audio" in ch["choices"][0]["delta"]]
    assert len(audio) >= 2  # clause by clause
    assert "".join(a["transcript"] for a in audio).strip() == "Hello there, how are you today?"
    assert sum(len(base64.b64decode(a["data"])) for a in audio) > 4800
    # <2>: no audio at all
    c2 = kit.client(kit.make_app(kit.ScriptedEngine(model, "<2> quiet")))
    msg = post(c2, messages=[{"role": "user", "content": "hm"}], max_tokens=20, modalities=["text", "audio"],
               audio={"voice": "alloy", "format": "wav"}).json()["choices"][0]["message"]
    assert msg["content"] == "" and "audio" not in msg


def test_audio_out_errors(model, kit):
    from vita.server.audio_out import SpeechOut
    from vita.server.engine import Engine

    def broken():
        raise OSError("voice file missing")

    c = kit.client(kit.make_app(Engine(model), speech=SpeechOut(factory=broken)))
    msgs = [{"role": "user", "content": "hm"}]
    err = error_of(post(c, messages=msgs, modalities=["text", "audio"], audio={"voice": "x", "format": "wav"}), 400)
    assert "audio output unavailable" in err["message"] and "voice file missing" in err["message"]
    assert c.get("/healthz").status_code == 200
    err = error_of(post(c, messages=msgs, stream=True, modalities=["text", "audio"],
                        audio={"voice": "x", "format": "pcm16"}), 400)  # a proper status, not an in-band error
    assert "audio output unavailable" in err["message"]
    err = error_of(post(c, messages=msgs, stream=True, modalities=["text", "audio"],
                        audio={"voice": "x", "format": "wav"}), 400)
    assert "pcm16" in err["message"]
    assert error_of(post(c, messages=msgs, modalities=["text", "audio"]), 400)["param"] == "audio"
    assert error_of(post(c, messages=msgs, audio={"voice": "x", "format": "wav"}), 400)["param"] == "modalities"
    assert "opus" in error_of(post(c, messages=msgs, modalities=["audio"], audio={"voice": "x", "format": "opus"}),
                              400)["message"]


def test_limits(model, kit):
    from vita.server.engine import Engine

    limits = Limits(max_request_bytes=200_000, max_images=1, max_image_pixels=5000, max_audio_seconds=0.3,
                    max_frames=3, max_new_tokens=50)
    c = kit.client(kit.make_app(Engine(model), limits=limits))
    small = kit.png(40, 30)

    def refused(status: int, flag: str, **body) -> None:
        err = error_of(post(c, **body), status)
        assert flag in err["message"], err

    refused(400, "--max-images 1", messages=kit.user(kit.image_part(small), kit.image_part(small)))
    refused(400, "--max-image-pixels 5000", messages=kit.user(kit.image_part(kit.png(100, 60))))
    refused(400, "--max-audio-seconds 0.3", messages=kit.user(kit.audio_part(kit.wav(0.5))))
    frames = [kit.data_url(small, "image/png")] * 4
    refused(400, "--max-frames 3", messages=kit.user({"type": "video_frames", "video_frames": frames}))
    refused(400, "--max-new-tokens 50", messages=kit.user(text="hi"), max_tokens=51)
    refused(413, "--max-request-bytes 200000", messages=kit.user(text="x" * 300_000))
    assert post(c, messages=kit.user(kit.image_part(small)), max_tokens=2).status_code == 200
    err = error_of(post(c, messages=kit.user(text="hi"), max_tokens=4096), 400)
    assert err["code"] in ("limit_exceeded", "context_length_exceeded")
    assert c.get("/healthz").status_code == 200


def test_context_length(model, kit):
    from vita.server.engine import Engine

    c = kit.client(kit.make_app(Engine(model)))
    err = error_of(post(c, messages=kit.user(text="hi"), max_tokens=2048 - 1 + 2048), 400)
    assert "--max-new-tokens" in err["message"]
    err = error_of(post(c, messages=kit.user(text="x" * 4000), max_tokens=200), 400)
    assert err["code"] == "context_length_exceeded" and "4096" in err["message"]


def test_remote_media_refused(app_client, kit):
    err = error_of(post(app_client, messages=kit.user(
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}})), 400)
    assert err["code"] == "remote_media_disabled" and "--allow-remote-media" in err["message"]
    assert err["param"] == "messages[0].content[0].image_url.url"


def test_auth(model, kit):
    from vita.server.engine import Engine

    c = kit.client(kit.make_app(Engine(model), api_key="s3cret"))
    body = {"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}, {"Authorization": "Basic x"}):
        err = error_of(c.post("/v1/chat/completions", json=body, headers=headers), 401)
        assert err["code"] == "invalid_api_key"
        assert error_of(c.get("/v1/models", headers=headers), 401)["code"] == "invalid_api_key"
    ok = {"Authorization": "Bearer s3cret"}
    assert c.post("/v1/chat/completions", json=body, headers=ok).status_code == 200
    assert c.get("/v1/models", headers=ok).status_code == 200
    assert c.get("/healthz").status_code == 200  # says nothing but "ok"


def test_cli_requires_key_off_loopback(monkeypatch, capsys):
    from vita.cli import main
    from vita.errors import ConfigError
    from vita.server.auth import is_loopback, resolve_api_key

    monkeypatch.delenv("VITA_API_KEY", raising=False)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example")
    assert resolve_api_key("127.0.0.1", None) is None
    with pytest.raises(ConfigError, match="requires an API key"):
        resolve_api_key("0.0.0.0", None)
    assert resolve_api_key("0.0.0.0", "k") == "k"
    monkeypatch.setenv("VITA_API_KEY", "from-env")
    assert resolve_api_key("0.0.0.0", None) == "from-env"
    monkeypatch.delenv("VITA_API_KEY")
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2  # refused before loading anything
    assert "requires an API key" in capsys.readouterr().err
    assert main(["serve", "--max-images", "0"]) == 2


def test_errors_never_leak(model, kit):
    c = kit.client(kit.make_app(kit.ScriptedEngine(model, "", fail=True)))
    r = post(c, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    err = error_of(r, 500)
    assert err["type"] == "server_error" and "secret" not in r.text and "Traceback" not in r.text
    r = post(c, messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True)
    events = kit.sse_events(r.text)
    assert events[-1] == "[DONE]" and events[-2]["error"]["type"] == "server_error" and "secret" not in r.text
    assert c.get("/healthz").status_code == 200


def test_busy_429_and_loop_stays_responsive(model, kit):
    gate = threading.Event()
    engine = kit.ScriptedEngine(model, "<3> hello", gate=gate)
    app = kit.make_app(engine, limits=Limits(max_queued=0))
    body = {"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
    with kit.LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        result: dict = {}
        first = threading.Thread(target=lambda: result.update(r=http.post("/v1/chat/completions", json=body)))
        first.start()
        assert engine.started.wait(10)  # the first request holds the model thread
        assert http.get("/healthz").json() == {"status": "ok"}  # the event loop is free
        err = error_of(http.post("/v1/chat/completions", json=body), 429)
        assert err["code"] == "server_busy" and "--max-queued 0" in err["message"]
        gate.set()
        first.join(20)
        assert result["r"].status_code == 200 and result["r"].json()["choices"][0]["message"]["content"] == "hello"
        assert http.post("/v1/chat/completions", json=body).status_code == 200  # admitted again


def test_stream_is_incremental_over_http(model, kit):
    """Chunks arrive while generation runs: the first one is read before the reply is finished."""
    gate = threading.Event()

    class Slow(kit.ScriptedEngine):
        def token_ids(self, inputs, params):
            ids = self.vita.tokenizer.encode(self.script, add_special_tokens=False)
            for i, token in enumerate(ids):
                if i == 6:
                    gate.wait(10)  # hold the rest until the client saw the first chunks
                yield token

    app = kit.make_app(Slow(model, "<3> one two three four"))
    body = {"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 40, "stream": True}
    with kit.LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert '"vita_state": "<3>"' in first and not gate.is_set()
            gate.set()
            rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"


def test_client_disconnect_cancels_generation(model, kit):
    import time

    produced: list[int] = []

    class Slow(kit.ScriptedEngine):
        def token_ids(self, inputs, params):
            for token in self.vita.tokenizer.encode(self.script, add_special_tokens=False):
                produced.append(token)
                time.sleep(0.02)
                yield token

    app = kit.make_app(Slow(model, "<3> " + "word " * 100))
    body = {"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 600,
            "stream": True}
    with kit.LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            next(line for line in r.iter_lines() if '"content": "w' in line)
        deadline = time.monotonic() + 5
        while app.state.vita.worker.admitted and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.state.vita.worker.admitted == 0  # the job ended and released its slot
        assert len(produced) < 300  # well before the end of the 504-token script
        assert http.get("/healthz").status_code == 200
