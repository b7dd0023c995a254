"""Render an evaluation report (the dict `vita.eval.run.evaluate` returns) as markdown."""

from __future__ import annotations

from typing import Any


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _flag(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "NO")


def _cell(text: Any, limit: int = 80) -> str:
    text = "" if text is None else str(text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _summary_rows(r: dict) -> list[list[Any]]:
    s = r["support"]
    lat = r["latency_ms"]
    latency = "n/a" if lat["mean"] is None else f"mean {lat['mean']:.0f} ms, median {lat['median']:.0f} ms"
    return [
        ["state accuracy", _pct(r["state_accuracy"]), f"{r['n']} cases"],
        ["rejection rate (not-query answered <2>)", _pct(r["rejection_rate"]), f"{s['not_query']} not-query cases"],
        ["miss rate (query answered <2>)", _pct(r["miss_rate"]), f"{s['query']} query cases"],
        ["answer accuracy", _pct(r["answer_accuracy"]), f"{s['answer']} cases with an answer"],
        ["exact match (open answers)", _pct(r["exact_match"]), f"{s['exact_match']} cases"],
        ["choice accuracy (multiple choice)", _pct(r["choice_accuracy"]), f"{s['choices']} cases"],
        ["WER", _pct(r["wer"]), f"{s['wer']['edits']} edits / {s['wer']['ref_units']} words, "
                                f"{s['wer']['cases']} cases"],
        ["CER (CJK)", _pct(r["cer"]), f"{s['cer']['edits']} edits / {s['cer']['ref_units']} chars, "
                                      f"{s['cer']['cases']} cases"],
        ["latency", latency, f"{r['n']} cases"],
    ]


def _breakdown(title: str, groups: dict[str, dict]) -> list[str]:
    if not groups:
        return []
    rows = [[name, g["n"], _pct(g["state_accuracy"]), _pct(g["rejection_rate"]), _pct(g["miss_rate"]),
             _pct(g["answer_accuracy"]), _pct(g["wer"]), _pct(g["cer"])] for name, g in groups.items()]
    header = [title, "n", "state acc", "rejection", "miss", "answer acc", "WER", "CER"]
    return ["", f"## By {title}", ""] + _table(header, rows)


def render_markdown(report: dict) -> str:
    lines = [f"# vita eval: {report['manifest']}", ""]
    decoding = report.get("decoding", {})
    lines.append(f"model: `{report.get('model') or '?'}` · cases run: {report['n']} · skipped: "
                 f"{report['n_skipped']} · max new tokens: {report.get('max_new_tokens')} · "
                 f"decoding: {decoding.get('mode', '?')}")
    lines += ["", "## Summary", ""] + _table(["metric", "value", "over"], _summary_rows(report))
    c = report["confusion"]
    lines += ["", "## Query / not-query confusion (rows: expected, columns: predicted)", ""]
    lines += _table(
        ["expected \\ predicted", "query (<1>/<3>)", "not query (<2>)", "no state token"],
        [[name, c[key]["query"], c[key]["not_query"], c[key]["none"]]
         for key, name in (("query", "query (<1>/<3>)"), ("not_query", "not query (<2>)"))],
    )
    if report["no_state"]:
        lines += ["", f"Replies without a state token ({len(report['no_state'])}, counted wrong): "
                  + ", ".join(f"`{i}`" for i in report["no_state"])]
    lines += _breakdown("modality", report["groups"]["modality"])
    lines += _breakdown("group", report["groups"]["group"])
    rows = []
    for case in report["cases"]:
        rate = "" if case["error_rate"] is None else f"{case['rate_kind']} {100 * case['error_rate']:.1f}%"
        rows.append([case["id"], case["expected_state"], case["predicted_state"] or "none",
                     _flag(case["state_correct"]), _flag(case["answer_correct"]), rate,
                     f"{case['latency_ms']:.0f}", repr(case["text"])])
    lines += ["", "## Cases", ""]
    lines += _table(["id", "expected", "predicted", "state ok", "answer ok", "WER/CER", "ms", "reply"], rows)
    if report["skipped"]:
        lines += ["", f"## Skipped ({report['n_skipped']})", ""] + [f"- {b['error']}" for b in report["skipped"]]
    return "\n".join(lines) + "\n"
