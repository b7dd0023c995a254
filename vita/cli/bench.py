"""`vita bench decode | duplex | train | serve`: benchmarks that print figures.

    vita bench decode   prefill and decode tokens/s vs the memory-bandwidth bound (`vita.bench.decode.run_bench`;
                        `--device cuda`: `vita.bench.decode_cuda`)
    vita bench duplex   the scripted duplex scenarios (`vita.bench.duplex.bench`): latencies, false triggers, misses
    vita bench train    forwarded to `vita.bench.train` (its own parser owns the flags and --help)
    vita bench serve    forwarded to `vita.bench.serve` (likewise)
Each prints markdown, or one JSON object with `--json`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from vita import devices
from vita.cli.args import UsageError, add_model_arguments, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    b = subparsers.add_parser("bench", help="benchmarks that print figures")
    bsub = b.add_subparsers(dest="bench", required=True)
    d = bsub.add_parser("decode", help="prefill and decode tokens/s vs the memory-bandwidth bound")
    add_model_arguments(d, default="smollm2-135m-random", help="preset name or model directory", quantize=False,
                        dtype=False, threads_help="torch threads (default: torch's choice)")
    d.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])  # bf16 on every device (not vita.devices')
    d.add_argument("--prompt-len", type=positive_int, default=None)
    d.add_argument("--new-tokens", type=positive_int, default=None)
    d.add_argument("--no-compile", action="store_true", help="eager decode step (no torch.compile)")
    d.add_argument("--no-native", action="store_true", help="the module's decode step, not the native whole step")
    d.add_argument("--no-transformers", action="store_true", help="skip the transformers comparison")
    d.add_argument("--quantize", nargs="+", choices=["int8", "int4"], default=None,
                   help="also time int8 / int4 weights and llama.cpp Q4_1, interleaved with the float model")
    d.add_argument("--repeats", type=positive_int, default=None, help="rounds (default 3); each figure is the best")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=run_decode)
    add_duplex_parser(bsub)
    t = bsub.add_parser("train", help="training samples/s on 1 and N ranks (tiny recipe), and the scaling ratio",
                        add_help=False)
    t.set_defaults(func=lambda a: forward("vita.bench.train", a.extra), takes_extra=True)
    s = bsub.add_parser("serve", help="N concurrent realtime sessions in real time: latency p50/p90, errors, leakage",
                        add_help=False)
    s.set_defaults(func=lambda a: forward("vita.bench.serve", a.extra), takes_extra=True)
    return b


def add_duplex_parser(bench_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = bench_subparsers.add_parser("duplex", help="scripted duplex scenarios: latencies, false triggers, misses")
    add_model_arguments(p, default="vita-mini", help="model directory or preset", threads=1, quantize=False)
    p.add_argument("--scenarios", help="JSON scenario file (schema: vita.duplex.scenarios); default: built-in")
    p.add_argument("--setup", default="auto", choices=("auto", "headphones", "speaker"),
                   help="auto: each scenario's own (echo only where it has an echo gain); speaker: every "
                        "scenario's playback leaks back (-6 dB, 40 ms) through AEC3 + gate; headphones: no echo")
    p.add_argument("--no-compute-time", action="store_true",
                   help="count no compute time (deterministic; latencies are then algorithmic only)")
    p.add_argument("--no-rss", action="store_true", help="skip the RSS measurement (rss_two_roles_over_one: null)")
    p.add_argument("--public", action="store_true",
                   help="also the public benchmarks (Full-Duplex-Bench v1 / v1.5 behaviours, FD-Bench) on scenario "
                        "sets built offline (vita.bench.duplex_public); JSON key 'public'")
    p.add_argument("--per-family", type=int, default=4, help="--public: scenarios per family")
    p.add_argument("--free", action="store_true",
                   help="force only each scenario's first answer (the one later speech overlaps); a trained model "
                        "decides every other state token and answer")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_duplex)
    return p


def run_duplex(args: argparse.Namespace) -> int:
    import torch

    from vita.bench.duplex import bench
    from vita.duplex import simulate
    from vita.duplex.scenarios import load_scenario_file

    torch.set_num_threads(args.threads)
    device, dtype = devices.from_args(args)
    scenarios = load_scenario_file(args.scenarios) if args.scenarios else None  # file errors before the model
    rep = bench(args.model, scenarios, setup=args.setup, compute_time=not args.no_compute_time, rss=not args.no_rss,
                public=args.public, public_n=args.per_family, free=args.free, device=device, dtype=dtype)
    if args.json:
        print(json.dumps(rep))
    else:
        print(simulate.markdown(rep, model=args.model, compute_time=not args.no_compute_time))
        if "public" in rep:
            from vita.bench.duplex_public import markdown

            print()
            print(markdown(rep["public"], label=args.model + ("" if args.free else " (scripted replies)")))
    return 0


def run_decode(args: argparse.Namespace) -> int:
    from vita.bench.decode import format_table, run_bench

    device, _ = devices.from_args(args)
    if device.type == "cuda":  # vita.bench.decode measures the CPU (its bandwidth, its threads)
        return _decode_cuda(args, device)

    result = run_bench(args.model, dtype=args.dtype, prompt_len=args.prompt_len or 64, new_tokens=args.new_tokens or 64,
                       threads=args.threads, compile=not args.no_compile, transformers=not args.no_transformers,
                       native=not args.no_native, quantize=args.quantize, repeats=args.repeats or 3)
    print(json.dumps(asdict(result)) if args.json else format_table(result))
    return 0


def _decode_cuda(args: argparse.Namespace, device) -> int:
    from vita.bench.decode import format_table
    from vita.bench.decode_cuda import run_bench

    if getattr(args, "quantize", None) or args.no_native:
        raise UsageError("--quantize and --no-native are CPU options; leave them out with --device cuda")
    kw = {k: getattr(args, k) for k in ("prompt_len", "new_tokens") if getattr(args, k) is not None}
    result = run_bench(args.model, device, dtype=args.dtype, compile=not args.no_compile,
                       transformers=not args.no_transformers, **kw)
    print(json.dumps(asdict(result)) if args.json else format_table(result))
    return 0


def forward(module: str, argv: list[str]) -> int:
    """Hand the remaining arguments to a module's own `main(argv)` (its parser owns the flags and --help)."""
    import importlib

    return importlib.import_module(module).main(argv) or 0
