"""OCRBench: 1,000 OCR questions in 10 task types; the score is the number answered right (max 1000).

Formats accepted:
  - VLMEvalKit's released `OCRBench.tsv` (`vita.eval.bench.tsv`): columns index, image (base64), question,
    answer (a Python list literal of accepted answers, e.g. "['STOP', 'stop sign']"), category (the task type).
  - The original release (Yuliang-Liu/MultimodalOCR): `OCRBench.json`, a list of {"id", "image_path" (relative
    to the JSON's folder, or to an `OCRBench_Images/` folder beside it), "question", "answers" (a string or a
    list), "type", "dataset_name"}.
Prompt: the image, then the question as released.
Score (OCRBench's scorer, as VLMEvalKit OCRBench.evaluate): an item is right when one accepted answer is a
substring of the reply: for "Handwritten Mathematical Expression Recognition" after deleting every space and
newline from both, otherwise after lower-casing, stripping and turning newlines into spaces. Reported: the
count per task type, the five groups (Text Recognition = the six recognition types together, Scene Text-centric
VQA, Doc-oriented VQA, Key Information Extraction, Handwritten Mathematical Expression Recognition) and the Final
Score = all right answers (the paper's 678 is out of 1000).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from vita.errors import EvalError
from vita.eval.bench.core import Benchmark, Figure, Item, Options, Score, Table, release_file
from vita.eval.bench.tsv import read_tsv, row_images

RECOGNITION = ("Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
               "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition")
OTHERS = ("Scene Text-centric VQA", "Doc-oriented VQA", "Key Information Extraction",
          "Handwritten Mathematical Expression Recognition")
HME = "Handwritten Mathematical Expression Recognition"


def ocr_correct(reply: str, answers: Sequence[str], category: str) -> bool:
    for answer in answers:
        if category == HME:
            a = answer.strip().replace("\n", " ").replace(" ", "")
            p = reply.strip().replace("\n", " ").replace(" ", "")
        else:
            a = answer.lower().strip().replace("\n", " ")
            p = reply.lower().strip().replace("\n", " ")
        if a in p:
            return True
    return False


def _answers(raw: object, where: str) -> list[str]:
    if isinstance(raw, str) and raw.strip().startswith("["):
        try:
            raw = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            raise EvalError(f"{where}: answer cell is not a list literal: {raw[:60]!r}") from None
    values = raw if isinstance(raw, list) else [raw]
    if not values or not all(isinstance(v, (str, int, float)) for v in values):
        raise EvalError(f"{where}: no usable answers")
    return [str(v) for v in values]


class OCRBench(Benchmark):
    name, title, max_new_tokens = "ocrbench", "OCRBench (final score out of 1000)", 64
    source = ("VLMEvalKit OCRBench.tsv or the original OCRBench.json; OCRBench's substring scorer (VLMEvalKit "
              "OCRBench.evaluate); vita.eval.bench.ocrbench")
    prompt_doc = "<image>\\n{question as released}"

    def load(self, data: Path, options: Options) -> list[Item]:
        data = release_file(data, "OCRBench", "OCRBench.json")
        return self._json(data) if data.suffix == ".json" else self._tsv(data)

    def _tsv(self, path: Path) -> list[Item]:
        rows = read_tsv(path, ("index", "question", "answer", "category"))
        images = row_images(path, rows)
        return [Item(r["index"], r["question"], images[r["index"]],
                     meta={"answers": _answers(r["answer"], f"{path}: index {r['index']}"), "category": r["category"]})
                for r in rows]

    def _json(self, path: Path) -> list[Item]:
        records = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(records, list):
            raise EvalError(f"{path}: expected a JSON list of questions")
        items = []
        for n, rec in enumerate(records):
            where = f"{path}: item {n}"
            rel = Path(rec["image_path"])
            image = next((p for p in (path.parent / rel, path.parent / "OCRBench_Images" / rel) if p.is_file()), None)
            if image is None:
                raise EvalError(f"{where}: image not found: {rel}")
            items.append(Item(str(rec.get("id", n)), rec["question"], [image],
                              meta={"answers": _answers(rec["answers"], where), "category": rec["type"]}))
        return items

    def score(self, items: Sequence[Item], replies: Mapping[str, str]) -> Score:
        per = {c: 0 for c in RECOGNITION + OTHERS}
        rows = []
        for it in items:
            cat = it.meta["category"]
            if cat not in per:
                raise EvalError(f"OCRBench item {it.id!r}: unknown category {cat!r}")
            ok = ocr_correct(replies.get(it.id, ""), it.meta["answers"], cat)
            per[cat] += ok
            rows.append({"id": it.id, "category": cat, "answers": it.meta["answers"], "correct": ok,
                         "reply": replies.get(it.id, "")})
        groups = {"Text Recognition": sum(per[c] for c in RECOGNITION), **{c: per[c] for c in OTHERS}}
        final = sum(groups.values())
        counts = {c: sum(r["category"] == c for r in rows) for c in per}
        table = Table("By task type", ["task type", "right", "questions"],
                      [[c, per[c], counts[c]] for c in per if counts[c]])
        return Score([Figure("final score", "ocrbench", float(final), "points",
                             support=f"{final} right of {len(rows)} questions (max 1000 on the full set)")],
                     {"final_score": final, "final_score_norm": final / 10, "groups": groups, "by_type": per,
                      "n": len(rows)}, [table], rows)
