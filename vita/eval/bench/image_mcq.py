"""Image multiple choice from VLMEvalKit TSVs, plain accuracy: MMStar and AI2D (MMBench adds circular
evaluation on top, `vita.eval.bench.mmbench`).

Format: VLMEvalKit's released TSVs `MMStar.tsv`, `AI2D_TEST.tsv` (see `vita.eval.bench.tsv`): columns index,
question, A, B, C, D (as many option columns as the question has; empty cells are absent options), answer
(a letter), image (base64), and optionally hint, category, l2-category (MMStar: the 6 core capabilities and
18 axes). Format and prompt from open-compass/VLMEvalKit `vlmeval/dataset/image_mcq.py` (ImageMCQDataset.
build_prompt); scoring from `vlmeval/dataset/utils/multiple_choice.py` (mcq_vanilla_eval, report_acc) in its
exact-matching mode (no GPT judge).

Prompt (the image(s) first, then this text):
    [Hint: {hint}\\n]Question: {question}\\nOptions:\\nA. {A}\\nB. {B}\\n...Please select the correct answer from the
    options above. \\n
Score: accuracy = questions whose reply `extract.infer_choice` reads as the answer letter / questions, overall
and per category / l2-category (VLMEvalKit report_acc).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from pathlib import Path

from vita.errors import EvalError
from vita.eval.bench.core import Benchmark, Figure, Item, Options, Score, Table, check_data, pct
from vita.eval.bench.extract import infer_choice
from vita.eval.bench.tsv import read_tsv, row_images

PROMPT_DOC = ("[Hint: {hint}\\n]Question: {question}\\nOptions:\\nA. {A}\\nB. {B}\\n...\n"
              "Please select the correct answer from the options above. \\n   (after the image)")


def options_of(row: Mapping[str, str]) -> dict[str, str]:
    return {c: row[c] for c in string.ascii_uppercase if c in row and row[c].strip() and row[c] != "nan"}


def mcq_prompt(question: str, options: Mapping[str, str], hint: str = "") -> str:
    text = f"Hint: {hint}\n" if hint.strip() and hint != "nan" else ""
    text += f"Question: {question}\n"
    if options:
        text += "Options:\n" + "".join(f"{k}. {v}\n" for k, v in options.items())
        text += "Please select the correct answer from the options above. \n"
    return text


def l2(row: Mapping[str, str]) -> str:
    return row.get("l2-category") or row.get("l2_category") or ""


def accuracy_tables(groups: dict[str, dict[str, list[bool]]]) -> tuple[dict, list[Table]]:
    """Per-group accuracies ({"category": {name: %}}) and their tables, as VLMEvalKit's report_acc lists them."""
    metrics, tables = {}, []
    for group, hits in groups.items():
        named = {k: v for k, v in sorted(hits.items()) if k}
        if not named:
            continue
        metrics[group] = {k: pct(sum(v), len(v)) for k, v in named.items()}
        tables.append(Table(f"By {group}", [group, "n", "accuracy"],
                            [[k, len(v), f"{pct(sum(v), len(v)):.2f}%"] for k, v in named.items()]))
    return metrics, tables


class ImageMCQ(Benchmark):
    """A plain (non-circular) VLMEvalKit image MCQ TSV; subclasses name the benchmark."""

    max_new_tokens = 32
    prompt_doc = PROMPT_DOC

    def rows(self, data: Path) -> tuple[Path, list[dict[str, str]]]:
        check_data(data, f"{self.title} TSV")
        if data.is_dir():
            tsvs = sorted(data.glob("*.tsv"))
            if len(tsvs) != 1:
                raise EvalError(f"{data}: expected exactly one .tsv file, found {len(tsvs)}")
            data = tsvs[0]
        rows = read_tsv(data, ("index", "question", "answer"))
        missing = [r["index"] for r in rows if not r["answer"].strip()]
        if missing:
            raise EvalError(f"{data}: {len(missing)} row(s) without an answer (first index {missing[0]}); a test "
                            "split without public answers cannot be scored here")
        return data, rows

    def load(self, data: Path, options: Options) -> list[Item]:
        path, rows = self.rows(data)
        images = row_images(path, rows)
        items = []
        for r in rows:
            opts = options_of(r)
            if r["answer"].strip() not in opts:
                raise EvalError(f"{path}: index {r['index']}: answer {r['answer']!r} is not one of its options")
            items.append(Item(r["index"], mcq_prompt(r["question"], opts, r.get("hint", "")), images[r["index"]],
                              meta={"options": opts, "answer": r["answer"].strip(), "category": r.get("category", ""),
                                    "l2-category": l2(r)}))
        return items

    def score(self, items: Sequence[Item], replies: Mapping[str, str]) -> Score:
        rows, groups = [], {"category": {}, "l2-category": {}}  # type: ignore[var-annotated]
        for it in items:
            picked = infer_choice(replies.get(it.id, ""), it.meta["options"])
            ok = picked == it.meta["answer"]
            for g in groups:
                groups[g].setdefault(it.meta[g], []).append(ok)
            rows.append({"id": it.id, "expected": it.meta["answer"], "extracted": picked, "correct": ok,
                         "reply": replies.get(it.id, "")})
        n_ok = sum(r["correct"] for r in rows)
        metrics, tables = accuracy_tables(groups)
        acc = pct(n_ok, len(rows))
        return Score([Figure("accuracy", self.name, acc, support=f"{n_ok} of {len(rows)} questions")],
                     {"accuracy": acc, "correct": n_ok, "n": len(rows), **metrics}, tables, rows)


class MMStar(ImageMCQ):
    name, title = "mmstar", "MMStar (1,500 vision-indispensable questions)"
    source = "VLMEvalKit MMStar.tsv (image_mcq.py prompt, exact-matching vanilla accuracy); vita.eval.bench.image_mcq"


class AI2D(ImageMCQ):
    name, title = "ai2d", "AI2D (test, diagrams)"
    source = ("VLMEvalKit AI2D_TEST.tsv (image_mcq.py prompt, exact-matching vanilla accuracy); "
              "vita.eval.bench.image_mcq")
