"""Image adapters (MME, MMBench circular, MMStar, AI2D, HallusionBench, OCRBench) on hand-written samples in
VLMEvalKit's TSV format (and MME's / OCRBench's original layouts); every expected score worked out by hand."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from vita.errors import EvalError
from vita.eval.bench import get
from vita.eval.bench.core import B64Image, Options
from vita.eval.bench.mmbench import rotate
from vita.eval.bench.runner import run_benchmark


def _b64(color: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


RED, BLUE = _b64((255, 0, 0)), _b64((0, 0, 255))


def _tsv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(header)
        w.writerows(rows)
    return path


def _by_prompt(table: dict[str, str]):
    def answer(text, **_):
        hits = [v for k, v in table.items() if k in text]
        assert len(hits) == 1, (text, hits)
        return hits[0]
    return answer


def _run(bench: str, data: Path, model, tmp: Path) -> dict:
    return run_benchmark(get(bench), data, model, out_dir=tmp / f"out-{bench}", model_name="fake")


# ---- MME ----------------------------------------------------------------------------------------------------------
MME_ROWS = [  # index, image, question, answer, category, image_path; the second row of a pair names the first's index
    [1, RED, "Is there a red square? Please answer yes or no.", "Yes", "existence", "e1.png"],
    [2, "1", "Is there a cat? Please answer yes or no.", "No", "existence", "e1.png"],
    [3, BLUE, "Is there a blue square? Please answer yes or no.", "Yes", "existence", "e2.png"],
    [4, "3", "Is there a dog? Please answer yes or no.", "No", "existence", "e2.png"],
    [5, RED, "Is there one square? Please answer yes or no.", "Yes", "count", "c1.png"],
    [6, "5", "Are there two squares? Please answer yes or no.", "No", "count", "c1.png"],
    [7, BLUE, "Does the code print 3? Please answer yes or no.", "Yes", "code_reasoning", "r1.png"],
    [8, "7", "Does the code print 4? Please answer yes or no.", "No", "code_reasoning", "r1.png"],
]
MME_REPLIES = {"red square": "Yes", "a cat": "No", "blue square": "No", "a dog": "No.", "one square": "yes",
               "two squares": "Yes, there are two", "print 3": "Yes", "print 4": "no"}


def test_mme_tsv_acc_plus(tmp_path, fake):
    path = _tsv(tmp_path / "MME.tsv", ["index", "image", "question", "answer", "category", "image_path"], MME_ROWS)
    items = get("mme").load(path, Options())
    assert items[1].images == [B64Image(RED, "MME.tsv index 2")]  # the reference "1" resolved to row 1's image
    assert items[0].prompt == "Is there a red square? Please answer yes or no."
    r = _run("mme", path, fake(_by_prompt(MME_REPLIES)), tmp_path)
    cats = r["metrics"]["subtasks"]
    # existence: 3 of 4 right (acc 75), image e1 both right, e2 not (acc+ 50) -> 125
    assert (cats["existence"]["acc"], cats["existence"]["acc_plus"], cats["existence"]["score"]) == (75, 50, 125)
    # count: 1 of 2 (50), its one image not both right (0) -> 50; code_reasoning: 2 of 2, 1 of 1 -> 200
    assert cats["count"]["score"] == 50 and cats["code_reasoning"]["score"] == 200
    total, perception, cognition = (h["value"] for h in r["headline"])
    assert (perception, cognition, total) == (175, 200, 375)
    assert r["headline"][0]["paper"][0]["value"] == 2097.0 and r["headline"][0]["unit"] == "points"


def test_mme_release_folder(tmp_path, fake):
    root = tmp_path / "MME_Benchmark_release_version"
    (root / "artwork" / "images").mkdir(parents=True)
    (root / "artwork" / "questions_answers_YES_or_NO").mkdir()
    Image.new("RGB", (8, 8)).save(root / "artwork" / "images" / "10002.jpg")
    (root / "artwork" / "questions_answers_YES_or_NO" / "10002.txt").write_text(
        "Is this artwork by Monet? Please answer yes or no.\tYes\n"
        "Is this artwork by Dali? Please answer yes or no.\tNo\n")
    (root / "OCR").mkdir()
    Image.new("RGB", (8, 8)).save(root / "OCR" / "0001.png")
    (root / "OCR" / "0001.txt").write_text("Is the word 'hello'? Please answer yes or no.\tYes\n"
                                          "Is the word 'bye'? Please answer yes or no.\tNo\n")
    items = get("mme").load(root, Options())
    assert [i.id for i in items] == ["OCR/0001/1", "OCR/0001/2", "artwork/10002/1", "artwork/10002/2"]
    assert items[2].images == [root / "artwork" / "images" / "10002.jpg"]
    r = _run("mme", root, fake(lambda text, **_: "Yes"), tmp_path)
    # each subtask: 1 of 2 right (acc 50), no image with both (acc+ 0) -> 50 + 50 perception, 0 cognition
    assert [h["value"] for h in r["headline"]] == [100, 100, 0]


# ---- MMBench (circular) -------------------------------------------------------------------------------------------
MMB_HEADER = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "image", "split"]


def test_mmbench_circular_with_released_copies(tmp_path, fake):
    # question 0 (4 options) and its 3 rotations at +1e6 k; question 1 (2 options) and 1 rotation
    rows = [
        [0, "What colour?", "", "red", "blue", "green", "white", "A", "color", "perception", RED, "dev"],
        [1000000, "What colour?", "", "blue", "green", "white", "red", "D", "color", "perception", "0", "dev"],
        [2000000, "What colour?", "", "green", "white", "red", "blue", "C", "color", "perception", "0", "dev"],
        [3000000, "What colour?", "", "white", "red", "blue", "green", "B", "color", "perception", "0", "dev"],
        [1, "Is it square?", "Look closely.", "yes", "no", "", "", "A", "shape", "perception", BLUE, "dev"],
        [1000001, "Is it square?", "Look closely.", "no", "yes", "", "", "B", "shape", "perception", "1", "dev"],
    ]
    path = _tsv(tmp_path / "MMBench_DEV_EN.tsv", MMB_HEADER, rows)
    items = get("mmbench").load(path, Options())
    assert len(items) == 6 and items[4].prompt == ("Hint: Look closely.\nQuestion: Is it square?\nOptions:\nA. yes\n"
                                                   "B. no\nPlease select the correct answer from the options above. \n")
    # colour: the option text "red" every time (right in all 4); square: always "A" (right only unrotated)
    r = _run("mmbench", path, fake(lambda text, **_: "red" if "colour" in text else "A"), tmp_path)
    assert r["metrics"]["circular_accuracy"] == 50.0 and r["metrics"]["vanilla_accuracy"] == 100.0
    assert [(row["id"], row["correct"], row["extracted"]) for row in r["items"]] == [("0", True, "ADCB"),
                                                                                    ("1", False, "AA")]
    assert r["metrics"]["category"] == {"color": 100.0, "shape": 0.0}
    assert r["headline"][0]["paper"][0]["value"] == 71.8


def test_mmbench_rotations_generated_when_absent(tmp_path, fake):
    rows = [[5, "Which is a fruit?", "", "car", "apple", "road", "", "B", "knowledge", "reasoning", RED, "dev"]]
    path = _tsv(tmp_path / "mmb.tsv", MMB_HEADER, rows)
    items = get("mmbench").load(path, Options())
    assert [i.id for i in items] == ["5", "1000005", "2000005"]
    assert [(i.meta["options"], i.meta["answer"]) for i in items] == [
        ({"A": "car", "B": "apple", "C": "road"}, "B"),
        ({"A": "apple", "B": "road", "C": "car"}, "A"),
        ({"A": "road", "B": "car", "C": "apple"}, "C")]
    assert rotate({"A": "a0", "B": "a1", "C": "a2", "D": "a3"}, "C", 1) == ({"A": "a1", "B": "a2", "C": "a3",
                                                                            "D": "a0"}, "B")
    right = _run("mmbench", path, fake(lambda text, **_: "apple"), tmp_path)
    assert right["metrics"]["circular_accuracy"] == 100.0
    letter_b = run_benchmark(get("mmbench"), path, fake(lambda text, **_: "B"), out_dir=tmp_path / "b", model_name="f")
    assert letter_b["metrics"]["circular_accuracy"] == 0.0 and letter_b["metrics"]["vanilla_accuracy"] == 100.0


# ---- MMStar / AI2D ------------------------------------------------------------------------------------------------
def test_mmstar_and_ai2d_plain_accuracy(tmp_path, fake):
    header = ["index", "question", "A", "B", "C", "D", "answer", "category", "l2-category", "image"]
    rows = [[0, "Colour?", "red", "blue", "green", "black", "A", "coarse perception", "image scene", RED],
            [1, "Shape?", "circle", "square", "", "", "B", "fine-grained perception", "attribute", BLUE],
            [2, "Count?", "1", "2", "3", "4", "A", "coarse perception", "image scene", RED]]
    path = _tsv(tmp_path / "MMStar.tsv", header, rows)
    replies = {"Colour?": "A", "Shape?": "The answer is B", "Count?": "C"}
    r = _run("mmstar", path, fake(_by_prompt(replies)), tmp_path)
    assert r["metrics"]["accuracy"] == pytest.approx(200 / 3)  # 2 of 3
    assert r["metrics"]["category"] == {"coarse perception": 50.0, "fine-grained perception": 100.0}
    assert r["headline"][0]["paper"][0]["value"] == 46.4
    ai2d = _run("ai2d", path, fake(lambda text, **_: "A"), tmp_path)
    assert ai2d["metrics"]["correct"] == 2 and ai2d["headline"][0]["paper"][0]["value"] == 73.1
    (tmp_path / "bad").mkdir()
    bad = _tsv(tmp_path / "bad" / "x.tsv", header, [[0, "q", "a", "b", "", "", "", "c", "l", RED]])
    with pytest.raises(EvalError, match="without an answer"):
        get("mmstar").load(bad, Options())


# ---- HallusionBench -----------------------------------------------------------------------------------------------
def test_hallusionbench_a_f_q_acc(tmp_path, fake):
    header = ["index", "image", "question", "answer", "category", "l2-category"]
    rows = [["VD_illusion_x_0_0_0", RED, "Q-i1", "Yes", "VD", "illusion"],
            ["VD_illusion_x_0_0_1", "VD_illusion_x_0_0_0", "Q-i2", "No", "VD", "illusion"],
            ["VD_illusion_x_0_1_0", BLUE, "Q-i3", "No", "VD", "illusion"],
            ["VD_illusion_x_0_1_1", "VD_illusion_x_0_1_0", "Q-i4", "No", "VD", "illusion"],
            ["VS_chart_x_1_0_0", "", "Q-i5", "Yes", "VS", "chart"]]
    path = _tsv(tmp_path / "HallusionBench.tsv", header, rows)
    replies = {"Q-i1": "Yes", "Q-i2": "No", "Q-i3": "Yes", "Q-i4": "No", "Q-i5": "yes."}
    items = get("hallusionbench").load(path, Options())
    assert items[4].images == [] and items[1].images == items[0].images
    r = _run("hallusionbench", path, fake(_by_prompt(replies)), tmp_path)
    s = r["metrics"]["splits"]
    # illusion alone: aAcc 3/4; figures (0,0) all right, (0,1) not -> 50; questions q0 (i1 ok, i3 wrong) no,
    # q1 (i2, i4) yes -> 50; overall adds the chart question, right: 4/5, 2/3, 2/3
    assert (s["illusion"]["aAcc"], s["illusion"]["fAcc"], s["illusion"]["qAcc"]) == (75, 50, 50)
    assert (s["Overall"]["aAcc"], s["Overall"]["fAcc"], s["Overall"]["qAcc"]) == pytest.approx((80, 200 / 3, 200 / 3))
    assert r["headline"][0]["value"] == pytest.approx((80 + 400 / 3) / 3)
    assert r["headline"][0]["paper"][0]["value"] == 39.7


# ---- OCRBench -----------------------------------------------------------------------------------------------------
def test_ocrbench_tsv_and_json(tmp_path, fake):
    header = ["index", "image", "question", "answer", "category"]
    rows = [[0, RED, "What does the sign say?", "['STOP']", "Regular Text Recognition"],
            [1, BLUE, "Write the formula.", "['x^2+1']", "Handwritten Mathematical Expression Recognition"],
            [2, RED, "What is the total?", "['42', 'forty-two']", "Doc-oriented VQA"]]
    path = _tsv(tmp_path / "OCRBench.tsv", header, rows)
    replies = {"sign": "The sign says stop.", "formula": "x ^ 2 + 1", "total": "It is 41"}
    r = _run("ocrbench", path, fake(_by_prompt(replies)), tmp_path)
    # by hand: "stop" in the lower-cased reply; "x^2+1" once spaces are removed; neither 42 nor forty-two -> 2
    assert r["headline"][0]["value"] == 2 and r["headline"][0]["paper"][0]["value"] == 678.0
    assert r["metrics"]["groups"]["Text Recognition"] == 1 and r["metrics"]["groups"]["Doc-oriented VQA"] == 0
    jdir = tmp_path / "orig"
    (jdir / "OCRBench_Images" / "IIIT5K").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(jdir / "OCRBench_Images" / "IIIT5K" / "1.png")
    (jdir / "OCRBench.json").write_text(json.dumps([{"dataset_name": "IIIT5K", "id": 0, "image_path": "IIIT5K/1.png",
                                                     "question": "what is written in the image?", "answers": "Hello",
                                                     "type": "Regular Text Recognition"}]))
    rj = _run("ocrbench", jdir, fake(lambda text, **_: "hello"), tmp_path / "j")
    assert rj["headline"][0]["value"] == 1


def test_mmbench_limit_keeps_whole_groups(tmp_path, fake):
    rows = [[q + k * 1_000_000, f"Q{q}?", "", "a", "b", "", "", "AB"[k], "c", "l", RED if k == 0 else str(q), "dev"]
            for k in range(2) for q in range(3)]  # main rows first, copies after (as released)
    path = _tsv(tmp_path / "mmb.tsv", MMB_HEADER, rows)
    from vita.eval.bench.runner import load_items

    items = load_items(get("mmbench"), path, Options(limit=2))
    assert [i.id for i in items] == ["0", "1", "1000000", "1000001"]


def test_hallusionbench_original_json(tmp_path, fake):
    (tmp_path / "hallusion_bench" / "VD" / "ocr").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "hallusion_bench" / "VD" / "ocr" / "0_0.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "hallusion_bench" / "VD" / "ocr" / "0_1.png")

    def q(cat, sub, s, f, qid, gt, fig):
        return {"category": cat, "subcategory": sub, "visual_input": "1" if fig else "0", "set_id": s,
                "figure_id": f, "question_id": qid, "question": f"{cat}-{sub}-{s}-{f}-{qid}?", "gt_answer": gt,
                "gt_answer_details": "", "filename": fig}
    recs = [q("VD", "ocr", "0", "0", "0", "1", "./hallusion_bench/VD/ocr/0_0.png"),
            q("VD", "ocr", "0", "1", "0", "0", "./hallusion_bench/VD/ocr/0_1.png"),
            q("VS", "ocr", "0", "0", "0", "1", None)]  # same subcategory and ids, other category, no figure
    (tmp_path / "HallusionBench.json").write_text(json.dumps(recs))
    items = get("hallusionbench").load(tmp_path, Options())
    assert [i.id for i in items] == ["VD_ocr_0_0_0", "VD_ocr_0_1_0", "VS_ocr_0_0_0"] and items[2].images == []
    r = _run("hallusionbench", tmp_path, fake(lambda text, **_: "Yes"), tmp_path)
    s = r["metrics"]["splits"]["Overall"]
    # right: VD fig 0 (yes), VS (yes); wrong: VD fig 1 (no). Figures (VD,0,0) ok, (VD,0,1) not, (VS,0,0) ok -> 2/3;
    # questions (VD,0,q0) over both figures not all right, (VS,0,q0) right -> 1/2
    assert (s["aAcc"], s["fAcc"], s["qAcc"]) == pytest.approx((200 / 3, 200 / 3, 50))
