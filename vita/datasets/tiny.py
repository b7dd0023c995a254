"""Small synthetic datasets for the tiny CI recipes, one per training stage, written in well under a second.

    vision_align  coloured shapes on a background (PNG, several aspect ratios) + captions ("a red circle ...")
    audio_align   ASR on tone sequences: each clip is 2-4 beeps (low / mid / high pitch) or noise bursts (16 kHz,
                  >= 0.3 s); the transcript names them in order ("high low hiss")
    instruct      multimodal instruction tuning with state tokens: image questions ("<3>"), spoken questions
                  ("<1>": "how many beeps?"), typed questions ("<3>"), noise / non-query speech from
                  `vita.datasets.negatives` ("<2>"), and dialogues with a noise turn in the middle (`inserted_id`)

Files (all media paths relative to the data file that names them):
    root/vision_align.jsonl, root/audio_align.jsonl, root/instruct.jsonl, root/images/*.png, root/audio/*.wav,
    root/negatives/{negatives.jsonl, audio/*.wav}
Everything is a function of the seed; the content is learnable (captions follow the pixels, transcripts the tones).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

from vita.config import SAMPLE_RATE
from vita.datasets.negatives import NegativesConfig, generate_negatives

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
BACKGROUNDS = {"white": (250, 250, 250), "black": (10, 10, 10), "grey": (128, 128, 128)}
SHAPES = ("circle", "square", "triangle")
SIZES = ((64, 64), (96, 64), (64, 128), (160, 80))
TONES = {"low": 300.0, "mid": 600.0, "high": 1200.0}
NUMBERS = ("zero", "one", "two", "three", "four")


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _turns(*pairs: str) -> list[dict[str, str]]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(pairs)]


def draw_shape(shape: str, colour: str, background: str, size: tuple[int, int]) -> Image.Image:
    """A centred shape covering about half the shorter side."""
    w, h = size
    img = Image.new("RGB", size, BACKGROUNDS[background])
    r = min(w, h) // 4
    cx, cy = w // 2, h // 2
    draw_shape_on(ImageDraw.Draw(img), shape, cx, cy, r, COLOURS[colour])
    return img


def draw_shape_on(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
                  fill: tuple[int, int, int]) -> None:
    """A circle, square or (otherwise) triangle of half-size r centred at (cx, cy)."""
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)


def tone_clip(words: list[str], rng: np.random.Generator) -> np.ndarray:
    """Beeps (low / mid / high) and noise bursts ("hiss"), 0.15 s each with 0.05 s gaps, 0.05 s padding."""
    gap = np.zeros(int(0.05 * SAMPLE_RATE), dtype=np.float32)
    t = np.arange(int(0.15 * SAMPLE_RATE)) / SAMPLE_RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades: no clicks
    pieces = [gap]
    for word in words:
        if word == "hiss":
            sound = rng.uniform(-1, 1, t.shape[0]) * 0.3
        else:
            sound = 0.4 * np.sin(2 * np.pi * TONES[word] * t + rng.uniform(0, 2 * np.pi))
        pieces += [(sound * ramp).astype(np.float32), gap]
    return np.concatenate(pieces)  # [n] >= 0.3 s for two or more words


def _images(root: Path, rng: np.random.Generator, n: int) -> list[tuple[str, str, str, str]]:
    (root / "images").mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        shape = SHAPES[i % len(SHAPES)]
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
        rel = f"images/{i:03d}_{colour}_{shape}.png"
        draw_shape(shape, colour, background, SIZES[i % len(SIZES)]).save(root / rel)
        out.append((rel, shape, colour, background))
    return out


def _clips(root: Path, rng: np.random.Generator, n: int, prefix: str) -> list[tuple[str, list[str]]]:
    (root / "audio").mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        words = [str(w) for w in rng.choice([*TONES, "hiss"], size=int(rng.integers(2, 5)))]
        rel = f"audio/{prefix}{i:03d}.wav"
        sf.write(str(root / rel), tone_clip(words, rng), SAMPLE_RATE, subtype="PCM_16")
        out.append((rel, words))
    return out


def write_tiny_dataset(root: Path, *, seed: int = 0) -> dict[str, Path]:
    """Write the tiny datasets under `root`; returns {"vision_align", "audio_align", "instruct", "negatives"}."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    images = _images(root, rng, 32)
    vision = [
        {"set": "tiny_vision", "id": f"v{i}", "image": rel,
         "conversations": _turns("<image>\n" + ("Describe the image." if i % 2 else ""),
                                 f"A {colour} {shape} on a {background} background.")}
        for i, (rel, shape, colour, background) in enumerate(images)
    ]

    clips = _clips(root, rng, 32, "asr")
    audio = [
        {"set": "tiny_asr", "id": f"a{i}", "audio": rel, "conversations": _turns("<audio>", " ".join(words))}
        for i, (rel, words) in enumerate(clips)
    ]

    instruct: list[dict[str, Any]] = []
    for i, (rel, shape, colour, _) in enumerate(images[:16]):
        question, answer = ("What colour is the shape?", colour) if i % 2 else ("What shape is this?", shape)
        instruct.append({"set": "tiny_image_qa", "id": f"iq{i}", "image": rel,
                         "conversations": _turns("<image>\n" + question, f"It is {answer}.")})
    questions = _clips(root, rng, 12, "q")
    for i, (rel, words) in enumerate(questions):  # a spoken question: "how many beeps?" (beeps = non-hiss)
        count = sum(w != "hiss" for w in words)
        value = ("<image>\n<audio>", images[16 + i][0]) if i % 3 == 0 else ("<audio>", None)
        record = {"set": "tiny_audio_qa", "id": f"aq{i}", "audio": rel,
                  "conversations": _turns(value[0], f"I hear {NUMBERS[count]} beeps.")}
        if value[1] is not None:
            record["image"] = value[1]
        instruct.append(record)
    for i in range(8):
        a, b = int(rng.integers(0, 5)), int(rng.integers(0, 5))
        instruct.append({"set": "tiny_text", "id": f"t{i}",
                         "conversations": _turns(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.")})

    # negatives: tone clips as non-query "speech", mixed with generated noise, plus pure noise clips
    chatter = _clips(root, rng, 6, "chat")
    manifest = _jsonl(root / "negatives_manifest.jsonl", [{"audio": rel, "text": " ".join(w)} for rel, w in chatter])
    neg_path = generate_negatives(NegativesConfig(manifest, root / "negatives", num_samples=10, ratio=(0, 0.5, 0.5),
                                                  snr_db=(5.0, 15.0), noise_seconds=(0.3, 0.8), seed=seed))
    negatives = [json.loads(line) for line in neg_path.read_text().splitlines()]
    for r in negatives[:6]:
        keep = {k: v for k, v in r.items() if k != "speech"}  # "speech" names the source clip by absolute path
        instruct.append(dict(keep, audio="negatives/" + r["audio"]))
    for i, r in enumerate(negatives[6:]):  # a noise turn in the middle of a typed dialogue
        instruct.append({"set": "tiny_dialogue", "id": f"d{i}", "audio": "negatives/" + r["audio"], "inserted_id": 3,
                         "conversations": _turns("Say hello.", "Hello!", "<audio>", "", "Say bye.", "Bye!")})
    order = rng.permutation(len(instruct))
    return {
        "vision_align": _jsonl(root / "vision_align.jsonl", vision),
        "audio_align": _jsonl(root / "audio_align.jsonl", audio),
        "instruct": _jsonl(root / "instruct.jsonl", [instruct[i] for i in order]),
        "negatives": neg_path,
    }
