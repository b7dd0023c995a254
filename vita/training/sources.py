"""Random access to the records of one VITA data file, each tagged with `file:line` for messages.

Two formats, chosen by the file's first non-blank character:
  * a JSON list `[{...}, {...}]` (the official format): the text is parsed element by element, so every record
    knows the line it starts on (`file:line`); only the parsed dicts are kept, media are never opened here.
  * JSONL (one object per line): only the byte offset of every non-blank line is indexed; a record is read and
    parsed when asked for, so a broken line is reported (`file:line`) when it is reached, not at start-up.

A JSON list that fails to parse keeps the records before the failure and reports the failure once, as record
`len(records)` (an error record), so the stream still never crashes mid-epoch. `open_data_file` caches the index
(or parsed list) per path while the file's size and mtime are unchanged, so epochs and resumes do not re-read it.
"""

from __future__ import annotations

import json
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vita.errors import DataError


@dataclass(frozen=True)
class Record:
    data: dict[str, Any] | None  # the parsed sample; None when `error` is set
    where: str  # "path:line" (JSON lists: "path:line (#index)")
    media_root: Path
    error: str | None = None  # why the record could not be parsed


class DataFile:
    """One data file; `len()` records, `record(i)` parses record i (JSONL lazily)."""

    def __init__(self, path: str | Path, media_root: str | Path | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such data file")
        self.media_root = Path(media_root) if media_root is not None else self.path.parent
        self._offsets = array("q")  # JSONL: byte offset of each non-blank line (8 bytes a record)
        self._lines = array("q")  # 1-based line number of each record
        self._records: list[Any] | None = None  # JSON list: parsed elements
        self._failure: str | None = None  # JSON list: parse error after the last good element
        with self.path.open("rb") as f:
            head = f.read(4096).lstrip()
        if head.startswith(b"["):
            self._load_list()
        else:
            self._index_lines()

    def __len__(self) -> int:
        if self._records is not None:
            return len(self._records) + (self._failure is not None)
        return len(self._offsets)

    # -- JSON list -----------------------------------------------------------------------------------------------

    def _load_list(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.path}: not UTF-8 text ({exc})", "broken_json") from None
        decoder = json.JSONDecoder()
        records: list[Any] = []
        pos = text.index("[") + 1
        line = 1 + text.count("\n", 0, pos)
        while True:
            pos, line = _skip_ws(text, pos, line)
            if pos < len(text) and text[pos] == "]" and not records:
                break
            if pos >= len(text):
                self._failure = f"{self.path}:{line}: unexpected end of file inside the JSON list"
                break
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                self._failure = f"{self.path}:{exc.lineno}: broken JSON ({exc.msg}); the rest of the file is skipped"
                break
            records.append(value)
            self._lines.append(line)
            line += text.count("\n", pos, end)
            pos, line = _skip_ws(text, end, line)
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if pos < len(text) and text[pos] == "]":
                break
            self._failure = f"{self.path}:{line}: expected ',' or ']' after record #{len(records) - 1}"
            break
        self._records = records

    # -- JSONL ---------------------------------------------------------------------------------------------------

    def _index_lines(self) -> None:
        offset = 0
        with self.path.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                if raw.strip():
                    self._offsets.append(offset)
                    self._lines.append(number)
                offset += len(raw)

    def _read_line(self, i: int) -> bytes:
        with self.path.open("rb") as f:
            f.seek(self._offsets[i])
            return f.readline()

    # -- access --------------------------------------------------------------------------------------------------

    def record(self, i: int) -> Record:
        """Record i (0-based, in file order); never raises for malformed content (see `Record.error`)."""
        if self._records is not None:
            if i == len(self._records) and self._failure is not None:
                return Record(None, f"{self.path}:#{i}", self.media_root, self._failure)
            where = f"{self.path}:{self._lines[i]} (#{i})"
            value = self._records[i]
        else:
            where = f"{self.path}:{self._lines[i]}"
            try:
                value = json.loads(self._read_line(i))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                return Record(None, where, self.media_root, f"{where}: broken JSON line ({exc})")
        if not isinstance(value, dict):
            return Record(None, where, self.media_root, f"{where}: a sample must be a JSON object, got "
                          f"{type(value).__name__}")
        return Record(value, where, self.media_root)


def _skip_ws(text: str, pos: int, line: int) -> tuple[int, int]:
    while pos < len(text) and text[pos] in " \t\r\n":
        line += text[pos] == "\n"
        pos += 1
    return pos, line


_CACHE: dict[tuple[str, str | None], tuple[tuple[int, int], DataFile]] = {}
_CACHE_SIZE = 16


def open_data_file(path: str | Path, media_root: str | Path | None = None) -> DataFile:
    """A `DataFile`, reused while the file is unchanged (size and mtime)."""
    key = (str(Path(path).resolve()), None if media_root is None else str(media_root))
    try:
        st = Path(path).stat()
    except OSError:
        raise DataError(f"{path}: no such data file") from None
    stamp = (st.st_size, st.st_mtime_ns)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    data_file = DataFile(path, media_root)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (stamp, data_file)
    return data_file
