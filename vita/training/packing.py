"""Packing: "concat" (records merged into one multi-turn dialogue) and "true" (samples side by side in one row).

concat, as the official `data_tools/concat_data.py` (vita1.md §5.4): consecutive records are merged into one
conversation (one system prompt, turns appended, media lists concatenated, `inserted_id`s shifted) while the
estimated token count fits `max_length`. The estimate is the official one, read from file headers without decoding:
    text tokens + tokens_per_tile per image tile (tile count from the tiling rule on the image size)
    + ceil(12.5 x audio seconds, seconds rounded up to even) per clip (+ tokens_per_tile x 16 frames per video)
with two deliberate differences so that it bounds the real length: "text tokens" are those of the rendered turns
(template separators included), and the group budget reserves one system prompt (the longest one). The built
dialogue is checked against `max_length` anyway (see `vita.training.data`).

true: built samples are laid side by side in one row up to `max_length`, with `segment_ids` [L] (0, 1, ...) so that
attention never crosses samples and RoPE positions restart per sample (`LLM.forward(segment_ids=...)`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from PIL import Image as PILImage

from vita.config import SAMPLE_RATE
from vita.errors import DataError
from vita.media.audio import load_audio
from vita.media.image import find_grid
from vita.media.prompt import Message, render
from vita.processor import Processor
from vita.tokens import MAX_VIDEO_FRAMES
from vita.training.sample import MARKERS, TrainSample, parse_record, video_rows_of

AUDIO_TOKENS_PER_SECOND = 12.5


def audio_token_estimate(seconds: float) -> int:
    """Official estimate: ceil(12.5 x seconds) with the seconds rounded up to an even number (3.2 s -> 4 s -> 50)."""
    whole = math.ceil(seconds)
    whole += whole % 2
    return math.ceil(AUDIO_TOKENS_PER_SECOND * whole)


def image_tile_count(path: Path, processor: Processor) -> int:
    """Tiles the tiling rule gives this image (header read only)."""
    vision = processor.config.vision
    if vision is None:
        raise DataError(f"{path}: this model has no vision encoder", "media")
    try:
        with PILImage.open(path) as img:
            width, height = img.size
    except Exception as exc:  # PIL raises several types for unreadable files
        raise DataError(f"{path}: not a readable image ({exc})", "media") from None
    cols, rows = find_grid(width, height, vision.image_size, vision.min_tiles, vision.max_tiles)
    return cols * rows + (1 if vision.use_thumbnail and cols * rows > 1 else 0)


def audio_seconds(path: Path) -> float:
    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # not a soundfile format (e.g. mp3 via FFmpeg): decode once to measure
        return load_audio(path).shape[0] / SAMPLE_RATE


def _text_tokens(processor: Processor, turns: list[tuple[str, str]]) -> int:
    template, tok = processor.config.template, processor.tokenizer
    plain = []
    for role, text in turns:
        for marker in MARKERS.values():
            text = text.replace(marker, "")
        plain.append(Message(role, text))  # type: ignore[arg-type]
    full = render(plain, template=template, system="", add_generation_prompt=False)
    empty = render([], template=template, system="", add_generation_prompt=False)
    return len(tok.encode(full)) - len(tok.encode(empty))


def estimate_tokens(processor: Processor, record: dict[str, Any], where: str, media_root: Path) -> int:
    """The official token estimate of one record (validates it too: raises `DataError` naming `where`)."""
    conv = parse_record(record, where, media_root)
    total = _text_tokens(processor, conv.turns)
    per_tile = processor.config.vision.tokens_per_tile if processor.config.vision is not None else 0
    try:
        for files in conv.media:
            total += sum(image_tile_count(p, processor) for p in files["image"]) * per_tile
            total += len(files["video"]) * MAX_VIDEO_FRAMES * per_tile
            total += sum(audio_token_estimate(audio_seconds(p)) for p in files["audio"])
    except Exception as exc:  # unreadable media: named with the record's file:line
        raise DataError(f"{where}: {exc}", "media") from None
    return total


def system_overhead(processor: Processor) -> int:
    """Tokens of the longest empty conversation (BOS + system prompt) the template renders."""
    tok, template = processor.tokenizer, processor.config.template
    return max(
        len(tok.encode(render([], template=template, modality=m, add_generation_prompt=False)))  # type: ignore[arg-type]
        for m in ("lang", "image", "video")
    )


def concat_groups(items: Iterable[tuple[Any, int]], max_length: int, overhead: int) -> Iterator[list[Any]]:
    """Greedy groups of (item, estimate): a group is closed when the next item would exceed the budget."""
    group: list[Any] = []
    total = overhead
    for item, estimate in items:
        if group and total + estimate > max_length:
            yield group
            group, total = [], overhead
        group.append(item)
        total += estimate
    if group:
        yield group


def merge_records(records: list[tuple[dict[str, Any], str, Path]]) -> tuple[dict[str, Any], str]:
    """Merge (record, where, media_root) triples into one dialogue record (media paths made absolute)."""
    merged: dict[str, Any] = {"conversations": [], "set": [], "id": [], "inserted_id": [], "context_id": []}
    for key in MARKERS:
        merged[key] = []
    for record, _, root in records:
        offset = len(merged["conversations"])
        merged["conversations"].extend(record.get("conversations") or [])
        for key in MARKERS:
            value = record.get(key)
            items = [] if value is None else value if isinstance(value, list) else [value]
            merged[key].extend(str(root / p) if isinstance(p, str) else p for p in items)
        for key in ("inserted_id", "context_id"):
            value = record.get(key)
            for i in [] if value is None else value if isinstance(value, list) else [value]:
                merged[key].append(i + offset if isinstance(i, int) else i)
        merged["set"].append(record.get("set"))
        merged["id"].append(record.get("id"))
        merged["end_tag"] = record.get("end_tag", True)
    return merged, ", ".join(where for _, where, _ in records)


def pack_row(samples: list[TrainSample]) -> TrainSample:
    """Lay samples side by side in one row with segment ids 0, 1, ... (true packing)."""
    tiles = [s.pixel_values for s in samples if s.pixel_values is not None]
    return TrainSample(
        token_ids=torch.cat([s.token_ids for s in samples]),  # [L]
        labels=torch.cat([s.labels for s in samples]),  # [L]
        pixel_values=torch.cat(tiles) if tiles else None,  # [N, 3, S, S]
        fbanks=[f for s in samples for f in s.fbanks],
        segment_ids=torch.cat([torch.full((len(s),), i, dtype=torch.long) for i, s in enumerate(samples)]),  # [L]
        source=", ".join(s.source for s in samples),
        video_rows=video_rows_of(samples),  # [N], in the order of pixel_values
    )


def true_pack(samples: Iterable[TrainSample], max_length: int) -> Iterator[TrainSample]:
    """Greedy rows of whole samples, each row at most `max_length` tokens (every sample must fit on its own)."""
    row: list[TrainSample] = []
    total = 0
    for sample in samples:
        if row and total + len(sample) > max_length:
            yield pack_row(row)
            row, total = [], 0
        row.append(sample)
        total += len(sample)
    if row:
        yield pack_row(row)
