"""One row of headline figures per model, read from the folder of `vita eval --out` reports it was scored in.

A folder holds `all.json` (the held-out cases of `vita data mini`'s `eval/all.jsonl`) and, when they were run,
`real_speech.json` and `chat_typed.json`. Per folder:
    answers        answer accuracy over the cases with an answer, naming excluded
    image, video   answer accuracy of the typed / spoken groups (`image/.../typed`, `.../spoken`)
    naming         answer accuracy of the `naming/...` groups
    WER            corpus WER of the `asr/...` groups; real speech: of every case of real_speech.json
    chat_typed     answer accuracy of chat_typed.json

    python -m vita.cli.tools release_table DIR [DIR ...] [--json]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from vita.errors import EvalError
from vita.eval.compare import load_cases

__all__ = ["Row", "row", "markdown"]


@dataclass(frozen=True)
class Row:
    folder: str
    answers: float | None
    image_typed: float | None
    image_spoken: float | None
    video_typed: float | None
    video_spoken: float | None
    naming: float | None
    wer: float | None
    real_speech_wer: float | None
    chat_typed: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def _accuracy(cases: list[dict], keep: Callable[[str], bool]) -> float | None:
    scored = [c for c in cases if c.get("answer_correct") is not None and keep(str(c.get("group", "")))]
    return sum(bool(c["answer_correct"]) for c in scored) / len(scored) if scored else None


def _wer(cases: list[dict], keep: Callable[[str], bool]) -> float | None:
    scored = [c for c in cases if c.get("edits") is not None and keep(str(c.get("group", "")))]
    units = sum(c["ref_units"] for c in scored)
    return sum(c["edits"] for c in scored) / units if units else None


def _family(prefix: str, how: str) -> Callable[[str], bool]:
    return lambda g: g.startswith(prefix + "/") and g.endswith("/" + how)


def row(folder: str | Path) -> Row:
    """The figures of one folder; a report that is absent gives None for its figures (all.json is required)."""
    folder = Path(folder)
    if not (folder / "all.json").is_file():
        raise EvalError(f"{folder}: no all.json (the `vita eval --out` report of eval/all.jsonl) in this folder")
    held = list(load_cases(folder / "all.json").values())
    optional = {name: list(load_cases(folder / f"{name}.json").values()) if (folder / f"{name}.json").is_file()
                else None for name in ("real_speech", "chat_typed")}
    real, chat = optional["real_speech"], optional["chat_typed"]
    return Row(
        folder=str(folder),
        answers=_accuracy(held, lambda g: not g.startswith("naming")),
        image_typed=_accuracy(held, _family("image", "typed")),
        image_spoken=_accuracy(held, _family("image", "spoken")),
        video_typed=_accuracy(held, _family("video", "typed")),
        video_spoken=_accuracy(held, _family("video", "spoken")),
        naming=_accuracy(held, lambda g: g.startswith("naming")),
        wer=_wer(held, lambda g: g.startswith("asr")),
        real_speech_wer=None if real is None else _wer(real, lambda g: True),
        chat_typed=None if chat is None else _accuracy(chat, lambda g: True),
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def markdown(rows: list[Row]) -> str:
    lines = ["| folder | answers | image QA typed / spoken | video typed / spoken | naming | WER held-out "
             "| real speech | chat_typed |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.folder} | {_pct(r.answers)} | {_pct(r.image_typed)} / {_pct(r.image_spoken)} | "
                     f"{_pct(r.video_typed)} / {_pct(r.video_spoken)} | {_pct(r.naming)} | {_pct(r.wer)} | "
                     f"{_pct(r.real_speech_wer)} | {_pct(r.chat_typed)} |")
    return "\n".join(lines) + "\n"
