"""What vita-mini's training and eval voices say, beyond the templates: ASR sentences, runs of one to three words
cut from them, their first words alone (a question or sentence broken off: "What is the"), and speech addressed to
someone else by name (`vita.datasets.mini.build` draws each item's text with
the item's own generator)."""

from __future__ import annotations

import numpy as np

__all__ = ["ADDRESSEES", "EVAL_ADDRESSEES", "QUESTION_SHARE", "addressed_text", "fragment", "sentence", "short_words"]

QUESTION_SHARE = 0.3  # of ASR sentences (the rest are statements)

# who the user may be talking to instead of the assistant (names and kin words of our own choosing; none of
# `vita.bench.duplex_public`'s, which are its evaluation)
ADDRESSEES = ("Rosa", "Ben", "Grandpa", "Nina", "Omar", "Dad", "Chloe", "Marcus", "Auntie", "Jake", "Priya", "Leo",
              "Sophie", "Uncle Ray", "Ella", "Hannah", "Sweetheart", "Guys", "Ahmed", "Julia", "Mister Lee", "Kate",
              "Oscar", "Grandma", "Zoe", "Felix", "Ivan", "Mia", "Noah", "Buddy")
# the eval split's: held out from training's and from the duplex benchmark's
EVAL_ADDRESSEES = ("Carlos", "Mina", "Grandad", "Tariq", "Beth", "Yuki", "Coach", "Elena", "Victor", "Nora",
                   "Sis", "Kofi")


def addressed_text(rng: np.random.Generator, statements: tuple[str, ...], questions: tuple[str, ...],
                   names: tuple[str, ...] = ADDRESSEES) -> str:
    """A question (70 %) or statement said to someone by name: "Rosa, ...", "..., Ben?" or "Hey Nina, ..."."""
    name = names[int(rng.integers(len(names)))]
    pool = questions if rng.random() < 0.7 else statements
    text = pool[int(rng.integers(len(pool)))].strip()
    form = rng.random()
    if form < 0.25 and text[-1:] in ".?!":
        return f"{text[:-1]}, {name}{text[-1]}"
    lead = f"Hey {name}" if form > 0.8 else name
    return f"{lead}, {text[0].lower() + text[1:] if not text.startswith('I ') else text}"


def short_words(rng: np.random.Generator, statements: tuple[str, ...], questions: tuple[str, ...]) -> str:
    """Short ASR text: one (60 %), two (25 %) or three consecutive words of a training sentence, as Whisper writes
    them (capitalized, a full stop); a single word has at least four letters (no "a", "of")."""
    n = 1 + int(rng.choice(3, p=(0.6, 0.25, 0.15)))
    while True:
        words = [w.strip(".,;:!?\"'()") for w in sentence(rng, statements, questions).split()]
        words = [w for w in words if w.isalpha()]
        starts = [i for i in range(len(words) - n + 1) if n > 1 or len(words[i]) >= 4]
        if starts:
            i = starts[int(rng.integers(len(starts)))]
            text = " ".join(words[i : i + n])
            return text[0].upper() + text[1:] + "."


def fragment(rng: np.random.Generator, statements: tuple[str, ...], questions: tuple[str, ...]) -> str:
    """A training sentence broken off (half of them questions): its first two or more words, never all of them, as
    said and with no final mark ("What is the", "How do I"): what Whisper's ears must hear as unfinished, so the
    end-of-turn score (`vita.duplex.end_of_turn`) can tell a pause inside a question from its end."""
    while True:
        pool = questions if rng.random() < 0.5 else statements
        words = pool[int(rng.integers(len(pool)))].split()
        if len(words) >= 3:
            k = int(rng.integers(2, len(words)))  # 2 .. n-1 words
            text = " ".join(words[:k]).rstrip(".,;:!?\"'-")
            if text:
                return text


def sentence(rng: np.random.Generator, statements: tuple[str, ...], questions: tuple[str, ...]) -> str:
    """ASR text: a natural statement, or (QUESTION_SHARE of the time) a natural question."""
    pool = questions if rng.random() < QUESTION_SHARE else statements
    return pool[int(rng.integers(len(pool)))]
