"""Error types. Each message names the input and the problem; the CLI prints them without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


class VitaError(Exception):
    """Base class of every error vita raises on purpose."""


def run_command(command: Callable[[], int | None], *, prefix: str = "") -> int:
    """Run a CLI command: a `VitaError` prints as one line (`error: ...`, exit status 2), Ctrl-C exits with 130."""
    try:
        return command() or 0
    except VitaError as exc:
        print(f"{prefix}error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


class ConfigError(VitaError, ValueError):
    """A configuration value is missing, unknown or inconsistent."""


class MediaError(VitaError, ValueError):
    """An image, video or audio input cannot be used (missing, corrupt, truncated, empty, wrong format)."""


class CheckpointError(VitaError, RuntimeError):
    """A checkpoint is missing, malformed, or does not fit the model."""


class PromptError(VitaError, ValueError):
    """A prompt does not fit the media given with it (e.g. more placeholders than media)."""


class TrainingError(VitaError, RuntimeError):
    """A training recipe, its data, or a training run's output directory cannot be used."""


class DataError(VitaError, ValueError):
    """A training sample or data file is malformed; the message starts with `file:line` (or `file:#index`).

    `kind` names the problem for counting (e.g. "broken_json", "missing_media", "too_long", "markers", "role").
    """

    def __init__(self, message: str, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind


class EvalError(VitaError, ValueError):
    """An evaluation manifest or run cannot be used; manifest errors start with `file:line`."""
