"""The resumable predictions file: append-only JSONL, one line per finished item, fsynced after every batch.

    {"header": {"bench": "mmlu", "model": "vita-mini", "items_sha256": "...", ...}}
    {"id": "abstract_algebra/0", "text": "B", "state": "<3>", "n_tokens": 1, "finish_reason": "stop"}
    {"id": "abstract_algebra/1", "text": "", "error": "image ...: not an image"}

The first line is the run's header: what the predictions depend on (benchmark, model, data items and prompts,
generation settings). Reopening a file whose header differs is an error, never a silent mix of two runs; a file
cut mid-line by a kill keeps its complete lines (the partial tail is truncated away before appending). A line for
an id already present is ignored (the first one wins), so a replay of a batch never changes a prediction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vita.errors import EvalError


class PredictionStore:
    """Open (or create) `path` for a run with `header`; `done` holds the predictions already there."""

    def __init__(self, path: Path, header: dict[str, Any], *, restart: bool = False) -> None:
        self.path = path
        self.header = header
        self.done: dict[str, dict[str, Any]] = {}
        if restart and path.exists():
            path.unlink()
        if path.exists() and path.stat().st_size > 0:
            self._resume()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._append([{"header": header}])

    def _resume(self) -> None:
        raw = self.path.read_bytes()
        good_end = 0
        lines: list[dict[str, Any]] = []
        pos = 0
        while pos < len(raw):
            nl = raw.find(b"\n", pos)
            if nl < 0:
                break  # a partial last line (killed mid-write): dropped
            try:
                record = json.loads(raw[pos:nl].decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                if raw.find(b"\n", nl + 1) >= 0:
                    raise EvalError(f"{self.path}:{len(lines) + 1}: broken line inside the predictions file "
                                    "(not a cut tail); move the file away or pass --restart") from None
                break
            lines.append(record)
            pos = good_end = nl + 1
        if not lines or "header" not in lines[0]:
            raise EvalError(f"{self.path}: not a predictions file (no header line); move it or pass --restart")
        found = lines[0]["header"]
        if found != self.header:
            diff = sorted(k for k in set(found) | set(self.header) if found.get(k) != self.header.get(k))
            raise EvalError(f"{self.path}: written by a different run (differs in {', '.join(diff)}); "
                            "use another --out-dir, or --restart to discard it")
        for record in lines[1:]:
            key = record.get("id")
            if isinstance(key, str) and key not in self.done:
                self.done[key] = record
        if good_end < len(raw):
            with self.path.open("r+b") as f:
                f.truncate(good_end)
                f.flush()
                os.fsync(f.fileno())

    def _append(self, records: Iterable[dict[str, Any]]) -> None:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def add(self, records: list[dict[str, Any]]) -> None:
        """Append finished items (each with an "id") durably; ids already present are skipped."""
        fresh = [r for r in records if r["id"] not in self.done]
        if fresh:
            self._append(fresh)
            for r in fresh:
                self.done[r["id"]] = r
