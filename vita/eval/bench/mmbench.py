"""MMBench with circular evaluation (CircularEval): a question counts only if every rotation of its options is
answered right.

Format: VLMEvalKit's released `MMBench_DEV_EN.tsv` (and _CN, _V11): columns index, question, hint, A, B, C, D,
answer, category, l2-category, image (base64, or the index of the row whose image it shares), split, source.
The released dev TSVs already hold the circular copies: a copy of question q with its options rotated has index
q + k * 1,000,000 (k = 1, 2, ...), so a question's group is `index % 1_000_000` (VLMEvalKit `utils/
multiple_choice.py` mcq_circular_eval, `g_index = index % 1e6`). A TSV without copies (every index below
1,000,000) is expanded here the same way: for n options, copies k = 1..n-1 put the option that was at letter
position (j + k) mod n at position j, and move the answer letter with it; copy k gets index q + k * 1,000,000.

Prompt: as `vita.eval.bench.image_mcq` (VLMEvalKit ImageMCQDataset.build_prompt), for each copy:
    [Hint: {hint}\\n]Question: {question}\\nOptions:\\nA. {A}\\n...Please select the correct answer from the options
    above. \\n
Score (VLMEvalKit, exact-matching mode): a group is a hit when `extract.infer_choice` reads the right letter
from the reply to every copy; accuracy = hits / questions (the rows whose index equals their group), overall
and per category / l2-category of that main row. The plain accuracy of the main rows alone ("vanilla") is
reported beside it, for reference only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from vita.errors import EvalError
from vita.eval.bench.core import Figure, Item, Options, Score, pct
from vita.eval.bench.extract import infer_choice
from vita.eval.bench.image_mcq import ImageMCQ, accuracy_tables, l2, mcq_prompt, options_of
from vita.eval.bench.tsv import row_images

COPY = 1_000_000


def rotate(options: Mapping[str, str], answer: str, k: int) -> tuple[dict[str, str], str]:
    """Options rotated by k (position j gets the option from position (j + k) mod n) and the moved answer."""
    letters = list(options)
    n = len(letters)
    texts = [options[c] for c in letters]
    rotated = {letters[j]: texts[(j + k) % n] for j in range(n)}
    return rotated, letters[(letters.index(answer) - k) % n]


class MMBench(ImageMCQ):
    name, title = "mmbench", "MMBench (dev, circular evaluation)"
    source = ("VLMEvalKit MMBench_DEV_EN.tsv (circular copies at index + k*1e6; image_mcq.py prompt; "
              "mcq_circular_eval, exact matching); vita.eval.bench.mmbench")

    def load(self, data: Path, options: Options) -> list[Item]:
        path, rows = self.rows(data)
        images = row_images(path, rows)
        try:
            indices = [int(float(r["index"])) for r in rows]
        except ValueError:
            raise EvalError(f"{path}: MMBench indices must be integers") from None
        has_copies = any(i >= COPY for i in indices)
        items = []
        for r, idx in zip(rows, indices, strict=True):
            opts = options_of(r)
            answer = r["answer"].strip()
            if answer not in opts:
                raise EvalError(f"{path}: index {idx}: answer {answer!r} is not one of its options")
            meta = {"group": idx % COPY, "category": r.get("category", ""), "l2-category": l2(r)}
            variants = [(idx, opts, answer)] if has_copies else [
                (idx + k * COPY, *rotate(opts, answer, k)) for k in range(len(opts))]
            for vid, vopts, vans in variants:
                items.append(Item(str(vid), mcq_prompt(r["question"], vopts, r.get("hint", "")), images[r["index"]],
                                  meta={**meta, "options": vopts, "answer": vans}))
        groups = {it.meta["group"] for it in items}
        mains = {int(it.id) for it in items if int(it.id) < COPY}
        if groups - mains:
            raise EvalError(f"{path}: circular copies without their main row (group {min(groups - mains)})")
        return items

    def score(self, items: Sequence[Item], replies: Mapping[str, str]) -> Score:
        by_group: dict[int, list[Item]] = {}
        for it in items:
            by_group.setdefault(it.meta["group"], []).append(it)
        rows, hits_by = [], {"category": {}, "l2-category": {}}  # type: ignore[var-annotated]
        vanilla = 0
        for g, members in sorted(by_group.items()):
            members.sort(key=lambda it: int(it.id))
            picks = [infer_choice(replies.get(it.id, ""), it.meta["options"]) for it in members]
            oks = [p == it.meta["answer"] for p, it in zip(picks, members, strict=True)]
            main = members[0]
            vanilla += oks[0]
            hit = all(oks)
            for key in hits_by:
                hits_by[key].setdefault(main.meta[key], []).append(hit)
            rows.append({"id": str(g), "copies": len(members), "expected": "".join(it.meta["answer"] for it in members),
                         "extracted": "".join(p or "-" for p in picks), "correct": hit,
                         "reply": replies.get(main.id, "")})
        n = len(rows)
        n_hit = sum(r["correct"] for r in rows)
        metrics, tables = accuracy_tables(hits_by)
        acc = pct(n_hit, n)
        return Score([Figure("circular accuracy", self.name, acc, support=f"{n_hit} of {n} questions, every "
                                                                          f"rotation right")],
                     {"circular_accuracy": acc, "hits": n_hit, "questions": n, "items": len(items),
                      "vanilla_accuracy": pct(vanilla, n), **metrics}, tables, rows)
