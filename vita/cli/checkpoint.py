"""`vita convert`, `vita quantize`, `vita download`: checkpoints between layouts, int8 / int4 copies, and the official
releases fetched from the hub (`vita.checkpoint`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vita.checkpoint.download import RELEASES


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


def add_download_parser(subparsers: argparse._SubParsersAction) -> None:
    d = subparsers.add_parser("download", help="fetch and assemble an official VITA release from the Hugging Face hub")
    d.add_argument("model", choices=list(RELEASES))
    d.add_argument("--dir", type=Path, default=None, help="download folder (default: ~/.cache/vita/models/<model>)")
    d.add_argument("--endpoint", default=None, help="hub endpoint (default: $HF_ENDPOINT, else huggingface.co)")
    d.add_argument("--verify", action="store_true", help="re-hash every file already there (fetch the bad ones)")
    d.set_defaults(func=run_download)


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


def run_download(args: argparse.Namespace) -> int:
    from vita.checkpoint.download import download, human_size

    last = [0.0]

    def progress(local: str, done: int, size: int) -> None:
        if not sys.stderr.isatty() or (done < size and done - last[0] < size / 50):
            return
        last[0] = 0.0 if done >= size else done
        print(f"\r    {100 * done / size:5.1f} %  {human_size(done)} / {human_size(size)}",
              end="\n" if done >= size else "", file=sys.stderr, flush=True)

    folder = download(args.model, args.dir, endpoint=args.endpoint, verify=args.verify, progress=progress)
    print(f"{args.model}: complete and verified in {folder.parent}")
    print(f"load it with: vita generate --model {folder} ...")
    return 0
