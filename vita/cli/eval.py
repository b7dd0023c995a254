"""`vita eval`: a JSONL manifest (`vita.eval.run.evaluate`) or a public benchmark (`vita.eval.bench`).

    vita eval --manifest cases.jsonl [--model DIR|PRESET] [--json] [--max-new-tokens N] [--out report.md]
    vita eval BENCH --data PATH [--model M] [--shots K] [--subtitles] [--out-dir DIR]

The benchmark form writes predictions and reports to `--out-dir` (default `vita-eval/BENCH/MODEL[-kshot][-subs]`);
running the same command again resumes where it stopped (`--restart` discards the predictions and starts over).
`python -m vita.eval ...` is `vita eval ...`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from vita.cli.args import add_model_arguments, device_from_args
from vita.errors import EvalError, run_command
from vita.eval.manifest import load_manifest
from vita.eval.report import render_markdown
from vita.eval.run import DEFAULT_MODEL, evaluate


class _Given(argparse.Action):
    """Store the value and note that the user gave it (adapters have their own default token budgets)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", help="JSONL file, one case per line (media relative to it)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of markdown")
    p.add_argument("--max-new-tokens", type=int, default=256, action=_Given,
                   help="default 256 (a benchmark: its adapter's own default)")
    p.add_argument("--out", help="also write the report here (JSON if the name ends in .json, else markdown)")
    p.add_argument("--skip-bad", action="store_true", help="count and skip bad manifest lines / unusable media")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--seed", type=int, default=None)
    add_model_arguments(p, default=DEFAULT_MODEL, help=f"model directory or preset (default {DEFAULT_MODEL})")
    p.add_argument("--quiet", action="store_true", help="no per-case progress lines on stderr")
    _add_bench_arguments(p)


def _add_bench_arguments(p: argparse.ArgumentParser) -> None:
    from vita.eval.bench import BENCHMARKS

    p.add_argument("bench", nargs="?", choices=list(BENCHMARKS), metavar="BENCH",
                   help=f"benchmark in its public format: {', '.join(BENCHMARKS)} (or use --manifest)")
    g = p.add_argument_group("benchmark form (vita eval BENCH --data PATH)")
    g.add_argument("--data", help="the benchmark's released file or folder (see vita.eval.bench.<adapter>)")
    g.add_argument("--out-dir", help="predictions.jsonl + report.json/.md (default vita-eval/BENCH/MODEL...)")
    g.add_argument("--shots", type=int, default=0, help="in-context examples (mmlu, ceval, agieval, gsm8k)")
    g.add_argument("--subtitles", action="store_true", help="video-mme: with subtitles")
    g.add_argument("--max-frames", type=int, default=16, help="video-mme frame folders: frames used (default 16)")
    g.add_argument("--limit", type=int, default=None, help="first N items only (the report says it is a subset)")
    g.add_argument("--batch-size", type=int, default=1, help="items per model call where the model batches")
    g.add_argument("--restart", action="store_true", help="discard earlier predictions in --out-dir")


def default_out_dir(bench: str, model: str, shots: int, subtitles: bool) -> Path:
    tag = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).name or model)
    return Path("vita-eval") / bench / (tag + (f"-{shots}shot" if shots else "") + ("-subs" if subtitles else ""))


def _run(args: argparse.Namespace) -> int:
    device_from_args(args)  # a device this machine lacks fails before any data is read
    if getattr(args, "bench", None):
        return _run_bench(args)
    if not args.manifest:
        raise EvalError("give a benchmark (vita eval BENCH --data PATH) or --manifest FILE")
    if args.max_new_tokens < 1:
        raise EvalError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        raise EvalError(f"{args.out}: the folder for the report does not exist")
    manifest = load_manifest(args.manifest, skip_bad=args.skip_bad)  # fail on a bad manifest before loading
    import torch

    from vita.api import load
    from vita.generation.sampling import SamplingConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    sampling = SamplingConfig(temperature=args.temperature)
    t0 = time.perf_counter()
    device, dtype = device_from_args(args)
    model = load(args.model, dtype=dtype, device=device, quantize=args.quantize)
    progress = None if args.quiet else sys.stderr
    if progress is not None:
        print(f"loaded {args.model} in {time.perf_counter() - t0:.2f} s; {len(manifest.cases)} cases", file=progress)
    report = evaluate(model, manifest, max_new_tokens=args.max_new_tokens, sampling=sampling, seed=args.seed,
                      skip_bad=args.skip_bad, progress=progress, model_name=args.model)
    as_json = json.dumps(report, ensure_ascii=False, indent=2)
    markdown = render_markdown(report)
    if args.out:
        try:
            Path(args.out).write_text(as_json + "\n" if args.out.endswith(".json") else markdown, encoding="utf-8")
        except OSError as exc:
            raise EvalError(f"{args.out}: cannot write the report ({exc.strerror or exc})") from None
    print(as_json if args.json else markdown, end="\n" if args.json else "")
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    """Run `args.bench` (the parsed `vita eval` arguments); prints the markdown report (or JSON with --json)."""
    from vita.eval.bench import get
    from vita.eval.bench.core import Options
    from vita.eval.bench.runner import load_items, run_benchmark

    if args.manifest:
        raise EvalError("give either a benchmark name or --manifest, not both")
    if not args.data:
        raise EvalError(f"vita eval {args.bench} needs --data PATH (the benchmark's released file or folder)")
    if args.shots < 0 or args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise EvalError("--shots must be >= 0, --batch-size and --limit >= 1")
    bench = get(args.bench)
    options = Options(shots=args.shots, subtitles=args.subtitles, limit=args.limit, max_frames=args.max_frames)
    items = load_items(bench, Path(args.data), options)  # a bad data file fails before the model loads
    import torch

    from vita.api import load
    from vita.generation.sampling import SamplingConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    progress = None if args.quiet else sys.stderr
    t0 = time.perf_counter()
    device, dtype = device_from_args(args)
    model = load(args.model, dtype=dtype, device=device)
    if progress is not None:
        print(f"loaded {args.model} in {time.perf_counter() - t0:.2f} s; {len(items)} {bench.name} items",
              file=progress)
    out_dir = Path(args.out_dir) if args.out_dir else default_out_dir(bench.name, args.model, args.shots,
                                                                      args.subtitles)
    budget = args.max_new_tokens if getattr(args, "max_new_tokens_given", False) else None
    report = run_benchmark(bench, Path(args.data), model, out_dir=out_dir, options=options, model_name=args.model,
                           max_new_tokens=budget, sampling=SamplingConfig(temperature=args.temperature),
                           seed=args.seed, batch_size=args.batch_size, restart=args.restart, progress=progress,
                           items=items)
    if progress is not None:
        print(f"predictions and report in {out_dir}", file=progress)
    from vita.eval.bench.report import render_markdown

    text = json.dumps(report, ensure_ascii=False, indent=1) if args.json else render_markdown(report)
    if args.out:
        Path(args.out).write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n"
                                  if args.out.endswith(".json") else render_markdown(report), encoding="utf-8")
    print(text, end="\n" if args.json else "")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `eval` subcommand on a `vita` sub-command parser; it sets `func`."""
    p = subparsers.add_parser("eval", help="evaluate a model: a public benchmark (vita eval BENCH --data PATH) "
                              "or a JSONL manifest (state, answers, WER)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(p)
    p.set_defaults(func=_run)
    return p


def main(argv: list[str] | None = None) -> int:
    """`vita eval` on its own (argv without the word "eval"); errors print as one line, exit status 2."""
    parser = argparse.ArgumentParser(prog="vita eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command(lambda: _run(args))
