"""MMLU / C-EVAL / AGIEVAL / GSM8K adapters on hand-written samples in the released formats, scores by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from vita.errors import EvalError
from vita.eval.bench import get
from vita.eval.bench.core import Options
from vita.eval.bench.extract import infer_choice, last_number, videomme_letter, yes_no
from vita.eval.bench.runner import run_benchmark


def _csv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def _run(bench: str, data: Path, model, tmp: Path, **opts) -> dict:
    b = get(bench)
    return run_benchmark(b, data, model, out_dir=tmp / f"out-{bench}", options=Options(**opts), model_name="fake")


# ---- answer extraction -------------------------------------------------------------------------------------------
def test_extraction_rules():
    opts = {"A": "red", "B": "dark blue", "C": "green", "D": "yellow"}
    assert infer_choice("B", opts) == "B"
    assert infer_choice("(C)", opts) == "C"
    assert infer_choice("The answer is D.", opts) == "D"
    assert infer_choice("B or C", opts) is None  # two letters named
    assert infer_choice("dark blue", opts) == "B"  # option text, exactly one
    assert infer_choice("It is red or green", opts) is None
    # a lone letter deep inside a long reply is not read (VLMEvalKit: among the last 4 tokens only) ...
    assert infer_choice("B is what I would say if you asked me about this picture honestly", opts) is None
    # ... unless the verbose form names it
    assert infer_choice("I think the correct answer is **C** because", opts) == "C"
    assert yes_no("Yes, there is.") == "Yes" and yes_no("no") == "No"
    assert yes_no("yes and no") is None and yes_no("maybe") is None
    assert videomme_letter("The best answer is B.") == "B"
    assert videomme_letter("this reply has more than ten words and none of the four option letters at all") is None
    assert last_number("so 3 + 4 = 7, he pays $1,000.50") == "1000.5" and last_number("none") is None
    assert last_number("18.00") == "18"


# ---- MMLU ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def mmlu(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _csv(root / "test" / "high_school_biology_test.csv", [
        ["What carries oxygen in blood?", "Platelets", "Hemoglobin", "Plasma", "Insulin", "B"],
        ["Basic unit of life?", "Atom", "Organ", "Cell", "Tissue", "C"],
        ["Plants make food by?", "Photosynthesis", "Respiration", "Digestion", "Osmosis", "A"],
    ])
    _csv(root / "test" / "astronomy_test.csv", [["Closest star to Earth?", "Sirius", "Vega", "Sun", "Rigel", "C"]])
    _csv(root / "dev" / "high_school_biology_dev.csv", [["DNA is in the?", "Nucleus", "Wall", "Vacuole", "Skin", "A"]])
    _csv(root / "dev" / "astronomy_dev.csv", [["Red planet?", "Venus", "Mars", "Earth", "Moon", "B"]])
    return root


MMLU_REPLIES = {"What carries": "B", "Basic unit": "The answer is D", "Plants make": "photosynthesis",
                "Closest star": "(C) Sun"}


def _by_question(table: dict[str, str]):
    def answer(text, **_):
        last = text.split("\n\n")[-1]  # the question asked (after any shots)
        return next(v for k, v in table.items() if last.startswith(k))
    return answer


def test_mmlu_prompt_and_score(mmlu, tmp_path, fake):
    items = get("mmlu").load(mmlu, Options())
    assert [i.id for i in items] == ["astronomy/0", "high_school_biology/0", "high_school_biology/1",
                                     "high_school_biology/2"]
    assert items[1].prompt == (
        "The following are multiple choice questions (with answers) about high school biology.\n\n"
        "What carries oxygen in blood?\nA. Platelets\nB. Hemoglobin\nC. Plasma\nD. Insulin\nAnswer:")
    shot = get("mmlu").load(mmlu, Options(shots=1))[0]
    assert shot.prompt == ("The following are multiple choice questions (with answers) about astronomy.\n\n"
                           "Red planet?\nA. Venus\nB. Mars\nC. Earth\nD. Moon\nAnswer: B\n\n"
                           "Closest star to Earth?\nA. Sirius\nB. Vega\nC. Sun\nD. Rigel\nAnswer:")
    r = _run("mmlu", mmlu, fake(_by_question(MMLU_REPLIES)), tmp_path)
    # by hand: B right, D wrong (C), "photosynthesis" names option A right, "(C) Sun" right -> 3 of 4
    assert r["headline"][0]["value"] == pytest.approx(75.0)
    assert r["metrics"]["by_subject"] == {"astronomy": 100.0, "high_school_biology": pytest.approx(200 / 3)}
    assert r["metrics"]["macro_accuracy"] == pytest.approx((100 + 200 / 3) / 2)
    assert r["headline"][0]["paper"][0]["value"] == 70.98 and "47B" in r["headline"][0]["paper"][0]["model"]
    with pytest.raises(EvalError, match="2-shot needs 2 dev rows"):
        get("mmlu").load(mmlu, Options(shots=2))


def test_mmlu_jsonl(tmp_path, fake):
    rows = [{"question": "2+2?", "subject": "math", "choices": ["3", "4", "5", "6"], "answer": 1},
            {"question": "3+3?", "subject": "math", "choices": ["6", "7", "8", "9"], "answer": "A"}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = _run("mmlu", tmp_path / "test.jsonl", fake(lambda text, **_: "B"), tmp_path)
    assert r["metrics"]["correct"] == 1 and r["n_items"] == 2


# ---- C-EVAL -------------------------------------------------------------------------------------------------------
def test_ceval(tmp_path, fake):
    root = tmp_path / "ceval-exam"
    head = ["id", "question", "A", "B", "C", "D", "answer"]
    _csv(root / "val" / "computer_network_val.csv", [
        head, ["0", "TCP属于哪一层？", "物理层", "传输层", "应用层", "链路层", "B"],
        ["1", "IP地址有多少位？", "16", "32", "64", "128", "B"]])
    _csv(root / "dev" / "computer_network_dev.csv", [head + ["explanation"],
                                                     ["0", "HTTP默认端口？", "80", "21", "22", "25",
                                                                              "A", "常识"]])
    mapping = {"computer_network": ["Computer Network", "计算机网络", "STEM"]}
    (root / "subject_mapping.json").write_text(json.dumps(mapping,
                                                          ensure_ascii=False), encoding="utf-8")
    items = get("ceval").load(root, Options(shots=1))
    assert items[0].prompt == ("以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\n"
                               "HTTP默认端口？\nA. 80\nB. 21\nC. 22\nD. 25\n答案：A\n\n"
                               "TCP属于哪一层？\nA. 物理层\nB. 传输层\nC. 应用层\nD. 链路层\n答案：")
    r = _run("ceval", root, fake(lambda text, **_: "B" if "TCP" in text.split("\n\n")[-1] else "C"), tmp_path)
    assert r["headline"][0]["value"] == 50.0 and r["headline"][0]["paper"][0]["value"] == 56.68  # 1 of 2
    _csv(root / "val" / "computer_network_val.csv", [head, ["0", "q", "a", "b", "c", "d", ""]])
    with pytest.raises(EvalError, match="no answer"):
        get("ceval").load(root, Options())


# ---- AGIEVAL ------------------------------------------------------------------------------------------------------
def test_agieval(tmp_path, fake):
    d = tmp_path / "v1_1"
    d.mkdir()
    en = [{"passage": None, "question": "What is 2+3?", "options": ["(A)4", "(B)5", "(C)6", "(D)7", "(E)8"],
           "label": "B", "answer": None, "other": None},
          {"passage": "Tom is tall. ", "question": "Who is tall?", "options": ["(A)Tom", "(B)Ann"], "label": "A",
           "answer": None}]
    zh = [{"passage": None, "question": "哪些是偶数？", "options": ["(A)2", "(B)3", "(C)4", "(D)5"],
           "label": ["A", "C"],
           "answer": None}]
    (d / "aqua-rat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in en))
    (d / "jec-qa-kd.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in zh), encoding="utf-8")
    (d / "math.jsonl").write_text(json.dumps({"question": "x", "options": None, "label": None, "answer": "1"}) + "\n")
    items = get("agieval").load(d, Options())
    assert [i.id for i in items] == ["aqua-rat/0", "aqua-rat/1", "jec-qa-kd/0"]  # math (cloze) is not read
    assert items[0].prompt == ("Q: What is 2+3? Answer Choices: (A)4 (B)5 (C)6 (D)7 (E)8\n"
                               "A: Among A through E, the answer is")
    assert items[1].prompt.startswith("Tom is tall. Q: Who is tall?")
    assert items[1].prompt.endswith("through B, the answer is")
    assert items[2].prompt == "问题：哪些是偶数？ 选项：(A)2 (B)3 (C)4 (D)5\n答案：从A到D, 我们应选择"
    replies = {"aqua-rat/0": " (B) 5", "aqua-rat/1": "B", "jec-qa-kd/0": "A和C"}
    lookup = {i.prompt: replies[i.id] for i in items}
    r = _run("agieval", d, fake(lambda text, **_: lookup[text]), tmp_path)
    assert [row["correct"] for row in r["items"]] == [True, False, True]  # multi-answer: {A, C} exactly
    assert r["headline"][0]["value"] == pytest.approx(200 / 3)
    # few-shot: demonstrations from few_shot_prompts.csv (header row of task names; rows 1, 3, ... contexts)
    demo = str({"passage": None, "question": "1+1?", "options": ["(A)2", "(B)3"], "label": "A"})
    _csv(tmp_path / "few_shot_prompts.csv", [["aqua-rat", "jec-qa-kd"], [demo, ""], ["explain", ""]])
    shot = get("agieval").load(d / "aqua-rat.jsonl", Options(shots=1))[0]
    assert shot.prompt == ("Here are the answers for the problems in the exam.\n"
                           "Problem 1.    1+1?\nChoose from the following options:    (A)2 (B)3\n"
                           "The answer is therefore A\n\n"
                           "Problem 2.    What is 2+3?\n"
                           "Choose from the following options:    (A)4 (B)5 (C)6 (D)7 (E)8\n")


# ---- GSM8K --------------------------------------------------------------------------------------------------------
def test_gsm8k(tmp_path, fake):
    test = [{"question": "Ann has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
            {"question": "A pen costs $1,200 in cents... how many?", "answer": "It is 1,200.\n#### 1,200"},
            {"question": "Half of 9?", "answer": "9/2 = 4.5\n#### 4.5"}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    (tmp_path / "train.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"}) + "\n")
    items = get("gsm8k").load(tmp_path, Options(shots=1))
    assert items[0].prompt == ("Question: 1+1?\nAnswer: 1+1=2\n#### 2\n\n"
                               "Question: Ann has 3 apples and buys 4 more. How many?\nAnswer:")
    replies = {"Ann": "3 + 4 = 7 apples. The answer is 7.", "A pen": "The answer is 1200 cents",
               "Half": "4.5 is half, so 5"}
    r = _run("gsm8k", tmp_path, fake(lambda text, **_: next(v for k, v in replies.items() if k in text)), tmp_path)
    # by hand: 7 == 7 right; 1200 == 1,200 right; last number 5 != 4.5 wrong -> 2 of 3
    assert [row["correct"] for row in r["items"]] == [True, True, False]
    assert r["headline"][0]["value"] == pytest.approx(200 / 3) and r["headline"][0]["paper"][0]["value"] == 75.66
