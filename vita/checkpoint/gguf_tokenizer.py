"""The tokenizer a GGUF file describes (`tokenizer.ggml.*` metadata) as a `tokenizers` Tokenizer, no transformers.

Supported: `tokenizer.ggml.model = "gpt2"` (byte-level BPE: `tokens`, `merges`, `token_type`). The split applied
before the byte-level BPE follows `tokenizer.ggml.pre`, as llama.cpp does:

| pre | split |
|---|---|
| `gpt2`, `default`, absent | the GPT-2 regex (`'s|'t|... ?\\p{L}+| ?\\p{N}+|...`) |
| `smollm` | every digit on its own (`\\p{N}`), then the GPT-2 regex (SmolLM / SmolLM2) |
| `llama-bpe`, `llama3` | the Llama-3 regex (numbers in runs of up to 3 digits) |
| `qwen2` | the Qwen2 regex (single digits) |

Token types (llama.cpp's enum): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. Control tokens
become special tokens (matched whole, skipped by `decode(skip_special_tokens=True)`); user-defined ones are added
tokens (matched whole, not special). Tokens are stored in the byte-to-unicode alphabet of GPT-2; a token spelled
with other characters is respelled from its UTF-8 bytes. BOS is prepended only when `add_bos_token` is true.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as _HFTokenizer

from vita.errors import CheckpointError
from vita.tokenizer import Tokenizer

_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
CONTROL, USER_DEFINED = 3, 4
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>")


def byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (printable Latin-1 bytes map to themselves)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _pre_tokenizer(pre: str, source: str) -> pre_tokenizers.PreTokenizer:
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)

    def split(regex: str) -> pre_tokenizers.PreTokenizer:
        return pre_tokenizers.Split(Regex(regex), behavior="isolated")

    gpt2 = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)  # the GPT-2 regex, then bytes
    if pre in ("gpt2", "default", ""):
        return gpt2
    if pre == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), gpt2])
    if pre in ("llama-bpe", "llama3", "llama-v3"):
        return pre_tokenizers.Sequence([split(_LLAMA3_SPLIT), byte_level])
    if pre == "qwen2":
        return pre_tokenizers.Sequence([split(_QWEN2_SPLIT), byte_level])
    raise CheckpointError(f"{source}: tokenizer.ggml.pre {pre!r} is not supported (gpt2, smollm, llama-bpe, qwen2)")


def build_tokenizer(meta: Mapping[str, Any], source: str) -> Tokenizer:
    """Our `Tokenizer` from a GGUF file's metadata (`meta`: key -> plain Python value)."""
    kind = meta.get("tokenizer.ggml.model")
    if kind is None:
        raise CheckpointError(f"{source}: no tokenizer in the file (tokenizer.ggml.model is missing)")
    if kind != "gpt2":
        raise CheckpointError(f"{source}: tokenizer.ggml.model {kind!r} is not supported (only 'gpt2' byte-level BPE)")
    tokens: Sequence[str] = meta["tokenizer.ggml.tokens"]
    merges_raw: Sequence[str] = meta.get("tokenizer.ggml.merges") or []
    types: Sequence[int] = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    if len(types) != len(tokens):
        raise CheckpointError(f"{source}: {len(types)} token types for {len(tokens)} tokens")
    alphabet = byte_alphabet()
    spelled = set(alphabet.values())
    vocab: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        tok = tok if set(tok) <= spelled else "".join(alphabet[b] for b in tok.encode("utf-8"))
        vocab.setdefault(tok, i)
    merges = []
    for m in merges_raw:
        left, sep, right = m.partition(" ")
        if not sep:
            raise CheckpointError(f"{source}: malformed merge {m!r} (expected 'left right')")
        merges.append((left, right))
    backend = _HFTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    backend.pre_tokenizer = _pre_tokenizer(str(meta.get("tokenizer.ggml.pre", "")), source)
    backend.decoder = decoders.ByteLevel()
    special = [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types, strict=True)
               if k == CONTROL and set(t) <= spelled]
    added = [AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types, strict=True)
             if k == USER_DEFINED]
    backend.add_special_tokens(special)
    if added:
        backend.add_tokens(added)

    def name(key: str) -> str | None:
        i = meta.get(f"tokenizer.ggml.{key}_token_id")
        if i is None:
            return None
        if not 0 <= int(i) < len(tokens):
            raise CheckpointError(f"{source}: tokenizer.ggml.{key}_token_id {i} is outside the vocabulary")
        return tokens[int(i)]

    bos, eos = name("bos"), name("eos")
    if meta.get("tokenizer.ggml.add_bos_token", False) and bos is not None:
        from tokenizers import processors

        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])])
    if meta.get("tokenizer.ggml.add_eos_token", False):
        raise CheckpointError(f"{source}: tokenizer.ggml.add_eos_token = true is not supported")
    extra = tuple(t for t in STOP_TOKENS if backend.token_to_id(t) is not None and t != eos)
    return Tokenizer(backend, bos_token=bos, eos_token=eos, extra_stop_tokens=extra)
