"""Transcription targets as vita-mini's ears hear them: where Whisper's own decoder is sure of a training clip, the
target of "Transcribe the speech." becomes its words, so the LLM learns to copy what it reads.

Why: vita-mini's LLM reads Whisper's words wherever Whisper is sure (`vita.models.transcriber`), in training as at
inference. On the synthetic training voices Whisper is sure of 73 % of the clips but misreads them (WER 25.5 % on 120
training clips, `vita.eval.heard`), so against the true sentence the LLM learned to rewrite what it reads; on real
speech, where Whisper is right (WER 18.3 %), that rewriting made the LLM's transcripts 55 % WER. With these targets
the words Whisper gives are copied, and where the CTC read-out is used instead the true sentence stays the target.

    python -m vita.cli.tools heard_targets --model runs/t7/heard --data runs/mini/data \\
        --source train/audio_align.json --out train/audio_align_heard.json --limit 3000 --max-wer 0.34

`--model` must be the model whose audio path training starts from (its Whisper transcriber is frozen in stage 3, so
the words are those training will read). Records other than one-clip transcriptions (`prompt` + "<audio>" -> a
state token + text) are not written; the first `limit` transcriptions are, in order.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from vita.datasets.mini.build import ASR_PROMPT as PROMPT  # the data builder's transcription prompt
from vita.errors import DataError
from vita.eval.metrics import error_rate

__all__ = ["heard_targets", "is_transcription", "read_records"]


def is_transcription(record: dict, prompt: str = PROMPT) -> bool:
    """A one-clip transcription record: human `prompt` + "<audio>" (either order), then "<N>" + the transcript."""
    conv = record.get("conversations")
    if not isinstance(record.get("audio"), str) or not isinstance(conv, list) or len(conv) != 2:
        return False
    human, gpt = (c.get("value") if isinstance(c, dict) else None for c in conv)
    return (isinstance(human, str) and isinstance(gpt, str) and human.replace("<audio>", "").strip() == prompt
            and human.count("<audio>") == 1 and len(gpt) > 3 and gpt[0] == "<" and gpt[2] == ">")


def heard_targets(
    hear: Callable[[Path], dict], records: list[dict], media_root: Path, *, limit: int | None = None,
    prompt: str = PROMPT, source: str = "records", progress: Callable[[int], None] | None = None,
    max_wer: float | None = None,
) -> tuple[list[dict], dict[str, int]]:
    """(the first `limit` transcription records, each target Whisper's words where `hear(clip)` used them; counts).

    `hear` is `vita.eval.heard.heard` bound to a model: {"whisper": text, "used": "whisper" | "read_out", ...};
    with `max_wer`, Whisper's words replace the record's transcript only where their word error rate against it is
    at most `max_wer` (a fraction): a gross misreading (noise, telephone band) keeps the true sentence as the target.
    `progress(n)` is called after each transcription heard."""
    if max_wer is not None and not 0 <= max_wer:
        raise DataError(f"max_wer must be a fraction >= 0, got {max_wer}", "config")
    out: list[dict] = []
    counts = {"transcriptions": 0, "whisper_used": 0, "changed": 0, "kept_truth": 0}
    for i, record in enumerate(records):
        if limit is not None and counts["transcriptions"] >= limit:
            break
        if not is_transcription(record, prompt):
            continue
        clip = media_root / record["audio"]
        if not clip.is_file():
            raise DataError(f"{source}: record {i} ({record.get('id', '?')}): audio file not found: {clip}", "media")
        counts["transcriptions"] += 1
        h = hear(clip)
        gpt = record["conversations"][1]["value"]
        if h["used"] == "whisper" and h["whisper"].strip():
            counts["whisper_used"] += 1
            text = h["whisper"].strip()
            if max_wer is not None and error_rate(gpt[3:], text) > max_wer:
                counts["kept_truth"] += 1
                text = gpt[3:]
            counts["changed"] += text != gpt[3:]
            record = {**record, "conversations": [record["conversations"][0], {"from": "gpt", "value": gpt[:3] + text}]}
        out.append(record)
        if progress is not None:
            progress(counts["transcriptions"])
    return out, counts


def read_records(path: Path) -> list[dict]:
    """A JSON list of training records, or a DataError naming the file and what is wrong with it."""
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read a JSON list of records ({e})", "config") from e
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(records).__name__}", "config")
    return records


def write_heard_targets(vm, data: Path, source: str, out: str, *, limit: int | None = None,
                        prompt: str = PROMPT, max_wer: float | None = None) -> dict[str, int]:
    """`heard_targets` over `data/source` (media relative to that file's folder), written to `data/out`."""
    from vita.eval.heard import heard

    src, dst = data / source, data / out
    if dst.parent.resolve() != src.parent.resolve():
        raise DataError(f"{dst}: write it beside {src} (its media paths are relative to that folder)", "config")
    records = read_records(src)

    def progress(n: int) -> None:
        if n % 200 == 0:
            print(f"{src}: {n} transcriptions heard", file=sys.stderr, flush=True)

    written, counts = heard_targets(lambda clip: heard(vm, clip), records, src.parent, limit=limit, prompt=prompt,
                                    source=str(src), progress=progress, max_wer=max_wer)
    if not written:
        raise DataError(f"{src}: no transcription record ({prompt!r} + <audio>)", "config")
    dst.write_text(json.dumps(written, ensure_ascii=False, indent=1))
    return {**counts, "out": str(dst)}
