"""Two-turn dialogues for the duplex: what the listener hears after an exchange, from records already built.

In the duplex engine the listener's prompt is the history (a question and the reply, or the part of the reply the
user heard before speaking again) followed by the new utterance (`vita.duplex.turn_taking.prompt`). Single-turn
training data never shows the LLM that context, and a model tuned on it alone can learn to answer anything said after
its own reply (measured: a stage-3 run answered 6 of 6 sentences addressed to someone else once one exchange was in
the history, while it rejected them alone). Each record here is

    human: a spoken or typed question   gpt: its answer, whole or cut after a few words (context: not supervised)
    human: <audio>                      gpt: "<2>" for chatter, noise, speech addressed to someone else;
                                             the answer ("<1>" / "<3>") for another real question

Half are negatives, half queries, so the history itself says nothing about the state. Made from the records of
`instruct.json` and `addressed.json` of the same split (no new media); seeded and deterministic.

`followups` makes the interruptions a listener must answer, said in a training voice after an exchange: a question with
a lead ("Hang on, which city ...?") -> its answer, or a request to repeat -> the previous answer again; `eval_followups`
the held-out counterpart (eval/followup.jsonl). Phrasings of our own, not the duplex benchmark's.

`eval_dialogues` makes the held-out counterpart of the dialogues, `vita eval` cases with a `history`
(eval/dialogue.jsonl): after a chat question of the eval split and its answer, speech addressed to someone by a name
neither training nor the duplex benchmark uses, chatter, noise, or another question.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vita.datasets.mini.spoken_text import EVAL_ADDRESSEES, addressed_text

EVAL_KINDS = ("addressed", "query", "chatter", "addressed", "query", "noise")  # the eval cases' cycle
LEADS = ("Wait,", "Hang on,", "Sorry,", "Actually,", "Oh,", "Quick question,", "By the way,", "Hmm,", "Okay, but",
         "Um,", "Hey,", "Listen,")
REPEATS = ("Could you repeat that?", "Say that one more time, please.", "Sorry, I missed that. What did you say?",
           "Pardon?", "What was that again?", "Can you go over that again?")
EVAL_LEADS = ("Hold up,", "Excuse me,", "Right, and", "Oh wait,")  # held out from training's
EVAL_REPEATS = ("Come again?", "I didn't catch that, could you say it once more?")


def _is_negative(r: dict[str, Any]) -> bool:
    return r.get("inserted_id") == 1 and r.get("audio") is not None and len(r["conversations"]) == 2


def _is_question(r: dict[str, Any]) -> bool:
    """A question without an image or video whose answer is a sentence (chat, spoken or typed; noisy spoken queries)."""
    return (r.get("set") in ("mini_chat", "mini_negatives") and r.get("inserted_id") is None
            and "image" not in r and "video" not in r and len(r["conversations"]) == 2)


def _audio(r: dict[str, Any]) -> list[str]:
    value = r.get("audio")
    return [] if value is None else value if isinstance(value, list) else [value]


def _cut(answer: str, rng: np.random.Generator) -> str:
    """The reply as heard: whole, or its first words (the user spoke while it played)."""
    words = answer.split()
    if len(words) < 3 or rng.random() < 0.5:
        return answer
    return " ".join(words[: int(rng.integers(1, len(words)))])


def dialogues(records: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` two-turn dialogues (half ending in "<2>") from `records` (instruct + addressed of one split)."""
    questions = [r for r in records if _is_question(r)]
    negatives = [r for r in records if _is_negative(r)]
    if n and (len(questions) < 2 or not negatives):
        raise ValueError(f"dialogues need at least 2 questions and 1 negative, got {len(questions)} and "
                         f"{len(negatives)}")
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, 7, i])
        first = questions[int(rng.integers(len(questions)))]
        negative = i % 2 == 0
        pool = negatives if negative else questions
        last = pool[int(rng.integers(len(pool)))]
        while last is first:
            last = pool[int(rng.integers(len(pool)))]
        q1, a1 = (t["value"] for t in first["conversations"])
        q2, a2 = (t["value"] for t in last["conversations"])
        record: dict[str, Any] = {
            "set": "mini_dialogue", "id": f"dg{i}", "kind": "negative" if negative else "query",
            "of": [first["id"], last["id"]],
            "conversations": [{"from": "human", "value": q1}, {"from": "gpt", "value": _cut(a1, rng)},
                              {"from": "human", "value": q2}, {"from": "gpt", "value": a2}],
            "context_id": 1,
        }
        audio = _audio(first) + _audio(last)
        if audio:
            record["audio"] = audio
        if negative:
            record["inserted_id"] = 3
        out.append(record)
    return out


def _history(first: dict[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
    """An eval chat case and its answer ("The answer is 3."), whole or cut as heard, as a manifest `history`."""
    spoken = "audio" in first
    reply = "The answer " + str(first["answer"]) + "."
    return [{"role": "user", **({"audio": first["audio"]} if spoken else {"text": first["text"]})},
            {"role": "assistant", "text": ("<1>" if spoken else "<3>") + _cut(reply, rng)}]


def eval_dialogues(chat: list[dict[str, Any]], negatives: list[dict[str, Any]], say: Callable[[int, str], str],
                   n: int, seed: int, statements: tuple[str, ...], questions: tuple[str, ...]) -> list[dict[str, Any]]:
    """`n` eval cases with a one-exchange history from the eval split's chat and negatives cases; `say(i, text)`
    speaks the addressed ones in an eval voice and returns the clip's path."""
    pools = {k: [c for c in negatives if c.get("group") == f"negatives/{k}"] for k in ("chatter", "noise", "query")}
    pools["query"] = pools["query"] + chat
    out = []
    for i in range(n if chat else 0):
        rng = np.random.default_rng([seed, 8, i])
        first = chat[int(rng.integers(len(chat)))]
        kind = EVAL_KINDS[i % len(EVAL_KINDS)]
        pool = [c for c in pools.get(kind, []) if c is not first]
        if kind != "addressed" and not pool:
            kind = "addressed"
        case: dict[str, Any] = {"id": f"dialogue-{i}", "group": f"dialogue/{kind}", "history": _history(first, rng)}
        if kind == "addressed":
            text = addressed_text(rng, statements, questions, EVAL_ADDRESSEES)
            case.update(audio=say(i, text), expect_state="<2>")
        else:
            other = pool[int(rng.integers(len(pool)))]
            case.update({k: other[k] for k in ("audio", "text", "answer", "match", "expect_state") if k in other})
        out.append(case)
    return out


def _text(r: dict[str, Any]) -> str | None:
    """What a question record or case asks, in words (a spoken one's transcript)."""
    q = r.get("question") or r.get("text")
    if q:
        return q
    first = r.get("conversations", [{}])[0].get("value", "")
    return first if first and "<" not in first else None


def _lead(lead: str, question: str) -> str:
    return f"{lead} {question[0].lower() + question[1:]}"


def followups(records: list[dict[str, Any]], say: Callable[[int, str], str], n: int,
              seed: int) -> list[dict[str, Any]]:
    """`n` interruptions to answer after an exchange (two in three a question with a lead, one a repeat request),
    each said by `say(i, text)` (returns the clip's path)."""
    questions = [r for r in records if _is_question(r)]
    sayable = [r for r in questions if _text(r)]
    out = []
    for i in range(n if sayable else 0):
        rng = np.random.default_rng([seed, 9, i])
        first = questions[int(rng.integers(len(questions)))]
        q1, a1 = (t["value"] for t in first["conversations"])
        if i % 3 == 2:
            kind, other, answer = "repeat", first, a1
            text = REPEATS[int(rng.integers(len(REPEATS)))]
        else:
            other = sayable[int(rng.integers(len(sayable)))]
            kind, answer = "question", other["conversations"][1]["value"]
            text = _lead(LEADS[int(rng.integers(len(LEADS)))], str(_text(other)))
        out.append({"set": "mini_followup", "id": f"fu{i}", "kind": kind, "of": [first["id"], other["id"]],
                    "text": text, "audio": _audio(first) + [say(i, text)], "context_id": 1,
                    "conversations": [{"from": "human", "value": q1}, {"from": "gpt", "value": _cut(a1, rng)},
                                      {"from": "human", "value": "<audio>"}, {"from": "gpt", "value": answer}]})
    return out


def eval_followups(chat: list[dict[str, Any]], say: Callable[[int, str], str], n: int,
                   seed: int) -> list[dict[str, Any]]:
    """`n` eval cases: after an eval chat exchange, a held-out lead + another eval chat question (its answer), or a
    held-out repeat request (the first answer again), said by `say`."""
    typed = [c for c in chat if c.get("text")]
    out = []
    for i in range(n if len(typed) > 1 else 0):
        rng = np.random.default_rng([seed, 10, i])
        first = chat[int(rng.integers(len(chat)))]
        history = _history(first, rng)
        if i % 3 == 2:
            kind, other = "repeat", first
            text = EVAL_REPEATS[int(rng.integers(len(EVAL_REPEATS)))]
        else:
            kind, other = "question", typed[int(rng.integers(len(typed)))]
            while other is first:
                other = typed[int(rng.integers(len(typed)))]
            text = _lead(EVAL_LEADS[int(rng.integers(len(EVAL_LEADS)))], other["text"])
        out.append({"id": f"followup-{i}", "group": f"followup/{kind}", "history": history, "audio": say(i, text),
                    "expect_state": "<1>", "answer": other["answer"], "match": other.get("match", "exact")})
    return out
