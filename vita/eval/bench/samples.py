"""Small hand-made samples in the benchmarks' exact public formats, buildable offline (no benchmark data ships).

    python -m vita.cli.tools bench_samples --out DIR

writes, deterministically (same bytes every run, except the synthetic speech, which depends on the installed
espeak-ng):
    DIR/mmlu/data/{test,dev}/miscellaneous_{test,dev}.csv     12 easy general-knowledge questions, MMLU CSVs
    DIR/gsm8k/test.jsonl                                      8 one-step word problems, "#### N" answers
    DIR/mme/MME_Benchmark_release_version/{existence,count,color,position}/   drawn shapes, 2 questions each
    DIR/mmbench/MMBench_DEV_EN.tsv                            6 shape questions + their circular copies
    DIR/librispeech/synthetic-espeak/...                      8 sentences spoken by espeak-ng (SYNTHETIC speech,
                                                             a voice vita-mini never trained on), flac + trans.txt
    DIR/video-mme/videomme.json + frames/                     4 moving-dot clips as frame folders
These are format samples with invented content: their scores say whether the pipeline and the model work on
that format, nothing about the real benchmarks (whose figures for the 47B VITA are printed beside them).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

from vita.config import SAMPLE_RATE

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 220), "yellow": (230, 200, 30)}

MMLU = [  # question, A, B, C, D, answer
    ("What is the capital of France?", "Berlin", "Madrid", "Paris", "Rome", "C"),
    ("How many legs does a spider have?", "Six", "Eight", "Four", "Ten", "B"),
    ("Which planet is known as the Red Planet?", "Mars", "Venus", "Jupiter", "Saturn", "A"),
    ("What is 7 times 8?", "54", "64", "56", "48", "C"),
    ("Water freezes at what temperature in Celsius?", "100", "0", "10", "-10", "B"),
    ("Which animal is the largest mammal?", "Elephant", "Giraffe", "Blue whale", "Hippo", "C"),
    ("What colour is the sky on a clear day?", "Green", "Blue", "Red", "Yellow", "B"),
    ("Which gas do plants take in from the air?", "Oxygen", "Nitrogen", "Helium", "Carbon dioxide", "D"),
    ("How many days are in a week?", "Seven", "Five", "Ten", "Six", "A"),
    ("Which is the opposite of hot?", "Warm", "Cold", "Big", "Fast", "B"),
    ("What do bees make?", "Milk", "Silk", "Honey", "Wool", "C"),
    ("Which instrument has black and white keys?", "Piano", "Drum", "Flute", "Violin", "A"),
]
MMLU_DEV = [("What is 2 plus 2?", "3", "4", "5", "6", "B")]

GSM8K = [  # question, worked answer, final number
    ("Tom has 3 apples and buys 4 more. How many apples does he have now?", "3 + 4 = 7", 7),
    ("A box holds 6 eggs. How many eggs are in 2 boxes?", "6 * 2 = 12", 12),
    ("Sara had 10 sweets and ate 3. How many sweets are left?", "10 - 3 = 7", 7),
    ("There are 5 birds on a tree and 4 more arrive. How many birds are on the tree?", "5 + 4 = 9", 9),
    ("A pencil costs 2 dollars. How much do 5 pencils cost in dollars?", "2 * 5 = 10", 10),
    ("Ben reads 8 pages a day. How many pages does he read in 3 days?", "8 * 3 = 24", 24),
    ("Mia has 20 stickers and gives away 5. How many stickers does she keep?", "20 - 5 = 15", 15),
    ("A class has 12 girls and 9 boys. How many children are in the class?", "12 + 9 = 21", 21),
]

SENTENCES = [
    "the cat sat on the warm mat by the door",
    "she walked to the market to buy fresh bread",
    "the river runs quietly under the old stone bridge",
    "we watched the sun go down over the hills",
    "he opened the window to let the cool air in",
    "the children played in the garden after school",
    "please close the door when you leave the room",
    "a small boat sailed across the calm blue lake",
]


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (224, 224), (245, 245, 245))
    return img, ImageDraw.Draw(img)


def _shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, colour: str) -> None:
    fill = COLOURS[colour]
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _scene(shapes: list[tuple[str, str, float, float]], r: float = 30) -> Image.Image:
    img, draw = _canvas()
    for kind, colour, x, y in shapes:
        _shape(draw, kind, x, y, r, colour)
    return img


# MME: (subtask, name, shapes, [(question, Yes/No), (question, Yes/No)])
MME = [
    ("existence", "e1", [("circle", "red", 112, 112)], [("Is there a circle in the image?", "Yes"),
                                                        ("Is there a triangle in the image?", "No")]),
    ("existence", "e2", [("square", "blue", 112, 112)], [("Is there a square in the image?", "Yes"),
                                                         ("Is there a circle in the image?", "No")]),
    ("existence", "e3", [("triangle", "green", 112, 112)], [("Is there a triangle in the image?", "Yes"),
                                                            ("Is there a square in the image?", "No")]),
    ("count", "c1", [("circle", "red", 60, 112), ("circle", "red", 164, 112)],
     [("Are there two circles in the image?", "Yes"), ("Are there four circles in the image?", "No")]),
    ("count", "c2", [("square", "blue", 112, 112)], [("Is there one square in the image?", "Yes"),
                                                     ("Are there three squares in the image?", "No")]),
    ("count", "c3", [("triangle", "yellow", 50, 112), ("triangle", "yellow", 112, 112),
                     ("triangle", "yellow", 174, 112)],
     [("Are there three triangles in the image?", "Yes"), ("Are there two triangles in the image?", "No")]),
    ("color", "k1", [("circle", "red", 112, 112)], [("Is the circle red?", "Yes"), ("Is the circle blue?", "No")]),
    ("color", "k2", [("square", "green", 112, 112)], [("Is the square green?", "Yes"),
                                                      ("Is the square yellow?", "No")]),
    ("color", "k3", [("triangle", "blue", 112, 112)], [("Is the triangle blue?", "Yes"),
                                                       ("Is the triangle red?", "No")]),
    ("position", "p1", [("circle", "red", 50, 112), ("square", "blue", 174, 112)],
     [("Is the circle on the left of the square?", "Yes"), ("Is the circle on the right of the square?", "No")]),
    ("position", "p2", [("triangle", "green", 174, 112), ("circle", "yellow", 50, 112)],
     [("Is the triangle on the right of the circle?", "Yes"), ("Is the triangle on the left of the circle?", "No")]),
    ("position", "p3", [("square", "red", 112, 50), ("circle", "green", 112, 174)],
     [("Is the square above the circle?", "Yes"), ("Is the square below the circle?", "No")]),
]

# MMBench: (category, l2-category, shapes, question, options, answer)
MMBENCH = [
    ("attribute_recognition", "FP-S", [("circle", "red", 112, 112)], "What colour is the circle?",
     ["red", "blue", "green", "yellow"], "A"),
    ("attribute_recognition", "FP-S", [("square", "blue", 112, 112)], "What colour is the square?",
     ["green", "blue", "red", "yellow"], "B"),
    ("object_localization", "FP-S", [("triangle", "green", 112, 112)], "Which shape is in the image?",
     ["circle", "square", "triangle", "star"], "C"),
    ("spatial_relationship", "FP-C", [("circle", "red", 50, 112), ("square", "blue", 174, 112)],
     "Where is the circle?", ["on the left", "on the right", "at the top"], "A"),
    ("attribute_recognition", "FP-S", [("triangle", "yellow", 112, 112)], "What colour is the triangle?",
     ["red", "blue", "green", "yellow"], "D"),
    ("image_scene", "CP", [("circle", "green", 60, 112), ("circle", "green", 164, 112)],
     "How many circles are there?", ["1", "2", "3", "4"], "B"),
]


def write_mmlu(root: Path) -> Path:
    for split, rows in (("test", MMLU), ("dev", MMLU_DEV)):
        (root / "data" / split).mkdir(parents=True, exist_ok=True)
        with (root / "data" / split / f"miscellaneous_{split}.csv").open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
    return root / "data"


def write_gsm8k(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"question": q, "answer": f"{work} = <<{work.split(' = ')[0]}={n}>>{n}\n#### {n}"})
             for q, work, n in GSM8K]
    (root / "test.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "test.jsonl"


def write_mme(root: Path) -> Path:
    base = root / "MME_Benchmark_release_version"
    for subtask, name, shapes, qa in MME:
        (base / subtask).mkdir(parents=True, exist_ok=True)
        (base / subtask / f"{name}.png").write_bytes(_png(_scene(shapes)))
        (base / subtask / f"{name}.txt").write_text(
            "".join(f"{q} Please answer yes or no.\t{a}\n" for q, a in qa), encoding="utf-8")
    return base


def write_mmbench(root: Path) -> Path:
    from vita.eval.bench.mmbench import COPY, rotate

    root.mkdir(parents=True, exist_ok=True)
    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source",
              "l2-category", "comment", "split"]
    rows = []
    for q, (cat, l2, shapes, question, options, answer) in enumerate(MMBENCH):
        image = base64.b64encode(_png(_scene(shapes))).decode()
        opts = {"ABCD"[i]: o for i, o in enumerate(options)}
        for k in range(len(options)):  # the released dev TSV carries the circular copies at index + k * 1e6
            rotated, ans = rotate(opts, answer, k)
            cells = [rotated.get(c, "") for c in "ABCD"]
            rows.append([q + k * COPY, question, "", *cells, ans, cat, image if k == 0 else str(q), "vita-sample",
                         l2, "", "dev"])
    path = root / "MMBench_DEV_EN.tsv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(header)
        w.writerows(rows)
    return path


def write_librispeech(root: Path) -> Path:
    import soundfile as sf

    from vita.datasets.mini.speech import EspeakVoice

    voice = EspeakVoice("en-us-nyc+m3", speed=160, pitch=45)  # an eval voice: never in vita-mini's training
    chapter = root / "synthetic-espeak" / "9001" / "1"
    chapter.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, text in enumerate(SENTENCES):
        uid = f"9001-1-{i:04d}"
        sf.write(chapter / f"{uid}.flac", voice(text), SAMPLE_RATE)
        lines.append(f"{uid} {text.upper()}")
    (chapter / "9001-1.trans.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "synthetic-espeak"


def write_videomme(root: Path) -> Path:
    videos = []
    for v, (direction, colour) in enumerate((("right", "red"), ("left", "blue"), ("right", "green"),
                                            ("left", "yellow"))):
        name = f"dot{v}"
        (root / "frames" / name).mkdir(parents=True, exist_ok=True)
        for t in range(8):
            x = 30 + 164 * t / 7
            img = _scene([("circle", colour, x if direction == "right" else 224 - x, 112)], r=16)
            img.save(root / "frames" / name / f"{t:04d}.png")
        options = ["A. Left", "B. Right", "C. Up", "D. Down"]
        videos.append({"video_id": f"{v:03d}", "duration": "short", "domain": "Life Record",
                       "sub_category": "Daily Life", "videoID": name,
                       "questions": [{"question_id": f"{v:03d}-1", "task_type": "Temporal Perception",
                                      "question": "Which way does the dot move?", "options": options,
                                      "answer": "B" if direction == "right" else "A"}]})
    (root / "videomme.json").write_text(json.dumps(videos, indent=1), encoding="utf-8")
    return root / "videomme.json"


def write_samples(out: Path, *, speech: bool = True) -> dict[str, Path]:
    """Write every sample under `out`; {benchmark name: the --data path}."""
    paths = {"mmlu": write_mmlu(out / "mmlu"), "gsm8k": write_gsm8k(out / "gsm8k"), "mme": write_mme(out / "mme"),
             "mmbench": write_mmbench(out / "mmbench"), "video-mme": write_videomme(out / "video-mme")}
    if speech:
        paths["librispeech"] = write_librispeech(out / "librispeech")
    return paths
