"""Run a benchmark adapter over a model, resumably: `run_benchmark(bench, data, model, out_dir=...)`.

    out_dir/predictions.jsonl   append-only, one line per finished item (`vita.eval.bench.store`)
    out_dir/report.json         the report (`vita.eval.bench.report.build_report`), rewritten atomically
    out_dir/report.md           the same as markdown

Items run in data order, skipping those already in the predictions file (each checked against its prompt's
sha256, so a changed prompt is never answered by an old prediction). Items go to the model `batch_size` at a
time through `model.generate_batch(requests, ...)` when the model has one, else one `generate` call each; each
batch is appended and fsynced before the next starts, so a kill loses at most the batch in flight. The report
depends only on the items and their replies (no timings), hence a resumed run ends with the same report as an
uninterrupted one. A `VitaError` on one item (unusable media) is recorded as that item's error and scored as an
empty reply; the report lists it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol, TextIO

from vita.errors import EvalError, VitaError
from vita.eval.bench.core import B64Image, Benchmark, Item, Options
from vita.eval.bench.report import build_report, render_markdown
from vita.eval.bench.store import PredictionStore


class Model(Protocol):
    def generate(self, text: str | None = None, **kwargs: Any) -> Any: ...


class Progress:
    """A progress line with rate and ETA on `stream`: redrawn in place on a terminal, else every ~5 %."""

    def __init__(self, label: str, total: int, done: int, stream: TextIO | None) -> None:
        self.label, self.total, self.done, self.stream = label, total, done, stream
        self.start_done, self.t0 = done, time.perf_counter()
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.step = max(1, total // 20)
        self.last_printed = done

    def line(self) -> str:
        elapsed = time.perf_counter() - self.t0
        ran = self.done - self.start_done
        rate = ran / elapsed if elapsed > 0 and ran else 0.0
        left = self.total - self.done
        eta = f"{int(left / rate) // 60}:{int(left / rate) % 60:02d}" if rate else "?"
        pct = 100 * self.done / self.total if self.total else 100.0
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        return f"{self.label} [{bar}] {self.done}/{self.total} {pct:5.1f}% {rate:.2f} it/s ETA {eta}"

    def advance(self, n: int) -> None:
        self.done += n
        if self.stream is None:
            return
        if self.tty:
            print("\r" + self.line(), end="\n" if self.done >= self.total else "", file=self.stream, flush=True)
        elif self.done - self.last_printed >= self.step or self.done >= self.total:
            print(self.line(), file=self.stream, flush=True)
            self.last_printed = self.done


def _media_key(path: Path) -> bytes:
    # the file's last two path parts and its size: stable when the data folder moves, changed by another file
    size = path.stat().st_size if path.is_file() else -1
    return f"{'/'.join(path.parts[-2:])}:{size}".encode()


def prompt_sha(item: Item) -> str:
    """What an item's prediction depends on: its prompt and its media (a digest of inline images; for files the
    last two path parts and the size, so that a benchmark folder can move between a run and its resumption)."""
    h = hashlib.sha256(item.prompt.encode("utf-8"))
    for ref in item.images:
        h.update(b"\0image:" + (hashlib.sha256(ref.data.encode()).digest() if isinstance(ref, B64Image)
                                else _media_key(ref)))
    videos = item.video if isinstance(item.video, list) else [item.video] if item.video is not None else []
    for v in videos:
        h.update(b"\0video:" + _media_key(v))
    if item.audio is not None:
        h.update(b"\0audio:" + _media_key(item.audio))
    return h.hexdigest()[:16]


def request(item: Item) -> dict[str, Any]:
    """The keyword arguments of `Vita.generate` for one item (inline images decoded to bytes here)."""
    images = [ref.decode() if isinstance(ref, B64Image) else str(ref) for ref in item.images]
    video: Any = None
    if isinstance(item.video, list):
        video = [str(p) for p in item.video]
    elif item.video is not None:
        video = str(item.video)
    return {"text": item.prompt or None, "images": images, "video": video,
            "audio": None if item.audio is None else str(item.audio)}


def _record(item: Item, reply: Any) -> dict[str, Any]:
    return {"id": item.id, "sha": prompt_sha(item), "text": reply.text, "state": reply.state,
            "n_tokens": len(reply.token_ids), "finish_reason": reply.finish_reason}


def _run_batch(model: Model, batch: list[Item], gen: dict[str, Any]) -> list[dict[str, Any]]:
    if len(batch) > 1 and hasattr(model, "generate_batch"):
        try:
            replies = model.generate_batch([request(it) for it in batch], **gen)
            return [_record(it, r) for it, r in zip(batch, replies, strict=True)]
        except VitaError:
            pass  # find the item at fault one by one
    out = []
    for item in batch:
        try:
            out.append(_record(item, model.generate(**request(item), **gen)))
        except VitaError as exc:
            out.append({"id": item.id, "sha": prompt_sha(item), "text": "", "error": str(exc)})
    return out


def load_items(bench: Benchmark, data: Path, options: Options) -> list[Item]:
    items = bench.load(data, options)
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise EvalError(f"{data}: item id {item.id!r} appears twice")
        seen.add(item.id)
    if options.limit is not None:  # the first N items, counting a group (MMBench's copies) as one
        keep: set[Any] = set()
        for item in items:
            if len(keep) == options.limit:
                break
            keep.add(item.meta.get("group", item.id))
        items = [it for it in items if it.meta.get("group", it.id) in keep]
    if not items:
        raise EvalError(f"{data}: no {bench.name} items found")
    return items


def run_benchmark(bench: Benchmark, data: str | Path, model: Model, *, out_dir: str | Path,
                  options: Options | None = None, model_name: str = "?", max_new_tokens: int | None = None,
                  sampling: Any = None, seed: int | None = None, batch_size: int = 1, restart: bool = False,
                  progress: TextIO | None = None, items: Sequence[Item] | None = None) -> dict[str, Any]:
    """Run (or resume) `bench` on `data` and return the report; see the module docstring for the files."""
    data = Path(data)
    out = Path(out_dir)
    options = options or Options()
    items = list(items) if items is not None else load_items(bench, data, options)
    budget = max_new_tokens or bench.max_new_tokens
    temperature = float(getattr(sampling, "temperature", 0.0) or 0.0)
    options_key = {k: v for k, v in asdict(options).items() if k != "limit"}
    header = {"bench": bench.name, "model": model_name, "max_new_tokens": budget, "options": options_key,
              "decoding": {"temperature": temperature, "seed": seed}}
    store = PredictionStore(out / "predictions.jsonl", header, restart=restart)
    shas = {it.id: prompt_sha(it) for it in items}
    stale = [k for k, r in store.done.items() if k in shas and r.get("sha") != shas[k]]
    if stale:
        raise EvalError(f"{store.path}: {len(stale)} prediction(s) were made for a different prompt or media "
                        f"(first: {stale[0]!r}); use another --out-dir, or --restart")
    todo = [it for it in items if it.id not in store.done]
    bar = Progress(bench.name, len(items), len(items) - len(todo), progress)
    gen = {"max_new_tokens": budget, "sampling": sampling, "seed": seed}
    for start in range(0, len(todo), max(1, batch_size)):
        batch = todo[start : start + max(1, batch_size)]
        store.add(_run_batch(model, batch, gen))
        bar.advance(len(batch))
    replies = {it.id: store.done[it.id].get("text", "") for it in items}
    errors = {it.id: store.done[it.id]["error"] for it in items if "error" in store.done[it.id]}
    score = bench.score(items, replies)
    report = build_report(bench, score, data=data, header=header, n_items=len(items), limit=options.limit,
                          errors=errors)
    _write(out / "report.json", json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    _write(out / "report.md", render_markdown(report))
    return report


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
