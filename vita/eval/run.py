"""`vita eval`: run a model over a JSONL manifest and report state, answer and transcript metrics.

    vita eval --manifest cases.jsonl [--model DIR|PRESET] [--json] [--max-new-tokens N] [--out report.md]
    vita eval BENCH --data PATH [--model M] [--shots K] [--subtitles] [--out-dir DIR]   (vita.eval.bench)

The model is loaded once and the cases run in manifest order with greedy decoding (unless --temperature is
given); one progress line per case goes to stderr. Metric definitions: `vita.eval.metrics`; manifest format:
`vita.eval.manifest`. A rate with no applicable case is None (JSON null, "n/a" in markdown), never 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol, TextIO

from vita import devices
from vita.errors import EvalError, VitaError, run_command
from vita.eval.manifest import MODALITIES, BadLine, Case, Manifest, load_manifest
from vita.eval.metrics import CaseResult, summarize
from vita.eval.report import render_markdown

DEFAULT_MODEL = "vita-mini"  # the embedded default model (vita.checkpoint.mini)


class Model(Protocol):
    """What `evaluate` needs of a model: `vita.api.Vita` (or any object with the same `generate`)."""

    def generate(self, text: str | None = None, *, images: Any = (), video: Any = None, audio: Any = None,
                 max_new_tokens: int = 256, sampling: Any = None, seed: int | None = None) -> Any: ...


def run_case(model: Model, case: Case, *, max_new_tokens: int, sampling: Any = None,
             seed: int | None = None) -> CaseResult:
    """Generate one reply for `case` and score it; latency covers media decoding, prefill and decoding."""
    t0 = time.perf_counter()
    reply = model.generate(
        case.text, images=[str(p) for p in case.images], video=None if case.video is None else str(case.video),
        audio=None if case.audio is None else str(case.audio), max_new_tokens=max_new_tokens, sampling=sampling,
        seed=seed,
    )
    latency = 1000 * (time.perf_counter() - t0)
    return CaseResult(
        id=case.id, line=case.line, modalities=case.modalities, group=case.group,
        expected_state=case.expect_state, predicted_state=reply.state, text=reply.text, latency_ms=latency,
        n_tokens=len(reply.token_ids), finish_reason=reply.finish_reason, answer=case.answer,
        choices=case.choices, answer_index=case.answer_index, transcript=case.transcript, match=case.match,
    ).score()


def _progress_line(k: int, n: int, r: CaseResult) -> str:
    parts = [f"[{k}/{n}] {r.id}: state {r.predicted_state or 'none'} (expected {r.expected_state}) "
             f"{'ok' if r.state_correct else 'WRONG'}"]
    if r.answer_correct is not None:
        parts.append(f"answer {'ok' if r.answer_correct else 'WRONG'}")
    if r.error_rate is not None:
        parts.append(f"{r.rate_kind} {100 * r.error_rate:.1f}%")
    parts.append(f"{r.latency_ms:.0f} ms")
    return ", ".join(parts)


def _groups(results: list[CaseResult]) -> dict[str, dict[str, dict]]:
    def sub(rs: list[CaseResult]) -> dict:
        out = summarize(rs)
        del out["no_state"]
        return out

    by_modality = {m: sub([r for r in results if m in r.modalities]) for m in MODALITIES}
    names = sorted({r.group for r in results if r.group is not None})
    return {
        "modality": {m: s for m, s in by_modality.items() if s["n"]},
        "group": {g: sub([r for r in results if r.group == g]) for g in names},
    }


def evaluate(model: Model, manifest: Manifest | str | Path, *, max_new_tokens: int = 256, sampling: Any = None,
             seed: int | None = None, skip_bad: bool = False, progress: TextIO | None = None,
             model_name: str | None = None) -> dict:
    """Run every case of `manifest` through `model` in order and return the report dict.

    A case whose media the model cannot use (a `VitaError` from `generate`) stops the run with an `EvalError`
    naming file:line, or, with `skip_bad`, is listed under "skipped" with the manifest's bad lines."""
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest, skip_bad=skip_bad)
    skipped = list(manifest.bad)
    results: list[CaseResult] = []
    n = len(manifest.cases)
    for k, case in enumerate(manifest.cases, 1):
        try:
            result = run_case(model, case, max_new_tokens=max_new_tokens, sampling=sampling, seed=seed)
        except VitaError as exc:
            message = f"{manifest.path}:{case.line}: case {case.id!r}: {exc}"
            if not skip_bad:
                raise EvalError(message) from exc
            skipped.append(BadLine(case.line, message))
            if progress is not None:
                print(f"[{k}/{n}] {case.id}: skipped ({exc})", file=progress, flush=True)
            continue
        results.append(result)
        if progress is not None:
            print(_progress_line(k, n, result), file=progress, flush=True)
    temperature = getattr(sampling, "temperature", 0.0)
    report: dict[str, Any] = {
        "manifest": str(manifest.path),
        "model": model_name,
        "max_new_tokens": max_new_tokens,
        "decoding": {"mode": "greedy" if not temperature else "sampling", "temperature": temperature,
                     "seed": seed},
    }
    report.update(summarize(results))
    report["groups"] = _groups(results)
    report["cases"] = [asdict(r) for r in results]
    report["skipped"] = [asdict(b) for b in sorted(skipped, key=lambda b: b.line)]
    report["n_skipped"] = len(skipped)
    return report


# ---- command line -------------------------------------------------------------------------------------------
def _add_arguments(p: argparse.ArgumentParser) -> None:
    from vita.eval.bench import cli as bench_cli

    p.add_argument("--manifest", help="JSONL file, one case per line (media relative to it)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model directory or preset (default {DEFAULT_MODEL})")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of markdown")
    p.add_argument("--max-new-tokens", type=int, default=256, action=bench_cli._Given,
                   help="default 256 (a benchmark: its adapter's own default)")
    p.add_argument("--out", help="also write the report here (JSON if the name ends in .json, else markdown)")
    p.add_argument("--skip-bad", action="store_true", help="count and skip bad manifest lines / unusable media")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--seed", type=int, default=None)
    devices.add_arguments(p)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--quantize", choices=["int8", "int4"], default=None,
                   help="quantize the LLM's weights at load (vita.nn.quant; int4: groups of 32 with an int8 head)")
    p.add_argument("--quiet", action="store_true", help="no per-case progress lines on stderr")
    bench_cli.add_arguments(p)


def _run(args: argparse.Namespace) -> int:
    devices.from_args(args)  # a device this machine lacks fails before any data is read
    if getattr(args, "bench", None):
        from vita.eval.bench import cli as bench_cli

        return bench_cli.run(args)
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
    device, dtype = devices.from_args(args)
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


if __name__ == "__main__":
    sys.exit(main())
