"""What the realtime tests do on a `/v1/realtime` websocket of Starlette's TestClient: read events (with a timeout),
wait for one kind, open a session, send pcm16 audio; and a VAD 'model' that makes pauses exact.

Imported as `tests.server.realtime_helpers` (pytest's importlib mode names test modules from the root folder).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence

import numpy as np

from vita.speech.vad import SileroModel


class EnergyModel(SileroModel):
    """A VAD 'model': a window is speech when its RMS is over 0.01 (a tone is speech, zeros are silence)."""

    def __init__(self) -> None:
        self.reset()

    def window(self, x: np.ndarray) -> float:
        return float(np.sqrt(np.mean(x * x)) > 0.01)


def recv(ws, timeout: float = 20.0) -> dict:
    """The next server event; TimeoutError when none comes within `timeout` seconds."""
    import anyio

    async def get():
        with anyio.fail_after(timeout):
            return await ws._send_rx.receive()

    msg = ws.portal.call(get)
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
