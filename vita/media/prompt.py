"""Conversation templates, chunk-wise tokenization around placeholders, and placeholder expansion.

Pipeline (ids are Python lists; L = prompt length before expansion, L' after):
    messages --render()--> prompt text with `<image>` / `<audio>` markers
             --tokenize_with_placeholders()--> ids [L] with one IMAGE_TOKEN_ID per tile, one AUDIO_TOKEN_ID per clip
             --expand_placeholders()--> ids [L'] where each sentinel is repeated to its exact feature count

Templates: `mixtral_two` (VITA-1.0), `qwen2p5_instruct` (VITA-1.5: ChatML around the same modality-dependent
system prompts), `chatml` (plain HF chat models), `plain`.

Tokenization reproduces the official `tokenizer_image_audio_token`: the prompt is split at every marker, each
text chunk is tokenized on its own with the normal tokenizer call (so later chunks get the SentencePiece dummy
prefix), and BOS is kept only for the first chunk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from vita.errors import PromptError
from vita.tokenizer import Tokenizer
from vita.tokens import AUDIO_PLACEHOLDER, AUDIO_TOKEN_ID, IMAGE_PLACEHOLDER, IMAGE_TOKEN_ID

Modality = Literal["image", "video", "lang"]
Role = Literal["system", "user", "assistant"]

_BASE = (
    "You are an AI robot and your name is VITA. \n"
    "- You are a multimodal large language model developed by the open source community. "
    "Your aim is to be helpful, honest and harmless. \n"
    "- You support the ability to communicate fluently and answer user questions in multiple languages "
    "of the user's choice. \n"
    "- If the user corrects the wrong answer you generated, you will apologize and discuss the correct answer "
    "with the user."
)


def _visual_rule(seen: str, other: str) -> str:
    return (
        f" \n- You must answer the question strictly according to the content of the {seen} given by the user, "
        f"and it is strictly forbidden to answer the question without the content of the {seen}. "
        f"Please note that you are seeing the {seen}, not the {other}."
    )


# The three system prompts of VITA-1.0's `mixtral_two` template, chosen by modality.
SYSTEM_PROMPTS: dict[str, str] = {
    "image": _BASE + _visual_rule("image", "video"),
    "video": _BASE + _visual_rule("video", "image"),
    "lang": _BASE,
}


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


def render(
    messages: Sequence[Message],
    *,
    template: str = "mixtral_two",
    modality: Modality = "lang",
    system: str | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """Render a conversation as prompt text (generation starts right after the returned string).

    `system` overrides the template's modality-dependent system prompt; a leading `system` message does too.
    """
    return render_with_spans(messages, template=template, modality=modality, system=system,
                             add_generation_prompt=add_generation_prompt)[0]


def render_with_spans(
    messages: Sequence[Message],
    *,
    template: str = "mixtral_two",
    modality: Modality = "lang",
    system: str | None = None,
    add_generation_prompt: bool = True,
) -> tuple[str, list[tuple[int, int]]]:
    """`render`, plus the character spans of the prompt that came from message contents and the system prompt:
    text that is never to be read as template markers (see `tokenize_with_placeholders`)."""
    if messages and messages[0].role == "system":
        system, messages = messages[0].content, messages[1:]
    for m in messages:
        if m.role not in ("user", "assistant"):
            raise PromptError(f"message role must be 'user' or 'assistant' after the system prompt, got {m.role!r}")
    pieces: list[tuple[str, bool]] = []  # (text, from a message)
    if template == "mixtral_two":
        pieces += [("system:", False), (SYSTEM_PROMPTS[modality] if system is None else system, True), ("</s>", False)]
        for m in messages:
            role = "user" if m.role == "user" else "bot"
            pieces += [(f"\n{role}:", False), (m.content, True), ("</s>", False)]
        pieces.append(("\nbot:" if add_generation_prompt else "", False))
    elif template == "chatml":
        if system is not None:
            pieces += [("<|im_start|>system\n", False), (system, True), ("<|im_end|>\n", False)]
        for m in messages:
            pieces += [(f"<|im_start|>{m.role}\n", False), (m.content, True), ("<|im_end|>\n", False)]
        pieces.append(("<|im_start|>assistant\n" if add_generation_prompt else "", False))
    elif template == "qwen2p5_instruct":  # VITA-1.5: ChatML with VITA's modality-dependent system prompt
        pieces += [("<|im_start|>system\n", False), (SYSTEM_PROMPTS[modality] if system is None else system, True),
                   ("<|im_end|>\n", False)]
        for m in messages:
            pieces += [(f"<|im_start|>{m.role}\n", False), (m.content, True), ("<|im_end|>\n", False)]
        if add_generation_prompt:
            pieces.append(("<|im_start|>assistant\n", False))
        elif messages:  # the official conversation ends a filled last message at <|im_end|>, without the newline
            pieces[-1] = ("<|im_end|>", False)
    elif template == "plain":
        pieces += [(m.content, True) for m in messages]
    else:
        raise PromptError(f"unknown template {template!r} (known: mixtral_two, qwen2p5_instruct, chatml, plain)")
    text, spans = "", []
    for piece, user in pieces:
        if user and piece:
            spans.append((len(text), len(text) + len(piece)))
        text += piece
    return text, spans


_MARKER = re.compile(f"({re.escape(IMAGE_PLACEHOLDER)}|{re.escape(AUDIO_PLACEHOLDER)})")
_SENTINEL = {IMAGE_PLACEHOLDER: IMAGE_TOKEN_ID, AUDIO_PLACEHOLDER: AUDIO_TOKEN_ID}


def tokenize_with_placeholders(tokenizer: Tokenizer, prompt: str,
                               plain: Sequence[tuple[int, int]] = ()) -> list[int]:
    """Token ids with one sentinel per `<image>` / `<audio>` marker, tokenized chunk by chunk as the official code.

    plain: character spans of `prompt` holding message text (`render_with_spans`): a special token written there
    (`</s>`, `<|im_start|>`) is encoded as text, never as the special token (no forged turns).
    """
    parts = _MARKER.split(prompt)  # text, marker, text, marker, ..., text
    chunks, pos = [], 0
    for k, part in enumerate(parts):
        if k % 2 == 0:
            end = pos + len(part)
            local = [(max(a, pos) - pos, min(b, end) - pos) for a, b in plain if a < end and pos < b]
            chunks.append(tokenizer.encode(part, plain=local))
        pos += len(part)
    markers = parts[1::2]
    bos = tokenizer.bos_id
    drop = 1 if chunks[0] and bos is not None and chunks[0][0] == bos else 0
    ids = list(chunks[0])
    for marker, chunk in zip(markers, chunks[1:], strict=True):
        ids.append(_SENTINEL[marker])
        ids.extend(chunk[drop:])
    return ids


def expand_placeholders(ids: Sequence[int], counts: dict[int, Sequence[int]]) -> list[int]:
    """Repeat each sentinel occurrence to its feature count, consuming `counts[sentinel]` in order.

    The number of occurrences of every sentinel must equal the number of counts given for it.
    """
    out: list[int] = []
    cursor = dict.fromkeys(counts, 0)
    for token in ids:
        if token >= 0:
            out.append(token)
            continue
        if token not in counts:
            raise PromptError(f"placeholder id {token} has no media to fill it")
        i = cursor[token]
        if i >= len(counts[token]):
            raise PromptError(f"{_name(token)}: the prompt has more placeholders than media ({len(counts[token])})")
        out.extend([token] * counts[token][i])
        cursor[token] = i + 1
    for token, used in cursor.items():
        if used != len(counts[token]):
            raise PromptError(f"{_name(token)}: {len(counts[token])} given but the prompt has {used} placeholders")
    return out


def _name(token: int) -> str:
    return {IMAGE_TOKEN_ID: "image tiles/frames", AUDIO_TOKEN_ID: "audio clips"}.get(token, f"id {token}")
