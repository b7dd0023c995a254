"""One VITA-format record -> one supervised `TrainSample` (ids, labels, media), exactly as inference sees it.

Record fields (official format, vita1.md §7.2): `conversations` [{"from": "human"|"gpt", "value": str}],
optional `image` / `video` / `audio` (a path or a list, relative to the media root), `inserted_id` (index of the
gpt turn that answers noise or non-query speech), `context_id` (index or list of gpt turns shown but not supervised,
e.g. a reply the user heard only part of before speaking again; ours, not the official format), `end_tag` (false:
the final end-of-sequence is cut), `set`, `id`.

State tokens, derived as the official `preprocess_multimodal` does (vita1.md §4): the gpt turn at `inserted_id`
becomes "<2>" alone (target "<2>" + end-of-sequence); any other gpt turn gets "<1>" when the human turn before it
holds `<audio>`, "<3>" otherwise. A reply that already starts with a state token is kept as written (pre-tagged
data); `inserted_id` may also be a list (merged dialogues).

Prompt: each human turn's media are loaded by the same per-message code inference uses (`Processor.render_message`:
tiling, video frames, fbank), the conversation is rendered with the model's template and modality system prompt
(`vita.media.prompt.render`) and tokenized chunk by chunk around the markers like `tokenize_with_placeholders`, so
the ids of the prompt part equal the inference ids. Labels: the ids of each assistant reply (state token, text and
the template's end-of-turn, e.g. "</s>"), IGNORE_INDEX everywhere else (system, user turns, BOS, media); a token is
supervised only when its whole character span lies inside a reply. Labels are not shifted.
Shapes: L expanded length, N tiles/frames, S tile size, T fbank frames.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vita.errors import DataError, VitaError
from vita.media.prompt import Message, Modality, render
from vita.processor import Audio, Image, Part, Processor, Video
from vita.tokens import (
    AUDIO_PLACEHOLDER,
    AUDIO_TOKEN_ID,
    IGNORE_INDEX,
    IMAGE_PLACEHOLDER,
    IMAGE_TOKEN_ID,
    STATE_NOT_QUERY,
    STATE_QUERY_AUDIO,
    STATE_QUERY_TEXT,
    STATE_TOKENS,
    VIDEO_PLACEHOLDER,
)

ROLES = {"human": "user", "gpt": "assistant"}
MARKERS = {"image": IMAGE_PLACEHOLDER, "video": VIDEO_PLACEHOLDER, "audio": AUDIO_PLACEHOLDER}
_SPLIT = re.compile(f"({re.escape(IMAGE_PLACEHOLDER)}|{re.escape(AUDIO_PLACEHOLDER)})")
_SENTINEL = {IMAGE_PLACEHOLDER: IMAGE_TOKEN_ID, AUDIO_PLACEHOLDER: AUDIO_TOKEN_ID}


@dataclass
class TrainSample:
    token_ids: torch.Tensor  # [L] int64, placeholders expanded (IMAGE_TOKEN_ID / AUDIO_TOKEN_ID sentinels)
    labels: torch.Tensor  # [L] int64, IGNORE_INDEX where unsupervised (not shifted)
    pixel_values: torch.Tensor | None  # [N, 3, S, S]
    fbanks: list[torch.Tensor] = field(default_factory=list)  # one [T, 80] per clip in order
    segment_ids: torch.Tensor | None = None  # [L] int64 for true packing, else None
    source: str = ""  # "path:line" for messages (packed rows: several, comma-separated)
    video_rows: torch.Tensor | None = None  # [N] bool, True where pixel_values[i] is a video's frame

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])


def video_rows_of(samples: Sequence[TrainSample]) -> torch.Tensor | None:
    """[N] the samples' `video_rows` concatenated like their pixel_values (a sample without a mask: its rows are
    tiles); None where no sample has pixels."""
    masks = [s.video_rows if s.video_rows is not None else torch.zeros(s.pixel_values.shape[0], dtype=torch.bool)
             for s in samples if s.pixel_values is not None and s.pixel_values.shape[0]]
    return torch.cat(masks) if masks else None


@dataclass
class Conversation:
    """A validated record: turns with roles mapped, media resolved and assigned to the human turn that marks it."""

    turns: list[tuple[str, str]]  # (role "user"|"assistant", text with markers; replies carry their state token)
    media: list[dict[str, list[Path]]]  # per turn: {"image": [...], "video": [...], "audio": [...]}
    end_tag: bool
    where: str
    context: frozenset[int] = frozenset()  # indices of assistant turns shown but not supervised


def _paths(record: dict[str, Any], key: str, root: Path, where: str) -> list[Path]:
    value = record.get(key)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(x, str) and x for x in items):
        raise DataError(f"{where}: '{key}' must be a path or a list of paths, got {value!r}", "schema")
    out = [root / x for x in items]
    for path in out:
        if not path.is_file():
            raise DataError(f"{where}: missing {key} file {path}", "missing_media")
    return out


def _state(reply: str, k: int, inserted: set[int], previous: str) -> str:
    if k in inserted:
        return STATE_NOT_QUERY
    if reply.startswith(STATE_TOKENS):
        return reply
    return (STATE_QUERY_AUDIO if AUDIO_PLACEHOLDER in previous else STATE_QUERY_TEXT) + reply


def parse_record(record: dict[str, Any], where: str, media_root: Path) -> Conversation:
    """Validate a record and derive its state tokens; raises `DataError` naming `where` and the problem."""
    convs = record.get("conversations")
    if not isinstance(convs, list) or not convs:
        raise DataError(f"{where}: 'conversations' must be a non-empty list", "schema")
    raw: list[tuple[str, str]] = []
    for k, turn in enumerate(convs):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise DataError(f"{where}: turn {k} must be an object with a string 'value'", "schema")
        role = turn.get("from")
        if role not in ROLES:
            raise DataError(f"{where}: turn {k}: unknown role 'from': {role!r} (expected 'human' or 'gpt')", "role")
        expected = "human" if k % 2 == 0 else "gpt"
        if role != expected:
            raise DataError(f"{where}: turn {k} is {role!r} but turns must alternate human, gpt, ...", "role")
        raw.append((ROLES[role], turn["value"]))
    if raw[-1][0] != "assistant":
        raise DataError(f"{where}: the conversation ends with a human turn (nothing to supervise)", "role")

    inserted = _gpt_turns(record, "inserted_id", raw, where)
    context = _gpt_turns(record, "context_id", raw, where)
    if len(raw) - 1 in context:
        raise DataError(f"{where}: context_id {len(raw) - 1} is the last turn (nothing to supervise)", "schema")

    files = {key: _paths(record, key, media_root, where) for key in MARKERS}
    turns: list[tuple[str, str]] = []
    media: list[dict[str, list[Path]]] = []
    cursor = dict.fromkeys(MARKERS, 0)
    for k, (role, text) in enumerate(raw):
        counts = {key: text.count(marker) for key, marker in MARKERS.items()}
        if role == "assistant":
            if any(counts.values()):
                raise DataError(f"{where}: turn {k}: a gpt reply cannot contain media markers", "markers")
            turns.append((role, _state(text, k, inserted, raw[k - 1][1])))
            media.append({key: [] for key in MARKERS})
            continue
        taken = {}
        for key, n in counts.items():
            taken[key] = files[key][cursor[key] : cursor[key] + n]
            cursor[key] += n
        turns.append((role, text))
        media.append(taken)
    for key, marker in MARKERS.items():
        if cursor[key] != len(files[key]):
            raise DataError(
                f"{where}: {cursor[key]} {marker} marker(s) but {len(files[key])} {key} file(s)", "markers"
            )
    end_tag = record.get("end_tag", True)
    if not isinstance(end_tag, bool):
        raise DataError(f"{where}: 'end_tag' must be true or false, got {end_tag!r}", "schema")
    return Conversation(turns, media, end_tag, where, frozenset(context))


def _gpt_turns(record: dict[str, Any], key: str, raw: list[tuple[str, str]], where: str) -> set[int]:
    """The gpt-turn indices in `record[key]` (an int or a list of ints)."""
    value = record.get(key)
    items = [] if value is None else value if isinstance(value, list) else [value]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise DataError(f"{where}: '{key}' must be an integer turn index, got {value!r}", "schema")
    for i in items:
        if not 0 <= i < len(raw) or raw[i][0] != "assistant":
            raise DataError(f"{where}: {key} {i} is not the index of a gpt turn", "schema")
    return set(items)


def tokenize_with_offsets(processor: Processor, prompt: str) -> tuple[list[int], list[tuple[int, int]]]:
    """`tokenize_with_placeholders` ids [L] plus each id's character span [start, end) in `prompt`."""
    tokenizer = processor.tokenizer
    parts = _SPLIT.split(prompt)  # text, marker, text, ...
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    pos, drop = 0, 0
    for i, part in enumerate(parts):
        if i % 2:
            ids.append(_SENTINEL[part])
            spans.append((pos, pos + len(part)))
        else:
            enc = tokenizer.backend.encode(part)  # the normal tokenizer call, as `Tokenizer.encode`
            chunk, offsets = list(enc.ids), list(enc.offsets)
            if i == 0:
                drop = 1 if chunk and tokenizer.bos_id is not None and chunk[0] == tokenizer.bos_id else 0
            else:
                chunk, offsets = chunk[drop:], offsets[drop:]  # BOS only once
            ids.extend(chunk)
            spans.extend((pos + s, pos + e) if e > s else (-1, -1) for s, e in offsets)
        pos += len(part)
    return ids, spans


def render_conversation(
    processor: Processor, conv: Conversation, video_rows: list[torch.Tensor] | None = None
) -> tuple[str, list[tuple[int, int]], torch.Tensor | None, list[torch.Tensor]]:
    """Load media, render the prompt; returns (prompt, reply character spans, pixel_values, fbanks). `video_rows`
    gets a bool [n] per image or video: whether its rows of pixel_values are a video's frames."""
    pixels: list[torch.Tensor] = []
    fbanks: list[torch.Tensor] = []
    kinds: set[str] = set()
    messages: list[Message] = []
    for (role, text), files in zip(conv.turns, conv.media, strict=True):
        parts: list[Part] = [text]
        parts += [Image(p) for p in files["image"]] + [Video(p) for p in files["video"]]
        parts += [Audio(p) for p in files["audio"]]
        try:
            content = processor.render_message(parts, pixels, fbanks, kinds, video_rows) if len(parts) > 1 else text
        except VitaError as exc:
            raise DataError(f"{conv.where}: {exc}", "media") from None
        except Exception as exc:  # a decoder failing in an unexpected way must not end the epoch
            raise DataError(f"{conv.where}: cannot load media ({type(exc).__name__}: {exc})", "media") from None
        messages.append(Message(role, content))  # type: ignore[arg-type]
    modality: Modality = "video" if "video" in kinds else "image" if "image" in kinds else "lang"
    template = processor.config.template

    def text_of(msgs: list[Message], gen: bool) -> str:
        return render(msgs, template=template, modality=modality, add_generation_prompt=gen)

    prompt = text_of(messages, False)
    spans: list[tuple[int, int]] = []
    term_len = 0
    for k, message in enumerate(messages):
        if message.role != "assistant" or k in conv.context:
            continue
        head, full = text_of(messages[:k], True), text_of(messages[: k + 1], False)
        if not (full.startswith(head + message.content) and prompt.startswith(full)):
            raise DataError(f"{conv.where}: template {template!r} does not render turn by turn", "template")
        term_len = len(full[len(head) + len(message.content) :].rstrip("\n"))  # the end-of-turn, e.g. "</s>"
        spans.append((len(head), len(head) + len(message.content) + term_len))
    if not conv.end_tag:  # cut the final end-of-sequence (and anything the template puts after it)
        start, end = spans[-1]
        prompt, spans[-1] = prompt[: end - term_len], (start, end - term_len)
    return prompt, spans, (torch.cat(pixels) if pixels else None), fbanks


def build_sample(
    processor: Processor,
    record: dict[str, Any],
    where: str,
    media_root: Path,
    *,
    max_length: int | None = None,
) -> TrainSample:
    """A record -> TrainSample; raises `DataError` ("where: problem") for anything malformed."""
    conv = parse_record(record, where, media_root)
    frames: list[torch.Tensor] = []
    prompt, replies, pixel_values, fbanks = render_conversation(processor, conv, frames)
    ids, spans = tokenize_with_offsets(processor, prompt)
    counts = {IMAGE_TOKEN_ID: [], AUDIO_TOKEN_ID: [processor.audio_tokens(f.shape[0]) for f in fbanks]}
    if pixel_values is not None:
        counts[IMAGE_TOKEN_ID] = [processor.config.vision.tokens_per_tile] * pixel_values.shape[0]
    cursor = dict.fromkeys(counts, 0)
    out_ids: list[int] = []
    out_labels: list[int] = []
    for token, (s, e) in zip(ids, spans, strict=True):
        if token < 0:  # a sentinel: repeated to its feature count, never supervised
            n = counts[token][cursor[token]]
            cursor[token] += 1
            out_ids += [token] * n
            out_labels += [IGNORE_INDEX] * n
            continue
        supervised = s >= 0 and any(a <= s and e <= b for a, b in replies)
        out_ids.append(token)
        out_labels.append(token if supervised else IGNORE_INDEX)
    if max_length is not None and len(out_ids) > max_length:
        raise DataError(f"{where}: sample is {len(out_ids)} tokens, longer than max_length {max_length}", "too_long")
    if all(label == IGNORE_INDEX for label in out_labels):
        raise DataError(f"{where}: no supervised token (the replies are empty after tokenization)", "empty")
    return TrainSample(
        token_ids=torch.tensor(out_ids, dtype=torch.long),  # [L]
        labels=torch.tensor(out_labels, dtype=torch.long),  # [L]
        pixel_values=pixel_values,
        fbanks=fbanks,
        segment_ids=None,
        source=where,
        video_rows=torch.cat(frames) if frames else None,  # [N]
    )
