"""Server fixtures: one tiny-random model, app factories, a real uvicorn on 127.0.0.1, and media made in memory."""

from __future__ import annotations

import base64
import io
import socket
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from vita.server.engine import Engine  # noqa: E402

MODEL = "tiny-random"


@pytest.fixture(scope="session")
def kit():
    """This module: the helpers below (png, wav, data_url, ScriptedEngine, LiveServer, ...) for the tests."""
    return sys.modules[__name__]


@pytest.fixture(scope="session")
def model():
    import vita

    return vita.load(MODEL)


class ScriptedEngine(Engine):
    """Teacher-forces the reply `script` (random weights never say "<2>"); `gate` blocks before the first id."""

    def __init__(self, vita, script: str, *, gate: threading.Event | None = None, fail: bool = False, **kw) -> None:
        super().__init__(vita, **kw)
        self.script = script
        self.gate = gate
        self.fail = fail
        self.started = threading.Event()

    def token_ids(self, inputs, params) -> Iterator[int]:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(timeout=30)
        if self.fail:
            raise RuntimeError("secret internal detail")
        ids = self.vita.tokenizer.encode(self.script, add_special_tokens=False)
        yield from ids[: params.max_new_tokens]


def png(width: int = 96, height: int = 64, seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def wav(seconds: float = 0.5, rate: int = 16000, seed: int = 0) -> bytes:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pcm = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.shape)
    buf = io.BytesIO()
    sf.write(buf, pcm.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def mp4(path, frames: int = 6, fps: int = 2, size: tuple[int, int] = (64, 48)) -> bytes:
    import av

    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            img = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def user(*parts, text: str | None = None) -> list[dict]:
    return [{"role": "user", "content": text if text is not None else list(parts)}]


def image_part(data: bytes, mime: str = "image/png") -> dict:
    return {"type": "image_url", "image_url": {"url": data_url(data, mime)}}


def audio_part(data: bytes, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": b64(data), "format": fmt}}


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def make_app(engine: Engine, **kw):
    from vita.server.app import create_app

    kw.setdefault("allowed_hosts", ["testserver"])  # Starlette's TestClient sends Host: testserver
    return create_app(engine, model_id=MODEL, **kw)


def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app, raise_server_exceptions=False)


def sse_events(text: str) -> list:
    """SSE body -> the decoded `data:` payloads ("[DONE]" kept as a string)."""
    import json

    out = []
    for block in text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            payload = block[len("data: "):]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


class LiveServer:
    """A real uvicorn serving `app` on 127.0.0.1 at a free port, in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        import gc

        gc.collect()
        gc.freeze()  # as `vita serve` does once its model is loaded: full collections skip what lives for good
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
