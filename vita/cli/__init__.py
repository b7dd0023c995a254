"""`vita` command line: generate | convert | bench | data | vocab | eval | chat | train | mini | serve.

Every command is a thin layer over a Python function; errors that vita raises on purpose are printed as one
line (`error: ...`) with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _generate(args: argparse.Namespace) -> int:
    import torch

    from vita import devices
    from vita.api import load
    from vita.generation.sampling import SamplingConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.prompt or args.image or args.video or args.audio):
        raise _usage("give at least one of --prompt, --image, --video, --audio")
    device, dtype = devices.from_args(args)
    t0 = time.perf_counter()
    model = load(args.model, dtype=dtype, device=device, vision_tower=args.vision_tower,
                 audio_encoder=args.audio_encoder, quantize=args.quantize)
    load_s = time.perf_counter() - t0
    model.processor.strict_audio = args.strict_audio
    inputs = model.inputs(args.prompt, images=args.image, video=args.video, audio=args.audio)
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    stream = model.stream(inputs, max_new_tokens=args.max_new_tokens, sampling=sampling, seed=args.seed)
    t1 = time.perf_counter()
    while True:
        try:
            delta = next(stream)
        except StopIteration as stop:
            reply = stop.value
            break
        if not args.json:
            sys.stdout.write(delta)
            sys.stdout.flush()
    gen_s = time.perf_counter() - t1
    if args.json:
        print(json.dumps({"state": reply.state, "text": reply.text, "token_ids": reply.token_ids,
                          "finish_reason": reply.finish_reason}, ensure_ascii=False))
    else:
        print()
        print(f"[state {reply.state or 'none'} | {len(reply.token_ids)} tokens | finish {reply.finish_reason} | "
              f"load {load_s:.2f} s | prompt {inputs.token_ids.shape[1]} tokens | generate {gen_s:.2f} s]",
              file=sys.stderr)
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from vita.checkpoint.load import quantize_checkpoint

    t0 = time.perf_counter()
    out = quantize_checkpoint(args.src, args.dst, bits=args.bits, dtype=args.dtype, head=not args.float_head)
    print(f"wrote {out} (int{args.bits} weights) in {time.perf_counter() - t0:.1f} s")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from vita.checkpoint.convert import convert

    t0 = time.perf_counter()
    out = convert(args.src, args.dst, to=args.to, dtype=args.dtype)
    print(f"wrote {out} ({args.to} layout) in {time.perf_counter() - t0:.1f} s")
    return 0


def _bench_decode(args: argparse.Namespace) -> int:
    from vita import devices
    from vita.bench.decode import main as bench_main

    device, _ = devices.from_args(args)
    if device.type == "cuda":  # vita.bench.decode measures the CPU (its bandwidth, its threads)
        return _bench_decode_cuda(args, device)

    argv = ["--model", args.model, "--dtype", args.dtype]
    for flag in ("prompt_len", "new_tokens", "threads", "repeats"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    if args.no_compile:
        argv.append("--no-compile")
    if args.no_transformers:
        argv.append("--no-transformers")
    if args.no_native:
        argv.append("--no-native")
    if args.json:
        argv.append("--json")
    if args.quantize:
        argv += ["--quantize", *args.quantize]
    return bench_main(argv) or 0


def _bench_decode_cuda(args: argparse.Namespace, device) -> int:
    from dataclasses import asdict

    from vita.bench.decode import format_table
    from vita.bench.decode_cuda import run_bench

    if getattr(args, "quantize", None) or args.no_native:
        raise _usage("--quantize and --no-native are CPU options; leave them out with --device cuda")
    kw = {k: getattr(args, k) for k in ("prompt_len", "new_tokens") if getattr(args, k) is not None}
    result = run_bench(args.model, device, dtype=args.dtype, compile=not args.no_compile,
                       transformers=not args.no_transformers, **kw)
    print(json.dumps(asdict(result)) if args.json else format_table(result))
    return 0


def _forward(module: str, argv: list[str]) -> int:
    """Hand the remaining arguments to a module's own `main(argv)` (its parser owns the flags and --help)."""
    import importlib

    return importlib.import_module(module).main(argv) or 0


class _UsageError(Exception):
    pass


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


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    from vita import devices
    from vita.errors import CommandParser

    p = CommandParser(prog="vita", description="VITA: omni-modal LLM (video, image, text, speech).")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="answer one turn over text, images, a video and/or a spoken question")
    g.add_argument("--model", required=True, help="model directory (ours, official VITA-1.0, HF LLM) or preset")
    g.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    g.add_argument("--video", help="video file")
    g.add_argument("--audio", help="audio file (wav, flac, ogg, mp3; resampled to 16 kHz mono)")
    g.add_argument("--prompt", help="typed question")
    g.add_argument("--max-new-tokens", type=positive_int, default=256)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=0, help="0 = off")
    g.add_argument("--top-p", type=float, default=1.0, help="1.0 = off")
    g.add_argument("--seed", type=seed_int, default=None)
    devices.add_arguments(g)
    g.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    g.add_argument("--vision-tower", help="InternViT folder (default: as named in the official config)")
    g.add_argument("--audio-encoder", help="audio-encoder folder (default: as named in the official config)")
    g.add_argument("--strict-audio", action="store_true", help="refuse audio that is not 16 kHz mono (no resampling)")
    g.add_argument("--quantize", choices=["int8", "int4"], default=None, help="quantize the LLM's weights at load")
    g.add_argument("--json", action="store_true", help='print {"state", "text", "token_ids"} as JSON')
    g.set_defaults(func=_generate)

    c = sub.add_parser("convert", help="convert a checkpoint between our layout and the official VITA-1.0 / 1.5 ones")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--to", default="vita", choices=["vita", "vita1", "vita15"])
    c.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"], help="default: keep the source's")
    c.set_defaults(func=_convert)

    q = sub.add_parser("quantize", help="write a copy of a model with int8 or int4 LLM weights (vita.nn.quant)")
    q.add_argument("src", help="any model vita.load reads (directory, .gguf, preset)")
    q.add_argument("dst")
    q.add_argument("--bits", type=int, required=True, choices=[8, 4])
    q.add_argument("--dtype", default="bf16", choices=["fp32", "bf16"], help="of the tensors left in float")
    q.add_argument("--float-head", action="store_true", help="keep the output head in float")
    q.set_defaults(func=_quantize)

    b = sub.add_parser("bench", help="benchmarks that print figures")
    bsub = b.add_subparsers(dest="bench", required=True)
    d = bsub.add_parser("decode", help="prefill and decode tokens/s vs the memory-bandwidth bound")
    d.add_argument("--model", default="smollm2-135m-random", help="preset name or model directory")
    d.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    d.add_argument("--prompt-len", type=positive_int, default=None)
    d.add_argument("--new-tokens", type=positive_int, default=None)
    d.add_argument("--threads", type=positive_int, default=None)
    d.add_argument("--no-compile", action="store_true", help="eager decode step (no torch.compile)")
    d.add_argument("--no-native", action="store_true", help="the module's decode step, not the native whole step")
    d.add_argument("--no-transformers", action="store_true", help="skip the transformers comparison")
    d.add_argument("--quantize", nargs="+", choices=["int8", "int4"], default=None,
                   help="also time int8 / int4 weights and llama.cpp Q4_1, interleaved with the float model")
    d.add_argument("--repeats", type=positive_int, default=None, help="rounds (default 3); each figure is the best")
    d.add_argument("--json", action="store_true")
    devices.add_arguments(d, dtype=False)  # --dtype above: bf16 on every device; cuda: vita.bench.decode_cuda
    d.set_defaults(func=_bench_decode)

    # sub-commands that live with their subsystem register themselves
    from vita.checkpoint import download as download_cmd
    from vita.cli import bench as bench_cli
    from vita.cli import chat as chat_cli
    from vita.eval import run as eval_run
    from vita.server import cli as serve_cli
    from vita.training import mini_cli, mini_data, negatives, vocab
    from vita.training import train as train_cmd

    data = sub.add_parser("data", help="build training data (vita-mini sets, non-awakening negatives)")
    data_sub = data.add_subparsers(dest="data", required=True)
    negatives.add_parser(data_sub)
    mini_data.add_parser(data_sub)
    vocab.add_parser(sub)
    eval_run.add_parser(sub)
    chat_cli.add_parser(sub)
    bench_cli.add_duplex_parser(bsub)
    train_cmd.add_parser(sub)
    mini_cli.add_parser(sub)
    download_cmd.add_parser(sub)
    serve_cli.add_parser(sub)
    t = bsub.add_parser("train", help="training samples/s on 1 and N ranks (tiny recipe), and the scaling ratio",
                        add_help=False)
    t.set_defaults(func=lambda a: _forward("vita.bench.train", a.extra), takes_extra=True)
    s = bsub.add_parser("serve", help="N concurrent realtime sessions in real time: latency p50/p90, errors, leakage",
                        add_help=False)
    s.set_defaults(func=lambda a: _forward("vita.bench.serve", a.extra), takes_extra=True)
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
    except _UsageError as exc:
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
