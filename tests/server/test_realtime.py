"""`GET /v1/realtime` over Starlette's TestClient: tiny random weights, replies teacher-forced per connection.

Forcing: a typed item "say X" is answered "<1> X"; other queries take the connection's scripts in order (`<2>`,
whole answers). Spoken input is Piper speech at 16 kHz resampled to 24 kHz pcm16, sent in 20 ms appends (faster
than real time; the VAD works on samples). Replies are played out on the real clock, so answers are kept short.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import time

import numpy as np
import pytest

pytest.importorskip("piper")
pytest.importorskip("onnxruntime")

from tests.server.realtime_helpers import recv, recv_message, send_audio, until, wait_for  # noqa: E402
from vita.duplex.roles import Script, ScriptedReplies  # noqa: E402
from vita.duplex.session import SessionConfig  # noqa: E402
from vita.server.audio_out import SpeechOut  # noqa: E402
from vita.server.engine import Engine  # noqa: E402
from vita.server.limits import Limits  # noqa: E402
from vita.server.realtime import RealtimeConfig  # noqa: E402
from vita.speech.echo import GateConfig  # noqa: E402
from vita.speech.tts import resample  # noqa: E402
from vita.speech.vad import VADConfig  # noqa: E402

LONG = "<1> " + " ".join(["The weather today is sunny and warm, with a light breeze from the west."] * 4)
SHORT = "<1> Here is one, about a cat."


@pytest.fixture(scope="module")
def piper24():
    from vita.speech.tts import PiperSynth

    synth, memo = PiperSynth(out_rate=24000), {}

    def speak(text: str) -> np.ndarray:
        if text not in memo:
            memo[text] = synth(text)
        return memo[text]

    speak.synth = synth
    return speak


@pytest.fixture(scope="module")
def question(piper24) -> np.ndarray:
    """'What is the weather like today?' synthesized at 16 kHz, then resampled to 24 kHz (int16, with silence)."""
    p16 = copy.copy(piper24.synth)
    p16.out_rate = 16000
    q16 = 0.5 * p16("What is the weather like today?")
    pcm = np.concatenate([np.zeros(4800, np.float32), resample(q16, 16000, 24000), np.zeros(19200, np.float32)])
    return (pcm * 32767).astype(np.int16)


@pytest.fixture(scope="module")
def make(model, piper24, kit):
    def build(scripts=(), api_key=None, **limits):
        def forcing_factory():
            replies = ScriptedReplies(list(scripts))

            def forcing(turns):
                content = turns[-1].content
                for part in [content] if isinstance(content, str) else content:
                    if part == "boom":
                        raise RuntimeError("secret internal detail")
                    if isinstance(part, str) and part.startswith("say "):
                        return Script("<1> " + part[4:])
                return replies(turns)
            return forcing

        config = RealtimeConfig(forcing=forcing_factory, session=lambda: SessionConfig(
            lead_s=0.2, vad=VADConfig(min_silence_ms=300), gate=GateConfig(enabled=False)))
        app = kit.make_app(Engine(model), limits=Limits(**limits), api_key=api_key,
                           speech=SpeechOut(factory=lambda: piper24), realtime=config)
        from fastapi.testclient import TestClient

        return TestClient(app)
    return build


def of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


def text_item(ws, text: str, image: str | None = None) -> None:
    content = [{"type": "input_text", "text": text}]
    if image:
        content.append({"type": "input_image", "image_url": image})
    ws.send_json({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                               "content": content}})
    ws.send_json({"type": "response.create"})


def connect(client, **kw):
    ws = client.websocket_connect("/v1/realtime", **kw)
    session = ws.__enter__()
    assert recv(session)["type"] == "session.created"
    return ws, session


def test_text_item_streams_text_then_done(make, kit):
    with make() as client, client.websocket_connect("/v1/realtime") as ws:
        created = recv(ws)
        assert created["type"] == "session.created" and created["session"]["modalities"] == ["audio", "text"]
        ws.send_json({"type": "session.update", "session": {"modalities": ["text"], "instructions": "Be brief."}})
        assert recv(ws)["session"]["modalities"] == ["text"]
        text_item(ws, "say Hello there, friend.", image=kit.data_url(kit.png(), "image/png"))
        events = until(ws, "response.done")
        assert [e["type"] for e in events][:1] == ["response.created"]
        assert events[0]["response"]["vita_state"] == "<1>"
        assert "".join(e["delta"] for e in of(events, "response.text.delta")) == "Hello there, friend."
        assert not of(events, "response.audio.delta")
        done = events[-1]["response"]
        assert done["status"] == "completed" and done["vita_state"] == "<1>"
        assert done["output"][0]["content"][0]["text"] == "Hello there, friend."


def test_spoken_question_is_answered_with_audio(make, question, monkeypatch):
    import threading

    from vita.media.audio import StreamResampler

    threads: set[str] = set()  # the 24 kHz input is resampled on the hub's audio threads, never on the event loop
    call = StreamResampler.__call__
    monkeypatch.setattr(StreamResampler, "__call__",
                        lambda self, pcm: threads.add(threading.current_thread().name) or call(self, pcm))
    with make(scripts=[SHORT]) as client, client.websocket_connect("/v1/realtime") as ws:
        recv(ws)
        send_audio(ws, question)
        events = until(ws, "response.done")
        assert threads and all(name.startswith("vita-audio") for name in threads), threads
        kinds = [e["type"] for e in events]
        assert kinds[:3] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                             "input_audio_buffer.committed"]
        assert kinds.index("response.created") > 2
        audio = b"".join(base64.b64decode(e["delta"]) for e in of(events, "response.audio.delta"))
        assert len(audio) > 24000  # > 0.5 s of 24 kHz pcm16
        assert "".join(e["delta"] for e in of(events, "response.audio_transcript.delta")) == SHORT[4:]
        assert events[-1]["response"]["status"] == "completed"


def test_not_a_query_gets_no_response(make, question):
    with make(scripts=["<2>"]) as client, client.websocket_connect("/v1/realtime") as ws:
        recv(ws)
        send_audio(ws, question)
        until(ws, "input_audio_buffer.committed")
        (conn,) = client.app.state.vita_realtime.connections
        end = time.monotonic() + 10
        while conn.session.busy and time.monotonic() < end:  # the <2> is decided in a few ticks
            time.sleep(0.01)
        assert not conn.session.busy and conn.session.history == []
        text_item(ws, "say Now yes.")
        events = until(ws, "response.done")
        assert events[0]["type"] == "response.created"  # nothing came for the spoken <2> utterance
        assert "".join(e["delta"] for e in of(events, "response.audio_transcript.delta")) == "Now yes."


def test_barge_in_cancels_and_answers_again(make, question):
    with make(scripts=[LONG, SHORT]) as client, client.websocket_connect("/v1/realtime") as ws:
        recv(ws)
        send_audio(ws, question)
        first = until(ws, "response.audio.delta")
        rid = of(first, "response.created")[0]["response"]["id"]
        send_audio(ws, question)  # the user talks over the answer
        events = until(ws, "response.done", n=2)
        dones = of(events, "response.done")
        assert dones[0]["response"]["id"] == rid and dones[0]["response"]["status"] == "cancelled"
        assert dones[0]["response"]["status_details"]["reason"] == "turn_detected"
        (second,) = of(events, "response.created")
        assert second["response"]["id"] != rid == dones[0]["response"]["id"]
        assert dones[1]["response"]["id"] == second["response"]["id"]
        assert dones[1]["response"]["status"] == "completed"
        after = events[events.index(dones[0]):]
        assert not [e for e in after if e.get("response_id") == rid]  # nothing of the old one after its done


BAD = [
    "not json", "{", "[]", "3", '"x"', "null", '{"type": 5}', "{}", '{"type": "nope"}', '{"type": "response.made"}',
    '{"type": "input_audio_buffer.append"}', '{"type": "input_audio_buffer.append", "audio": 5}',
    '{"type": "input_audio_buffer.append", "audio": "AAA"}', '{"type": "input_audio_buffer.append", "audio": "!!"}',
    '{"type": "input_audio_buffer.append", "audio": "AA=="}', '{"type": "session.update"}',
    '{"type": "session.update", "session": 1}', '{"type": "session.update", "session": {"instructions": 5}}',
    '{"type": "session.update", "session": {"modalities": "text"}}',
    '{"type": "session.update", "session": {"modalities": ["video"]}}',
    '{"type": "session.update", "session": {"voice": []}}',
    '{"type": "session.update", "session": {"input_audio_format": "g711_ulaw"}}',
    '{"type": "session.update", "session": {"input_audio_format": {"type": "audio/pcm", "rate": 8000}}}',
    '{"type": "session.update", "session": {"output_audio_format": "mp3"}}',
    '{"type": "session.update", "session": {"turn_detection": null}}',
    '{"type": "session.update", "session": {"turn_detection": {"threshold": "hi"}}}',
    '{"type": "session.update", "session": {"turn_detection": {"threshold": 3}}}',
    '{"type": "session.update", "session": {"turn_detection": {"silence_duration_ms": true}}}',
    '{"type": "conversation.item.create"}', '{"type": "conversation.item.create", "item": []}',
    '{"type": "conversation.item.create", "item": {"role": "assistant", "content": []}}',
    '{"type": "conversation.item.create", "item": {"role": "user"}}',
    '{"type": "conversation.item.create", "item": {"role": "user", "content": [1]}}',
    '{"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "input_text"}]}}',
    '{"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "input_image", '
    '"image_url": "http://x"}]}}',
    '{"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "input_text", '
    '"text": "hi"}, {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}}',
    '{"type": "conversation.item.create", "item": {"role": "user", "content": []}}',
    '{"type": "response.create"}', '{"type": "response.cancel"}', '{"type": "input_audio_buffer.commit"}',
    '{"type": "response.create", "event_id": "ev_1"}', "[1, 2", '{"type": null}', '{"type": ["session.update"]}',
    "\u00ff\u00fe", "{'type': 'response.create'}", '{"type": "input_audio_buffer.append", "audio": null}',
    '{"type": "input_audio_buffer.append", "audio": "QUJD"}', "NaN", '{"type": "session.update", "session": '
    '{"turn_detection": {"prefix_padding_ms": -5}}}', '{"type": "Session.Update"}', " ",
]


def test_malformed_frames_each_get_an_error(make):
    with make(max_realtime_frame_bytes=4096) as client, client.websocket_connect("/v1/realtime") as ws:
        recv(ws)
        for frame in BAD:
            ws.send_text(frame)
        ws.send_text('{"type": "input_audio_buffer.append", "audio": "' + "A" * 8000 + '"}')  # over the cap
        ws.send_bytes(b"\x00\x01")
        n = len(BAD) + 2
        assert n >= 50
        events = [recv(ws) for _ in range(n)]
        assert [e["type"] for e in events] == ["error"] * n
        assert {"invalid_json", "unknown_event", "invalid_type", "invalid_base64", "frame_too_large",
                "invalid_frame", "no_pending_input"} <= {e["error"]["code"] for e in events}
        assert any(e["error"]["event_id"] == "ev_1" for e in events)
        ws.send_json({"type": "session.update", "session": {"modalities": ["text"]}})
        assert recv(ws)["type"] == "session.updated"
        text_item(ws, "say Still here.")
        events = until(ws, "response.done")
        assert "".join(e["delta"] for e in of(events, "response.text.delta")) == "Still here."


def test_concurrent_sessions_do_not_leak_and_the_limit_holds(make):
    names = ["alpha", "bravo", "charlie", "delta"]
    with make(max_realtime_sessions=4) as client, contextlib.ExitStack() as stack:
        sessions = []
        for _ in names:
            ctx, ws = connect(client)
            stack.callback(ctx.__exit__, None, None, None)
            sessions.append(ws)
        with client.websocket_connect("/v1/realtime") as extra:  # the 5th is refused
            err = recv(extra)
            assert err["type"] == "error" and err["error"]["code"] == "session_limit"
            assert recv_message(extra)["code"] == 1013
        for ws, name in zip(sessions, names, strict=True):
            ws.send_json({"type": "session.update", "session": {"modalities": ["text"]}})
            text_item(ws, f"say I am {name}, only {name}.")
        for ws, name in zip(sessions, names, strict=True):
            events = until(ws, "response.done")
            assert len(of(events, "response.created")) == 1
            assert "".join(e["delta"] for e in of(events, "response.text.delta")) == f"I am {name}, only {name}."


def test_disconnect_mid_answer_leaves_the_server_healthy(make):
    with make() as client:
        ctx, ws = connect(client)
        text_item(ws, "say " + LONG[4:])
        until(ws, "response.audio.delta")
        ctx.__exit__(None, None, None)  # gone mid-answer
        assert client.get("/healthz").json() == {"status": "ok"}
        hub = client.app.state.vita_realtime
        end = time.monotonic() + 5
        while hub.active and time.monotonic() < end:
            time.sleep(0.02)
        assert hub.active == 0
        with client.websocket_connect("/v1/realtime") as ws2:
            recv(ws2)
            ws2.send_json({"type": "session.update", "session": {"modalities": ["text"]}})
            recv(ws2)
            text_item(ws2, "say Fine.")
            assert until(ws2, "response.done", timeout=10)[-1]["response"]["status"] == "completed"


def test_auth_header_query_or_subprotocol(make):
    from starlette.websockets import WebSocketDisconnect

    with make(api_key="sekrit") as client:
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/v1/realtime"):
            pass
        assert refused.value.code == 1008
        with client.websocket_connect("/v1/realtime", headers={"Authorization": "Bearer sekrit"}) as ws:
            assert recv(ws)["type"] == "session.created"
        with client.websocket_connect("/v1/realtime?api_key=sekrit&model=tiny-random") as ws:
            assert recv(ws)["type"] == "session.created"
        protocols = ["realtime", "openai-insecure-api-key.sekrit"]
        with client.websocket_connect("/v1/realtime", subprotocols=protocols) as ws:
            assert ws.accepted_subprotocol == "realtime" and recv(ws)["type"] == "session.created"
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/v1/realtime?api_key=wrong"):
            pass


def test_buffer_limit_and_cancel(make, question):
    with make(max_realtime_buffer_seconds=0.5) as client, client.websocket_connect("/v1/realtime") as ws:
        recv(ws)
        send_audio(ws, np.zeros(24000, np.int16), chunk=24000)  # 1 s in one append: over the 0.5 s cap
        err = recv(ws)
        assert err["type"] == "error" and err["error"]["code"] == "buffer_full"
        text_item(ws, "say " + LONG[4:])
        until(ws, "response.created")
        ws.send_json({"type": "response.cancel"})
        done = until(ws, "response.done")[-1]["response"]
        assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"


def test_model_work_runs_on_the_worker_beside_http_chat(make, monkeypatch):
    """Realtime ticks and chat requests share the one model thread: both answer correctly, interleaved."""
    import threading

    from vita.duplex.roles import ReplyJob

    threads: set[str] = set()
    step = ReplyJob.step
    monkeypatch.setattr(ReplyJob, "step", lambda self: threads.add(threading.current_thread().name) or step(self))
    with make() as client, client.websocket_connect("/v1/realtime") as ws:
        recv(ws)
        ws.send_json({"type": "session.update", "session": {"modalities": ["text"],
                                                            "input_audio_format": {"type": "audio/pcm",
                                                                                   "rate": 16000}}})
        assert recv(ws)["session"]["input_audio_format"] == {"type": "audio/pcm", "rate": 16000}
        text_item(ws, "say " + LONG[4:])
        until(ws, "response.text.delta")
        r = client.post("/v1/chat/completions", json={"model": "tiny-random", "max_tokens": 8,
                                                      "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"
        events = until(ws, "response.done")
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == LONG[4:]
    assert threads and all(name.startswith("vita-model") for name in threads)


def test_real_uvicorn_with_the_websockets_client(make, kit):
    """The same wire over a real socket on 127.0.0.1: browser-style auth by subprotocol, then a text reply."""
    pytest.importorskip("websockets")
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect as ws_connect

    app = make(api_key="k2").app
    with kit.LiveServer(app) as server:
        url = f"ws://127.0.0.1:{server.port}/v1/realtime?model=tiny-random"
        with pytest.raises(InvalidStatus):
            ws_connect(url, subprotocols=["realtime", "openai-insecure-api-key.nope"], open_timeout=10).close()
        with ws_connect(url, subprotocols=["realtime", "openai-insecure-api-key.k2"], open_timeout=10) as ws:
            assert ws.subprotocol == "realtime"
            assert json.loads(ws.recv(timeout=20))["type"] == "session.created"
            ws.send(json.dumps({"type": "session.update", "session": {"modalities": ["text"]}}))
            ws.send("oops")
            content = [{"type": "input_text", "text": "say Over the wire."}]
            ws.send(json.dumps({"type": "conversation.item.create", "item": {"role": "user", "content": content}}))
            ws.send(json.dumps({"type": "response.create"}))
            events = []
            while not events or events[-1]["type"] != "response.done":
                events.append(json.loads(ws.recv(timeout=20)))
            assert [e["type"] for e in events][:2] == ["session.updated", "error"]
            assert "".join(e["delta"] for e in of(events, "response.text.delta")) == "Over the wire."


def test_an_internal_error_is_reported_and_the_session_goes_on(make):
    with make() as client, client.websocket_connect("/v1/realtime") as ws:
        recv(ws)
        ws.send_json({"type": "session.update", "session": {"modalities": ["text"]}})
        recv(ws)
        text_item(ws, "boom")
        err = recv(ws)
        assert err["type"] == "error" and err["error"]["code"] == "server_error"
        assert "secret" not in json.dumps(err)
        text_item(ws, "say After the error.")
        events = until(ws, "response.done")
        assert "".join(e["delta"] for e in of(events, "response.text.delta")) == "After the error."


def test_rendered_speech_is_sent_while_the_model_thread_is_busy(model, kit):
    """A phrase the speech thread has rendered goes to the client at once, not after the session's next model batch
    has waited its turn on the shared model thread (8 sessions on 2 cores: that wait was most of the delay between
    the first phrase being ready and the first sound)."""
    import threading

    from fastapi.testclient import TestClient

    from tests.server.realtime_helpers import synth

    called, gate = threading.Event(), threading.Event()

    def gated(text: str) -> np.ndarray:
        called.set()
        gate.wait(10)
        return synth(text)

    gated.out_rate = 24000
    config = RealtimeConfig(forcing=lambda: lambda turns: Script("<1> " + turns[-1].content[0][4:]),
                            session=lambda: SessionConfig(lead_s=0.2, first_phrase_alone=True,
                                                          gate=GateConfig(enabled=False)))
    app = kit.make_app(Engine(model), speech=SpeechOut(factory=lambda: gated), realtime=config)
    with TestClient(app) as client, client.websocket_connect("/v1/realtime") as ws:
        recv(ws)
        text_item(ws, "say One two three four five six seven eight.")
        assert called.wait(20)  # the first phrase is being rendered; its reply waits for it (first_phrase_alone)
        started, release = threading.Event(), threading.Event()
        client.app.state.vita.worker.submit(lambda: started.set() or release.wait(10))  # another session's work
        assert started.wait(10)
        try:
            gate.set()
            events = until(ws, "response.audio.delta", timeout=3.0)  # the model thread is still busy
            assert not release.is_set() and of(events, "response.audio.delta")
        finally:
            release.set()
        events = until(ws, "response.done")
        assert events[-1]["response"]["output"][0]["content"][0]["transcript"] == \
            "One two three four five six seven eight."


def test_audio_is_heard_while_the_sessions_model_batch_waits(model, kit):
    """While the session's next model batch waits behind other work on the shared model thread, the reply plays on
    (its playback is released, paced) and the microphone is heard (a barge-in starts): the batch has not touched the
    session yet, so the driver goes on with it meanwhile."""
    import threading

    from fastapi.testclient import TestClient

    from tests.server.realtime_helpers import EnergyModel, tone
    from vita.speech.vad import StreamingVAD

    def slow_voice(text: str) -> np.ndarray:  # 0.3 s of tone per word at 24 kHz
        return (0.1 * np.sin(0.05 * np.arange(7200 * max(len(text.split()), 1)))).astype(np.float32)

    slow_voice.out_rate = 24000
    words = "Hello there, " * 60  # phrases cut at each comma; a reply that decodes all along (no high water)
    config = RealtimeConfig(forcing=lambda: lambda turns: Script("<1> " + words), max_new_tokens=2000,
                            session=lambda: SessionConfig(lead_s=0.2, high_water_s=1e9, gate=GateConfig(enabled=False)),
                            vad=lambda: StreamingVAD(VADConfig(), model=EnergyModel()))
    app = kit.make_app(Engine(model), speech=SpeechOut(factory=lambda: slow_voice), realtime=config)
    with TestClient(app) as client, client.websocket_connect("/v1/realtime") as ws:
        recv(ws)
        ws.send_json({"type": "session.update", "session": {"input_audio_format": {"type": "audio/pcm",
                                                                                   "rate": 16000}}})
        recv(ws)
        text_item(ws, "go on")
        (conn,) = client.app.state.vita_realtime.connections
        until(ws, "response.audio.delta")
        wait_for(lambda: conn.session.playout.buffered_s > 2.5)  # seconds of speech ahead of the speaker
        started, release = threading.Event(), threading.Event()
        client.app.state.vita.worker.submit(lambda: started.set() or release.wait(10))  # another session's work
        assert started.wait(10)
        try:
            seen, end = [], time.monotonic() + 1.5
            while time.monotonic() < end:  # 1.5 s of the blocked model thread: the reply plays on, paced
                with contextlib.suppress(TimeoutError):
                    seen.append(recv(ws, max(end - time.monotonic(), 0.01)))
            played = sum(len(base64.b64decode(e["delta"])) for e in of(seen, "response.audio.delta")) / 2 / 24000
            assert played > 1.0, played
            send_audio(ws, tone(0.5), 640)
            until(ws, "input_audio_buffer.speech_started", timeout=3.0)  # heard: a barge-in starts
            assert not release.is_set()  # all while the model thread was busy
        finally:
            release.set()
