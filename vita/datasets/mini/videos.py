"""Short videos for vita-mini: 160x120, 4 s at 8 fps (32 frames, H.264 via PyAV), so the 1 fps sampling of
`vita.media.video` reads frames 0, 8, 16 and 24 and every event is visible on those frames. Tasks:
    direction  a dot moves steadily across the frame       "Which way does the dot move?"  -> "left"|"right"|"up"|"down"
    order      three coloured squares appear one by one    "Which colour appears first?"   -> "red" (or last)
    flashes    a square flashes on 1-3 of the sampled frames "How many times does the square flash?" -> "2"
Each item is (frames [T, 120, 160, 3] uint8, question, answer, caption, task), drawn from the generator given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from vita.datasets.mini.canvas import NUMBER_WORDS
from vita.datasets.mini.images import COLOURS

WIDTH, HEIGHT, FPS, SECONDS = 160, 120, 8, 4
FRAMES = FPS * SECONDS
VIDEO_TASKS = ("direction", "order", "flashes")
SAMPLED = tuple(range(0, FRAMES, FPS))  # frames the 1 fps sampler reads


@dataclass
class VideoItem:
    frames: np.ndarray  # [T, H, W, 3] uint8
    question: str
    answer: str
    caption: str
    task: str


def _blank(rng: np.random.Generator) -> np.ndarray:
    grey = int(rng.integers(200, 250))
    return np.full((FRAMES, HEIGHT, WIDTH, 3), grey, dtype=np.uint8)


def _disc(frame: np.ndarray, cx: float, cy: float, r: float, colour: tuple[int, int, int]) -> None:
    yy, xx = np.ogrid[:HEIGHT, :WIDTH]
    frame[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = colour


def _square(frame: np.ndarray, cx: float, cy: float, r: float, colour: tuple[int, int, int]) -> None:
    x0, x1 = max(0, int(cx - r)), min(WIDTH, int(cx + r))
    y0, y1 = max(0, int(cy - r)), min(HEIGHT, int(cy + r))
    frame[y0:y1, x0:x1] = colour


def direction_item(rng: np.random.Generator) -> VideoItem:
    frames = _blank(rng)
    answer = str(rng.choice(["left", "right", "up", "down"]))
    colour_name = str(rng.choice(list(COLOURS)))
    r = float(rng.uniform(7, 11))
    margin = r + 4
    if answer in ("left", "right"):
        y = float(rng.uniform(margin, HEIGHT - margin))
        a, b = (margin, WIDTH - margin) if answer == "right" else (WIDTH - margin, margin)
        path = [(a + (b - a) * t / (FRAMES - 1), y) for t in range(FRAMES)]
    else:
        x = float(rng.uniform(margin, WIDTH - margin))
        a, b = (margin, HEIGHT - margin) if answer == "down" else (HEIGHT - margin, margin)
        path = [(x, a + (b - a) * t / (FRAMES - 1)) for t in range(FRAMES)]
    for t, (cx, cy) in enumerate(path):
        _disc(frames[t], cx, cy, r, COLOURS[colour_name])
    return VideoItem(frames, "Which way does the dot move?", answer, f"A {colour_name} dot moving {answer}.",
                     "direction")


def order_item(rng: np.random.Generator) -> VideoItem:
    frames = _blank(rng)
    colours = [str(c) for c in rng.choice(list(COLOURS), size=3, replace=False)]
    slots = [(WIDTH * (i + 0.5) / 3, HEIGHT * float(rng.uniform(0.3, 0.7))) for i in range(3)]
    slots = [slots[i] for i in rng.permutation(3)]  # screen position says nothing about the order
    r = float(rng.uniform(10, 14))
    for k, (colour, (cx, cy)) in enumerate(zip(colours, slots, strict=True)):
        for t in range(SAMPLED[k + 1] - 2, FRAMES):  # appears just before sampled frame k + 1, then stays
            _square(frames[t], cx, cy, r, COLOURS[colour])
    first = bool(rng.random() < 0.5)
    question = "Which colour appears first?" if first else "Which colour appears last?"
    caption = f"A {colours[0]} square appears, then a {colours[1]} one, then a {colours[2]} one."
    return VideoItem(frames, question, colours[0] if first else colours[2], caption, "order")


def flashes_item(rng: np.random.Generator) -> VideoItem:
    frames = _blank(rng)
    n = int(rng.integers(1, 4))
    on = sorted(int(x) for x in rng.choice(SAMPLED[1:], size=n, replace=False))
    colour = str(rng.choice(list(COLOURS)))
    cx, cy = float(rng.uniform(40, WIDTH - 40)), float(rng.uniform(35, HEIGHT - 35))
    r = float(rng.uniform(12, 18))
    for t in on:
        for u in range(t - 1, min(FRAMES, t + 2)):
            _square(frames[u], cx, cy, r, COLOURS[colour])
    word = "once" if n == 1 else "twice" if n == 2 else f"{NUMBER_WORDS[n]} times"
    return VideoItem(frames, "How many times does the square flash?", str(n), f"A {colour} square flashes {word}.",
                     "flashes")


def make_video(task: str, rng: np.random.Generator) -> VideoItem:
    makers = {"direction": direction_item, "order": order_item, "flashes": flashes_item}
    if task not in makers:
        raise ValueError(f"unknown video task {task!r} (expected one of {', '.join(VIDEO_TASKS)})")
    return makers[task](rng)


def write_video(frames: np.ndarray, path: Path) -> None:
    """frames [T, H, W, 3] uint8 -> H.264 mp4 at FPS (one encoder thread, no SIMD: bytes depend only on the frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        container.metadata.clear()
        # asm=0: with x264's SIMD kernels the same frames encoded to different bytes within one build on an
        # AVX-512 machine (state left over between encodes); the C path is deterministic and fast enough here
        options = {"threads": "1", "crf": "23", "preset": "fast", "x264-params": "asm=0"}
        stream = container.add_stream("libx264", rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
