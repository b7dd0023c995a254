"""What the developer tools share: their parsers' program name and the refusal to overwrite a folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "python -m vita.cli.tools"


def parser(tool: str, doc: str | None) -> argparse.ArgumentParser:
    """The tool's argument parser, described by the first line of its module's docstring."""
    return argparse.ArgumentParser(prog=f"{PROG} {tool}", description=(doc or "").splitlines()[0])


def refuse_non_empty(out: Path) -> bool:
    """True (after saying so on stderr) where `out` is a folder with something in it."""
    if out.exists() and any(out.iterdir()):
        print(f"error: {out}: exists and is not empty (refusing to overwrite)", file=sys.stderr)
        return True
    return False
