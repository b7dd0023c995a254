"""Vocabulary extension: new words are single ids, old text and old logits are unchanged, new rows are means."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

import vita
from vita.checkpoint.io import TensorReader
from vita.cli import main
from vita.presets import byte_tokenizer
from vita.tokenizer import Tokenizer
from vita.training.vocab import Corpus, VocabError, extend_tokenizer, extend_vocab, words_from_corpus

transformers = pytest.importorskip("transformers")

CORPUS = [
    "the quick brown fox jumps over the lazy dog and the cat sat on the mat",
    "hello world, this is a test of the token machine with words and more words",
    "我爱你 你好 我们 他们 好的 大家好",
] * 20
NEW = ["tokenization", "中国", "人工智能", "丫", "世界"]
OLD_TEXT = ["the quick brown fox jumps over the lazy dog", "hello world, this is a test!", "我爱你 大家好",
            "the cat sat on the mat 丁 世 人 gala tokenize", "Othello said hello",
            "retokenization or tokenizations, detokenization!"]  # the new word inside longer words: no boundary
IN_CONTEXT = {  # sentence -> the new words it must show as single ids
    "we love tokenization of text": ["tokenization"],
    "tokenization": ["tokenization"],
    "我爱中国和人工智能": ["中国", "人工智能"],
    "中国": ["中国"],
    "hello 世界, 丫 is a character": ["世界", "丫"],
}


def _byte_level_bpe() -> Tokenizer:
    """SmolLM2 / Qwen style: GPT-2 regex + byte-level alphabet, trained merges."""
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return Tokenizer(tok, bos_token=None, eos_token="<|endoftext|>")


def _sentencepiece_bpe() -> Tokenizer:
    """Llama / Mistral style: <unk> <s> </s>, 256 byte-fallback pieces, then merged pieces; Metaspace "first"."""
    meta = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    base = HFTokenizer(models.BPE())
    base.pre_tokenizer = meta
    base.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, show_progress=False))
    data = json.loads(base.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for piece, _ in sorted(data["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in data["merges"]]
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.pre_tokenizer = meta
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return Tokenizer(tok, bos_token="<s>", eos_token="</s>")


def _legacy_sentencepiece_bpe() -> Tokenizer:
    """Older Llama tokenizer.json: no pre-tokenizer, a normalizer Prepend("▁") + Replace(" ", "▁")."""
    data = json.loads(_sentencepiece_bpe().backend.to_str())
    data["pre_tokenizer"] = None
    data["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    return Tokenizer(HFTokenizer.from_str(json.dumps(data)), bos_token="<s>", eos_token="</s>")


def _qwen_byte_level_bpe() -> Tokenizer:
    """Qwen2 style: NFC normalizer, its own Split regex, then ByteLevel without regex."""
    data = json.loads(_byte_level_bpe().backend.to_str())
    data["normalizer"] = {"type": "NFC"}
    regex = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
             r"|\s+(?!\S)|\s+")
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    return Tokenizer(HFTokenizer.from_str(json.dumps(data)), eos_token="<|endoftext|>")


TOKENIZERS = {"byte": byte_tokenizer, "byte_level_bpe": _byte_level_bpe, "qwen_byte_level_bpe": _qwen_byte_level_bpe,
              "sentencepiece_bpe": _sentencepiece_bpe, "legacy_sentencepiece_bpe": _legacy_sentencepiece_bpe}


def _single_ids(tok: Tokenizer, word: str) -> set[int]:
    return {tok.token_to_id(t) for t in (word, "Ġ" + word, "▁" + word)} - {None}


@pytest.mark.parametrize("kind", TOKENIZERS)
def test_new_words_are_single_ids_and_old_text_is_unchanged(kind):
    old = TOKENIZERS[kind]()
    ext = extend_tokenizer(old, NEW)
    new = ext.tokenizer
    assert len(new) == len(old) + len(ext.added) and ext.unreachable_old_tokens == []
    for tok in ext.added:  # every added form is one id, in isolation ...
        text = tok.text.lstrip(" ") if "sentencepiece" in kind else tok.text  # SentencePiece prepends "▁" itself
        ids, old_ids = (t.encode(text, add_special_tokens=False) for t in (new, old))
        if "sentencepiece" in kind and not text[0].isascii():  # SentencePiece's dummy prefix stays apart
            assert ids[0] == old_ids[0] == new.token_to_id("▁")
            ids, old_ids = ids[1:], old_ids[1:]
        assert ids == [tok.id], tok
        assert len(tok.pieces) > 1 and old_ids == tok.pieces
    if "sentencepiece" in kind:  # one form serves the start of text and the middle of a sentence
        assert len(ext.added) == len(NEW)
    for sentence, words in IN_CONTEXT.items():  # ... and inside sentences, with the leading-space convention
        ids = new.encode(sentence)
        for w in words:
            assert _single_ids(new, _spelled(new, w)) & set(ids), (sentence, w, [new.backend.id_to_token(i)
                                                                                 for i in ids])
        assert new.decode(ids, skip_special_tokens=True) == sentence
        assert len(ids) < len(old.encode(sentence))
    for text in OLD_TEXT:  # text without the new words: exactly the old ids
        assert new.encode(text) == old.encode(text), text
        assert new.decode(new.encode(text), skip_special_tokens=True) == text


def _spelled(tok: Tokenizer, word: str) -> str:
    """The vocabulary spelling of `word` without its space marker (byte-level maps Chinese to its byte alphabet)."""
    if tok.token_to_id(word) is not None or tok.token_to_id("▁" + word) is not None:
        return word
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(word)[0][0]


def _hf_llama(tmp_path, tokenizer: Tokenizer, *, tied: bool, rows: int):
    cfg = transformers.LlamaConfig(vocab_size=rows, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                   tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    path = tmp_path / ("tied" if tied else "untied")
    transformers.LlamaForCausalLM(cfg).save_pretrained(path)
    tokenizer.save(path)
    return str(path)


MODELS = {  # name -> (tokenizer kind, how to make the source model)
    "tiny-random": lambda tmp: "tiny-random",  # untied Mixtral-style MoE with vision + audio, byte tokenizer
    "tied-byte-level": lambda tmp: _hf_llama(tmp, _byte_level_bpe(), tied=True, rows=448),  # smollm2-like
    "untied-sentencepiece": lambda tmp: _hf_llama(tmp, _sentencepiece_bpe(), tied=False, rows=432),
}


@pytest.mark.parametrize("name", MODELS)
def test_extended_model_keeps_old_logits_and_mean_initialises_new_rows(tmp_path, name):
    src = MODELS[name](tmp_path)
    out = tmp_path / "out"
    ext = extend_vocab(src, NEW, out, pad_to_multiple=64)
    before, after = vita.load(src), vita.load(str(out))
    cfg = after.config.llm
    assert cfg.vocab_size % 64 == 0 and cfg.vocab_size >= ext.old_len + len(ext.added)
    assert cfg.tie_word_embeddings == (name == "tied-byte-level")
    report = json.loads((out / "vocab_extension.json").read_text())
    assert [a["id"] for a in report["added"]] == [t.id for t in ext.added]

    text = " ".join(OLD_TEXT)
    ids = before.tokenizer.encode(text)
    assert after.tokenizer.encode(text) == ids
    x = torch.tensor([ids])
    with torch.no_grad():
        old_logits, new_logits = before.model.llm(x), after.model.llm(x)  # [1, L, V_old], [1, L, V_new]
    torch.testing.assert_close(new_logits[..., : ext.old_len], old_logits[..., : ext.old_len], atol=1e-6, rtol=0)

    old_llm, new_llm = before.model.llm, after.model.llm
    heads = [(old_llm.tok_embeddings.weight, new_llm.tok_embeddings.weight)]
    if new_llm.output is not None:
        heads.append((old_llm.output.weight, new_llm.output.weight))
    else:
        assert "llm.output.weight" not in TensorReader.from_dir(out)
    for old_w, new_w in heads:  # [V_old, D], [V_new, D]
        assert torch.equal(new_w[: ext.old_len], old_w[: ext.old_len])
        for tok in ext.added:
            assert torch.allclose(new_w[tok.id], old_w[tok.pieces].mean(0), atol=1e-7, rtol=0)
        end = ext.old_len + len(ext.added)
        if old_w.shape[0] < new_w.shape[0]:  # rows beyond the old matrix: mean of the old token rows
            pad = new_w[max(end, old_w.shape[0]):]
            assert torch.allclose(pad, old_w[: ext.old_len].mean(0).expand_as(pad), atol=1e-7, rtol=0)

    sentence = "我爱中国 and tokenization"
    assert after.tokenizer.decode(after.tokenizer.encode(sentence), skip_special_tokens=True) == sentence
    reply = after.generate(sentence, max_new_tokens=4)
    assert len(reply.token_ids) <= 4


def test_corpus_mode_picks_frequent_new_words_and_characters(tmp_path):
    texts = ["中国 人工智能 中国 tokenization tokenization tokenization rare 世界"] * 3 + ["once 丫"]
    assert words_from_corpus(texts, min_freq=3)[:4] == ["tokenization", "中", "中国", "国"]  # by count, then text
    out = tmp_path / "out"
    ext = extend_vocab("tiny-random", Corpus(texts), out, min_freq=2, max_new=5)
    assert [t.text for t in ext.added] == [" tokenization", "tokenization", "中", "中国", "国"]  # "丫" is rare
    tok = vita.load(str(out)).tokenizer
    for t in ext.added:
        assert tok.encode(t.text, add_special_tokens=False) == [t.id]
    assert tok.encode("人工智能") == byte_tokenizer().encode("人工智能")  # not among the 5: spelled as before


def test_cli_extends_and_errors_are_one_line(tmp_path, capsys):
    words = tmp_path / "words.txt"
    words.write_text("# new words\ntokenization\n中国\n\n")
    assert main(["vocab", "extend", "--model", "tiny-random", "--words", str(words), "--output",
                 str(tmp_path / "ok")]) == 0
    assert "added" in capsys.readouterr().out
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    (no_tok / "config.json").write_text("{}")
    cases = {
        "empty": ["--model", "tiny-random", "--words", str(empty), "--output", str(tmp_path / "a")],
        "not found": ["--model", "tiny-random", "--words", str(tmp_path / "nope.txt"), "--output", str(tmp_path / "b")],
        "no tokenizer.json": ["--model", str(no_tok), "--words", str(words), "--output", str(tmp_path / "c")],
        "not empty": ["--model", "tiny-random", "--words", str(words), "--output", str(tmp_path / "ok")],
        "already single tokens": ["--model", "tiny-random", "--words", str(_write(tmp_path, "!\n")),
                                  "--output", str(tmp_path / "d")],
        "no such model": ["--model", str(tmp_path / "missing"), "--words", str(words), "--output", str(tmp_path / "f")],
    }
    for needle, argv in cases.items():
        assert main(["vocab", "extend", *argv]) == 2, needle
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and err.count("\n") == 1, err
    with pytest.raises(VocabError, match="no words"):
        extend_vocab("tiny-random", Corpus(["x y z"]), tmp_path / "e", min_freq=5)


def _write(tmp_path, text: str):
    path = tmp_path / "single.txt"
    path.write_text(text)
    return path
