"""`vita bench decode | duplex | train | serve`: benchmarks that print figures.

    vita bench decode   prefill and decode tokens/s vs the memory-bandwidth bound (`vita.bench.decode.run_bench`;
                        `--device cuda`: `vita.bench.decode_cuda`)
    vita bench duplex   the scripted duplex scenarios (`vita.bench.duplex.bench`): latencies, false triggers, misses
    vita bench train    training samples/s on 1 and N ranks (`vita.bench.train.bench_samples_per_s`)
    vita bench serve    N concurrent realtime sessions (`vita.bench.serve.run`)
`train` and `serve` parse their own arguments (`train_main`, `serve_main`: their own --help, usage errors in
argparse's own format).
Each prints markdown, or one JSON object with `--json`.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

from vita.cli.args import UsageError, add_device_arguments, add_model_arguments, device_from_args, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    b = subparsers.add_parser("bench", help="benchmarks that print figures")
    bsub = b.add_subparsers(dest="bench", required=True)
    d = bsub.add_parser("decode", help="prefill and decode tokens/s vs the memory-bandwidth bound")
    add_model_arguments(d, default="smollm2-135m-random", help="preset name or model directory", quantize=False,
                        dtype=False, threads_help="torch threads (default: torch's choice)")
    d.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])  # bf16 on every device (its own default)
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
    t.set_defaults(func=lambda a: train_main(a.extra), takes_extra=True)
    s = bsub.add_parser("serve", help="N concurrent realtime sessions in real time: latency p50/p90, errors, leakage",
                        add_help=False)
    s.set_defaults(func=lambda a: serve_main(a.extra), takes_extra=True)
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
    p.add_argument("--families", help="--public: only these families, comma-separated (of: "
                                      "turn_taking, pause, interruption, backchannel, user_backchannel, "
                                      "talking_to_others, background_speech, fd_bench)")
    p.add_argument("--sentences", type=Path, default=None,
                   help="--public: a JSON file of the sentences to say instead of the built-in set "
                        "(vita.bench.duplex_sentences: a fresh, unseen set)")
    p.add_argument("--seed", type=int, default=0, help="--public: the noise and timing seed")
    p.add_argument("--free", action="store_true",
                   help="force only each scenario's first answer (the one later speech overlaps); a trained model "
                        "decides every other state token and answer")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_duplex)
    return p


def run_duplex(args: argparse.Namespace) -> int:
    import torch

    from vita.bench.duplex import bench
    from vita.bench.duplex_sentences import load_sentences
    from vita.duplex import simulate
    from vita.duplex.scenarios import load_scenario_file

    torch.set_num_threads(args.threads)
    device, dtype = device_from_args(args)
    scenarios = load_scenario_file(args.scenarios) if args.scenarios else None  # file errors before the model
    if args.sentences is not None and not args.public:
        raise UsageError("--sentences: the public sets' sentences; add --public")
    sentences = load_sentences(args.sentences) if args.sentences else None
    families = _families(args.families) if args.families else None
    rep = bench(args.model, scenarios, setup=args.setup, compute_time=not args.no_compute_time, rss=not args.no_rss,
                public=args.public, public_n=args.per_family, free=args.free, device=device, dtype=dtype,
                families=families, public_seed=args.seed, sentences=sentences)
    if args.json:
        print(json.dumps(rep))
    else:
        print(simulate.markdown(rep, model=args.model, compute_time=not args.no_compute_time))
        if "public" in rep:
            from vita.bench.duplex_public import markdown

            print()
            print(markdown(rep["public"], label=args.model + ("" if args.free else " (scripted replies)")))
    return 0


def _families(text: str) -> list[str]:
    from vita.bench.duplex_public import FAMILIES

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise UsageError(f"--families: unknown family {unknown[0] if unknown else text!r} (of: {', '.join(FAMILIES)})")
    return names


def run_decode(args: argparse.Namespace) -> int:
    from vita.bench.decode import format_table, run_bench

    device, _ = device_from_args(args)
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


def train_main(argv: list[str] | None = None) -> int:
    """`vita bench train`: samples/s of the real training loop with 1 and `--nproc` ranks, and the ratio."""
    from vita.bench import train as bench_train

    p = argparse.ArgumentParser(prog="vita bench train", description=bench_train.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=str(bench_train.DEFAULT_RECIPE))
    p.add_argument("--nproc", type=int, default=2, help="ranks of the scaled run (the baseline is 1)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--micro", type=int, default=2, help="micro-batch per rank")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per rank")
    p.add_argument("--json", action="store_true")
    add_device_arguments(p, dtype=False)  # each rank: cuda:LOCAL_RANK (NCCL) or the CPU (gloo)
    args = p.parse_args(argv)
    device_from_args(args)  # a device this machine lacks fails here, not in every rank
    kw = dict(steps=args.steps, warmup=args.warmup, micro=args.micro, threads=args.threads, device=args.device)
    one = bench_train.bench_samples_per_s(args.recipe, 1, **kw)
    many = bench_train.bench_samples_per_s(args.recipe, args.nproc, **kw)
    ratio = many.samples_per_s / one.samples_per_s
    if args.json:
        print(json.dumps({"runs": [asdict(one), asdict(many)], "scaling": ratio, "ideal": args.nproc}))
        return 0
    print(f"recipe {Path(args.recipe).name}: micro-batch {args.micro} per rank, {args.threads} thread(s) per rank, "
          f"{args.steps} steps ({args.warmup} warm-up), {os.cpu_count()} CPU cores")
    for r in (one, many):
        print(f"  {r.nproc} rank(s): {r.samples_per_s:8.2f} samples/s   {r.tokens_per_s:10,.0f} tokens/s")
    print(f"  scaling {args.nproc} vs 1 rank: x{ratio:.2f} (ideal x{args.nproc})")
    return 0


def serve_main(argv: list[str] | None = None) -> int:
    """`vita bench serve`: N concurrent realtime sessions against one in-process server; exit status 1 on any
    failed check."""
    from vita.bench import serve as bench_serve

    p = argparse.ArgumentParser(prog="vita bench serve", description=bench_serve.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--model", default="vita-mini", help="preset or model directory")
    p.add_argument("--chunk-ms", type=int, default=40, help="audio per input_audio_buffer.append")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_device_arguments(p)
    args = p.parse_args(argv)
    device, dtype = device_from_args(args)
    res = bench_serve.run(args.sessions, args.seconds, args.model, args.chunk_ms, device=device, dtype=dtype)
    print(json.dumps(res.summary()) if args.json else bench_serve.report(res))
    return 0 if res.ok else 1
