"""What the `vita` commands share on their command lines: the model a command loads, and small value types.

    add_model_arguments   --model, --threads, --device / --dtype (`vita.devices`), --quantize
    add_voice_argument    --voice: the packaged Piper voice or the model's own VITA-1.5 speech decoder
    positive_int, seed_int   argparse types
    UsageError            a command line that parses but makes no sense (reported like an argparse error)
"""

from __future__ import annotations

import argparse

from vita import devices
from vita.speech.voices import VOICES

QUANTIZE_HELP = "quantize the LLM's weights at load (vita.nn.quant; int4: groups of 32 with an int8 head)"


class UsageError(Exception):
    """A command line that parses but makes no sense: `vita.cli.main` reports it as an argparse error (status 2)."""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seed_int(text: str) -> int:
    value = int(text)
    if not -(2**63) <= value < 2**64:
        raise argparse.ArgumentTypeError(f"must fit in 64 bits (-2**63 .. 2**64-1), got {text[:40]}")
    return value


def add_model_arguments(p: argparse.ArgumentParser, *, default: str | None,
                        help: str = "model directory (any supported layout) or preset", threads: int | None = None,
                        threads_help: str = "torch threads (default: torch's choice)", quantize: bool = True,
                        dtype: bool = True) -> None:
    """The model a command loads: `--model` (required when `default` is None), `--threads`, `--device` and, unless
    `dtype` is False, `--dtype` (read both back with `vita.devices.from_args`), and unless `quantize` is False,
    `--quantize int8|int4` (applied at load)."""
    if default is None:
        p.add_argument("--model", required=True, help=help)
    else:
        p.add_argument("--model", default=default, help=help)
    p.add_argument("--threads", type=positive_int, default=threads, help=threads_help)
    devices.add_arguments(p, dtype=dtype)
    if quantize:
        p.add_argument("--quantize", choices=["int8", "int4"], default=None, help=QUANTIZE_HELP)


def add_voice_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--voice", default="auto", choices=VOICES,
                        help="who speaks: the packaged Piper voice, or the model's own VITA-1.5 speech decoder "
                        "(auto: the model's own when its directory has vita_tts_ckpt/)")
