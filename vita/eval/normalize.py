"""Text normalization for scoring: answers (exact match), transcripts (WER / CER) and multiple-choice replies.

`units(text)` is the one tokenizer every metric uses:
  1. Unicode NFKC, then casefold;
  2. punctuation and symbols (Unicode categories P* and S*) become spaces, except: apostrophes are deleted
     ("don't" -> "dont"), a "." between two digits is kept ("3.5"), and a "," between digits that is followed by
     exactly three digits is deleted ("1,000" -> "1000");
  3. split on whitespace; inside a token every CJK character (Han, kana, Hangul) is a unit of its own, runs of
     other characters stay together ("gpt模型" -> "gpt", "模", "型");
  4. English cardinal number words become digits: "three" -> "3", "twenty one" / "twenty-one" -> "21",
     "one hundred and five" -> "105", "two thousand" -> "2000"; "one two" stays two numbers ("1", "2");
  5. numerals are written canonically: "03" -> "3", "3.50" -> "3.5", "3.0" -> "3".
`answer_units` additionally drops the English articles "a", "an", "the" (transcripts keep them: they are words).
"""

from __future__ import annotations

import re
import unicodedata

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0003134f]")
_APOSTROPHES = {"'", "\u2019", "\u2018", "`"}
_NUMERAL = re.compile(r"^\d+(\.\d+)?$")
ARTICLES = frozenset({"a", "an", "the"})

_SMALL = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def _strip_punctuation(text: str) -> str:
    out: list[str] = []
    n = len(text)
    for i, ch in enumerate(text):
        if unicodedata.category(ch)[0] not in "PS":
            out.append(ch)
            continue
        prev_digit = i > 0 and text[i - 1].isdigit()
        next_digit = i + 1 < n and text[i + 1].isdigit()
        if ch in _APOSTROPHES:
            continue
        if ch == "." and prev_digit and next_digit:
            out.append(ch)
        elif ch == "," and prev_digit and re.match(r"\d{3}(?!\d)", text[i + 1 : i + 5]):
            continue
        else:
            out.append(" ")
    return "".join(out)


def _split_cjk(token: str) -> list[str]:
    pieces: list[str] = []
    run = ""
    for ch in token:
        if _CJK.match(ch):
            if run:
                pieces.append(run)
                run = ""
            pieces.append(ch)
        else:
            run += ch
    if run:
        pieces.append(run)
    return pieces


def _kind(word: str) -> str | None:
    if word in _SMALL:
        return "zero" if word == "zero" else "small"
    if word in _TENS:
        return "ten"
    if word == "hundred":
        return "hundred"
    if word in _SCALES:
        return "scale"
    return None


# which kind of number word may follow which inside one number ("and" only after hundred / a scale word)
_FOLLOWS = {
    None: {"small", "ten", "hundred", "scale", "zero"},
    "small": {"hundred", "scale"},
    "ten": {"small", "scale"},
    "hundred": {"small", "ten", "scale", "and"},
    "scale": {"small", "ten", "hundred", "and"},
    "and": {"small", "ten"},
    "zero": set(),
}


def _numbers_to_digits(words: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(words):
        if _kind(words[i]) is None:
            out.append(words[i])
            i += 1
            continue
        total = current = 0
        last: str | None = None
        j = i
        while j < len(words):
            word = words[j]
            kind = "and" if word == "and" else _kind(word)
            if kind is None or kind not in _FOLLOWS[last]:
                break
            if kind == "and" and (j + 1 >= len(words) or _kind(words[j + 1]) not in _FOLLOWS["and"]):
                break
            if kind == "ten" and last == "ten":
                break
            if kind in ("small", "zero"):
                current += _SMALL[word]
                if last == "ten":  # "twenty one": the unit closes the tens, so nothing but a scale may follow
                    kind = "small"
            elif kind == "ten":
                current += _TENS[word]
            elif kind == "hundred":
                current = (current or 1) * 100
            elif kind == "scale":
                total += (current or 1) * _SCALES[word]
                current = 0
            last = kind
            j += 1
        out.append(str(total + current))
        i = j
    return out


def _canonical_numeral(word: str) -> str:
    if not _NUMERAL.match(word):
        return word
    if "." not in word:
        return str(int(word))
    whole, frac = word.split(".")
    frac = frac.rstrip("0")
    return f"{int(whole)}.{frac}" if frac else str(int(whole))


def _units(text: str, *, drop_articles: bool) -> list[str]:
    text = unicodedata.normalize("NFKC", text).casefold()
    words: list[str] = []
    for token in _strip_punctuation(text).split():
        words.extend(_split_cjk(token))
    if drop_articles:
        words = [w for w in words if w not in ARTICLES]
    return [_canonical_numeral(w) for w in _numbers_to_digits(words)]


def units(text: str) -> list[str]:
    """Normalized scoring units of `text` (see the module docstring): what WER / CER compare."""
    return _units(text, drop_articles=False)


def answer_units(text: str) -> list[str]:
    """`units` without English articles: what answer exact match and choice matching compare."""
    return _units(text, drop_articles=True)


def normalize_answer(text: str) -> str:
    """The normalized form two answers must share to count as an exact match."""
    return " ".join(answer_units(text))
