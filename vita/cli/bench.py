"""`vita bench duplex` (the other `vita bench` commands: `vita.cli`).

    vita bench duplex [--model M] [--scenarios FILE] [--setup auto|headphones|speaker] [--no-compute-time] [--json]

runs `vita.bench.duplex.bench` and prints its report (markdown, or one JSON object with `--json`).
"""

from __future__ import annotations

import argparse
import json

from vita import devices


def add_duplex_parser(bench_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = bench_subparsers.add_parser("duplex", help="scripted duplex scenarios: latencies, false triggers, misses")
    p.add_argument("--model", default="vita-mini", help="model directory or preset")
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
    p.add_argument("--threads", type=int, default=1)
    devices.add_arguments(p)
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
