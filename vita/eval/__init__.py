"""Honest evaluation: run a model over a JSONL manifest and score reply states, answers and transcripts.

`load_manifest(path)` validates the cases, `evaluate(model, manifest)` runs them and returns the report dict,
`render_markdown(report)` formats it; `vita eval --manifest FILE` is the command (`vita.eval.run`; also
`python -m vita.eval`). Metric definitions are in `vita.eval.metrics`, the manifest format in `vita.eval.manifest`.
The paper's public benchmarks in their released formats (`vita eval BENCH --data PATH`) are `vita.eval.bench`.
"""

from vita.eval.manifest import Case, Manifest, load_manifest
from vita.eval.metrics import CaseResult, error_rate, levenshtein, match_choice, summarize
from vita.eval.normalize import normalize_answer, units
from vita.eval.report import render_markdown

__all__ = [
    "Case", "CaseResult", "Manifest", "add_parser", "error_rate", "evaluate", "levenshtein", "load_manifest", "main",
    "match_choice", "normalize_answer", "render_markdown", "summarize", "units",
]


def __getattr__(name: str):
    # lazy, so that `python -m vita.eval.run` does not find the module already imported
    if name in ("add_parser", "evaluate", "main"):
        from vita.eval import run

        return getattr(run, name)
    raise AttributeError(f"module 'vita.eval' has no attribute {name!r}")
