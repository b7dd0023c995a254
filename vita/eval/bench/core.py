"""The benchmark adapter contract: a public data format in, `Item`s to run, replies back, a `Score` out.

An adapter (one per benchmark family, e.g. `vita.eval.bench.mmbench`) knows three things:
  - how to read the benchmark's *released* file format into `Item`s (one model call each, with a stable `id`
    that keys the resumable predictions file);
  - the exact prompt each item is asked with (documented in the adapter's `prompt_doc`);
  - the official scoring rule, applied to `{item id: reply text}` by `score()`, which is pure: the same items
    and replies always give the same `Score`, so a resumed run reports exactly what an uninterrupted one does.

Media stay lazy: an image stored base64 in a TSV cell is kept as text (`B64Image`) until its item runs.
"""

from __future__ import annotations

import base64
import binascii
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vita.errors import EvalError


@dataclass(frozen=True)
class B64Image:
    """An image given base64-encoded in a data file (VLMEvalKit TSVs); decoded when its item runs."""

    data: str
    where: str = field(default="", compare=False)  # how errors name it, e.g. "MMBench_DEV_EN.tsv index 12"

    def decode(self) -> bytes:
        try:
            return base64.b64decode(self.data, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise EvalError(f"{self.where}: image cell is not base64 ({exc})") from None


MediaRef = Path | B64Image


@dataclass
class Item:
    """One model call: the exact prompt text plus its media, and what scoring needs in `meta`."""

    id: str
    prompt: str
    images: list[MediaRef] = field(default_factory=list)
    video: Path | list[Path] | None = None  # a video file, or the frames to use (already chosen, in order)
    audio: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Options:
    """Adapter options from the command line (each adapter reads the ones it has)."""

    shots: int = 0  # in-context examples (MMLU / C-EVAL / AGIEVAL / GSM8K)
    subtitles: bool = False  # Video-MME: with subtitles
    limit: int | None = None  # first N items only (a quick look; the report says so)
    max_frames: int = 16  # Video-MME frames per video (VITA's 4..16 rule for files)


@dataclass
class Figure:
    """A headline number, as the benchmark's authors report it (key looks up the paper's figure)."""

    name: str  # e.g. "accuracy", "WER", "total score"
    key: str  # e.g. "mmlu", "librispeech/test-other", "video-mme/with-subs"
    value: float | None
    unit: str = "%"  # "%" (0-100), or "points" (MME, OCRBench)
    higher_is_better: bool = True
    support: str = ""  # e.g. "3 of 4 questions", "120 edits / 1,000 words"


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[Any]]


@dataclass
class Score:
    headline: list[Figure]
    metrics: dict[str, Any]  # every number, JSON-ready
    tables: list[Table] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # per item: id, expected, extracted, correct, ...


class Benchmark(ABC):
    """Base of every adapter. Subclasses set the class attributes and implement `load` and `score`."""

    name: str = ""  # the CLI word: `vita eval NAME --data PATH`
    title: str = ""  # e.g. "MMBench (circular evaluation)"
    source: str = ""  # where the format and scoring rule come from
    prompt_doc: str = ""  # the exact prompt, as a template
    max_new_tokens: int = 32  # default generation budget

    @abstractmethod
    def load(self, data: Path, options: Options) -> list[Item]:
        """Read the benchmark's released files at `data` into items (ids unique and stable)."""

    @abstractmethod
    def score(self, items: Sequence[Item], replies: Mapping[str, str]) -> Score:
        """Score every item from its reply (a missing reply scores as an empty one)."""


def pct(num: int, den: int) -> float | None:
    """100 * num / den, or None when nothing was counted."""
    return 100.0 * num / den if den else None


def check_data(path: Path, what: str) -> Path:
    if not path.exists():
        raise EvalError(f"{path}: {what} not found")
    return path


def release_file(data: Path, what: str, original: str) -> Path:
    """The file of a benchmark released both as a VLMEvalKit TSV and as an `original` JSON: `data` itself, or in a
    folder its first *.tsv, else the `original` file."""
    check_data(data, f"{what} data")
    if not data.is_dir():
        return data
    found = sorted(data.glob("*.tsv")) or sorted(data.glob(original))
    if not found:
        raise EvalError(f"{data}: no {what} .tsv or {original}")
    return found[0]
