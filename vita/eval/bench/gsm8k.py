"""GSM8K: grade-school maths word problems, scored by exact match of the final number.

Format (openai/grade-school-math `grade_school_math/data/test.jsonl`, also the HF openai/gsm8k export): one JSON
object per line, {"question": ..., "answer": "...worked solution...\\n#### 72"}; the reference is the number
after "####" (commas removed). `--data` is test.jsonl, or the folder holding it; k-shot examples are the first k
lines of train.jsonl in the same folder, shown with their full worked solutions (as in the chain-of-thought
few-shot setting lm-evaluation-harness uses).

Prompt:
    [k x: Question: {question}\\nAnswer: {worked solution ending in "#### N"}\\n\\n]
    Question: {question}\\nAnswer:
Score: a reply is right when its LAST number (commas and "$" removed; "18.00" == "18") equals the reference,
the "flexible extract" rule; the "#### N" form is not required of the reply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from vita.errors import EvalError
from vita.eval.bench.core import Benchmark, Figure, Item, Options, Score, check_data, pct
from vita.eval.bench.extract import canonical_number, last_number


def _read(path: Path) -> list[dict]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalError(f"{path}:{n}: broken JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or "question" not in rec or "####" not in str(rec.get("answer", "")):
            raise EvalError(f"{path}:{n}: expected {{'question', 'answer': '... #### N'}}")
        rec["_line"] = n
        out.append(rec)
    return out


def reference(answer: str) -> str:
    """The number after "####" in a GSM8K answer, canonical."""
    value = canonical_number(answer.split("####")[-1].strip())
    if value is None:
        raise EvalError(f"GSM8K answer has no number after '####': {answer[-40:]!r}")
    return value


class GSM8K(Benchmark):
    name, title, max_new_tokens = "gsm8k", "GSM8K (final-number exact match)", 256
    source = "openai/grade-school-math JSONL ('#### N' references); see vita.eval.bench.gsm8k"
    prompt_doc = "[k shots: Question: {question}\\nAnswer: {solution} #### {N}\\n\\n]\nQuestion: {question}\nAnswer:"

    def load(self, data: Path, options: Options) -> list[Item]:
        check_data(data, "GSM8K data")
        path = data / "test.jsonl" if data.is_dir() else data
        rows = _read(check_data(path, "GSM8K test.jsonl"))
        shots = ""
        if options.shots:
            train = path.parent / "train.jsonl"
            examples = _read(check_data(train, f"{options.shots}-shot examples file"))[: options.shots]
            if len(examples) < options.shots:
                raise EvalError(f"{train}: only {len(examples)} examples for {options.shots}-shot")
            shots = "".join(f"Question: {e['question']}\nAnswer: {e['answer']}\n\n" for e in examples)
        return [Item(str(r.get("id", r["_line"])), f"{shots}Question: {r['question']}\nAnswer:",
                     meta={"answer": reference(r["answer"])}) for r in rows]

    def score(self, items: Sequence[Item], replies: Mapping[str, str]) -> Score:
        rows = []
        for it in items:
            got = last_number(replies.get(it.id, ""))
            rows.append({"id": it.id, "expected": it.meta["answer"], "extracted": got,
                         "correct": got == it.meta["answer"], "reply": replies.get(it.id, "")})
        ok = sum(r["correct"] for r in rows)
        acc = pct(ok, len(rows))
        return Score([Figure("accuracy", "gsm8k", acc, support=f"{ok} of {len(rows)} problems")],
                     {"accuracy": acc, "correct": ok, "n": len(rows)}, [], rows)
