"""HallusionBench: yes/no questions on original and edited figures; question, figure and pair accuracies.

Formats accepted:
  - the original release (tianyi-lab/HallusionBench): `HallusionBench.json`, a list of {"category", "subcategory",
    "visual_input" ("0": asked without a figure), "set_id", "figure_id", "question_id", "question", "gt_answer"
    ("1" yes / "0" no), "filename" (the figure, relative to the JSON's folder, e.g. "./hallusion_bench/VD/
    illusion/0_0.png")}; figures and questions are keyed by category AND subcategory, as its own scorer does;
  - VLMEvalKit's released `HallusionBench.tsv` (`vita.eval.bench.tsv`): columns index, image (base64; empty
for the questions asked without a figure), question, answer (Yes/No), category (VD visual dependent / VS visual
supplement), l2-category (chart, table, map, OCR, illusion, math, figure, video, ...). Each index is an
underscore-joined id whose 4th, 5th and 6th fields are set_id, figure_id and question_id (VLMEvalKit
`utils/yorn.py` Hallusion_rating: `index.split('_')[3:6]`); explicit set_id / figure_id / question_id columns,
when present, are used instead. Figures and questions are keyed by l2-category (not category), as VLMEvalKit
does.
Prompt: the figure (if any), then the question as released (VLMEvalKit adds nothing for this benchmark).
Score (VLMEvalKit Hallusion_rating, exact matching with `extract.yes_no`):
    aAcc  right questions / questions;
    fAcc  figures with every question right, a figure being (l2-category, set_id, figure_id);
    qAcc  questions right on every figure they are asked about, a question being (l2-category, set_id,
          question_id);
all three per category and per l2-category too. The headline is their mean, the OpenVLM leaderboard's single
HallusionBench figure (the paper's 39.7 comes from that leaderboard's protocol) [the mean is the leaderboard's
convention; VLMEvalKit's function itself prints the three].
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from vita.errors import EvalError
from vita.eval.bench.core import Benchmark, Figure, Item, MediaRef, Options, Score, Table, pct, release_file
from vita.eval.bench.extract import yes_no
from vita.eval.bench.tsv import read_tsv, row_images


def _ids(row: Mapping[str, str], where: str) -> tuple[str, str, str]:
    if all(row.get(k, "").strip() for k in ("set_id", "figure_id", "question_id")):
        return row["set_id"].strip(), row["figure_id"].strip(), row["question_id"].strip()
    parts = row["index"].split("_")
    if len(parts) < 6:
        raise EvalError(f"{where}: index {row['index']!r} has no set/figure/question ids (fields 4-6 of '_'-split)")
    return parts[3], parts[4], parts[5]


def rates(rows: Sequence[Mapping]) -> dict[str, float | None]:
    figs: dict[tuple, list[bool]] = {}
    qs: dict[tuple, list[bool]] = {}
    for r in rows:
        figs.setdefault((r["key"], r["set"], r["figure"]), []).append(r["correct"])
        qs.setdefault((r["key"], r["set"], r["question"]), []).append(r["correct"])
    a = pct(sum(r["correct"] for r in rows), len(rows))
    f = pct(sum(all(v) for v in figs.values()), len(figs))
    q = pct(sum(all(v) for v in qs.values()), len(qs))
    mean = None if None in (a, f, q) else (a + f + q) / 3  # type: ignore[operator]
    return {"aAcc": a, "fAcc": f, "qAcc": q, "mean": mean}


class HallusionBench(Benchmark):
    name, title, max_new_tokens = "hallusionbench", "HallusionBench (aAcc / fAcc / qAcc)", 32
    source = ("HallusionBench.json (original) or VLMEvalKit HallusionBench.tsv; Hallusion_rating (exact matching); "
              "vita.eval.bench.hallusion")
    prompt_doc = "[<image>\\n]{question as released}"

    def load(self, data: Path, options: Options) -> list[Item]:
        data = release_file(data, "HallusionBench", "HallusionBench.json")
        return self._json(data) if data.suffix == ".json" else self._tsv(data)

    def _json(self, path: Path) -> list[Item]:
        records = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(records, list):
            raise EvalError(f"{path}: expected a JSON list of questions")
        items = []
        for n, rec in enumerate(records):
            where = f"{path}: item {n}"
            try:
                cat, sub, s, f, q = (str(rec[k]) for k in ("category", "subcategory", "set_id", "figure_id",
                                                             "question_id"))
                gt = str(rec["gt_answer"]).strip()
            except KeyError as exc:
                raise EvalError(f"{where}: missing {exc}") from None
            if gt not in ("0", "1"):
                raise EvalError(f"{where}: gt_answer must be '1' (yes) or '0' (no), got {gt!r}")
            images: list[MediaRef] = []
            if str(rec.get("visual_input", "1")) != "0" and rec.get("filename"):
                image = path.parent / rec["filename"]
                if not image.is_file():
                    raise EvalError(f"{where}: figure not found: {image}")
                images = [image]
            items.append(Item(f"{cat}_{sub}_{s}_{f}_{q}", rec["question"], images,
                              meta={"answer": "Yes" if gt == "1" else "No", "category": cat, "l2": sub,
                                    "key": f"{cat}_{sub}", "set": s, "figure": f, "question": q}))
        return items

    def _tsv(self, path: Path) -> list[Item]:
        rows = read_tsv(path, ("index", "question", "answer", "category"))
        images = row_images(path, rows)
        items = []
        for r in rows:
            where = f"{path}: index {r['index']}"
            answer = r["answer"].strip().capitalize()
            if answer not in ("Yes", "No"):
                raise EvalError(f"{where}: answer must be Yes or No, got {r['answer']!r}")
            s, f, q = _ids(r, where)
            sub = r.get("l2-category") or r.get("subcategory", "")
            items.append(Item(r["index"], r["question"], images[r["index"]],
                              meta={"answer": answer, "category": r["category"], "l2": sub, "key": sub, "set": s,
                                    "figure": f, "question": q}))
        return items

    def score(self, items: Sequence[Item], replies: Mapping[str, str]) -> Score:
        rows = []
        for it in items:
            got = yes_no(replies.get(it.id, ""))
            rows.append({"id": it.id, "category": it.meta["category"], "l2": it.meta["l2"], "key": it.meta["key"],
                         "set": it.meta["set"],
                         "figure": it.meta["figure"], "question": it.meta["question"], "expected": it.meta["answer"],
                         "extracted": got, "correct": got == it.meta["answer"], "reply": replies.get(it.id, "")})
        overall = rates(rows)
        splits = {"Overall": overall}
        for key in ("category", "l2"):
            for value in sorted({r[key] for r in rows}):
                splits[value] = rates([r for r in rows if r[key] == value])

        def f(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.2f}"

        table = Table("By split (VLMEvalKit Hallusion_rating)", ["split", "aAcc", "fAcc", "qAcc", "mean"],
                      [[k, f(v["aAcc"]), f(v["fAcc"]), f(v["qAcc"]), f(v["mean"])] for k, v in splits.items()])
        n_ok = sum(r["correct"] for r in rows)
        return Score([Figure("mean of aAcc, fAcc, qAcc", "hallusionbench", overall["mean"],
                             support=f"aAcc {f(overall['aAcc'])}, fAcc {f(overall['fAcc'])}, qAcc "
                                     f"{f(overall['qAcc'])}; {n_ok} of {len(rows)} questions")],
                     {"splits": splits}, [table], rows)
