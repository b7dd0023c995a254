"""Vocabulary extension: the first step of VITA training (Mixtral's 32,000 tokens extended with Chinese, ~51.7k).

`extend_vocab(model, words_or_corpus, out_dir)` adds whole words or characters to an LLM's BPE tokenizer, grows the
input embedding and the output head (one matrix when tied), initialises every new row as the MEAN of the rows of the
old pieces that used to spell the word (in the embedding and, separately, in the head), and writes the result in our
canonical layout (`vita.load(out_dir)` works). The command is `vita vocab extend ...`.

Design: a genuine extension of the BPE model, not "added tokens". Added tokens are matched as raw substrings
before pre-tokenization: they have no right word boundary (a new " gal" would cut " galaxy" in two, changing text
that never contained the new word), an in-context form " word" cannot also require a boundary before it, byte-level
decoders mangle added contents made of Latin-1 characters, and legacy SentencePiece normalizers prepend "▁" after
every added token. Instead the tokenizer is extended in three places of its own pipeline:
  1. vocabulary: one new entry per new form, spelled as the BPE model sees it ("Ġword" byte-level, "▁word" for
     SentencePiece/Metaspace, "中国" for Chinese);
  2. pre-tokenizer: a `Split(isolated)` step whose regex (a trie over the new forms, so it stays fast with 20k
     words) cuts each occurrence of a new form out as its own pre-token: space-delimited words with their leading
     space and a right word boundary (a left one too for the bare form), Chinese/Japanese words anywhere (forward
     longest match). It sits where spaces have their final form: before ByteLevel, after Metaspace;
  3. model: `ignore_merges`, so a pre-token that is exactly a vocabulary entry maps to that single id.
No merges are added, so no intermediate pieces exist (with merges, a 3-piece word needs a 2-piece intermediate that
would fire inside other words). Guarantees: where the regex does not match, pre-tokens are those of the old
tokenizer and each is encoded by the old merges, so text without the new words tokenizes exactly as before (the one
exception: a pre-token equal to an old entry that the old merges could not reach; they are counted and reported as
`unreachable_old_tokens`, usually none; byte-fallback pieces are not counted: the literal text "<0x41>" right after
a new word would read as that byte); every new form is one id in context; decoding goes through the tokenizer's own
decoder, so decode(encode(text)) round-trips.

Forms: a word in a space-delimited script gets its in-context form (" word": the leading-space convention) and, for
byte-level tokenizers whose text start has no space, also its bare form ("word"); Metaspace tokenizers prepend "▁" at
the start, so one form serves both. Chinese words and characters get one form (with Metaspace, a Chinese word at the
very start keeps the dummy prefix apart, "▁" + "中国", as the old tokenizer kept "▁" apart from its pieces). A form
already a single token, or that the tokenizer's own pre-tokenizer would split (e.g. "don't" under a GPT-2 regex), is
skipped with a reason.

Ids and rows: new ids follow the tokenizer's last id. When the old model has more rows than the tokenizer has ids
(padding rows the tokenizer never produced, e.g. 259 ids over 320 rows), new tokens reuse those rows. With
`pad_to_multiple` the vocab size is rounded up; rows added beyond the old matrix (and not taken by a new token) are
the mean of all old token rows, old padding rows keep their values, and the tokenizer never produces any of them (a
model may still sample them until it is trained; mask them if that matters).
Logits over the old ids are unchanged: old rows are copied and no other weight is touched.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import pre_tokenizers

from vita.errors import VitaError
from vita.tokenizer import Tokenizer

_WORDCHAR = r"[\p{L}\p{N}\p{M}]"
_RIGHT = f"(?!{_WORDCHAR})"
_LEFT = f"(?<!{_WORDCHAR})"
_UNSPACED = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\U00020000-\U0003134f\u3040-\u30ff\u0e00-\u0e7f]")
_META = set(r".^$*+?()[]{}|\/-#")


class VocabError(VitaError, ValueError):
    """A vocabulary extension cannot be done (no words, unsupported tokenizer, bad file)."""


@dataclass
class Corpus:
    """Raw text to mine words from: a file path, or the texts themselves."""

    source: str | Path | Sequence[str]

    def texts(self) -> Iterable[str]:
        if isinstance(self.source, (str, Path)):
            path = Path(self.source)
            if not path.is_file():
                raise VocabError(f"{path}: corpus file not found")
            with path.open(encoding="utf-8", errors="replace") as f:
                yield from f
        else:
            yield from self.source


@dataclass
class NewToken:
    text: str  # the raw text this id stands for (" hello", "hello", "中国")
    token: str  # its vocabulary entry ("Ġhello", "▁hello", "中国")
    id: int
    pieces: list[int]  # old ids that spelled it (the rows averaged for its initial embedding and head rows)


@dataclass
class Extension:
    tokenizer: Tokenizer
    added: list[NewToken]
    skipped: dict[str, str] = field(default_factory=dict)  # word or form -> why it was not added
    unreachable_old_tokens: list[str] = field(default_factory=list)
    old_len: int = 0  # number of ids of the old tokenizer


# ---- words --------------------------------------------------------------------------------------------------------
def read_word_list(path: str | Path) -> list[str]:
    """One word per line; blank lines and lines starting with '#' are ignored."""
    path = Path(path)
    if not path.is_file():
        raise VocabError(f"{path}: word list not found")
    words = [w.strip() for w in path.read_text(encoding="utf-8").splitlines()]
    words = [w for w in words if w and not w.startswith("#")]
    if not words:
        raise VocabError(f"{path}: the word list is empty")
    return words


def is_spaced(word: str) -> bool:
    """True for words of space-delimited scripts (they take a leading space and word boundaries)."""
    return unicodedata.category(word[0])[0] in "LN" and not _UNSPACED.search(word)


def words_from_corpus(texts: Iterable[str], *, min_freq: int = 2, max_cjk_word: int = 4) -> list[str]:
    """Candidate words, most frequent first: letter runs of spaced scripts, Chinese/Japanese characters, and
    Chinese runs of at most `max_cjk_word` characters (give a word-segmented corpus, e.g. jieba output with spaces,
    to get Chinese words; unsegmented sentences only yield characters). Ties are broken alphabetically."""
    counts: Counter[str] = Counter()
    for line in texts:
        for run in re.findall(r"[^\W\d_]+", line):
            if _UNSPACED.search(run):
                counts.update(ch for ch in run if _UNSPACED.match(ch))
                if 1 < len(run) <= max_cjk_word:
                    counts[run] += 1
            else:
                counts[run] += 1
    return [w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_freq]


# ---- tokenizer ----------------------------------------------------------------------------------------------------
def _escape(s: str) -> str:
    return "".join("\\" + c if c in _META else c for c in s)


def _trie_regex(forms: Mapping[str, bool]) -> str:
    """One regex matching any of `forms` (longest first); form -> whether it needs a right word boundary."""
    trie: dict = {}
    for form, boundary in forms.items():
        node = trie
        for ch in form:
            node = node.setdefault(ch, {})
        node[""] = boundary  # "" marks an end (never a character key)

    def emit(node: dict) -> str:
        alts = [_escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if "" in node:
            alts.append(_RIGHT if node[""] else "")
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(trie) if trie else ""


def _layout(data: dict) -> tuple[str, int, str, bool]:
    """(mode, insert position, space marker, needs bare forms) of the tokenizer's pre-tokenization."""
    pt = data.get("pre_tokenizer")
    items = pt["pretokenizers"] if pt and pt.get("type") == "Sequence" else ([pt] if pt else [])
    types = [p.get("type") for p in items]
    if "ByteLevel" in types:
        if items[types.index("ByteLevel")].get("add_prefix_space"):
            raise VocabError("ByteLevel pre-tokenizer with add_prefix_space=True is not supported")
        return "bytelevel", 0, " ", True
    if "Metaspace" in types:
        i = types.index("Metaspace")
        return "metaspace", i + 1, items[i].get("replacement", "▁"), items[i].get("prepend_scheme") == "never"
    if not items and "▁" in json.dumps(data.get("normalizer"), ensure_ascii=False):
        return "legacy", 0, "▁", False  # Llama-style normalizer: Prepend("▁") + Replace(" ", "▁")
    raise VocabError(f"unsupported pre-tokenizer {types or None} (need ByteLevel, Metaspace or a ▁ normalizer)")


def extend_tokenizer(
    tokenizer: Tokenizer, words: Sequence[str], *, max_new: int | None = None, bare_forms: bool = True
) -> Extension:
    """Add `words` (at most `max_new` new tokens, in the order given) to a BPE tokenizer as vocabulary entries (see
    the module docstring); the old tokenizer is untouched."""
    backend = tokenizer.backend
    data = json.loads(backend.to_str())
    model = data.get("model", {})
    if model.get("type") != "BPE":
        raise VocabError(f"only BPE tokenizers can be extended (this one is {model.get('type')})")
    mode, pos, space, needs_bare = _layout(data)
    norm = backend.normalizer
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)

    def spell(text: str) -> tuple[str, str]:  # raw text -> (text as the Split sees it, vocabulary entry)
        if mode != "legacy" and norm is not None:
            text = norm.normalize_str(text)
        if mode == "bytelevel":
            return text, byte_level.pre_tokenize_str(text)[0][0]
        return text.replace(" ", space), text.replace(" ", space)

    old_vocab: dict[str, int] = model["vocab"]
    added_ids = {t.content for t in backend.get_added_tokens_decoder().values()}
    next_id = max([*old_vocab.values(), *backend.get_added_tokens_decoder()]) + 1
    skipped: dict[str, str] = {}
    candidates: list[tuple[str, str, str, bool, bool]] = []  # (raw, split form, entry, right boundary, left)
    seen: set[str] = set()
    for word in dict.fromkeys(w.strip() for w in words):
        if not word:
            continue
        spaced = is_spaced(word)
        raws = [" " + word] if spaced else []
        if not spaced or (bare_forms and needs_bare):
            raws.append(word)
        for raw in raws:
            form, entry = spell(raw)
            if entry in seen:
                continue
            if entry in old_vocab or entry in added_ids:
                skipped[raw] = "already a single token"
            else:
                seen.add(entry)
                candidates.append((raw, form, entry, spaced, spaced and not raw.startswith(" ")))
    if not candidates:
        raise VocabError(f"nothing to add: all {len(words)} word(s) are already single tokens or unusable"
                         + (f" (e.g. {next(iter(skipped.items()))})" if skipped else ""))

    def build(cands: list[tuple[str, str, str, bool, bool]]) -> tuple[_HFTokenizer, list[NewToken]]:
        d = json.loads(backend.to_str())
        new = [NewToken(raw, entry, next_id + i, [t.id for t in backend.model.tokenize(entry)])
               for i, (raw, _, entry, _, _) in enumerate(cands)]
        d["model"]["vocab"].update({t.token: t.id for t in new})
        d["model"]["ignore_merges"] = True
        left = _trie_regex({form: right for _, form, _, right, lb in cands if lb})
        rest = _trie_regex({form: right for _, form, _, right, lb in cands if not lb})
        pattern = "|".join(p for p in ([f"{_LEFT}{left}"] if left else []) + ([rest] if rest else []))
        split = {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}
        pt = d.get("pre_tokenizer")
        items = pt["pretokenizers"] if pt and pt.get("type") == "Sequence" else ([pt] if pt else [])
        items.insert(pos, split)
        d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": items}
        return _HFTokenizer.from_str(json.dumps(d, ensure_ascii=False)), new

    hf, new = build(candidates)
    keep = []
    for cand, tok in zip(candidates, new, strict=True):  # the tokenizer's own pre-tokenizer may still split a form
        sample = cand[0] if cand[4] else "a" + cand[0] + ("" if cand[3] else "a")
        if tok.id in hf.encode(sample, add_special_tokens=False).ids:
            keep.append(cand)
        else:
            skipped[cand[0]] = "the tokenizer's pre-tokenizer splits it"
    if not keep:
        raise VocabError(f"nothing to add: the tokenizer's pre-tokenizer splits all {len(candidates)} form(s)")
    keep = keep[:max_new] if max_new is not None else keep
    if len(keep) < len(candidates):
        hf, new = build(keep)
    fallback = re.compile(r"<0x[0-9A-F]{2}>") if model.get("byte_fallback") else None
    reach = [] if model.get("ignore_merges") else [
        t for t in old_vocab if t not in added_ids and not (fallback and fallback.fullmatch(t))
        and [p.value for p in backend.model.tokenize(t)] != [t]]
    out = Tokenizer(hf, bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token)
    out.stop_ids = tokenizer.stop_ids  # old ids are unchanged, so the old stop ids still hold
    return Extension(out, new, skipped, reach, old_len=next_id)


# ---- model --------------------------------------------------------------------------------------------------------
def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


def grow_rows(weight: torch.Tensor, ext: Extension, vocab_size: int) -> torch.Tensor:
    """[V_old, D] -> [vocab_size, D]: old rows kept, new rows = mean of their old pieces' rows, the rest (padding
    beyond the old matrix) = mean of all old token rows. Means are taken in float32."""
    old = weight.float()  # [V_old, D]
    out = torch.empty(vocab_size, weight.shape[1], dtype=torch.float32)  # [V, D]
    n = min(old.shape[0], vocab_size)
    out[:n] = old[:n]
    out[old.shape[0]:] = old[: ext.old_len].mean(0)
    for tok in ext.added:
        out[tok.id] = old[tok.pieces].mean(0)  # [len(pieces), D] -> [D]
    return out.to(weight.dtype)


def _read_model(model: str | Path):
    from vita import presets
    from vita.checkpoint.convert import read_any
    from vita.checkpoint.load import random_model

    if str(model) in presets.PRESETS:
        config = presets.preset(str(model))
        return config, random_model(config).state_dict(), presets.byte_tokenizer()
    path = Path(model)
    if not path.is_dir():
        raise VocabError(f"{path}: no such model directory (and not a preset: {', '.join(presets.PRESETS)})")
    if not (path / "tokenizer.json").is_file():
        raise VocabError(f"{path}: the model has no tokenizer.json, so there is no vocabulary to extend")
    return read_any(path)


def extend_vocab(
    model: str | Path,
    words: Sequence[str] | Corpus,
    out_dir: str | Path,
    *,
    max_new: int | None = None,
    min_freq: int = 2,
    pad_to_multiple: int = 1,
    bare_forms: bool = True,
) -> Extension:
    """Extend `model` (a model directory in any supported layout, or a preset) with `words` (a list, or a `Corpus`
    to mine: frequent words/characters not already single tokens, at least `min_freq` occurrences), adding at most
    `max_new` tokens, and write it to `out_dir` in our canonical layout (+ `vocab_extension.json`, a report)."""
    from vita.checkpoint.convert import save_canonical

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise VocabError(f"{out}: destination exists and is not empty (refusing to overwrite)")
    if pad_to_multiple < 1 or (max_new is not None and max_new < 1) or min_freq < 1:
        raise VocabError("--pad-to-multiple, --max-new and --min-freq must be positive")
    word_list = words_from_corpus(words.texts(), min_freq=min_freq) if isinstance(words, Corpus) else list(words)
    if not word_list:
        raise VocabError("no words to add" + (f" (none occurs at least {min_freq} times)"
                                              if isinstance(words, Corpus) else " (the word list is empty)"))
    config, tensors, tokenizer = _read_model(model)
    ext = extend_tokenizer(tokenizer, word_list, max_new=max_new, bare_forms=bare_forms)
    if ext.old_len > config.llm.vocab_size:
        raise VocabError(f"{model}: the tokenizer has {ext.old_len} ids but the model only "
                         f"{config.llm.vocab_size} embedding rows")
    vocab = _round_up(max(config.llm.vocab_size, ext.old_len + len(ext.added)), pad_to_multiple)
    llm = replace(config.llm, vocab_size=vocab)
    new_config = replace(config, llm=llm)
    grown = {name: grow_rows(tensors[name], ext, vocab)
             for name in ("llm.tok_embeddings.weight", "llm.output.weight") if name in tensors}
    save_canonical(new_config, _Overlay(tensors, grown), ext.tokenizer, out)
    report = {"old_vocab_size": config.llm.vocab_size, "vocab_size": vocab, "tokenizer_ids": len(ext.tokenizer),
              "added": [{"text": t.text, "token": t.token, "id": t.id, "pieces": t.pieces} for t in ext.added],
              "skipped": ext.skipped, "unreachable_old_tokens": ext.unreachable_old_tokens}
    (out / "vocab_extension.json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    return ext


class _Overlay(Mapping[str, torch.Tensor]):
    """The source tensors (read lazily) with some replaced."""

    def __init__(self, base: Mapping[str, torch.Tensor], over: dict[str, torch.Tensor]) -> None:
        self.base, self.over = base, over

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.over[name] if name in self.over else self.base[name]

    def __iter__(self):
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)
