"""Open-vocabulary English text for vita-mini speech: thousands of natural sentences and questions, offline.

Sources (Debian packages, read from their installed files; `make setup` installs them):
    wordnet-base  /usr/share/wordnet/data.{noun,verb,adj,adv}: the quoted example sentences of the WordNet 3.0
                  glosses ("The motorcycle smashed into the guard rail"), and the antonym pointers, which give
                  the lexical questions "What is the opposite of cheap?" -> "expensive".
                  Licence: WordNet 3.0 licence (Princeton University; use, copy, modify and distribute for any
                  purpose without fee, keeping the copyright notice).
    fortunes, fortunes-min
                  /usr/share/games/fortunes/{FORTUNE_FILES}: fortune-mod cookies (sayings, quotations, riddles),
                  the non-offensive sets only (Debian ships the offensive ones in other packages, never read here).
                  Licence: the fortune-mod collection is distributed under the BSD licence (Debian copyright
                  file); the cookies are short quotations of many authors.
    wamerican     /usr/share/dict/american-english: SCOWL word list (Kevin Atkinson; permissive, parts public
                  domain). Every word of a kept sentence must be in it: drops typos, invented names, archaic forms.
Cleaning (`normalize`): quotes and backticks removed, "--" and ";" become commas, whole numbers up to 999,999
become words ("5" -> "five"; any other digit, $, %, &, /, ( ), :, abbreviations with an inner period,
acronyms and stray single letters drop the sentence), 3 to 20 words, first letter upper case, ends with . ? or !.
The text returned is exactly what the synthesiser is given, so it is the transcript. A conservative word blocklist
(`BLOCKLIST`: profanity, slurs, sexual, drug and hate words, and words that fortune jokes use about groups of
people) drops any sentence that contains one; it drops some harmless sentences too.
Kinds: a sentence that ends with "?" is a question (spoken queries, ASR), the rest are statements (ASR, and
non-awakening chatter). Split: a sentence is eval when sha256 of its lower-cased letters is in the last
`EVAL_PERCENT` of the hash range, so train and eval never share a sentence and the split does not depend on order
or on which sources are present. Antonym pairs are split the same way on the unordered pair.
Everything is deterministic: sorted, deduplicated, no randomness here (the builder draws with its own seeds).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from vita.errors import DataError

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNE_DIR = Path("/usr/share/games/fortunes")
DICTIONARY = Path("/usr/share/dict/american-english")
# fortunes-min: fortunes, literature, riddles; fortunes: the rest. Not read: sets about ethnic groups, men and
# women, drugs, sex, politics, religion, love, law, and the computing / Star Trek / Zippy / ASCII-art sets
# (jargon, names and symbols a speaker cannot say as written)
FORTUNE_FILES = ("fortunes", "literature", "riddles", "education", "food", "kids", "people", "pets", "platitudes",
                 "science", "sports", "wisdom", "work", "tao", "paradoxum", "art")
SOURCES = {"wordnet-base": (WORDNET_DIR / "data.noun", WORDNET_DIR / "data.verb", WORDNET_DIR / "data.adj",
                            WORDNET_DIR / "data.adv"),
           "fortunes-min": tuple(FORTUNE_DIR / n for n in ("fortunes", "literature", "riddles")),
           "fortunes": tuple(FORTUNE_DIR / n for n in FORTUNE_FILES[3:]),
           "wamerican": (DICTIONARY,)}
EVAL_PERCENT = 10
MIN_WORDS, MAX_WORDS = 3, 20
BLOCKLIST = frozenset("""
    fuck fucking fucked fucker shit shitty crap damn damned goddamn hell bitch bastard ass asses asshole arse piss
    pissed dick cock pussy tit tits boob boobs whore slut fag faggot nigger nigga negro negroes kike spic chink gook
    wop retard retarded cunt twat wank horny orgasm erection penis vagina condom sexy sex sexes sexual sexually
    intercourse masturbate masturbation prostitute prostitutes prostitution hooker rape raped rapes rapist molest
    molested porn pornography pornographic naked nude nudity cocaine heroin marijuana suicide nazi nazis hitler
    jew jews jewish gay gays lesbian lesbians homosexual homosexuals queer dyke blacks whites mistress virgin
    genitals bosom breasts kill killed killing killer murder murdered murderer torture tortured slave slaves drunk
    """.split())
QUESTION_FRAMES = ("What is the opposite of {}?", "What's the opposite of {}?", "What word means the opposite of {}?",
                   "Can you tell me the opposite of {}?")
_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
          "seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")
_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})?|\d{1,3})(?![\w.,]\d|\w)")
_ALLOWED = re.compile(r"[A-Za-z0-9 ,.'?!-]+")


def number_words(n: int) -> str:
    """0 <= n < 1,000,000 in words: 105 -> "one hundred five", 2310 -> "two thousand three hundred ten"."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number_words: {n} is out of range")
    if n < 20:
        return _SMALL[n]
    if n < 100:
        return _TENS[n // 10 - 2] + ("" if n % 10 == 0 else " " + _SMALL[n % 10])
    if n < 1000:
        return _SMALL[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_words(n % 100))
    return number_words(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + number_words(n % 1000))


def _key(text: str) -> str:
    return " ".join(re.findall(r"[a-z]+", text.lower()))


def is_eval(text: str) -> bool:
    """True for the held-out share of sentences: a hash of the lower-cased words, not of their order in a list."""
    return int(hashlib.sha256(_key(text).encode()).hexdigest()[:8], 16) % 100 < EVAL_PERCENT


def _bare(word: str) -> str:
    word = word.lower()
    return word[:-2] if word.endswith("'s") else word


def normalize(raw: str, vocabulary: frozenset[str] | None = None, names: frozenset[str] | None = None) -> str | None:
    """A speakable sentence whose text is its transcript, or None when `raw` cannot be said as written.
    `vocabulary`: the allowed words, lower case; `names`: the words allowed capitalised inside a sentence
    (proper nouns; None: any)."""
    text = raw.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'").replace("''", "")
    text = text.replace('"', " ").replace("--", ", ").replace(";", ",")
    text = " ".join(text.split()).strip(" '")
    text = re.sub(r"\s+([,.?!])", r"\1", text)
    if not text or not _ALLOWED.fullmatch(text):
        return None

    def spell(m: re.Match[str]) -> str:
        return number_words(int(m.group(1).replace(",", "")))

    text = _NUMBER.sub(spell, text)
    if any(ch.isdigit() for ch in text):
        return None  # years, decimals, ordinals, codes: no one way to say them
    if text[-1] not in ".?!":
        text += "."
    body = text[:-1]
    if any(ch in body for ch in ".?!") or re.search(r"(^|[\s,])[-']|[-'](?=[\s,]|$)|,,|,\s*,", text):
        return None  # two sentences, an abbreviation, or a dangling hyphen / quote
    text = re.sub(r"(,\s*)+$", "", body).rstrip() + text[-1]
    words = _WORD.findall(text)
    if not MIN_WORDS <= len(words) <= MAX_WORDS or not re.fullmatch(r"[ ,.?!]*", _WORD.sub("", text)):
        return None
    for k, w in enumerate(words):
        if sum(c.isupper() for c in w) > 1 or (len(w) == 1 and w not in ("a", "I", "A")):
            return None  # acronyms (said letter by letter or not) and stray letters
        if k and names is not None and w[0].isupper() and w != "I" and not w.startswith("I'") and (
                w.removesuffix("'s") not in names):
            return None  # Title Case Or Shouting Capitals, not a name
        parts = [_bare(p) for p in w.split("-")]
        if any(p in BLOCKLIST for p in parts):
            return None
        if vocabulary is not None and _bare(w) not in vocabulary and not all(p in vocabulary for p in parts):
            return None
    return text[0].upper() + text[1:]


@dataclass(frozen=True)
class Corpus:
    """Sentences and lexical question-answer pairs, train and eval disjoint."""

    train_statements: tuple[str, ...]
    train_questions: tuple[str, ...]
    eval_statements: tuple[str, ...]
    eval_questions: tuple[str, ...]
    train_pairs: tuple[tuple[str, str], ...]  # (word, its antonym)
    eval_pairs: tuple[tuple[str, str], ...]
    sources: dict[str, str] = field(default_factory=dict)  # file -> sha256 of the bytes read

    def summary(self) -> dict[str, object]:
        return {"train_statements": len(self.train_statements), "train_questions": len(self.train_questions),
                "eval_statements": len(self.eval_statements), "eval_questions": len(self.eval_questions),
                "train_antonym_pairs": len(self.train_pairs), "eval_antonym_pairs": len(self.eval_pairs),
                "eval_percent": EVAL_PERCENT, "sources_sha256": self.sources}


def _read(path: Path, package: str, sources: dict[str, str]) -> str:
    if not path.is_file():
        raise DataError(f"{path} is missing: the vita-mini speech text needs the Debian package '{package}' "
                        f"(apt-get install {package}; `make setup` does it)", "missing_source")
    data = path.read_bytes()
    sources[str(path)] = hashlib.sha256(data).hexdigest()
    return data.decode("latin-1")


def _wordnet_examples(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if line.startswith("  ") or " | " not in line:
            continue  # licence header
        out += [e for e in re.findall(r'"([^"]+)"', line.split(" | ", 1)[1]) if e[:1].isupper()]
    return out


def _fortune_sentences(text: str) -> list[str]:
    out = []
    for cookie in text.split("\n%\n"):
        lines = [re.sub(r"^\s*[QA]:\s*", "", line) for line in cookie.splitlines()
                 if not re.match(r"\s*--", line)]  # attributions dropped; riddles' "Q:" / "A:" labels too
        flat = " ".join(" ".join(lines).split())
        out += re.split(r"(?<=[.!?])\s+(?=[A-Z])", flat)
    return out


def _antonyms(texts: list[str]) -> dict[str, set[str]]:
    """word -> its antonyms over all its senses (single lower-case words only)."""
    words: dict[str, list[str]] = {}
    pointers: list[tuple[str, int, str, int]] = []
    for pos, text in zip("nvar", texts, strict=True):
        for line in text.splitlines():
            if line.startswith("  "):
                continue
            f = line.split(" | ", 1)[0].split()
            offset, count = f[0], int(f[3], 16)
            lemmas = [re.sub(r"\(.*\)$", "", f[4 + 2 * k]) for k in range(count)]
            words[pos + offset] = lemmas
            i = 4 + 2 * count
            for _ in range(int(f[i])):
                symbol, target, tpos, st = f[i + 1 : i + 5]
                i += 4
                if symbol == "!":
                    tpos = "a" if tpos == "s" else tpos
                    pointers.append((pos + offset, int(st[:2], 16), tpos + target, int(st[2:], 16)))
    out: dict[str, set[str]] = {}
    for src, si, dst, di in pointers:
        a, b = words[src][si - 1], words[dst][di - 1]
        if a.isalpha() and b.isalpha() and a.islower() and b.islower():
            out.setdefault(a, set()).add(b)
    return out


@lru_cache(maxsize=1)
def load_corpus() -> Corpus:
    """Read, clean, deduplicate and split the sources (about 2 s; cached for the process)."""
    sources: dict[str, str] = {}
    dictionary = _read(DICTIONARY, "wamerican", sources).split()
    vocabulary = frozenset(w.lower() for w in dictionary)
    names = frozenset(w for w in dictionary if w[:1].isupper())
    wordnet = [_read(p, "wordnet-base", sources) for p in SOURCES["wordnet-base"]]
    raw = [s for text in wordnet for s in _wordnet_examples(text)]
    for package in ("fortunes-min", "fortunes"):
        raw += [s for p in SOURCES[package] for s in _fortune_sentences(_read(p, package, sources))]
    seen: dict[str, str] = {}
    for sentence in raw:
        clean = normalize(sentence, vocabulary, names)
        if clean is not None:
            seen.setdefault(_key(clean), clean)  # first spelling wins (sources are read in a fixed order)
    kept = sorted(seen.values())
    split: dict[tuple[bool, bool], list[str]] = {(e, q): [] for e in (False, True) for q in (False, True)}
    for s in kept:
        split[(is_eval(s), s.endswith("?"))].append(s)
    pairs = []
    for a, bs in sorted(_antonyms(wordnet).items()):
        if len(bs) == 1:
            b = next(iter(bs))
            if all(w in vocabulary and w not in BLOCKLIST for w in (a, b)):
                pairs.append((a, b))
    train_pairs = tuple(p for p in pairs if not is_eval(" ".join(sorted(p))))
    eval_pairs = tuple(p for p in pairs if is_eval(" ".join(sorted(p))))
    return Corpus(tuple(split[(False, False)]), tuple(split[(False, True)]), tuple(split[(True, False)]),
                  tuple(split[(True, True)]), train_pairs, eval_pairs, dict(sorted(sources.items())))


def antonym_question(pair: tuple[str, str], frame: int) -> tuple[str, str]:
    """("What is the opposite of cheap?", "expensive") for frame 0; `frame` picks one of QUESTION_FRAMES."""
    return QUESTION_FRAMES[frame % len(QUESTION_FRAMES)].format(pair[0]), pair[1]


def missing_packages() -> list[str]:
    """The Debian packages whose files `load_corpus` needs and does not find."""
    return sorted({pkg for pkg, paths in SOURCES.items() for p in paths if not p.is_file()})
