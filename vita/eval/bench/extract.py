"""Reading the answer out of a free-form reply, one rule per benchmark family, each from its official scorer.

- `infer_choice(reply, choices)`: the option letter a reply picks, as VLMEvalKit's exact-matching `can_infer`
  (vlmeval/utils/matching_util.py) decides it:
    1. `.()[],:;!*#{}` become spaces and the reply is split on whitespace; if exactly one option letter stands
       as a token and its first occurrence is among the last four tokens... precisely: its index is greater
       than `len(tokens) - 5` (so "B" and "The answer is B" count, a letter deep inside a long reply does not);
    2. else a verbose "answer is B" / "correct answer is **B**" is read;
    3. else, if the reply is at most twice as long as all option texts together, the option whose text
       (lower-cased) appears in the lower-cased reply, when exactly one does.
  No match -> None (counted wrong; VLMEvalKit would ask a GPT judge here, we do not).
- `yes_no(reply)`: "Yes" / "No" / None as VLMEvalKit's `YOrN_Extraction`: lower-case, punctuation to spaces,
  "yes" among the words and "no" not -> Yes; the reverse -> No; both or neither -> None.
- `videomme_letter(reply)`: Video-MME's `extract_characters_regex` (VLMEvalKit utils/videomme.py): drop the
  answer prefixes ("The best answer is", ...), a reply of more than 10 words with no A-D is unanswered, else the
  first capital A-D anywhere in what is left.
- `last_number(text)`: GSM8K's final-number rule: the last number in the text, commas and "$" removed,
  compared as a number ("18.0" == "18").
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

_SPLIT_CHARS = ".()[],:;!*#{}"
_VERBOSE = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([A-Z])\**")


def infer_choice(reply: str, choices: Mapping[str, str]) -> str | None:
    """The option letter `reply` picks among `choices` ({"A": text, ...}), or None (see the module docstring)."""
    text = str(reply)
    mod = text
    for ch in _SPLIT_CHARS:
        mod = mod.replace(ch, " ")
    tokens = mod.split()
    named = [c for c in choices if c in tokens]
    if len(named) == 1 and tokens.index(named[0]) > len(tokens) - 5:
        return named[0]
    m = _VERBOSE.search(text)
    if m and m.group(1).upper() in choices:
        return m.group(1).upper()
    lower = text.lower()
    if len(lower) > 2 * sum(len(str(v)) for v in choices.values()):
        return None
    hits = [k for k, v in choices.items() if str(v).lower() in lower]
    return hits[0] if len(hits) == 1 else None


def _words(text: str) -> list[str]:
    table = str.maketrans({c: " " for c in string.punctuation})
    return text.lower().translate(table).split()


def yes_no(reply: str) -> str | None:
    """"Yes", "No", or None when the reply says both or neither."""
    words = _words(reply)
    has_yes, has_no = "yes" in words, "no" in words
    if has_yes and not has_no:
        return "Yes"
    if has_no and not has_yes:
        return "No"
    return None


_VIDEOMME_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                      "The best option is", "The correct option is", "Best answer:", "Best option:", "Answer:",
                      "Option:")


def videomme_letter(reply: str) -> str | None:
    s = reply.strip()
    for prefix in _VIDEOMME_PREFIXES:
        s = s.replace(prefix, "")
    if len(s.split()) > 10 and not re.search("[ABCD]", s):
        return None
    m = re.search("[ABCD]", s)
    return m.group(0) if m else None


_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def last_number(text: str) -> str | None:
    """The last number in `text`, canonical ("1,000.50" -> "1000.5"), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    return canonical_number(found[-1])


def canonical_number(raw: str) -> str | None:
    cleaned = raw.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    value = value.normalize()
    text = format(value, "f")
    return "0" if text in ("-0", "") else text
