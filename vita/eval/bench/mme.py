"""MME: 14 yes/no subtasks, two questions per image; per subtask acc + acc+, summed into the official score.

Formats accepted:
  - VLMEvalKit's released `MME.tsv` (`vita.eval.bench.tsv`): columns index, image (base64, or the index of the
    row whose image it shares), question, answer (Yes/No), category, image_path (the pair key: the two questions
    about one image share it).
  - The official release folder `MME_Benchmark_release_version/` (BradyFU/Awesome-Multimodal-Large-Language-
    Models, Evaluation branch): one folder per subtask; each image `NAME.jpg|png` has a `NAME.txt` whose lines
    are `question<TAB>Yes|No`, beside it or, for artwork / celebrity / landmark / posters / scene, in
    `images/` and `questions_answers_YES_or_NO/`.
Prompt: the image, then the question exactly as released (it already ends "Please answer yes or no.").
Score (MME's eval_tool `calculation.py`, as VLMEvalKit's `MME_rating` computes it): the reply is read as Yes /
No / neither by `extract.yes_no` (VLMEvalKit's YOrN_Extraction; the official tool instead looks for "yes" / "no"
in the first 4 characters); per subtask, acc = 100 * right questions / questions and acc+ = 100 * images with
BOTH questions right / images, score = acc + acc+ (max 200); perception = the sum over existence, count,
position, color, posters, celebrity, scene, landmark, artwork, OCR (max 2000), cognition = commonsense_reasoning,
numerical_calculation, text_translation, code_reasoning (max 800); the headline is perception + cognition (max
2800; the paper's 2097.0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from vita.errors import EvalError
from vita.eval.bench.core import Benchmark, Figure, Item, Options, Score, Table, check_data, pct
from vita.eval.bench.extract import yes_no
from vita.eval.bench.tsv import read_tsv, row_images

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".JPG", ".PNG")


def _answer(raw: str, where: str) -> str:
    value = raw.strip().capitalize()
    if value not in ("Yes", "No"):
        raise EvalError(f"{where}: answer must be Yes or No, got {raw!r}")
    return value


class MME(Benchmark):
    name, title, max_new_tokens = "mme", "MME (perception + cognition, acc + acc+)", 16
    source = ("VLMEvalKit MME.tsv or the official MME_Benchmark_release_version folder; MME eval_tool scoring "
              "(acc + acc+ per subtask) as VLMEvalKit MME_rating; vita.eval.bench.mme")
    prompt_doc = "<image>\\n{question as released, ending 'Please answer yes or no.'}"

    def load(self, data: Path, options: Options) -> list[Item]:
        check_data(data, "MME data")
        tsv = data if data.is_file() else next(iter(sorted(data.glob("*.tsv"))), None)
        return self._tsv(tsv) if tsv is not None else self._folder(data)

    def _tsv(self, path: Path) -> list[Item]:
        rows = read_tsv(path, ("index", "question", "answer", "category"))
        images = row_images(path, rows)
        by_index = {r["index"]: r for r in rows}
        items = []
        for r in rows:
            cell = r.get("image", "").strip()
            pair = r.get("image_path") or (cell if 0 < len(cell) <= 64 else r["index"])
            pair = by_index.get(pair, {}).get("image_path") or pair
            items.append(Item(r["index"], r["question"], images[r["index"]],
                              meta={"answer": _answer(r["answer"], f"{path}: index {r['index']}"),
                                    "category": r["category"], "image": f"{r['category']}/{pair}"}))
        return items

    def _folder(self, root: Path) -> list[Item]:
        items = []
        for cat_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            qdir = cat_dir / "questions_answers_YES_or_NO"
            idir = cat_dir / "images"
            txts = sorted((qdir if qdir.is_dir() else cat_dir).glob("*.txt"))
            for txt in txts:
                base = (idir if idir.is_dir() else cat_dir) / txt.stem
                image = next((base.with_suffix(e) for e in _IMAGE_EXT if base.with_suffix(e).is_file()), None)
                if image is None:
                    raise EvalError(f"{txt}: no image {txt.stem}.jpg/.png for it")
                for n, line in enumerate(txt.read_text(encoding="utf-8").splitlines(), 1):
                    if not line.strip():
                        continue
                    question, _, answer = line.rstrip("\n").rpartition("\t")
                    if not question:
                        raise EvalError(f"{txt}:{n}: expected 'question<TAB>Yes|No'")
                    items.append(Item(f"{cat_dir.name}/{txt.stem}/{n}", question, [image],
                                      meta={"answer": _answer(answer, f"{txt}:{n}"), "category": cat_dir.name,
                                            "image": f"{cat_dir.name}/{txt.stem}"}))
        if not items:
            raise EvalError(f"{root}: no MME.tsv and no subtask folders with question .txt files")
        return items

    def score(self, items: Sequence[Item], replies: Mapping[str, str]) -> Score:
        rows = []
        per_cat: dict[str, dict[str, list[bool]]] = {}
        for it in items:
            got = yes_no(replies.get(it.id, ""))
            ok = got == it.meta["answer"]
            per_cat.setdefault(it.meta["category"], {}).setdefault(it.meta["image"], []).append(ok)
            rows.append({"id": it.id, "category": it.meta["category"], "expected": it.meta["answer"],
                         "extracted": got, "correct": ok, "reply": replies.get(it.id, "")})
        cats = {}
        for cat, images in sorted(per_cat.items()):
            answers = [ok for oks in images.values() for ok in oks]
            acc = pct(sum(answers), len(answers)) or 0.0
            acc_plus = pct(sum(all(oks) for oks in images.values()), len(images)) or 0.0
            cats[cat] = {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus, "questions": len(answers),
                         "images": len(images)}
        unknown = sorted(set(cats) - set(PERCEPTION) - set(COGNITION))
        if unknown:
            raise EvalError(f"MME: unknown subtask(s) {', '.join(unknown)} "
                            f"(expected {', '.join(PERCEPTION + COGNITION)})")
        perception = sum(cats[c]["score"] for c in PERCEPTION if c in cats)
        cognition = sum(cats[c]["score"] for c in COGNITION if c in cats)
        n_p, n_c = sum(c in cats for c in PERCEPTION), sum(c in cats for c in COGNITION)
        table = Table("By subtask", ["subtask", "kind", "questions", "images", "acc", "acc+", "score"],
                      [[c, "perception" if c in PERCEPTION else "cognition", v["questions"], v["images"],
                        f"{v['acc']:.2f}", f"{v['acc_plus']:.2f}", f"{v['score']:.2f}"] for c, v in cats.items()])
        support = f"{n_p} of 10 perception + {n_c} of 4 cognition subtasks, {len(rows)} questions"
        return Score([Figure("total score (perception + cognition)", "mme", perception + cognition, "points",
                             support=support),
                      Figure("perception", "mme/perception", perception, "points", support=f"{n_p} of 10 subtasks"),
                      Figure("cognition", "mme/cognition", cognition, "points", support=f"{n_c} of 4 subtasks")],
                     {"total": perception + cognition, "perception": perception, "cognition": cognition,
                      "subtasks": cats}, [table], rows)
