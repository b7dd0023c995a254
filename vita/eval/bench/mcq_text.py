"""Text multiple choice: MMLU, C-EVAL and AGIEVAL in their released file formats, 0-shot or k-shot.

MMLU (hendrycks/test, the `data.tar` release): `--data` is the `data/` folder (with `test/` and `dev/`), the
`test/` folder, or one `SUBJECT_test.csv`. CSVs have no header: question, A, B, C, D, answer letter. k-shot
examples are the first k rows of `dev/SUBJECT_dev.csv`. Also accepted: a JSONL export of cais/mmlu (one
object per line: question, subject, choices [4 strings], answer as 0-3 or a letter), k-shot from `dev.jsonl` in
the same folder (same subject, first k). Prompt (hendrycks `evaluate.py`, format_subject joins the subject's
words each after a space):
    The following are multiple choice questions (with answers) about{ subject words}.\\n\\n
    [k x: {question}\\nA. {A}\\nB. {B}\\nC. {C}\\nD. {D}\\nAnswer: {letter}\\n\\n]
    {question}\\nA. {A}\\nB. {B}\\nC. {C}\\nD. {D}\\nAnswer:
Score: accuracy over all questions (hendrycks' "Average accuracy", weighted by subject size); the per-subject
table and the macro average are printed too.

C-EVAL (hkust-nlp/ceval, `ceval-exam.zip`): `--data` is the folder with `val/` and `dev/` (the test split has
no public answers), or `val/`, or one `SUBJECT_val.csv`. CSVs have a header: id, question, A, B, C, D, answer
(dev adds explanation). The subject's Chinese name comes from `subject_mapping.json` (the repository's file:
{subject: [English, 中文, category]}) when found in or above `--data`, else the file stem. Prompt (C-Eval
`evaluators/*.py` format_example / generate_few_shot_prompt, answer-only, no CoT):
    以下是中国关于{科目}考试的单项选择题，请选出其中的正确答案。\\n\\n
    [k x: {question}\\nA. {A}\\nB. {B}\\nC. {C}\\nD. {D}\\n答案：{letter}\\n\\n]
    {question}\\nA. {A}\\nB. {B}\\nC. {C}\\nD. {D}\\n答案：
Score: accuracy over all val questions (and per subject).

AGIEVAL (ruixiangcui/AGIEval `data/v1_1/TASK.jsonl`): `--data` is the folder or one TASK.jsonl; each line has
passage (or null), question, options ["(A)...", ...], label ("A", or a list for the multi-answer tasks
jec-qa-kd, jec-qa-ca, gaokao-physics), answer, other. The cloze tasks (math, gaokao-mathcloze) are skipped: they
need AGIEval's math-equivalence checker. 0-shot prompt (AGIEval `dataset_loader.convert_zero_shot`):
    English: {passage}Q: {question} Answer Choices: {options joined by " "}\\nA: Among A through {last}, the answer is
    Chinese: {passage}问题：{question} 选项：{options joined by " "}\\n答案：从A到{last}, 我们应选择
k-shot (AGIEval's non-CoT "few-shot" setting) reads the demonstrations from `few_shot_prompts.csv` (the
repository's file, in or above `--data`): "Here are the answers for the problems in the exam.\\n" (Chinese:
"以下是考试中各个问题的答案。\\n") + per demo "Problem i.   {passage} {question}\\nChoose from the following
options:    {options}\\nThe answer is therefore {label}\\n\\n" (Chinese: 问题 i. / 从以下选项中选择: / 答案是),
then the question as "Problem k+1.   ...options\\n".
Score: accuracy over all questions (multi-answer: the set of letters must match exactly).

Answers are read from the reply with `extract.infer_choice` (VLMEvalKit's exact-matching rule); multi-answer
AGIEval replies take every standalone option letter.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vita.errors import EvalError
from vita.eval.bench.core import Benchmark, Figure, Item, Options, Score, Table, check_data, pct
from vita.eval.bench.extract import infer_choice

LETTERS = "ABCDEFG"
Row = tuple[str, list[str], str]  # question, options, answer letter


def _read_csv(path: Path, *, header: bool) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r]
    return rows[1:] if header else rows


def _options_block(options: Sequence[str]) -> str:
    return "".join(f"\n{LETTERS[i]}. {o}" for i, o in enumerate(options))


def _score_choice(items: Sequence[Item], replies: Mapping[str, str], key: str, group: str) -> Score:
    rows = []
    by_group: dict[str, list[bool]] = {}
    for it in items:
        choices = {LETTERS[i]: o for i, o in enumerate(it.meta["options"])}
        answer = it.meta["answer"]
        reply = replies.get(it.id, "")
        if isinstance(answer, list):  # multi-answer: every standalone option letter in the reply
            got = sorted({c for c in re.findall(r"(?<![A-Za-z])([A-G])(?![A-Za-z])", reply) if c in choices})
            picked: Any = "".join(got) or None
            ok = got == sorted(answer)
            expected = "".join(sorted(answer))
        else:
            picked = infer_choice(reply, choices)
            ok = picked == answer
            expected = answer
        by_group.setdefault(it.meta[group], []).append(ok)
        rows.append({"id": it.id, "expected": expected, "extracted": picked, "correct": ok, "reply": reply})
    n_ok = sum(r["correct"] for r in rows)
    per = {g: pct(sum(v), len(v)) for g, v in sorted(by_group.items())}
    macro = sum(v for v in per.values() if v is not None) / len(per) if per else None
    table = Table(f"By {group}", [group, "n", "correct", "accuracy"],
                  [[g, len(v), sum(v), f"{per[g]:.2f}%"] for g, v in sorted(by_group.items())])
    return Score([Figure("accuracy", key, pct(n_ok, len(rows)), support=f"{n_ok} of {len(rows)} questions")],
                 {"accuracy": pct(n_ok, len(rows)), "correct": n_ok, "n": len(rows), "macro_accuracy": macro,
                  f"by_{group}": per}, [table], rows)


# ---- MMLU -------------------------------------------------------------------------------------------------------
class MMLU(Benchmark):
    name, title, max_new_tokens = "mmlu", "MMLU (57 subjects, multiple choice)", 16
    source = "hendrycks/test data.tar CSVs (or cais/mmlu JSONL) and evaluate.py's prompt; see vita.eval.bench.mcq_text"
    prompt_doc = ("The following are multiple choice questions (with answers) about{ subject words}.\n\n"
                  "[k shots: {question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer: {letter}\\n\\n]\n"
                  "{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:")

    @staticmethod
    def head(subject: str) -> str:
        words = "".join(" " + w for w in subject.split("_"))
        return f"The following are multiple choice questions (with answers) about{words}.\n\n"

    @staticmethod
    def example(q: str, options: Sequence[str], answer: str | None) -> str:
        text = q + _options_block(options) + "\nAnswer:"
        return text + (f" {answer}\n\n" if answer is not None else "")

    def _rows(self, data: Path) -> list[tuple[str, list[Row], list[Row]]]:
        """[(subject, test rows, dev rows)] with rows (question, options, letter)."""
        if data.is_file() and data.suffix == ".jsonl":
            return self._jsonl(data)
        files = [data] if data.is_file() else sorted((data / "test" if (data / "test").is_dir() else data)
                                                     .glob("*_test.csv"))
        if not files:
            raise EvalError(f"{data}: no *_test.csv files (expected the MMLU data/ or data/test/ folder)")
        out = []
        for f in files:
            subject = f.name[: -len("_test.csv")]
            dev = f.parent.parent / "dev" / f"{subject}_dev.csv"
            out.append((subject, [self._row(r, f) for r in _read_csv(f, header=False)],
                        [self._row(r, dev) for r in _read_csv(dev, header=False)] if dev.is_file() else []))
        return out

    @staticmethod
    def _row(r: list[str], path: Path) -> Row:
        if len(r) != 6 or r[5].strip() not in "ABCD" or not r[5].strip():
            raise EvalError(f"{path}: expected 6 columns (question, A, B, C, D, answer letter), got {r[:6]!r}")
        return r[0], r[1:5], r[5].strip()

    def _jsonl(self, path: Path) -> list[tuple[str, list[Row], list[Row]]]:
        def read(p: Path) -> dict[str, list[Row]]:
            out: dict[str, list[Row]] = {}
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                rec = json.loads(line)
                ans = rec["answer"]
                letter = LETTERS[ans] if isinstance(ans, int) else str(ans).strip()
                if len(rec["choices"]) != 4 or letter not in "ABCD":
                    raise EvalError(f"{p}:{n}: needs 4 choices and an answer 0-3 or A-D")
                out.setdefault(rec.get("subject", "unknown"), []).append((rec["question"], rec["choices"], letter))
            return out

        test = read(path)
        dev = read(path.parent / "dev.jsonl") if (path.parent / "dev.jsonl").is_file() else {}
        return [(s, rows, dev.get(s, [])) for s, rows in sorted(test.items())]

    def load(self, data: Path, options: Options) -> list[Item]:
        items = []
        for subject, rows, dev in self._rows(check_data(data, "MMLU data")):
            if options.shots > len(dev):
                raise EvalError(f"{data}: {options.shots}-shot needs {options.shots} dev rows for {subject}, "
                                f"found {len(dev)}")
            shots = "".join(self.example(q, o, a) for q, o, a in dev[: options.shots])
            for i, (q, o, a) in enumerate(rows):
                items.append(Item(f"{subject}/{i}", self.head(subject) + shots + self.example(q, o, None),
                                  meta={"options": o, "answer": a, "subject": subject}))
        return items

    def score(self, items: Sequence[Item], replies: Mapping[str, str]) -> Score:
        return _score_choice(items, replies, "mmlu", "subject")


# ---- C-EVAL -----------------------------------------------------------------------------------------------------
def _find_up(start: Path, name: str, levels: int = 3) -> Path | None:
    p = start if start.is_dir() else start.parent
    for _ in range(levels):
        if (p / name).is_file():
            return p / name
        p = p.parent
    return None


class CEval(Benchmark):
    name, title, max_new_tokens = "ceval", "C-EVAL (val split, 52 subjects, multiple choice)", 16
    source = "hkust-nlp/ceval ceval-exam CSVs and evaluators' answer-only prompt; see vita.eval.bench.mcq_text"
    prompt_doc = ("以下是中国关于{科目}考试的单项选择题，请选出其中的正确答案。\n\n"
                  "[k shots: {question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\n答案：{letter}\\n\\n]\n"
                  "{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\n答案：")

    @staticmethod
    def example(q: str, options: Sequence[str], answer: str | None) -> str:
        return q + _options_block(options) + "\n答案：" + (f"{answer}\n\n" if answer is not None else "")

    def load(self, data: Path, options: Options) -> list[Item]:
        check_data(data, "C-EVAL data")
        files = [data] if data.is_file() else sorted((data / "val" if (data / "val").is_dir() else data)
                                                     .glob("*_val.csv"))
        if not files:
            raise EvalError(f"{data}: no *_val.csv files (expected the ceval-exam folder or its val/)")
        mapping_file = _find_up(data, "subject_mapping.json")
        mapping = json.loads(mapping_file.read_text(encoding="utf-8")) if mapping_file else {}
        items = []
        for f in files:
            subject = f.name[: -len("_val.csv")]
            zh = mapping[subject][1] if subject in mapping else subject.replace("_", " ")
            dev_file = f.parent.parent / "dev" / f"{subject}_dev.csv"
            dev = _read_csv(dev_file, header=True) if dev_file.is_file() else []
            if options.shots > len(dev):
                raise EvalError(f"{data}: {options.shots}-shot needs {dev_file} with {options.shots} rows")
            head = f"以下是中国关于{zh}考试的单项选择题，请选出其中的正确答案。\n\n"
            shots = "".join(self.example(r[1], r[2:6], r[6].strip()) for r in dev[: options.shots])
            for r in _read_csv(f, header=True):
                if len(r) < 7 or r[6].strip() not in ("A", "B", "C", "D"):
                    raise EvalError(f"{f}: row {r[:1]} has no answer A-D (the test split has no public answers)")
                items.append(Item(f"{subject}/{r[0]}", head + shots + self.example(r[1], r[2:6], None),
                                  meta={"options": r[2:6], "answer": r[6].strip(), "subject": subject}))
        return items

    def score(self, items: Sequence[Item], replies: Mapping[str, str]) -> Score:
        return _score_choice(items, replies, "ceval", "subject")


# ---- AGIEVAL ----------------------------------------------------------------------------------------------------
AGI_EN = ("lsat-ar", "lsat-lr", "lsat-rc", "logiqa-en", "sat-math", "sat-en", "aqua-rat", "sat-en-without-passage",
          "gaokao-english")
AGI_ZH = ("logiqa-zh", "jec-qa-kd", "jec-qa-ca", "gaokao-chinese", "gaokao-geography", "gaokao-history",
          "gaokao-biology", "gaokao-chemistry", "gaokao-physics", "gaokao-mathqa")


class AGIEval(Benchmark):
    name, title, max_new_tokens = "agieval", "AGIEVAL (multiple-choice tasks, English and Chinese)", 32
    source = "ruixiangcui/AGIEval data/v1_1 JSONL and src/dataset_loader.py prompts; see vita.eval.bench.mcq_text"
    prompt_doc = ("0-shot, English: {passage}Q: {question} Answer Choices: {options}\n"
                  "A: Among A through {last letter}, the answer is\n"
                  "0-shot, Chinese: {passage}问题：{question} 选项：{options}\n答案：从A到{last letter}, 我们应选择\n"
                  "k-shot: few_shot_prompts.csv demonstrations (see vita.eval.bench.mcq_text)")

    @staticmethod
    def _demos(csv_path: Path, task: str, english: bool) -> list[str]:
        rows = _read_csv(csv_path, header=False)
        column = rows[0].index("sat-en" if task == "sat-en-without-passage" else task)
        demos = []
        for row in rows[1:10:2]:  # rows 1, 3, 5, 7, 9 hold the demonstrations (2, 4, ... their explanations)
            if column >= len(row) or not row[column].strip():
                continue
            con = ast.literal_eval(row[column])
            passage = (con.get("passage") or "") if task != "sat-en-without-passage" else ""
            opts = " ".join(con.get("options") or [])
            n = len(demos) + 1
            if english:
                demos.append(f"Problem {n}.   {passage} {con['question']}\nChoose from the following options:    "
                             f"{opts}\nThe answer is therefore {con.get('label') or ''}\n\n")
            else:
                demos.append(f"问题 {n}.   {passage} {con['question']}\n从以下选项中选择:    {opts}\n"
                             f"答案是 {con.get('label') or ''}\n\n")
        return demos

    def load(self, data: Path, options: Options) -> list[Item]:
        check_data(data, "AGIEVAL data")
        files = [data] if data.is_file() else sorted(data.glob("*.jsonl"))
        files = [f for f in files if f.stem in AGI_EN + AGI_ZH]
        if not files:
            raise EvalError(f"{data}: no AGIEval multiple-choice task files ({', '.join(AGI_EN + AGI_ZH)}.jsonl)")
        demos_csv = _find_up(data, "few_shot_prompts.csv") if options.shots else None
        if options.shots and demos_csv is None:
            raise EvalError(f"{data}: {options.shots}-shot needs AGIEval's few_shot_prompts.csv in or above it")
        items = []
        for f in files:
            task, english = f.stem, f.stem in AGI_EN
            demos = self._demos(demos_csv, task, english)[: options.shots] if demos_csv else []
            if len(demos) < options.shots:
                raise EvalError(f"{demos_csv}: only {len(demos)} demonstrations for {task}")
            intro = ("Here are the answers for the problems in the exam.\n" if english
                     else "以下是考试中各个问题的答案。\n")
            head = (intro + "".join(demos)) if demos else ""
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines()):
                if not line.strip():
                    continue
                rec = json.loads(line)
                opts = rec.get("options") or []
                label = rec.get("label")
                if not opts or not label:
                    continue  # a cloze item inside a choice task: not scored here
                passage = rec.get("passage") or ""
                last = LETTERS[(len(opts) if len(opts) > 1 else (5 if english else 4)) - 1]
                joined = " ".join(opts)
                if demos:
                    n = len(demos) + 1
                    body = (f"Problem {n}.   {passage} {rec['question']}\nChoose from the following options:    "
                            f"{joined}\n" if english else
                            f"问题 {n}.   {passage} {rec['question']}\n从以下选项中选择:    {joined}\n")
                elif english:
                    body = (f"{passage}Q: {rec['question']} Answer Choices: {joined}\n"
                            f"A: Among A through {last}, the answer is")
                else:
                    body = f"{passage}问题：{rec['question']} 选项：{joined}\n答案：从A到{last}, 我们应选择"
                texts = [re.sub(r"^\(?[A-G]\)\s*", "", o) for o in opts]
                answer = sorted(label) if isinstance(label, list) else str(label).strip()
                items.append(Item(f"{task}/{i}", head + body, meta={"options": texts, "answer": answer, "task": task}))
        return items

    def score(self, items: Sequence[Item], replies: Mapping[str, str]) -> Score:
        return _score_choice(items, replies, "agieval", "task")
