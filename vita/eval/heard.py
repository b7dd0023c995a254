"""What vita-mini's ears hear, before the LLM reads it: its CTC read-out, Whisper's own transcript, and the words it
uses (Whisper's where it is sure, or where it wins the two ears' vote: `vita.models.transcriber`), scored against
the transcripts of a manifest.

    python -m vita.cli.tools heard_wer --model vita-mini --manifest OUT/data/eval/asr.jsonl [--manifest ...]

prints a JSON object per manifest: WER per group and overall for "read_out", "whisper" and "used", and how many clips
took Whisper's words ("whisper_used"). The LLM's own transcripts (`vita eval`) are scored the same way
(`vita.eval.metrics.edit_counts`); the difference between "used" and them is what the LLM adds or loses.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vita.errors import VitaError
from vita.eval.manifest import load_manifest
from vita.eval.metrics import edit_counts

__all__ = ["heard", "heard_wer"]


@torch.no_grad()
def heard(vm, audio: Path) -> dict[str, object]:
    """One clip -> {"read_out": text, "whisper": text, "used": "whisper" | "read_out", "avg_logprob", "no_speech",
    "vote": None or [CTC difference, Whisper difference], read-out minus Whisper}."""
    model = vm.model
    if model.transcriber is None:
        raise VitaError("this model has no transcriber (Whisper's decoder beside a CTC read-out)")
    feats = vm.processor.audio_features(audio)  # [T, 80] unclamped log-mel
    rows = model._clip_rows(feats)  # [T'', D]
    readout = model.audio_adapter.listen(rows, model.llm.tok_embeddings.weight)
    chosen = model.transcriber.choose(model.audio_encoder, feats, len(rows), readout)
    t = chosen["transcript"]
    return {"read_out": vm.tokenizer.decode(readout.ids).strip(), "whisper": chosen["whisper"],
            "used": "whisper" if chosen["ids"] is not None else "read_out",
            "avg_logprob": round(t.avg_logprob, 3), "no_speech": round(t.no_speech, 3),
            "vote": None if chosen["vote"] is None else [round(v, 3) for v in chosen["vote"]]}


def heard_wer(vm, manifest: str | Path, limit: int | None = None) -> dict:
    """WER of the read-out, of Whisper and of the words used, per group of `manifest`'s transcribed cases."""
    cases = [c for c in load_manifest(manifest).cases if c.transcript and c.audio is not None][:limit]
    if not cases:
        raise VitaError(f"{manifest}: no case with an audio clip and a transcript")
    totals: dict[tuple[str, str], list[int]] = {}
    chosen = 0
    for case in cases:
        h = heard(vm, case.audio)
        chosen += h["used"] == "whisper"
        for kind in ("read_out", "whisper", "used"):
            errors, words, _ = edit_counts(case.transcript, h[h["used"]] if kind == "used" else h[kind])
            for group in ("all", case.group or "all"):
                t = totals.setdefault((kind, group), [0, 0])
                t[0], t[1] = t[0] + errors, t[1] + words
    wer = {kind: {g: round(100 * e / max(n, 1), 1) for (k, g), (e, n) in sorted(totals.items()) if k == kind}
           for kind in ("read_out", "whisper", "used")}
    return {"manifest": str(manifest), "cases": len(cases), "whisper_used": chosen, "wer": wer}
