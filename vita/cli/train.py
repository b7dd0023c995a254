"""`vita train`: one training stage from a YAML recipe (`vita.training.train.train`).

    vita train --recipe R --output DIR [--quiet] [--threads N] [--device D] [key=value ...]
    python -m vita.cli.train ...       the same flags, for torchrun (`-m vita.cli.train`): one process per rank,
                                       an error printed with its rank (`[rank 1] error: ...`) by the ranks after 0
"""

from __future__ import annotations

import argparse
import os
import sys

from vita.cli.args import add_device_arguments, device_from_args


def _description() -> str:
    from vita.training import train

    return train.__doc__ or ""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `vita train` on an argparse subparsers object."""
    p = subparsers.add_parser("train", help="train one stage from a YAML recipe (torchrun for several ranks)",
                              description=_description(), formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(p)
    p.set_defaults(func=_command)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", required=True, help="recipe YAML (recipes/vita1/*.yaml, recipes/tiny/*.yaml)")
    p.add_argument("--output", required=True, help="run directory (rerun the same command to resume)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads per rank")
    add_device_arguments(p, dtype=False)  # the dtypes are the recipe's: model.dtype=bf16, precision=bf16
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. optim.lr=1e-4")


def _command(args: argparse.Namespace) -> int:
    import torch

    from vita.training.train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    device, _ = device_from_args(args)
    train(args.recipe, args.output, args.overrides, quiet=args.quiet, device=device)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m vita.cli.train`: the torchrun entry (flags and overrides may be interleaved)."""
    from vita.errors import run_command

    parser = argparse.ArgumentParser(prog="vita train", description=_description(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(parser)
    args = parser.parse_intermixed_args(argv)
    rank = os.environ.get("RANK")
    code = run_command(lambda: _command(args), prefix=f"[rank {rank}] " if rank not in (None, "0") else "")
    if rank is None:
        return code
    # A rank's work is over (weights saved, process group destroyed after a final barrier). Interpreter teardown is
    # skipped: a gloo worker thread still holding tensors can abort it ("terminate called without an active
    # exception", SIGABRT seen in 2 of 3 full test runs), and torchrun then fails the whole run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
