"""`vita convert` and `vita quantize`: checkpoints between layouts, and int8 / int4 copies (`vita.checkpoint`)."""

from __future__ import annotations

import argparse
import time


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    c = subparsers.add_parser("convert",
                              help="convert a checkpoint between our layout and the official VITA-1.0 / 1.5 ones")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--to", default="vita", choices=["vita", "vita1", "vita15"])
    c.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"], help="default: keep the source's")
    c.set_defaults(func=run_convert)

    q = subparsers.add_parser("quantize", help="write a copy of a model with int8 or int4 LLM weights (vita.nn.quant)")
    q.add_argument("src", help="any model vita.load reads (directory, .gguf, preset)")
    q.add_argument("dst")
    q.add_argument("--bits", type=int, required=True, choices=[8, 4])
    q.add_argument("--dtype", default="bf16", choices=["fp32", "bf16"], help="of the tensors left in float")
    q.add_argument("--float-head", action="store_true", help="keep the output head in float")
    q.set_defaults(func=run_quantize)


def run_convert(args: argparse.Namespace) -> int:
    from vita.checkpoint.convert import convert

    t0 = time.perf_counter()
    out = convert(args.src, args.dst, to=args.to, dtype=args.dtype)
    print(f"wrote {out} ({args.to} layout) in {time.perf_counter() - t0:.1f} s")
    return 0


def run_quantize(args: argparse.Namespace) -> int:
    from vita.checkpoint.load import quantize_checkpoint

    t0 = time.perf_counter()
    out = quantize_checkpoint(args.src, args.dst, bits=args.bits, dtype=args.dtype, head=not args.float_head)
    print(f"wrote {out} (int{args.bits} weights) in {time.perf_counter() - t0:.1f} s")
    return 0
