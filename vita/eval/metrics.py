"""Scoring: per-case correctness (state, answer, choice, transcript) and the aggregate numbers of a run.

Definitions (every rate is None when no case applies, never 0 by default):
  state_accuracy   cases whose predicted state token equals expect_state / all cases; no state token = wrong.
  confusion        expected {query, not_query} x predicted {query, not_query, none}; query = "<1>" or "<3>",
                   not_query = "<2>", none = the reply had no state token.
  rejection_rate   not-query cases answered "<2>" / not-query cases.
  miss_rate        query cases answered "<2>" / query cases (a reply with no state is not a miss).
  answer_accuracy  correct / cases with an `answer` (open and multiple-choice together); `exact_match` and
                   `choice_accuracy` split it. Open: `normalize_answer(reply) == normalize_answer(answer)`, or with
                   match "contains", the answer's normalized words appear contiguously in the reply's.
                   Choices: the reply names exactly one choice (see `match_choice`) and it is the answer.
  wer / cer        corpus rates: total Levenshtein edits / total reference units over the transcript cases whose
                   reference has no CJK character (wer: units are words) or has one (cer: every CJK character is
                   a unit; Latin words inside stay words). Units come from `normalize.units`.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from vita.errors import EvalError
from vita.eval.normalize import answer_units, has_cjk, normalize_answer, units
from vita.tokens import STATE_NOT_QUERY, STATE_QUERY_AUDIO, STATE_QUERY_TEXT

QUERY_STATES = (STATE_QUERY_AUDIO, STATE_QUERY_TEXT)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def levenshtein(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Minimum number of substitutions, deletions and insertions turning `ref` into `hyp`."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def edit_counts(reference: str, hypothesis: str) -> tuple[int, int, str]:
    """(edits, reference units, "wer" | "cer") of one transcript pair."""
    ref, hyp = units(reference), units(hypothesis)
    return levenshtein(ref, hyp), len(ref), "cer" if has_cjk(reference) else "wer"


def error_rate(reference: str, hypothesis: str) -> float:
    """WER (or CER for CJK references) of one pair; the reference must have at least one unit."""
    edits, n, _ = edit_counts(reference, hypothesis)
    if n == 0:
        raise EvalError(f"reference {reference!r} has no words after normalization")
    return edits / n


def _spans(needle: list[str], hay: list[str]) -> list[tuple[int, int]]:
    k = len(needle)
    return [(i, i + k) for i in range(len(hay) - k + 1) if k and hay[i : i + k] == needle]


def _letter_named(reply: str, letter: str) -> bool:
    bare = re.sub(r"[\W_]+", "", reply)
    if bare.upper() == letter:  # the whole reply is the letter: "B", "b.", "(C)"
        return True
    for m in re.finditer(rf"(?<![A-Za-z0-9]){letter}(?![A-Za-z0-9])", reply):
        if letter in "AI" and re.match(r"\s+[a-z]", reply[m.end() :]):
            continue  # "A cat ...", "I think ...": the article / pronoun, not the option letter
        return True
    return False


def match_choice(reply: str, choices: Sequence[str]) -> list[int]:
    """Indices of the choices a reply names (sorted). The reply names choice i when
    - its letter (A, B, ... by position) stands alone in the reply as a capital letter (not "A"/"I" followed by a
      space and a lowercase word), or the whole reply minus punctuation is that letter in either case; or
    - the choice's normalized words (`answer_units`) appear contiguously in the reply's normalized words, at a
      place not inside an occurrence of a longer named choice ("dark red" does not also name "red").
    The reply picks a choice only when exactly one index is named."""
    hay = answer_units(reply)
    spans = {i: _spans(answer_units(c), hay) for i, c in enumerate(choices)}
    named: set[int] = set()
    for i, own in spans.items():
        others = [s for j, ss in spans.items() if j != i for s in ss]
        if any(not any(o[0] <= a and b <= o[1] and o[1] - o[0] > b - a for o in others) for a, b in own):
            named.add(i)
    for i in range(min(len(choices), len(LETTERS))):
        if _letter_named(reply, LETTERS[i]):
            named.add(i)
    return sorted(named)


def is_query(state: str | None) -> bool:
    return state in QUERY_STATES


@dataclass
class CaseResult:
    id: str
    line: int
    modalities: list[str]
    group: str | None
    expected_state: str
    predicted_state: str | None
    text: str
    latency_ms: float = 0.0
    n_tokens: int = 0
    finish_reason: str = ""
    answer: str | None = None
    choices: list[str] | None = None
    answer_index: int | None = None  # the answer's position in `choices`
    transcript: str | None = None
    state_correct: bool = False
    answer_correct: bool | None = None  # None: the case has no answer
    named_choices: list[str] = field(default_factory=list)
    predicted_choice: str | None = None
    edits: int | None = None
    ref_units: int | None = None
    rate_kind: str | None = None  # "wer" | "cer" | None
    error_rate: float | None = None
    match: str = "exact"  # "exact" | "contains" (see the module docstring)

    def score(self) -> CaseResult:
        self.state_correct = self.predicted_state == self.expected_state
        if self.choices is not None:
            named = match_choice(self.text, self.choices)
            self.named_choices = [self.choices[i] for i in named]
            self.predicted_choice = self.choices[named[0]] if len(named) == 1 else None
            self.answer_correct = len(named) == 1 and named[0] == self.answer_index
        elif self.answer is not None and self.match == "contains":
            self.answer_correct = bool(_spans(answer_units(self.answer), answer_units(self.text)))
        elif self.answer is not None:
            self.answer_correct = normalize_answer(self.text) == normalize_answer(self.answer)
        if self.transcript is not None:
            self.edits, self.ref_units, self.rate_kind = edit_counts(self.transcript, self.text)
            self.error_rate = self.edits / self.ref_units if self.ref_units else None
        return self


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def summarize(results: Sequence[CaseResult]) -> dict:
    """The aggregate metrics of `results` (keys as in the module docstring, plus their supports)."""
    n = len(results)
    exp_q = [r for r in results if is_query(r.expected_state)]
    exp_nq = [r for r in results if r.expected_state == STATE_NOT_QUERY]

    def row(rs: list[CaseResult]) -> dict[str, int]:
        return {
            "query": sum(is_query(r.predicted_state) for r in rs),
            "not_query": sum(r.predicted_state == STATE_NOT_QUERY for r in rs),
            "none": sum(r.predicted_state is None for r in rs),
        }

    opened = [r for r in results if r.answer_correct is not None and r.choices is None]
    chosen = [r for r in results if r.answer_correct is not None and r.choices is not None]
    rates = {}
    for kind in ("wer", "cer"):
        rs = [r for r in results if r.rate_kind == kind]
        edits, ref = sum(r.edits or 0 for r in rs), sum(r.ref_units or 0 for r in rs)
        rates[kind] = (_rate(edits, ref), {"cases": len(rs), "edits": edits, "ref_units": ref})
    latencies = [r.latency_ms for r in results]
    return {
        "n": n,
        "state_accuracy": _rate(sum(r.state_correct for r in results), n),
        "rejection_rate": _rate(row(exp_nq)["not_query"], len(exp_nq)),
        "miss_rate": _rate(row(exp_q)["not_query"], len(exp_q)),
        "answer_accuracy": _rate(sum(bool(r.answer_correct) for r in opened + chosen), len(opened) + len(chosen)),
        "exact_match": _rate(sum(bool(r.answer_correct) for r in opened), len(opened)),
        "choice_accuracy": _rate(sum(bool(r.answer_correct) for r in chosen), len(chosen)),
        "wer": rates["wer"][0],
        "cer": rates["cer"][0],
        "confusion": {"query": row(exp_q), "not_query": row(exp_nq)},
        "no_state": [r.id for r in results if r.predicted_state is None],
        "support": {
            "query": len(exp_q), "not_query": len(exp_nq), "answer": len(opened) + len(chosen),
            "exact_match": len(opened), "choices": len(chosen), "wer": rates["wer"][1], "cer": rates["cer"][1],
        },
        "latency_ms": {
            "mean": statistics.fmean(latencies) if latencies else None,
            "median": statistics.median(latencies) if latencies else None,
            "max": max(latencies) if latencies else None,
        },
    }
