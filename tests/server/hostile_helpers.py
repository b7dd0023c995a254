"""The harness of the hostile-client tests (`test_hostile.py`, `test_realtime_limits.py`): a watch on peak RSS and
/healthz while a request runs, `refused` (one request checked against OpenAI's error shape, the limit named, 1 s,
+200 MB and a responsive /healthz, its figures kept in `FIGURES`), media files that lie or cost, made in memory,
and the request bodies that carry them.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import zlib

import numpy as np

M = "tiny-random"
FIGURES: dict[str, tuple[float, float, float]] = {}  # case -> (seconds, +MB peak RSS, slowest healthz seconds)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


class Watch:
    """Peak RSS (sampled) and the slowest /healthz while the body of a `with` runs."""

    def __init__(self, url: str) -> None:
        self.url, self.stop = url, threading.Event()
        self.peak = self.base = 0.0
        self.health: list[float] = []

    def _rss(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.002)

    def _poll(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self.stop.is_set():
                t = time.monotonic()
                assert client.get("/healthz").status_code == 200
                self.health.append(time.monotonic() - t)
                time.sleep(0.02)

    def __enter__(self) -> Watch:
        self.base = self.peak = rss_mb()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._rss, self._poll)]
        for t in self.threads:
            t.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.05)
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)

    @property
    def grew_mb(self) -> float:
        return self.peak - self.base

    @property
    def slowest_health(self) -> float:
        return max(self.health, default=float("inf"))


def refused(server, name: str, body: bytes | dict, *, status: int = 400, flag: str | None = None,
            code: str | None = None, path: str = "/v1/chat/completions", headers: dict | None = None) -> dict:
    """POST `body`, check OpenAI's error shape, the status, the flag named, the time, RSS and /healthz."""
    import httpx

    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with httpx.Client(base_url=server.url, timeout=30) as client, Watch(server.url) as watch:
        t = time.monotonic()
        r = client.post(path, content=content, headers={"content-type": "application/json", **(headers or {})})
        took = time.monotonic() - t
    FIGURES[name] = (took, watch.grew_mb, watch.slowest_health)
    assert r.status_code == status, (name, r.text[:400])
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    if flag is not None:
        assert flag in err["message"], err
    if code is not None:
        assert err["code"] == code, err
    assert "/tmp" not in err["message"] and "Traceback" not in r.text
    assert took < 1.0, (name, took)
    # RSS of the whole test process: client and server share it, so a 30 MB body's copies on both sides count, and
    # how much freed memory earlier tests left to reuse moves it (218 MB seen in the full suite, 135 alone);
    # tokenizing or decoding such a body would take gigabytes and seconds (`took` above)
    assert watch.grew_mb < 300, (name, watch.grew_mb)
    assert watch.slowest_health < 0.5, (name, watch.slowest_health)  # stalls found were 5-55 s; 2-core CI jitters ~0.2
    return err


# ------------------------------------------------------------------------------------------------ media makers


def png_strip(width: int, height: int, rows: int | None = None) -> bytes:
    """A black PNG of width x height, compressed as it is streamed (never held raw); `rows`: only that many rows
    (a truncated file: its header tells the full size)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp, row, out = zlib.compressobj(9), b"\x00" + bytes(3 * width), []
    rows_per = max(1, (1 << 20) // len(row))
    for start in range(0, height if rows is None else rows, rows_per):
        out.append(comp.compress(row * min(rows_per, height - start)))
    out.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(out)) + chunk(b"IEND", b"")


def wav_header(rate: int, samples: int, *, data: bytes | None = None, channels: int = 1) -> bytes:
    pcm = data if data is not None else bytes(2 * samples * channels)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def flac_silence(seconds: float, *, hide_length: bool = False) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * 16000), np.int16), 16000, format="FLAC")
    data = bytearray(buf.getvalue())
    if hide_length:  # STREAMINFO total_samples (36 bits from byte 21) = 0: "unknown"
        data[21] &= 0xF0
        data[22:26] = bytes(4)
    return bytes(data)


def mp3_silence(seconds: float) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=16000, layout="mono")
        frame_len = 1152 * 8
        for i in range(int(seconds * 16000) // frame_len):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, frame_len), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * frame_len
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    return buf.getvalue()


def video(fmt: str, size: tuple[int, int] = (64, 48), frames: int = 4, rate: int = 25) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        s = out.add_stream("mpeg4", rate=rate)
        s.width, s.height = size
        s.pix_fmt = "yuv420p"
        for _ in range(frames):
            img = np.zeros((size[1], size[0], 3), np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return buf.getvalue()


def avi_claiming(frames: int) -> bytes:
    data = bytearray(video("avi"))
    struct.pack_into("<I", data, data.find(b"avih") + 8 + 16, frames)  # dwTotalFrames
    struct.pack_into("<I", data, data.find(b"strh") + 8 + 32, frames)  # dwLength
    return bytes(data)


def chat(*parts, **extra) -> dict:
    return {"model": M, "messages": [{"role": "user", "content": list(parts)}], "max_tokens": 2, **extra}


def image(data: bytes, mime: str = "image/png") -> dict:
    from base64 import b64encode

    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{b64encode(data).decode()}"}}


def audio(data: bytes, fmt: str) -> dict:
    from base64 import b64encode

    return {"type": "input_audio", "input_audio": {"data": b64encode(data).decode(), "format": fmt}}


def video_url(data: bytes, mime: str) -> dict:
    from base64 import b64encode

    return {"type": "video_url", "video_url": {"url": f"data:{mime};base64,{b64encode(data).decode()}"}}


def image_remote(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}
