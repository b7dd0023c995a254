"""`vita eval --manifest`: run a model over a JSONL manifest and report state, answer and transcript metrics.

    evaluate(model, manifest, ...) -> report     (the command line: `vita.cli.eval`)

The model is loaded once and the cases run in manifest order with greedy decoding (unless --temperature is
given); one progress line per case goes to stderr. Metric definitions: `vita.eval.metrics`; manifest format:
`vita.eval.manifest`. A rate with no applicable case is None (JSON null, "n/a" in markdown), never 0.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol, TextIO

from vita.errors import EvalError, VitaError
from vita.eval.manifest import MODALITIES, BadLine, Case, Manifest, load_manifest
from vita.eval.metrics import CaseResult, summarize
from vita.processor import Audio, Turn

DEFAULT_MODEL = "vita-mini"  # the embedded default model (vita.checkpoint.mini)


class Model(Protocol):
    """What `evaluate` needs of a model: `vita.api.Vita` (or any object with the same `generate`)."""

    def generate(self, text: str | None = None, *, images: Any = (), video: Any = None, audio: Any = None,
                 history: Any = (), max_new_tokens: int = 256, sampling: Any = None,
                 seed: int | None = None) -> Any: ...


def run_case(model: Model, case: Case, *, max_new_tokens: int, sampling: Any = None,
             seed: int | None = None) -> CaseResult:
    """Generate one reply for `case` and score it; latency covers media decoding, prefill and decoding."""
    t0 = time.perf_counter()
    reply = model.generate(
        case.text, images=[str(p) for p in case.images], video=None if case.video is None else str(case.video),
        audio=None if case.audio is None else str(case.audio), history=case_turns(case), max_new_tokens=max_new_tokens,
        sampling=sampling, seed=seed,
    )
    latency = 1000 * (time.perf_counter() - t0)
    return CaseResult(
        id=case.id, line=case.line, modalities=case.modalities, group=case.group,
        expected_state=case.expect_state, predicted_state=reply.state, text=reply.text, latency_ms=latency,
        n_tokens=len(reply.token_ids), finish_reason=reply.finish_reason, answer=case.answer,
        choices=case.choices, answer_index=case.answer_index, transcript=case.transcript, match=case.match,
    ).score()


def case_turns(case: Case) -> list[Turn]:
    """The case's history as the model's turns (a user turn's audio after its text, as a typed turn with a clip)."""
    return [Turn(t.role, t.text or "") if t.role == "assistant" else
            Turn(t.role, [*([t.text] if t.text else []), *([Audio(str(t.audio))] if t.audio else [])])
            for t in case.history]


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
