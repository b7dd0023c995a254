"""`vita` command line: generate | convert | quantize | bench | data | vocab | eval | chat | train | mini | download |
serve.

One module per command group parses its arguments and calls a typed Python function (`add_parser(subparsers)`
registers the group, each command's `func(args)` runs it); `args.py` holds what they share (the model a command
loads). Errors that vita raises on purpose are printed as one line (`error: ...`) with exit status 2, never as a
traceback.

Every command line of the package is parsed in this package (no other module imports argparse): besides `vita`,
`python -m vita.cli.train` (torchrun's entry), `python -m vita.cli.tools TOOL` (the developer tools) and
`python -m vita.demo` (`vita.cli.demo`).
"""

from __future__ import annotations

import argparse
import sys

from vita.cli.args import CommandParser, UsageError


def build_parser() -> argparse.ArgumentParser:
    from vita.cli import bench, chat, checkpoint, data, generate, mini, serve
    from vita.cli import eval as eval_cmd
    from vita.cli import train as train_cmd

    p = CommandParser(prog="vita", description="VITA: omni-modal LLM (video, image, text, speech).")
    sub = p.add_subparsers(dest="command", required=True)
    generate.add_parser(sub)
    checkpoint.add_parsers(sub)
    bench.add_parser(sub)
    data.add_parsers(sub)
    data.add_vocab_parser(sub)
    eval_cmd.add_parser(sub)
    chat.add_parser(sub)
    train_cmd.add_parser(sub)
    mini.add_parser(sub)
    checkpoint.add_download_parser(sub)
    serve.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from vita.errors import run_command

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return run_command(lambda: args.func(args))
    except UsageError as exc:
        parser.error(str(exc))
    except (OSError, UnicodeDecodeError, OverflowError) as exc:  # unreadable / binary files, out-of-range values
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    return 0


def one_line(exc: BaseException) -> str:
    """An exception as one line: `PermissionError: [Errno 13] Permission denied: 'x.wav'`."""
    text = " ".join(str(exc).split())
    if isinstance(exc, UnicodeDecodeError):
        text = f"a file is not UTF-8 text ({text})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
