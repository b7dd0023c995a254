"""Described-scene probe: the prompt holds the caption and the question, a reply is right when it says the answer as
a word, draws are held-out and reproducible, and the tool refuses unknown families."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vita.cli.tools import main as tools_main
from vita.datasets.mini.images import make_image
from vita.eval.described import SUFFIX, _right, measure, report


@dataclass
class _Reply:
    text: str


class _Says:
    """A stand-in model that always says `word` and records its prompts."""

    def __init__(self, word: str) -> None:
        self.word, self.prompts = word, []

    def generate(self, text: str, max_new_tokens: int = 8) -> _Reply:
        self.prompts.append(text)
        return _Reply(f"The answer is {self.word}.")


def test_a_reply_is_right_when_it_says_the_answer_as_a_word() -> None:
    assert _right("red", "The circle is red.") and _right("3", "3") and _right("left", "LEFT")
    assert not _right("red", "reddish") and not _right("3", "13") and not _right("left", "")


def test_measure_scores_against_the_drawn_answers() -> None:
    fake = _Says("red")
    res = measure(fake, ["colour"], n=12, seed=5)["colour"]
    rng = np.random.default_rng([5, 0])
    items = [make_image("colour", rng, held_out=True) for _ in range(12)]
    assert fake.prompts == [f"{it.caption} {it.question}{SUFFIX}" for it in items]
    assert res["right"] == sum(it.answer == "red" for it in items) and res["n"] == 12
    assert 0 < res["right"] < 12  # the draws vary: a constant reply cannot be always right
    assert measure(_Says("red"), ["colour"], n=12, seed=5)["colour"]["right"] == res["right"]
    assert "| colour | " in report("fake", {"colour": res})


def test_tool_refuses_unknown_families(capsys) -> None:
    assert tools_main(["described", "--families", "colour,weather"]) == 2
    assert "unknown families ['weather']" in capsys.readouterr().err
