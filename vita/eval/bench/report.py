"""Benchmark reports: one JSON-ready dict per run, and its markdown, with the paper's figures beside ours.

The paper rows are the published figures of the 47B VITA-1.0 (and, where recorded, VITA-1.5): THOSE models'
numbers with their source (`vita.eval.bench.paper`), never ours. A report built from a subset (`--limit`) or
from a hand-made sample says so in its first lines; it is not comparable with the paper's full-set figure.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from vita.eval.bench.core import Benchmark, Figure, Score
from vita.eval.bench.paper import figures_for


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}" if unit == "points" else f"{value:.2f}%"


def build_report(bench: Benchmark, score: Score, *, data: Path, header: dict[str, Any], n_items: int,
                 limit: int | None, errors: dict[str, str]) -> dict[str, Any]:
    """The report dict of one run (deterministic: no timings, no absolute times)."""
    headline = []
    for fig in score.headline:
        row = asdict(fig)
        row["paper"] = [asdict(p) for p in figures_for(fig.key)]
        headline.append(row)
    return {
        "benchmark": bench.name,
        "title": bench.title,
        "data": str(data),
        "model": header["model"],
        "n_items": n_items,
        "limit": limit,
        "settings": {k: header[k] for k in ("max_new_tokens", "options", "decoding")},
        "headline": headline,
        "metrics": score.metrics,
        "tables": [asdict(t) for t in score.tables],
        "prompt": bench.prompt_doc,
        "source": bench.source,
        "errors": errors,
        "items": score.rows,
    }


def _cell(value: Any, limit: int = 70) -> str:
    text = " ".join(("" if value is None else str(value)).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def headline_rows(report: dict[str, Any]) -> list[list[Any]]:
    """[metric, ours, paper figures...] rows: the table the README prints for several benchmarks."""
    rows = []
    for fig in report["headline"]:
        paper = "; ".join(f"{p['model']}: {_fmt(p['value'], fig['unit'])}" for p in fig["paper"]) or "—"
        arrow = "↑" if fig["higher_is_better"] else "↓"
        rows.append([f"{fig['name']} {arrow}", _fmt(fig["value"], fig["unit"]), fig["support"], paper])
    return rows


def render_markdown(report: dict[str, Any], *, max_items: int = 200) -> str:
    lines = [f"# vita eval {report['benchmark']}: {report['title']}", ""]
    scope = f"{report['n_items']} items" + (f" (first {report['limit']} only: a subset)" if report["limit"] else "")
    s = report["settings"]
    lines.append(f"data: `{report['data']}` · model: `{report['model']}` · {scope} · max new tokens "
                 f"{s['max_new_tokens']} · temperature {s['decoding']['temperature']}")
    lines += ["", "## Headline", ""]
    lines += _table(["metric", "ours", "over", "the paper's figure (THAT model, not ours; full benchmark)"],
                    headline_rows(report))
    sources = {p["source"] for fig in report["headline"] for p in fig["paper"]}
    notes = {p["note"] for fig in report["headline"] for p in fig["paper"] if p["note"]}
    if sources:
        lines += [""] + [f"Paper figure source: {src}." for src in sorted(sources)]
        lines += [f"Note: {n}." for n in sorted(notes)]
    for table in report["tables"]:
        lines += ["", f"## {table['title']}", ""] + _table(table["header"], table["rows"])
    if report["errors"]:
        lines += ["", f"## Items that could not run ({len(report['errors'])}, scored as empty replies)", ""]
        lines += [f"- `{k}`: {v}" for k, v in report["errors"].items()]
    lines += ["", "## Prompt", "", "```", report["prompt"].strip("\n"), "```", "", f"Format and scoring: "
              f"{report['source']}"]
    items = report["items"]
    if items:
        keys = [k for k in items[0] if k != "id"]
        lines += ["", f"## Items ({len(items)}" + (f", first {max_items} shown" if len(items) > max_items else "")
                  + ")", ""]
        lines += _table(["id", *keys], [[r["id"], *[r.get(k) for k in keys]] for r in items[:max_items]])
    return "\n".join(lines) + "\n"


def figure_value(report: dict[str, Any], name: str | None = None) -> Figure | None:
    """The first headline figure of a report (or the one called `name`), as a `Figure`."""
    for fig in report["headline"]:
        if name is None or fig["name"] == name:
            return Figure(**{k: v for k, v in fig.items() if k != "paper"})
    return None
