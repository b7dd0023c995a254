"""`/v1/realtime` against careless and hostile clients: bounded state per session (pending items and images,
instructions, outbox, history by positions), one response at a time, idle timeout and per-client cap, and a long
spoken conversation (60 turns of 20 s) that keeps answering with bounded memory.

Text-only replies from a silent synthesizer, teacher-forced ("say X" -> "<1> X"; anything else -> "<1> ok."); the
long conversation uses an energy VAD (the Silero model is not what is tested, and would take minutes here).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import struct
import time

import numpy as np
import pytest

from tests.server.realtime_helpers import EnergyModel, opened, recv, recv_message, until
from vita.duplex.roles import Script
from vita.duplex.session import SessionConfig
from vita.server.audio_out import SpeechOut
from vita.server.engine import Engine
from vita.server.limits import Limits
from vita.server.realtime import RealtimeConfig
from vita.speech.echo import GateConfig
from vita.speech.vad import StreamingVAD, VADConfig


def _forcing():
    def forcing(turns):
        content = turns[-1].content
        for part in [content] if isinstance(content, str) else content:
            if isinstance(part, str) and part.startswith("say "):
                return Script("<1> " + part[4:])
        return Script("<1> ok.")
    return forcing


@pytest.fixture(scope="module")
def make(model, kit):
    def build(energy_vad: bool = False, **limits):
        config = RealtimeConfig(
            forcing=_forcing,
            session=lambda: SessionConfig(lead_s=0.0, vad=VADConfig(min_silence_ms=300),
                                          gate=GateConfig(enabled=False)),
            vad=(lambda: StreamingVAD(VADConfig(min_silence_ms=300), model=EnergyModel())) if energy_vad
            else (lambda: None))
        app = kit.make_app(Engine(model), limits=Limits(**limits), realtime=config,
                           speech=SpeechOut(factory=lambda: (lambda text: np.zeros(0, np.float32))))
        from fastapi.testclient import TestClient

        return TestClient(app)
    return build


def item(ws, text: str, images: int = 0, kit=None) -> None:
    content = [{"type": "input_text", "text": text}]
    if images:
        content += [{"type": "input_image", "image_url": kit.data_url(kit.png(), "image/png")}] * images
    ws.send_json({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                               "content": content}})


def test_response_create_while_a_response_is_active(make):
    with make() as client, client.websocket_connect("/v1/realtime") as ws:
        opened(ws)
        item(ws, "say " + "one two three " * 20)
        ws.send_json({"type": "response.create"})
        item(ws, "say second")
        ws.send_json({"type": "response.create", "event_id": "evt_2"})
        events = until(ws, "error")
        err = events[-1]["error"]
        assert err["code"] == "conversation_already_has_active_response" and err["event_id"] == "evt_2"
        done = until(ws, "response.done")[-1]["response"]
        assert done["status"] == "completed" and done["output"][0]["content"][0]["text"].startswith("one two")
        ws.send_json({"type": "response.create"})  # the refused one's item is still pending: answered now
        events = until(ws, "response.done")
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == "second"


def test_pending_items_and_images_are_bounded(make, kit):
    with make(max_realtime_pending_items=3, max_images=2) as client, client.websocket_connect("/v1/realtime") as ws:
        opened(ws)
        item(ws, "a", images=2, kit=kit)
        item(ws, "b", images=1, kit=kit)
        err = recv(ws)["error"]
        assert err["code"] == "limit_exceeded" and "--max-images 2" in err["message"]
        item(ws, "c")
        item(ws, "d")
        item(ws, "e")  # a, c, d are waiting: the 4th is one too many
        err = recv(ws)["error"]
        assert err["code"] == "limit_exceeded" and "--max-realtime-pending-items 3" in err["message"]
        ws.send_json({"type": "response.create"})
        assert until(ws, "response.done")[-1]["response"]["status"] == "completed"


def test_instructions_length_is_limited(make):
    with make(max_realtime_instructions_chars=100) as client, client.websocket_connect("/v1/realtime") as ws:
        opened(ws)
        ws.send_json({"type": "session.update", "session": {"instructions": "x" * 101}})
        err = recv(ws)["error"]
        assert err["param"] == "session.instructions" and "--max-realtime-instructions-chars 100" in err["message"]


def test_instructions_that_leave_no_room_get_a_clear_error(make):
    with make() as client, client.websocket_connect("/v1/realtime") as ws:
        opened(ws)
        ws.send_json({"type": "session.update", "session": {"instructions": "be brief " * 1500}})
        recv(ws)
        item(ws, "say hi")
        ws.send_json({"type": "response.create"})
        err = until(ws, "error")[-1]["error"]
        assert err["code"] == "context_length_exceeded" and "positions" in err["message"]
        ws.send_json({"type": "session.update", "session": {"instructions": "Be brief."}})
        recv(ws)
        item(ws, "say fine")
        ws.send_json({"type": "response.create"})
        assert until(ws, "response.done")[-1]["response"]["output"][0]["content"][0]["text"] == "fine"


def test_per_client_cap_and_idle_timeout(make):
    with make(max_realtime_sessions_per_client=1, max_realtime_idle_seconds=0.5) as client:
        with client.websocket_connect("/v1/realtime") as ws:
            assert recv(ws)["type"] == "session.created"
            with client.websocket_connect("/v1/realtime") as second:
                err = recv(second)["error"]
                assert err["code"] == "session_limit" and "--max-realtime-sessions-per-client 1" in err["message"]
            t = time.monotonic()
            err = recv(ws, timeout=5)["error"]  # nothing sent: closed after the idle timeout
            assert err["code"] == "idle_timeout" and "--max-realtime-idle-seconds" in err["message"]
            assert 0.4 < time.monotonic() - t < 3
            assert recv_message(ws)["type"] == "websocket.close"
        with client.websocket_connect("/v1/realtime") as again:  # the slot is free again
            assert recv(again)["type"] == "session.created"


def test_large_frames_and_json_values(make):
    with make(max_json_values=1000) as client, client.websocket_connect("/v1/realtime") as ws:
        opened(ws)
        ws.send_text(json.dumps({"type": "session.update", "session": {"x": [0] * 5000}}))
        err = recv(ws)["error"]
        assert err["code"] == "limit_exceeded" and "--max-json-values 1000" in err["message"]
        ws.send_json({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(48000 * 2 * 40)).decode()})
        err = recv(ws)["error"]  # 40 s in one append: refused from its length, before decoding
        assert err["code"] == "buffer_full"


def raw_websocket(port: int, path: str = "/v1/realtime", headers: str = "") -> socket.socket:
    """A bare client socket after the websocket handshake: it reads nothing more (a tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def text_frame(payload: bytes) -> bytes:
    """One masked client text frame."""
    n, mask = len(payload), b"\x01\x02\x03\x04"
    size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 \
        else bytes([0x80 | 127]) + struct.pack(">Q", n)
    body = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
    return b"\x81" + size + mask + body


def test_slow_reader_is_disconnected_with_bounded_memory(model, kit):
    """A client that sends junk and never reads: once its outbox is full the server drops it (error event
    `slow_consumer` when it can still be written, then close), instead of buffering without bound."""
    import threading

    from tests.server.hostile_helpers import rss_mb

    limits = Limits(max_realtime_outbox_events=64)
    app = kit.make_app(Engine(model), limits=limits, realtime=RealtimeConfig(forcing=_forcing),
                       speech=SpeechOut(factory=lambda: (lambda text: np.zeros(0, np.float32))))
    with kit.LiveServer(app) as server:
        sock = raw_websocket(server.port)
        hub = app.state.vita_realtime
        junk = text_frame(json.dumps({"type": "nope" + "x" * 500}).encode()) * 16
        stop, sent = threading.Event(), [0]

        def flood() -> None:
            with contextlib.suppress(OSError):
                while not stop.is_set():
                    sock.sendall(junk)
                    sent[0] += 16

        base, t0 = rss_mb(), time.monotonic()
        threading.Thread(target=flood, daemon=True).start()
        while not hub.active and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        peak = base
        while hub.active and time.monotonic() - t0 < 20:
            peak = max(peak, rss_mb())
            time.sleep(0.01)
        took = time.monotonic() - t0
        stop.set()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        assert hub.active == 0, (sent[0], took)
        assert peak - base < 200, peak - base
        print(f"slow reader dropped after {sent[0]} junk frames, {took:.1f} s, +{peak - base:.0f} MB RSS")


def test_long_spoken_conversation_keeps_answering_with_bounded_memory(make):
    """60 turns of 20 s of 'speech' (a tone) each: every turn answered; the session's history stays within
    history_turns and the prompt within the cache (positions), whatever the number of turns."""
    from tests.server.hostile_helpers import rss_mb

    rate, chunk = 16000, 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(20 * rate) / rate) * 32767).astype("<i2")
    speech = [base64.b64encode(tone[i:i + chunk].tobytes()).decode() for i in range(0, len(tone), chunk)]
    silence = base64.b64encode(bytes(2 * rate)).decode()  # 1 s ends the utterance (VAD silence 300 ms)
    with make(energy_vad=True) as client, client.websocket_connect("/v1/realtime") as ws:
        opened(ws)
        ws.send_json({"type": "session.update", "session": {"input_audio_format": {"type": "audio/pcm",
                                                                                   "rate": 16000}}})
        recv(ws)
        (conn,) = client.app.state.vita_realtime.connections
        sizes, rss = [], []
        for _turn in range(60):
            for data in [*speech, silence]:
                ws.send_json({"type": "input_audio_buffer.append", "audio": data})
            events = until(ws, "response.done", timeout=60)
            assert not [e for e in events if e["type"] == "error"], events
            assert events[-1]["response"]["status"] == "completed", events[-1]
            s = conn.session
            held = sum(len(p.source) for t in s.history if not isinstance(t.content, str)
                       for p in t.content if hasattr(p, "source"))
            sizes.append((len(s.history), held, len(conn.out.states), len(s.stages)))
            if _turn in (20, 59):
                rss.append(rss_mb())
        assert max(n for n, *_ in sizes) <= s.config.history_turns
        assert max(held for _, held, *_ in sizes) <= s.config.history_turns * 21 * rate  # samples of audio held
        # flat: the history is cut back in one go past history_turns (`SessionConfig.history_keep`), so its length
        # cycles; turn 60 holds what an earlier turn of the same length held (utterances vary by a VAD window)
        same = [x for x in sizes[20:-1] if x[0] == sizes[-1][0]]
        assert same and abs(sizes[-1][1] - same[-1][1]) < 0.01 * same[-1][1], sizes
        assert min(n for n, *_ in sizes[20:]) < max(n for n, *_ in sizes[20:]) <= s.config.history_turns
        assert sizes[-1][2:] <= (64, 256)
        assert rss[1] - rss[0] < 50, rss  # the process, turns 21..60
        print(f"60 turns x 20 s: history {sizes[-1][0]} turns, {sizes[-1][1] / 16000:.0f} s of audio held, "
              f"RSS {rss[0]:.0f} -> {rss[1]:.0f} MB from turn 21 to 60")


def test_healthz_answers_while_a_session_decodes_a_big_image(model, kit):
    """A 3.8 MP JPEG in a conversation item (a 4-5 MB frame): parsed and decoded off the event loop."""
    import io

    from PIL import Image
    from websockets.sync.client import connect

    from tests.server.hostile_helpers import FIGURES, Watch

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1600, 2400, 3), dtype=np.uint8)).save(buf, "JPEG",
                                                                                                     quality=80)
    frame = json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "say seen"},
        {"type": "input_image", "image_url": "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()}]}})
    app = kit.make_app(Engine(model), realtime=RealtimeConfig(forcing=_forcing),
                       speech=SpeechOut(factory=lambda: (lambda text: np.zeros(0, np.float32))))
    with kit.LiveServer(app) as live, connect(f"ws://127.0.0.1:{live.port}/v1/realtime", max_size=None,
                                              open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
        ws.send(json.dumps({"type": "session.update", "session": {"modalities": ["text"]}}))
        ws.recv(timeout=10)
        with Watch(live.url) as watch:
            t = time.monotonic()
            ws.send(frame)
            ws.send(json.dumps({"type": "response.create"}))
            while (event := json.loads(ws.recv(timeout=30)))["type"] != "response.done":
                assert event["type"] != "error", event
            took = time.monotonic() - t
        FIGURES["realtime-item-3.8MP-jpeg"] = (took, watch.grew_mb, watch.slowest_health)
        assert event["response"]["output"][0]["content"][0]["text"] == "seen"
        assert watch.slowest_health < 0.5, watch.slowest_health
        print(f"3.8 MP image item answered in {took * 1000:.0f} ms, /healthz <= {watch.slowest_health * 1000:.0f} ms")
