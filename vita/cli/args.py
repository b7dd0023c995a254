"""What the `vita` commands share on their command lines: the model a command loads, and small value types.

    add_model_arguments   --model, --threads, --device / --dtype, --quantize
    add_device_arguments  --device / --dtype alone; `device_from_args` resolves them (`vita.devices.resolve`)
    add_voice_argument    --voice: the packaged Piper voice or the model's own VITA-1.5 speech decoder
    positive_int, seed_int   argparse types
    CommandParser         argparse that reports a bad command line in one line (the `vita` command's parsers)
    UsageError            a command line that parses but makes no sense (reported like an argparse error)
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from vita.devices import DEVICE_ENV, DTYPE_NAMES, cpu_dtype, resolve
from vita.speech.voices import VOICES

if TYPE_CHECKING:
    import torch

QUANTIZE_HELP = "quantize the LLM's weights at load (vita.nn.quant; int4: groups of 32 with an int8 head)"


class UsageError(Exception):
    """A command line that parses but makes no sense: `vita.cli.main` reports it as an argparse error (status 2)."""


class CommandParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (`vita generate: error: ...`), without the usage
    block; subcommand parsers are of the same class."""

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


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
    `dtype` is False, `--dtype` (read both back with `device_from_args`), and unless `quantize` is False,
    `--quantize int8|int4` (applied at load)."""
    if default is None:
        p.add_argument("--model", required=True, help=help)
    else:
        p.add_argument("--model", default=default, help=help)
    p.add_argument("--threads", type=positive_int, default=threads, help=threads_help)
    add_device_arguments(p, dtype=dtype)
    if quantize:
        p.add_argument("--quantize", choices=["int8", "int4"], default=None, help=QUANTIZE_HELP)


def add_device_arguments(parser: argparse.ArgumentParser, *, dtypes: tuple[str, ...] = DTYPE_NAMES,
                         cpu_dtype: str = "fp32", dtype: bool = True) -> None:
    """Add `--device` (and unless `dtype` is False, `--dtype`) to a command's parser; read them back with
    `device_from_args`. `cpu_dtype`: the command's dtype on the CPU when --dtype is not given."""
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help=f"cpu, cuda, cuda:N or auto (default: ${DEVICE_ENV}, else auto: CUDA if present)")
    if dtype:
        parser.add_argument("--dtype", default=None, choices=list(dtypes),
                            help=f"weights and activations (default: bf16 on CUDA, {cpu_dtype} on the CPU)")
    parser.set_defaults(cpu_dtype=cpu_dtype)


def device_from_args(args: argparse.Namespace) -> tuple[torch.device, str]:
    """The resolved (device, dtype name) of a namespace parsed by a parser given `add_device_arguments`."""
    return resolve(args.device, getattr(args, "dtype", None),
                   cpu_dtype=cpu_dtype(getattr(args, "model", None), args.cpu_dtype))


def add_voice_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--voice", default="auto", choices=VOICES,
                        help="who speaks: the packaged Piper voice, or the model's own VITA-1.5 speech decoder "
                        "(auto: the model's own when its directory has vita_tts_ckpt/)")
