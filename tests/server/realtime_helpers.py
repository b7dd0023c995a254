"""What the realtime tests do on a `/v1/realtime` websocket of Starlette's TestClient: read events (with a timeout),
wait for one kind (or make sure none comes), open a session, send pcm16 audio; and a VAD 'model' that makes pauses
exact, with the tones and silences it hears (16 kHz pcm16).

Imported as `tests.server.realtime_helpers` (pytest's importlib mode names test modules from the root folder).
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
import weakref
from collections.abc import Sequence

import numpy as np
import pytest

from vita.duplex.roles import Script
from vita.speech.vad import SileroModel

RATE = 16000


class EnergyModel(SileroModel):
    """A VAD 'model': a window is speech when its RMS is over 0.01 (a tone is speech, zeros are silence)."""

    def __init__(self) -> None:
        self.reset()

    def window(self, x: np.ndarray) -> float:
        return float(np.sqrt(np.mean(x * x)) > 0.01)


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2")


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), "<i2")


def wait_for(predicate, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


_inboxes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # websocket -> queue of its server messages


def _inbox(ws) -> queue.Queue:
    """The server messages of `ws`, read by a daemon thread through the public `ws.receive()` (the TestClient's
    websocket has no receive with a timeout); the thread ends at the close message or when the session ends."""
    inbox = _inboxes.get(ws)
    if inbox is None:
        inbox = _inboxes[ws] = queue.Queue()

        def pump() -> None:
            while True:
                try:
                    msg = ws.receive()
                except Exception as exc:  # the session is over: its streams are closed
                    inbox.put(exc)
                    return
                inbox.put(msg)
                if msg["type"] == "websocket.close":
                    return

        threading.Thread(target=pump, name="ws-inbox", daemon=True).start()
    return inbox


def recv_message(ws, timeout: float = 20.0) -> dict:
    """The next ASGI message the server sent on `ws` (`websocket.send` or `websocket.close`); TimeoutError when none
    comes within `timeout` seconds. Once a test reads `ws` through these helpers, it reads only through them."""
    try:
        msg = _inbox(ws).get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"no server message within {timeout:.1f} s") from None
    if isinstance(msg, Exception):
        raise msg
    return msg


def recv(ws, timeout: float = 20.0) -> dict:
    """The next server event; TimeoutError when none comes within `timeout` seconds."""
    msg = recv_message(ws, timeout)
    assert msg["type"] == "websocket.send", msg
    return json.loads(msg["text"])


def until(ws, kind: str, n: int = 1, timeout: float = 30.0) -> list[dict]:
    """Events up to and including the n-th of `kind`."""
    out, end = [], time.monotonic() + timeout
    while sum(e["type"] == kind for e in out) < n:
        out.append(recv(ws, max(end - time.monotonic(), 0.1)))
    return out


def opened(ws, modalities: Sequence[str] = ("text",), rate: int | None = None) -> None:
    """Read `session.created`, then set the modalities (and the input rate): `session.updated`."""
    assert recv(ws)["type"] == "session.created"
    session: dict = {"modalities": list(modalities)}
    if rate is not None:
        session["input_audio_format"] = {"type": "audio/pcm", "rate": rate}
    ws.send_json({"type": "session.update", "session": session})
    assert recv(ws)["type"] == "session.updated"


def send_audio(ws, pcm: np.ndarray, chunk: int = 480) -> None:
    """`pcm` as little-endian int16 in appends of `chunk` samples."""
    for i in range(0, len(pcm), chunk):
        ws.send_json({"type": "input_audio_buffer.append",
                      "audio": base64.b64encode(pcm[i:i + chunk].astype("<i2").tobytes()).decode()})


def nothing_for(ws, seconds: float) -> None:
    """No server event arrives within `seconds`."""
    with pytest.raises(TimeoutError):
        event = recv(ws, seconds)
        raise AssertionError(f"unexpected event {event['type']}: {event}")


def synth(text: str) -> np.ndarray:
    """A deterministic 'voice': 0.1 s of tone per word at 24 kHz."""
    return (0.1 * np.sin(0.05 * np.arange(2400 * max(len(text.split()), 1)))).astype(np.float32)


class Forcing:
    """Per connection: "say X" -> "<1> X", anything else `otherwise()`; keeps every prompt a job started from."""

    def __init__(self, otherwise=lambda: Script("<1> ok.")) -> None:
        self.prompts: list = []
        self.otherwise = otherwise

    def __call__(self, turns):
        self.prompts.append(list(turns))
        content = turns[-1].content
        for part in [content] if isinstance(content, str) else content:
            if isinstance(part, str) and part.startswith("say "):
                return Script("<1> " + part[4:])
        return self.otherwise()
