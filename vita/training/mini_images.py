"""Images for vita-mini: synthetic shape scenes, scikit-learn handwritten digits and a few scikit-image photos.

Every item is (image, question, answer, caption, task): the answer is one word or a number, so `vita eval` scores it
by exact match. Tasks:
    colour    "What colour is the circle?"           -> "red"        (2-3 shapes, distinct shapes and colours)
    count     "How many shapes are there?"           -> "3"          (1-5 shapes of one kind)
    position  "Is the square on the left or right?"  -> "left"       (two shapes side by side or stacked)
    which_red "Which shape is red?"                  -> "triangle"
    digit     "What digit is this?"                  -> "7"          (`sklearn.datasets.load_digits`, upscaled)
    photo     "What animal is this?"                 -> "cat"        (`skimage.data`, randomly cropped / flipped)
Everything is drawn from the generator given; digits are split by index (train: the first 80 %, eval: the rest).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vita.training.tiny_data import draw_shape_on

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 220), "yellow": (230, 200, 30),
           "purple": (140, 50, 170), "orange": (245, 130, 20)}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ((250, 250, 250), (225, 225, 225), (200, 210, 225), (235, 225, 205))
SIZES = ((224, 224), (256, 192), (192, 256), (320, 224))
IMAGE_TASKS = ("colour", "count", "position", "which_red", "digit", "photo")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# skimage.data photos shipped with the package (no download): loader name, question, answer, caption
PHOTOS = (
    ("chelsea", "What animal is this?", "cat", "A photo of a ginger cat."),
    ("astronaut", "What is this person's job?", "astronaut", "A photo of an astronaut in a white space suit."),
    ("coffee", "What drink is in the cup?", "coffee", "A photo of a cup of coffee on a saucer."),
    ("rocket", "What is this vehicle?", "rocket", "A photo of a rocket on its launch pad."),
    ("camera", "What is the man holding?", "camera", "A black and white photo of a man with a camera."),
    ("coins", "What objects are these?", "coins", "A black and white photo of many coins."),
)


@dataclass
class ImageItem:
    image: Image.Image
    question: str
    answer: str
    caption: str
    task: str


def _canvas(rng: np.random.Generator) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    size = SIZES[int(rng.integers(len(SIZES)))]
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    img = Image.new("RGB", size, background)
    return img, ImageDraw.Draw(img)


def _place(rng: np.random.Generator, size: tuple[int, int], n: int, r: float) -> list[tuple[float, float]]:
    """n centres at least 2.2 r apart inside the canvas (rejection sampling; a grid when crowded)."""
    w, h = size
    out: list[tuple[float, float]] = []
    for _ in range(2000):
        if len(out) == n:
            return out
        c = (float(rng.uniform(r + 2, w - r - 2)), float(rng.uniform(r + 2, h - r - 2)))
        if all((c[0] - a) ** 2 + (c[1] - b) ** 2 > (2.2 * r) ** 2 for a, b in out):
            out.append(c)
    cols = -(-n // 2)
    return [((i % cols + 0.5) * w / cols, (i // cols + 0.5) * h / 2) for i in range(n)]


def _names(rng: np.random.Generator, pool: tuple[str, ...] | list[str], k: int) -> list[str]:
    return [str(x) for x in rng.choice(list(pool), size=k, replace=False)]


def colour_item(rng: np.random.Generator) -> ImageItem:
    img, draw = _canvas(rng)
    k = int(rng.integers(2, 4))
    shapes, colours = _names(rng, SHAPES, k), _names(rng, list(COLOURS), k)
    r = min(img.size) * float(rng.uniform(0.10, 0.16))
    for shape, colour, (cx, cy) in zip(shapes, colours, _place(rng, img.size, k, r), strict=True):
        draw_shape_on(draw, shape, cx, cy, r, COLOURS[colour])
    t = int(rng.integers(k))
    caption = " and ".join(f"a {c} {s}" for s, c in zip(shapes, colours, strict=True))
    return ImageItem(img, f"What colour is the {shapes[t]}?", colours[t], caption[0].upper() + caption[1:] + ".",
                     "colour")


def count_item(rng: np.random.Generator) -> ImageItem:
    img, draw = _canvas(rng)
    n = int(rng.integers(1, 6))
    shape, colour = _names(rng, SHAPES, 1)[0], _names(rng, list(COLOURS), 1)[0]
    r = min(img.size) * float(rng.uniform(0.07, 0.10))
    for cx, cy in _place(rng, img.size, n, r):
        draw_shape_on(draw, shape, cx, cy, r, COLOURS[colour])
    plural = shape + ("s" if n > 1 else "")
    question = f"How many {shape}s are there?" if rng.random() < 0.5 else "How many shapes are there?"
    return ImageItem(img, question, str(n), f"{NUMBER_WORDS[n].capitalize()} {colour} {plural}.", "count")


def position_item(rng: np.random.Generator) -> ImageItem:
    img, draw = _canvas(rng)
    w, h = img.size
    shapes, colours = _names(rng, SHAPES, 2), _names(rng, list(COLOURS), 2)
    r = min(w, h) * float(rng.uniform(0.10, 0.15))
    horizontal = bool(rng.random() < 0.5)
    jitter = float(rng.uniform(-0.08, 0.08))
    if horizontal:
        centres = [(w * (0.25 + jitter), h * float(rng.uniform(0.35, 0.65))),
                   (w * (0.75 + jitter), h * float(rng.uniform(0.35, 0.65)))]
        sides = ("left", "right")
    else:
        centres = [(w * float(rng.uniform(0.35, 0.65)), h * (0.25 + jitter)),
                   (w * float(rng.uniform(0.35, 0.65)), h * (0.75 + jitter))]
        sides = ("top", "bottom")
    for shape, colour, (cx, cy) in zip(shapes, colours, centres, strict=True):
        draw_shape_on(draw, shape, cx, cy, r, COLOURS[colour])
    t = int(rng.integers(2))
    a, b = sides
    question = f"Is the {shapes[t]} on the {a} or the {b}?"
    caption = f"A {colours[0]} {shapes[0]} at the {a} and a {colours[1]} {shapes[1]} at the {b}."
    return ImageItem(img, question, sides[t], caption, "position")


def which_red_item(rng: np.random.Generator) -> ImageItem:
    img, draw = _canvas(rng)
    k = int(rng.integers(2, 4))
    shapes = _names(rng, SHAPES, k)
    colours = ["red", *_names(rng, [c for c in COLOURS if c != "red"], k - 1)]
    r = min(img.size) * float(rng.uniform(0.10, 0.16))
    for shape, colour, (cx, cy) in zip(shapes, colours, _place(rng, img.size, k, r), strict=True):
        draw_shape_on(draw, shape, cx, cy, r, COLOURS[colour])
    others = " and ".join(f"a {c} {s}" for s, c in zip(shapes[1:], colours[1:], strict=True))
    return ImageItem(img, "Which shape is red?", shapes[0], f"A red {shapes[0]}, {others}.", "which_red")


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits [1797, 8, 8] in 0..16 and labels [1797], read from its CSV (importing sklearn is slow)."""
    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    csv = [Path(r) / "datasets" / "data" / "digits.csv.gz" for r in roots]
    if csv and csv[0].is_file():
        table = np.loadtxt(csv[0], delimiter=",", dtype=np.float32)  # [1797, 65]: 64 pixels, label
        return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


def digit_item(rng: np.random.Generator, held_out: bool) -> ImageItem:
    images, targets = _digits()
    cut = int(0.8 * len(images))
    i = int(rng.integers(cut, len(images))) if held_out else int(rng.integers(0, cut))
    grey = (255 - images[i] * (255 / 16)).clip(0, 255).astype(np.uint8)  # dark ink on white
    side = int(rng.choice([112, 160, 224]))
    img = Image.fromarray(grey).resize((side, side), Image.Resampling.BILINEAR).convert("RGB")
    d = int(targets[i])
    question = "What digit is this?" if rng.random() < 0.5 else "Which number is written here?"
    return ImageItem(img, question, str(d), f"A handwritten digit {NUMBER_WORDS[d]}.", "digit")


@cache
def _photo(name: str) -> Image.Image:
    import skimage.data

    array = np.asarray(getattr(skimage.data, name)())
    return Image.fromarray(array.astype(np.uint8)).convert("RGB")


def photo_item(rng: np.random.Generator) -> ImageItem:
    name, question, answer, caption = PHOTOS[int(rng.integers(len(PHOTOS)))]
    img = _photo(name)
    w, h = img.size
    scale = float(rng.uniform(0.75, 1.0))
    cw, ch = int(w * scale), int(h * scale)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = img.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    factor = float(rng.uniform(0.85, 1.15))
    img = Image.fromarray((np.asarray(img, dtype=np.float32) * factor).clip(0, 255).astype(np.uint8))
    side = int(rng.choice([224, 256, 320]))
    img = img.resize((side, max(32, int(side * ch / cw))), Image.Resampling.BILINEAR)
    return ImageItem(img, question, answer, caption, "photo")


def make_image(task: str, rng: np.random.Generator, *, held_out: bool = False) -> ImageItem:
    """One item of `task` (see `IMAGE_TASKS`); `held_out` picks eval-only digits."""
    makers: dict[str, Callable[[np.random.Generator], ImageItem]] = {
        "colour": colour_item, "count": count_item, "position": position_item, "which_red": which_red_item,
        "photo": photo_item, "digit": lambda g: digit_item(g, held_out),
    }
    if task not in makers:
        raise ValueError(f"unknown image task {task!r} (expected one of {', '.join(IMAGE_TASKS)})")
    return makers[task](rng)
