"""vita-mini speech text: normalisation makes the transcript what is said, the corpus is large, clean, split into
disjoint train / eval sentences and antonym pairs, a missing source names its Debian package (the real-speech
eval manifest: tests/datasets/test_real_speech.py)."""

from __future__ import annotations

import re

import pytest

import vita.datasets.mini.text as mini_text
from vita.datasets.mini.text import BLOCKLIST, is_eval, load_corpus, missing_packages, normalize, number_words
from vita.errors import DataError

needs_sources = pytest.mark.skipif(bool(missing_packages()), reason=f"needs Debian {missing_packages()}")


@pytest.mark.parametrize(("n", "words"), [(0, "zero"), (7, "seven"), (40, "forty"), (105, "one hundred five"),
                                          (2310, "two thousand three hundred ten"),
                                          (999_999, "nine hundred ninety nine thousand nine hundred ninety nine")])
def test_number_words(n: int, words: str) -> None:
    assert number_words(n) == words


@pytest.mark.parametrize(("raw", "clean"), [
    ("The cow brings in 5 liters of milk", "The cow brings in five liters of milk."),
    ("I have 1,250 sheep", "I have one thousand two hundred fifty sheep."),
    ("`Who's there?'' she asked", None),  # two sentences
    ("Don't rush me, please!", "Don't rush me, please!"),
    ("he ran the race", "He ran the race."),
    ('"Stop it"; he said -- loudly', "Stop it, he said, loudly."),
    ("In 1990 it rained", None),  # a year: no one way to say it
    ("He paid $5 for it", None),
    ("Mr. Smith left early", None),
    ("SEAL is an acronym for Sea Air and Land", None),
    ("Take vitamin C daily", None),
    ("Hi there", None),  # too short
    ("word " * 21, None),  # too long
    ("It costs 3.5 dollars", None),
])
def test_normalize(raw: str, clean: str | None) -> None:
    assert normalize(raw) == clean


def test_normalize_vocabulary_blocklist_and_capitals() -> None:
    vocab = frozenset("the dog ran home fast paris is in france sat".split())
    assert normalize("The dog ran home fast", vocab) == "The dog ran home fast."
    assert normalize("The dgo ran home fast", vocab) is None
    assert normalize(f"The {sorted(BLOCKLIST)[0]} ran home", None) is None
    names = frozenset({"Paris", "France"})
    assert normalize("Paris is in France", vocab, names) == "Paris is in France."
    assert normalize("The Dog Sat", vocab, names) is None


def test_split_is_a_function_of_the_words() -> None:
    assert is_eval("The dog ran home.") == is_eval("the dog ran home") == is_eval("The dog, ran home!")
    share = sum(is_eval(f"sentence number {number_words(i)}") for i in range(5000)) / 5000
    assert 0.08 < share < 0.12


@needs_sources
def test_corpus_large_clean_and_disjoint() -> None:
    c = load_corpus()
    assert len(c.train_statements) > 8000 and len(c.train_questions) > 400
    assert len(c.eval_statements) > 800 and len(c.eval_questions) > 30
    key = mini_text._key
    train = {key(s) for s in c.train_statements + c.train_questions}
    held = {key(s) for s in c.eval_statements + c.eval_questions}
    assert not train & held
    assert all(s.endswith("?") for s in c.train_questions + c.eval_questions)
    assert not any(s.endswith("?") for s in c.train_statements + c.eval_statements)
    for s in c.train_statements[::50] + c.eval_questions:
        assert normalize(s) == s  # already normal: what is said is what is written
        words = re.findall(r"[A-Za-z']+", s)
        assert 3 <= len(words) <= 20 and not any(w.lower() in BLOCKLIST for w in words)
        assert not re.search(r"[0-9$%&/():;\"]", s)
    assert all(not is_eval(s) for s in c.train_statements[::97]) and all(is_eval(s) for s in c.eval_statements)
    pairs = {frozenset(p) for p in c.train_pairs}
    assert len(c.train_pairs) > 1000 and c.eval_pairs and not pairs & {frozenset(p) for p in c.eval_pairs}
    assert ("cheap", "expensive") in c.train_pairs + c.eval_pairs
    assert set(c.sources) == {str(p) for paths in mini_text.SOURCES.values() for p in paths}


def test_missing_source_names_its_package(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(mini_text, "DICTIONARY", tmp_path / "no-such-words")
    with pytest.raises(DataError, match="wamerican"):
        load_corpus.__wrapped__()

