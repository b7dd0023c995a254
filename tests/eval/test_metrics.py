"""Metrics on hand-made predictions, each expected value computed by hand."""

from __future__ import annotations

import pytest

from vita.eval.metrics import CaseResult, error_rate, levenshtein, match_choice, summarize
from vita.eval.normalize import normalize_answer, units


def _case(i: int, expected: str, predicted: str | None, text: str = "", **kw) -> CaseResult:
    return CaseResult(id=f"c{i}", line=i, modalities=["text"], group=None, expected_state=expected,
                      predicted_state=predicted, text=text, **kw).score()


# ---- edit distance and WER ------------------------------------------------------------------------------------
def test_levenshtein_known_pairs():
    assert levenshtein(list("kitten"), list("sitting")) == 3  # k->s, e->i, +g
    assert levenshtein([], ["a", "b"]) == 2
    assert levenshtein(["a", "b"], []) == 2
    assert levenshtein(["a", "b", "c"], ["a", "b", "c"]) == 0
    assert levenshtein("a b c d".split(), "a x c".split()) == 2  # b->x, -d


def test_wer_of_known_pairs():
    # "sat" -> "sit" (1 substitution), the second "the" deleted (1 deletion): 2 edits over 6 words
    assert error_rate("The cat sat on the mat.", "the cat sit on mat") == pytest.approx(2 / 6)
    # punctuation and case do not count; one inserted word
    assert error_rate("Hello, world!", "hello big world") == pytest.approx(1 / 2)
    # numbers as digits or words are the same word
    assert error_rate("I have three cats", "i have 3 cats.") == 0.0
    assert error_rate("twenty-one pilots", "21 pilots") == 0.0


def test_cer_for_cjk_and_corpus_rates():
    assert error_rate("你好世界", "你好时间") == pytest.approx(2 / 4)  # 世->时, 界->间
    assert error_rate("你好，世界。", "你好世界") == 0.0  # CJK punctuation ignored
    assert units("我用GPT模型") == ["我", "用", "gpt", "模", "型"]
    rows = [
        _case(1, "<1>", "<1>", "a b c", transcript="a b c d"),  # 1 edit / 4 words
        _case(2, "<1>", "<1>", "y", transcript="x"),  # 1 edit / 1 word
        _case(3, "<1>", "<1>", "北京", transcript="北京"),  # 0 / 2 characters
    ]
    assert [r.rate_kind for r in rows] == ["wer", "wer", "cer"]
    s = summarize(rows)
    assert s["wer"] == pytest.approx(2 / 5)  # the corpus rate, not the mean of per-case rates (0.625)
    assert s["cer"] == 0.0
    assert s["support"]["wer"] == {"cases": 2, "edits": 2, "ref_units": 5}


# ---- answer normalization -------------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b", [
    ("three", "3"), ("Three.", "3"), ("twenty-one", "21"), ("twenty one", "21"), ("one hundred and five", "105"),
    ("two thousand and twenty four", "2024"), ("1,000", "one thousand"), ("3.0", "3"), ("03", "three"),
    ("The Eiffel Tower.", "eiffel tower"), ("An apple", "apple"), ("  New   York ", "new york"),
    ("Don't", "dont"), ("北京。", "北京"), ("zero", "0"),
])
def test_answers_that_match(a, b):
    assert normalize_answer(a) == normalize_answer(b)


@pytest.mark.parametrize("a, b", [
    ("one two", "12"), ("three", "30"), ("3.5", "35"), ("1,2,3", "123"), ("red", "dark red"), ("cat", "cats"),
])
def test_answers_that_differ(a, b):
    assert normalize_answer(a) != normalize_answer(b)


def test_number_words_become_digits():
    assert units("one two three") == ["1", "2", "3"]
    assert units("ninety nine red balloons") == ["99", "red", "balloons"]
    assert units("rock and roll") == ["rock", "and", "roll"]
    assert units("one hundred and") == ["100", "and"]


# ---- choices ----------------------------------------------------------------------------------------------------
CHOICES = ["dog", "cat", "bird"]


@pytest.mark.parametrize("reply, named", [
    ("B", [1]), ("b.", [1]), ("(C)", [2]), ("The answer is C.", [2]), ("B. cat", [1]),
    ("dog", [0]), ("It is a Cat!", [1]), ("A cat is sitting there", [1]),  # "A cat": the article, not option A
    ("I think it is a bird", [2]),  # "I" is the pronoun, not option I (there is no option I anyway)
    ("B. dog", [0, 1]),  # letter and text disagree: ambiguous
    ("a dog or a cat", [0, 1]), ("", []), ("a fish", []), ("doggy", []),
])
def test_match_choice(reply, named):
    assert match_choice(reply, CHOICES) == named


def test_match_choice_longer_choice_wins_and_numbers():
    assert match_choice("It is dark red.", ["red", "dark red", "blue"]) == [1]
    assert match_choice("red, not dark red", ["red", "dark red", "blue"]) == [0, 1]
    assert match_choice("There are three.", ["2", "3"]) == [1]


def test_choice_case_scoring():
    ok = _case(1, "<3>", "<3>", "B. cat", choices=CHOICES, answer="cat", answer_index=1)
    assert ok.answer_correct and ok.predicted_choice == "cat"
    ambiguous = _case(2, "<3>", "<3>", "dog or cat", choices=CHOICES, answer="cat", answer_index=1)
    assert ambiguous.answer_correct is False and ambiguous.predicted_choice is None
    assert ambiguous.named_choices == ["dog", "cat"]
    none = _case(3, "<3>", "<3>", "no idea", choices=CHOICES, answer="cat", answer_index=1)
    assert none.answer_correct is False and none.named_choices == []


# ---- states, confusion and rates --------------------------------------------------------------------------------
def test_confusion_and_rates():
    rows = [
        _case(1, "<1>", "<1>"), _case(2, "<1>", "<3>"),  # both answered as queries; 2 has the wrong state
        _case(3, "<3>", "<2>"),  # a miss
        _case(4, "<3>", None),  # no state: wrong, not a miss
        _case(5, "<2>", "<2>"), _case(6, "<2>", "<2>"),  # rejected
        _case(7, "<2>", "<1>"),  # answered a not-query
        _case(8, "<2>", None),
    ]
    s = summarize(rows)
    assert s["n"] == 8
    assert s["state_accuracy"] == pytest.approx(3 / 8)  # 1, 5, 6
    assert s["confusion"] == {"query": {"query": 2, "not_query": 1, "none": 1},
                              "not_query": {"query": 1, "not_query": 2, "none": 1}}
    assert s["rejection_rate"] == pytest.approx(2 / 4)
    assert s["miss_rate"] == pytest.approx(1 / 4)
    assert s["no_state"] == ["c4", "c8"]


def test_none_when_no_case_applies():
    s = summarize([])
    for key in ("state_accuracy", "rejection_rate", "miss_rate", "answer_accuracy", "exact_match",
                "choice_accuracy", "wer", "cer"):
        assert s[key] is None, key
    assert s["n"] == 0
    only_queries = summarize([_case(1, "<3>", "<3>", "hi"), _case(2, "<1>", "<2>")])
    assert only_queries["rejection_rate"] is None
    assert only_queries["miss_rate"] == 0.5
    assert only_queries["answer_accuracy"] is None and only_queries["wer"] is None
    only_silence = summarize([_case(1, "<2>", "<2>")])
    assert only_silence["miss_rate"] is None and only_silence["rejection_rate"] == 1.0


def test_open_answer_accuracy():
    rows = [
        _case(1, "<3>", "<3>", "Three.", answer="3"),
        _case(2, "<3>", "<3>", "There are 3.", answer="3"),  # exact match: extra words are wrong
        _case(3, "<3>", "<2>", "", answer="Paris"),
    ]
    s = summarize(rows)
    assert [r.answer_correct for r in rows] == [True, False, False]
    assert s["answer_accuracy"] == pytest.approx(1 / 3) and s["exact_match"] == pytest.approx(1 / 3)
    assert s["choice_accuracy"] is None


def test_contains_match_for_sentence_answers():
    ok = _case(1, "<3>", "<3>", "12 times 3 is 36.", answer="36", match="contains").score()
    wrong = _case(2, "<3>", "<3>", "12 times 3 is 360.", answer="36", match="contains").score()
    exact = _case(3, "<3>", "<3>", "12 times 3 is 36.", answer="36").score()
    words = _case(4, "<3>", "<3>", "It is a red fox.", answer="red fox", match="contains").score()
    split = _case(5, "<3>", "<3>", "A red and a fox.", answer="red fox", match="contains").score()
    assert (ok.answer_correct, wrong.answer_correct, exact.answer_correct) == (True, False, False)
    assert (words.answer_correct, split.answer_correct) == (True, False)


def test_manifest_match_key(tmp_path):
    from vita.errors import EvalError
    from vita.eval.manifest import load_manifest

    good = tmp_path / "good.jsonl"
    good.write_text('{"id": 1, "text": "What is 12 times 3?", "expect_state": "<3>", "answer": 36, '
                    '"match": "contains"}\n')
    assert load_manifest(good).cases[0].match == "contains"
    for bad, message in (('"match": "fuzzy", "answer": "x"', "unknown match"), ('"match": "contains"', "needs an")):
        path = tmp_path / "bad.jsonl"
        path.write_text('{"id": 1, "text": "hi", "expect_state": "<3>", ' + bad + "}\n")
        with pytest.raises(EvalError, match=message):
            load_manifest(path)
