"""What a run reports: `metrics.jsonl` (one object per optimizer step), a one-line progress bar, `loss.png`.

    {"step": 12, "loss": 2.31, "lr": 4.9e-4, "grad_norm": 0.8, "tokens": 1532, "tokens_seen": 18311,
     "samples": 16, "samples_per_s": 41.3, "tokens_per_s": 3954.2, "epoch": 0, "time": 3.1}

`tokens` counts the supervised (label != -100) tokens of the step over all ranks; `tokens_per_s` counts all
non-padding tokens processed per second. On resume the log is cut back to the checkpoint's step, so the file always
describes one uninterrupted run. The plot is drawn with Pillow (no matplotlib dependency).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO


class MetricsLog:
    def __init__(self, path: Path, *, resume_step: int) -> None:
        self.path = path
        keep = [r for r in read_metrics(path) if r["step"] <= resume_step] if resume_step else []
        with path.open("w") as f:
            for r in keep:
                f.write(json.dumps(r) + "\n")

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            break
    return out


class ProgressBar:
    """`step 12/100 [#####.....] loss 2.3100 | 3954 tok/s | ETA 0:01:12` on one line of stderr."""

    def __init__(self, total: int, start: int, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total, self.start = total, start
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        if not self.enabled:
            return
        done = step - self.start
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else 0.0
        width = 20
        fill = int(width * step / max(self.total, 1))
        line = (f"step {step}/{self.total} [{'#' * fill}{'.' * (width - fill)}] loss {loss:.4f} | "
                f"{tokens_per_s:,.0f} tok/s | ETA {_hms(eta)}")
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
        elif step == self.total or done == 1 or step % max(self.total // 10, 1) == 0:
            self.stream.write(line + "\n")  # logs: about ten lines per run
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def plot_loss(records: list[dict[str, Any]], path: Path, *, title: str = "training loss") -> Path:
    """Loss per step as a PNG line chart (axes, min/max labels), drawn with Pillow."""
    from PIL import Image, ImageDraw

    w, h, left, right, top, bottom = 800, 450, 70, 20, 40, 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    pts = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float))
           and math.isfinite(r["loss"])]
    d.text((left, 12), title, fill="black")
    d.rectangle([left, top, w - right, h - bottom], outline="black")
    if pts:
        s0, s1 = pts[0][0], max(pts[-1][0], pts[0][0] + 1)
        lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
        hi = hi if hi > lo else lo + 1.0

        def xy(step: float, loss: float) -> tuple[float, float]:
            x = left + (step - s0) / (s1 - s0) * (w - left - right)
            y = h - bottom - (loss - lo) / (hi - lo) * (h - top - bottom)
            return x, y

        for frac in (0.25, 0.5, 0.75):  # light grid
            y = top + frac * (h - top - bottom)
            d.line([(left, y), (w - right, y)], fill=(225, 225, 225))
        if len(pts) > 1:
            d.line([xy(*p) for p in pts], fill=(31, 119, 180), width=2)
        else:
            x, y = xy(*pts[0])
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(31, 119, 180))
        d.text((4, top - 6), f"{hi:.3f}", fill="black")
        d.text((4, h - bottom - 6), f"{lo:.3f}", fill="black")
        d.text((left, h - bottom + 6), f"step {s0}", fill="black")
        d.text((w - right - 80, h - bottom + 6), f"step {pts[-1][0]}", fill="black")
    d.text((w // 2 - 20, h - 20), "step", fill="black")
    img.save(path)
    return path
