"""Batch `TrainSample`s: right padding, attention mask, media concatenated in batch order.

Shapes: B samples, L longest sample, N tiles/frames of the whole batch, T fbank frames of one clip.
`VitaModel.embed` splices media row-major over the batch, so tiles and clips concatenated in batch order land in
the right rows. Padding uses a real vocabulary id (the tokenizer's pad or eos), never a media sentinel; padded
positions get label IGNORE_INDEX, attention_mask 0 and segment id -1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from vita.errors import DataError
from vita.tokens import IGNORE_INDEX
from vita.training.sample import TrainSample, video_rows_of

PAD_SEGMENT = -1  # segment id of padding positions


@dataclass
class Batch:
    token_ids: torch.Tensor  # [B, L] right-padded with pad_id
    labels: torch.Tensor  # [B, L] IGNORE_INDEX on padding (not shifted)
    attention_mask: torch.Tensor  # [B, L] 1 real, 0 pad
    segment_ids: torch.Tensor | None  # [B, L] (PAD_SEGMENT on padding); None unless some sample is truly packed
    pixel_values: torch.Tensor | None  # [N, 3, S, S] all samples' tiles concatenated in batch order
    fbanks: list[torch.Tensor] = field(default_factory=list)  # all clips in batch order, each [T, 80]
    num_tokens: int = 0  # supervised tokens in the batch
    sources: list[str] = field(default_factory=list)  # each sample's "path:line"
    video_rows: torch.Tensor | None = None  # [N] bool, True where pixel_values[i] is a video's frame


def collate(samples: Sequence[TrainSample], pad_id: int) -> Batch:
    """Stack samples into one right-padded batch."""
    if not samples:
        raise DataError("collate: no samples to batch", "empty")
    if pad_id < 0:
        raise DataError(f"collate: pad_id must be a real vocabulary id (>= 0), got {pad_id}", "schema")
    B, L = len(samples), max(len(s) for s in samples)
    token_ids = torch.full((B, L), pad_id, dtype=torch.long)  # [B, L]
    labels = torch.full((B, L), IGNORE_INDEX, dtype=torch.long)  # [B, L]
    attention_mask = torch.zeros(B, L, dtype=torch.long)  # [B, L]
    packed = any(s.segment_ids is not None for s in samples)
    segment_ids = torch.full((B, L), PAD_SEGMENT, dtype=torch.long) if packed else None  # [B, L]
    for b, s in enumerate(samples):
        n = len(s)
        token_ids[b, :n] = s.token_ids
        labels[b, :n] = s.labels
        attention_mask[b, :n] = 1
        if segment_ids is not None:
            segment_ids[b, :n] = s.segment_ids if s.segment_ids is not None else 0
    tiles = [s.pixel_values for s in samples if s.pixel_values is not None and s.pixel_values.shape[0]]
    return Batch(
        token_ids=token_ids,
        labels=labels,
        attention_mask=attention_mask,
        segment_ids=segment_ids,
        pixel_values=torch.cat(tiles) if tiles else None,  # [N, 3, S, S]
        fbanks=[f for s in samples for f in s.fbanks],
        num_tokens=int((labels != IGNORE_INDEX).sum()),
        sources=[s.source for s in samples],
        video_rows=video_rows_of(samples),  # [N]
    )
