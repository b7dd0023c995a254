"""A thin wrapper over a Hugging Face `tokenizer.json` (the `tokenizers` library, no transformers).

It knows the ids the rest of vita needs (bos, eos, extra stop ids) and tokenizes exactly as the official
`tokenizer(text).input_ids` call does: the tokenizer's own post-processor decides whether BOS is added.

Text from users never becomes special tokens: `encode(text, plain=[(start, end), ...])` encodes a special token's
text (`</s>`, `<|im_start|>`, ...) found inside those character spans as ordinary text, so a message cannot forge
a turn of the chat template. Text without such markers encodes exactly as before (one call, same ids).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer

from vita.errors import CheckpointError


class Tokenizer:
    def __init__(
        self,
        backend: _HFTokenizer,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        extra_stop_tokens: tuple[str, ...] = (),
    ) -> None:
        self.backend = backend
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.bos_id = backend.token_to_id(bos_token) if bos_token else None
        self.eos_id = backend.token_to_id(eos_token) if eos_token else None
        self.stop_ids = tuple(
            i for i in [self.eos_id, *(backend.token_to_id(t) for t in extra_stop_tokens)] if i is not None
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> Tokenizer:
        """Load `tokenizer.json` (+ `tokenizer_config.json` / `special_tokens_map.json` for bos/eos names)."""
        path = Path(path)
        file = path / "tokenizer.json"
        if not file.is_file():
            raise CheckpointError(f"{path}: no tokenizer.json (a Hugging Face fast tokenizer file is required)")
        try:
            backend = _HFTokenizer.from_file(str(file))
        except Exception as exc:  # the tokenizers library raises a bare Exception on bad files
            raise CheckpointError(f"{file}: cannot read tokenizer ({exc})") from None
        names: dict[str, str] = {}
        for meta in ("special_tokens_map.json", "tokenizer_config.json"):
            if (path / meta).is_file():
                data = json.loads((path / meta).read_text())
                for key in ("bos_token", "eos_token"):
                    value = data.get(key)
                    if isinstance(value, dict):
                        value = value.get("content")
                    if isinstance(value, str) and key not in names:
                        names[key] = value
        extra = tuple(t for t in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>") if backend.token_to_id(t) is not None)
        return cls(backend, bos_token=names.get("bos_token"), eos_token=names.get("eos_token"),
                   extra_stop_tokens=extra)

    @functools.cached_property
    def max_token_chars(self) -> int:
        """Characters of the longest vocabulary entry: no token covers more text (a cheap floor on token counts)."""
        return max((len(t) for t in self.backend.get_vocab(with_added_tokens=True)), default=1) or 1

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, *, add_special_tokens: bool = True, plain: Sequence[tuple[int, int]] = ()) -> list[int]:
        """Token ids of `text`; special tokens written inside the `plain` character spans are encoded as text."""
        pattern = self._special_pattern
        if pattern is not None and any(pattern.search(text, a, b) or _straddles(pattern, text, a, b)
                                       for a, b in plain):
            return self._encode_guarded(text, add_special_tokens, plain)
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    @functools.cached_property
    def _special_pattern(self) -> re.Pattern | None:
        specials = sorted({t.content for t in self.backend.get_added_tokens_decoder().values() if t.special},
                          key=len, reverse=True)
        return re.compile("|".join(re.escape(t) for t in specials)) if specials else None

    @functools.cached_property
    def _plain_backend(self) -> _HFTokenizer:
        backend = _HFTokenizer.from_str(self.backend.to_str())
        backend.encode_special_tokens = True  # special tokens' text is split like any other text
        return backend

    def _encode_guarded(self, text: str, add_special_tokens: bool, plain: Sequence[tuple[int, int]]) -> list[int]:
        """Split at the special tokens outside every plain span (the template's own); encode the pieces between
        them with special tokens disabled."""
        assert self._special_pattern is not None
        ids = self.backend.encode("", add_special_tokens=True).ids if add_special_tokens else []
        pos = 0
        for m in self._special_pattern.finditer(text):
            if any(m.start() < b and a < m.end() for a, b in plain):
                continue  # inside (or overlapping) user text: stays text
            if m.start() > pos:
                ids += self._plain_backend.encode(text[pos:m.start()], add_special_tokens=False).ids
            ids.append(self.backend.token_to_id(m.group()))
            pos = m.end()
        if pos < len(text):
            ids += self._plain_backend.encode(text[pos:], add_special_tokens=False).ids
        return ids

    def decode(self, ids: list[int], *, skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        self.backend.save(str(path / "tokenizer.json"))
        meta = {"bos_token": self.bos_token, "eos_token": self.eos_token}
        (path / "special_tokens_map.json").write_text(json.dumps(meta, indent=2) + "\n")


def _straddles(pattern: re.Pattern, text: str, start: int, end: int) -> bool:
    """A special token overlapping the edge of text[start:end] (user text ending in the first half of one)."""
    return any(m.start() < start < m.end() or m.start() < end < m.end()
               for m in pattern.finditer(text, max(start - 32, 0), min(end + 32, len(text))))
