"""Evaluation manifests: JSONL, one case per line, media paths relative to the manifest file.

    {"id": "cat-1", "image": "img/cat.png", "audio": "q/cat.wav", "expect_state": "<1>", "answer": "three"}
    {"id": "noise", "audio": "noise.wav", "expect_state": "<2>"}
    {"id": "mc", "video": "v.mp4", "text": "Which way?", "expect_state": "<3>", "choices": ["left", "right"],
     "answer": "B"}
    {"id": "asr", "audio": "s.wav", "text": "Transcribe.", "expect_state": "<3>", "transcript": "hello world"}

Keys: id (required, str or int, unique), expect_state (required: "<1>" spoken query, "<2>" not a query, "<3>"
typed query), image (a path or a list of paths), video, audio (paths), text, answer (str or number), choices
(at least two strings; needs an answer: one of the choices or its letter), transcript, group (for breakdowns),
match ("exact", the default: the normalized reply equals the answer; "contains": the answer's normalized words
appear contiguously in the reply, for answers given in a full sentence, e.g. "12 times 3 is 36." for "36").
A case needs at least one of image / video / audio / text; a "<2>" case cannot carry answer, choices or
transcript (the right reply to it is silence). history (earlier turns the case follows, oldest first: a list of
{"role": "user", "text": ..., "audio": ...} and {"role": "assistant", "text": "<1>..."} objects, alternating from a
user turn and ending with an assistant one; an assistant text may be a reply cut short, as a user heard it before
speaking again) measures the state after an exchange, as the duplex listener meets it. Blank lines are ignored.
Every problem is an `EvalError` starting with `file:line`; `skip_bad=True` collects those lines in `Manifest.bad`
instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vita.errors import EvalError
from vita.eval.metrics import LETTERS
from vita.eval.normalize import normalize_answer, units
from vita.tokens import STATE_NOT_QUERY, STATE_TOKENS

KEYS = ("id", "image", "video", "audio", "text", "expect_state", "answer", "choices", "transcript", "group", "match",
        "history")
MATCHES = ("exact", "contains")
MODALITIES = ("image", "video", "audio", "text")


@dataclass(frozen=True)
class HistoryTurn:
    role: str  # "user" | "assistant"
    text: str | None = None
    audio: Path | None = None


@dataclass
class Case:
    id: str
    line: int
    expect_state: str
    images: list[Path] = field(default_factory=list)
    video: Path | None = None
    audio: Path | None = None
    text: str | None = None
    answer: str | None = None
    choices: list[str] | None = None
    answer_index: int | None = None  # position of the answer in `choices`
    transcript: str | None = None
    group: str | None = None
    match: str = "exact"
    history: list[HistoryTurn] = field(default_factory=list)

    @property
    def modalities(self) -> list[str]:
        """Every input kind the case has; a case counts in the breakdown of each."""
        have = {"image": bool(self.images), "video": self.video is not None, "audio": self.audio is not None,
                "text": bool(self.text)}
        return [m for m in MODALITIES if have[m]]


@dataclass
class BadLine:
    line: int
    error: str


@dataclass
class Manifest:
    path: Path
    cases: list[Case]
    bad: list[BadLine] = field(default_factory=list)


class _Bad(Exception):
    pass


def _string(record: dict, key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(f"'{key}' must be a string, got {type(value).__name__}")
    return value


def _media(root: Path, record: dict, key: str) -> Path | None:
    raw = _string(record, key)
    if raw is None:
        return None
    if not raw.strip():
        raise _Bad(f"'{key}' is an empty path")
    path = root / raw
    if not path.is_file():
        raise _Bad(f"{key} file not found: {path}")
    return path


def _images(root: Path, record: dict) -> list[Path]:
    value = record.get("image")
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    if not values:
        raise _Bad("'image' is an empty list")
    return [_media(root, {"image": v}, "image") for v in values]  # type: ignore[misc]


def _history(root: Path, record: dict) -> list[HistoryTurn]:
    value = record.get("history")
    if value is None:
        return []
    if not isinstance(value, list) or not value:
        raise _Bad("'history' must be a non-empty list of turns")
    turns = []
    for k, turn in enumerate(value):
        role = "user" if k % 2 == 0 else "assistant"
        if not isinstance(turn, dict) or turn.get("role") != role:
            raise _Bad(f"history turn {k} must be an object with role {role!r} (user and assistant alternate)")
        extra = sorted(set(turn) - ({"role", "text", "audio"} if role == "user" else {"role", "text"}))
        if extra:
            raise _Bad(f"history turn {k}: unknown key(s) {', '.join(map(repr, extra))}")
        try:
            text, audio = _string(turn, "text"), _media(root, turn, "audio")
        except _Bad as exc:
            raise _Bad(f"history turn {k}: {exc}") from None
        if not (text or audio):
            raise _Bad(f"history turn {k} is empty (give text{' or audio' if role == 'user' else ''})")
        turns.append(HistoryTurn(role, text, audio))
    if turns[-1].role != "assistant":
        raise _Bad("'history' must end with an assistant turn (the case is the next user turn)")
    return turns


def _choices(record: dict, answer: str | None) -> tuple[list[str] | None, int | None]:
    value = record.get("choices")
    if value is None:
        return None, None
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(c, str) for c in value):
        raise _Bad("'choices' must be a list of at least two strings")
    if len(value) > len(LETTERS):
        raise _Bad(f"at most {len(LETTERS)} choices")
    seen: dict[str, int] = {}
    for i, choice in enumerate(value):
        norm = normalize_answer(choice)
        if norm and norm in seen:
            raise _Bad(f"choices {value[seen[norm]]!r} and {choice!r} are the same after normalization")
        seen[norm] = i
    if answer is None:
        raise _Bad("'choices' needs an 'answer' (one of the choices or its letter)")
    stripped = answer.strip()
    for i, choice in enumerate(value):
        if choice.strip() == stripped:
            return value, i
    if normalize_answer(answer) in seen and normalize_answer(answer):
        return value, seen[normalize_answer(answer)]
    letter = stripped.strip("().").upper()
    if len(letter) == 1 and letter in LETTERS[: len(value)]:
        return value, LETTERS.index(letter)
    raise _Bad(f"answer {answer!r} is neither one of the choices nor a letter A-{LETTERS[len(value) - 1]}")


def parse_case(record: Any, root: Path, line: int) -> Case:
    """One manifest record -> a `Case`; raises `_Bad` with the problem (no file:line prefix)."""
    if not isinstance(record, dict):
        raise _Bad(f"expected a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - set(KEYS))
    if unknown:
        raise _Bad(f"unknown key(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(KEYS)})")
    raw_id = record.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id).strip() == "":
        raise _Bad("missing or empty 'id' (a string or an integer)")
    state = record.get("expect_state")
    if state is None:
        raise _Bad("missing 'expect_state'")
    if state not in STATE_TOKENS:
        raise _Bad(f"unknown expect_state {state!r} (expected one of {', '.join(STATE_TOKENS)})")
    answer = record.get("answer")
    if isinstance(answer, bool) or not (answer is None or isinstance(answer, (str, int, float))):
        raise _Bad(f"'answer' must be a string or a number, got {type(answer).__name__}")
    answer = None if answer is None else str(answer)
    transcript = _string(record, "transcript")
    if transcript is not None and not units(transcript):
        raise _Bad("'transcript' has no words after normalization")
    if state == STATE_NOT_QUERY:
        given = [k for k in ("answer", "choices", "transcript") if record.get(k) is not None]
        if given:
            raise _Bad(f"a '<2>' (not a query) case cannot have {', '.join(given)}: its right reply is silence")
    choices, index = _choices(record, answer)
    match = _string(record, "match") or "exact"
    if match not in MATCHES:
        raise _Bad(f"unknown match {match!r} (expected one of {', '.join(MATCHES)})")
    if match != "exact" and answer is None:
        raise _Bad(f"'match': {match!r} needs an 'answer'")
    case = Case(
        id=str(raw_id), line=line, expect_state=state, images=_images(root, record),
        video=_media(root, record, "video"), audio=_media(root, record, "audio"), text=_string(record, "text"),
        answer=answer, choices=choices, answer_index=index, transcript=transcript, group=_string(record, "group"),
        match=match, history=_history(root, record),
    )
    if not case.modalities:
        raise _Bad("the case has no input (give at least one of image, video, audio, text)")
    return case


def load_manifest(path: str | Path, *, skip_bad: bool = False) -> Manifest:
    """Read and validate a manifest; the first bad line raises (or, with `skip_bad`, each is recorded)."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path}: manifest not found")
    root = path.parent
    cases: list[Case] = []
    bad: list[BadLine] = []
    first_line: dict[str, int] = {}
    with path.open("rb") as f:
        for number, raw_bytes in enumerate(f, 1):
            try:
                try:
                    raw = raw_bytes.decode("utf-8").removeprefix("\ufeff" if number == 1 else "")
                except UnicodeDecodeError as exc:
                    raise _Bad(f"not UTF-8 text (byte {exc.start + 1})") from None
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise _Bad(f"broken JSON: {exc.msg} (column {exc.colno})") from None
                case = parse_case(record, root, number)
                if case.id in first_line:
                    raise _Bad(f"duplicate id {case.id!r} (first on line {first_line[case.id]})")
            except _Bad as exc:
                message = f"{path}:{number}: {exc}"
                if not skip_bad:
                    raise EvalError(message) from None
                bad.append(BadLine(number, message))
                continue
            first_line[case.id] = number
            cases.append(case)
    if not cases:
        raise EvalError(f"{path}: no cases" + (f" ({len(bad)} bad line(s) skipped)" if bad else ""))
    return Manifest(path, cases, bad)
