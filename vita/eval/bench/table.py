"""vita-mini's benchmark table on the hand-made offline samples, beside the paper's figures for the 47B VITA.

    python -m vita.cli.tools bench_table --out DIR [--model vita-mini] [--json]

Writes the samples (`vita.eval.bench.samples`) under DIR/data, runs each through `run_benchmark` (resumable:
DIR/runs/BENCH, rerunning continues), and prints one markdown row per benchmark: our figure on the SAMPLE and
the published VITA-1.0 figure on the FULL benchmark. The two are not comparable numbers: the samples are a few
invented items in the benchmark's file format, the paper's figure is a 47B model on thousands of real items; the
table shows which formats run end to end and how the small model fares on them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vita.eval.bench import get
from vita.eval.bench.paper import figures_for
from vita.eval.bench.runner import run_benchmark
from vita.eval.bench.samples import write_samples

# benchmark -> (what the sample is, the paper key shown beside it when the sample has none of its own)
ROWS: dict[str, tuple[str, str | None]] = {
    "mmlu": ("12 hand-written general-knowledge questions, MMLU CSV, 0-shot", None),
    "gsm8k": ("8 hand-written one-step word problems, GSM8K JSONL, 0-shot", None),
    "librispeech": ("8 sentences, SYNTHETIC espeak-ng speech (held-out voice), LibriSpeech layout",
                    "librispeech/test-clean"),
    "mme": ("12 drawn-shape images x 2 questions, 4 of 14 subtasks (max 800), MME release folders", None),
    "mmbench": ("6 drawn-shape questions + circular copies (23 items), MMBench TSV", None),
    "video-mme": ("4 moving-dot clips as frame folders, no subtitles, Video-MME JSON", "video-mme/with-subs"),
}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}" if unit == "points" else f"{value:.1f} %"


def build(out: Path, model_name: str, *, model: Any = None, speech: bool = True,
          progress: Any = None) -> list[dict[str, Any]]:
    """Write the samples, run `model` (default: `vita.load(model_name)`) on each; one row per benchmark."""
    paths = write_samples(out / "data", speech=speech)
    if model is None:
        from vita.api import load

        model = load(model_name)
    rows = []
    for name, (what, paper_key) in ROWS.items():
        if name not in paths:
            continue
        t0 = time.perf_counter()
        report = run_benchmark(get(name), paths[name], model, out_dir=out / "runs" / name, model_name=model_name,
                               progress=progress)
        fig = report["headline"][0]
        key = paper_key or fig["key"]
        paper = figures_for(key)
        rows.append({"benchmark": name, "sample": what, "metric": fig["name"], "value": fig["value"],
                     "unit": fig["unit"], "higher_is_better": fig["higher_is_better"], "support": fig["support"],
                     "paper": [{"model": p.model, "value": p.value, "key": key, "note": p.note} for p in paper],
                     "seconds": round(time.perf_counter() - t0, 1)})
    return rows


def markdown(rows: list[dict[str, Any]], model_name: str) -> str:
    lines = [f"| benchmark (sample) | metric | {model_name} on the sample | over | VITA-1.0 (47B) in the paper, "
             "full benchmark — THAT model's figure |", "|---|---|---|---|---|"]
    for r in rows:
        paper = "; ".join(f"{_fmt(p['value'], r['unit'])}" + (f" ({p['key'].split('/')[-1]})" if "/" in p["key"]
                                                               else "")
                          for p in r["paper"] if p["model"].startswith("VITA-1.0")) or "—"
        arrow = "↑" if r["higher_is_better"] else "↓"
        lines.append(f"| {r['benchmark']}: {r['sample']} | {r['metric']} {arrow} | {_fmt(r['value'], r['unit'])} | "
                     f"{r['support']} | {paper} |")
    return "\n".join(lines) + "\n"
