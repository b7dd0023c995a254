"""Images for vita-mini: shape scenes, handwritten digits, package photos, emoji objects and scenes, rendered words.

Every item is (image, question, answer, caption, task, subgroup): the answer is one to three words or a number, so
`vita eval` exact match applies (it casefolds, drops punctuation and articles, and reads number words as digits).
Tasks (`IMAGE_TASKS`, `make_image(task, rng, held_out=...)`):
    colour    "What colour is the circle?"              -> "red"        (2-3 shapes, distinct shapes and colours)
    count     "How many shapes are there?"              -> "3"          (1-5 shapes of one kind)
    position  "Is the square on the left or right?"     -> "left"       (two shapes side by side or stacked)
    which_red "Which shape is red?"                     -> "triangle"
    digit     "What digit is this?"                     -> "7"          (`sklearn.datasets.load_digits`, upscaled)
    photo     "What animal is this?"                    -> "horse"      (photos shipped inside scikit-image and
                                                                          scikit-learn, cropped / flipped / recoloured)
    emoji     "What is in the picture?" / "Name the object." / "What animal is this?" -> "hedgehog"
              one of 404 emoji concepts (`emoji.CONCEPTS`) at a random size, position, rotation, over a plain,
              gradient, noise, texture or cluttered background, sometimes partly covered; `emoji_item(rng, held_out,
              concept)` renders a given concept
    scene     "What is on the left?" -> "cactus"; "Is there a dog in the picture?" -> "yes";
              "How many cats are there?" -> "2"; "What is next to the taxi?" -> "rose"   (2-5 emoji objects)
    text      "What does the sign say?" / "What word is written?" -> "garden"; "What number is written?" -> "408"
              a word of the Debian `wamerican` list or a number, in one of 34 fonts (`TEXT_FONTS`), colours, sizes,
              a slight tilt, on a sign or straight on the background
Held-out renders (`held_out=True`, the eval split; `vita data mini` also redraws any eval image whose bytes equal a
training image):
    digit     the last 20 % of scikit-learn's digits (the first 80 % train)
    emoji     the SAME concepts in other renders: half are Symbola line drawings; `line_split` keeps half the
              concepts out of line style in training, so subgroup "line_unseen" is a concept never seen in that
              style, "line_seen" one seen in it, "colour" a colour emoji; two background kinds (checkerboard,
              stripes) appear only in held-out images
    scene     the same concepts over the held-out background kinds too
    text      half the words (or numbers) come from a held-out tenth of the list (subgroup "out_of_vocab"), half
              from the training words ("in_vocab"); the fonts are shared
    photo / shapes   other random crops and layouts of the same sources
Captions (vision alignment) are drawn from several templates and name what is where: objects, positions, colours,
background, style. The photos and clips the developers' guide reserves for independent evaluation are never used
(`tests/training/test_mini_images.py` lists them and greps the package for any loader of them).

This module holds the shape, digit and photo tasks and `make_image`; the emoji and scene tasks are in
`emoji_images`, the text task in `text_images`, and what they all draw with (backgrounds, inks,
placement, caption phrases, `ImageItem`) in `canvas`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from vita.datasets.mini.canvas import (
    NUMBER_WORDS,
    SIZES,
    ImageItem,
    choose,
    listing,
    package_file,
    package_photo,
    pick,
    sentence,
    where,
)
from vita.datasets.mini.emoji_images import emoji_item, scene_item
from vita.datasets.mini.text_images import text_item
from vita.datasets.tiny import draw_shape_on

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 220), "yellow": (230, 200, 30),
           "purple": (140, 50, 170), "orange": (245, 130, 20)}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ((250, 250, 250), (225, 225, 225), (200, 210, 225), (235, 225, 205))
IMAGE_TASKS = ("colour", "count", "position", "which_red", "digit", "photo", "emoji", "scene", "text")

# photos shipped inside packages (no download), none of them reserved: (package, file, name, questions, captions)
PHOTOS = (
    ("skimage", "camera.png", "camera", (("What is the man holding?", "camera"), ("What is on the tripod?", "camera")),
     ("A black and white photo of a man looking through a camera on a tripod.",
      "A man in a dark coat stands in a field behind a camera on a tripod.")),
    ("skimage", "coins.png", "coins", (("What objects are these?", "coins"), ("What is in the picture?", "coins")),
     ("A black and white photo of old coins laid out in rows.", "Rows of round coins on a dark background.")),
    ("skimage", "horse.png", "horse", (("What animal is this?", "horse"), ("What is in the picture?", "horse"),
                                       ("What colour is the horse?", "black")),
     ("A black silhouette of a horse on a white background.", "The dark outline of a standing horse.")),
    ("skimage", "moon.png", "moon", (("What is this a photo of?", "moon"), ("What is in the picture?", "moon")),
     ("A grey close-up photo of the surface of the moon with craters.", "Craters on the grey surface of the moon.")),
    ("skimage", "motorcycle_left.png", "motorcycle",
     (("What vehicle is this?", "motorcycle"), ("What is in the picture?", "motorcycle"),
      ("What colour is the motorcycle?", "red")),
     ("A red motorcycle parked in a cluttered garage.", "A photo of a shiny red motorbike indoors.")),
    ("skimage", "hubble_deep_field.jpg", "galaxies", (("What is in the picture?", "galaxies"),),
     ("Hundreds of small distant galaxies on a black sky.", "A telescope photo of many colourful galaxies in space.")),
    ("skimage", "brick.png", "bricks",
     (("What is this wall made of?", "bricks"), ("What is in the picture?", "bricks")),
     ("A grey wall of bricks.", "A close-up of a brick wall.")),
    ("skimage", "grass.png", "grass", (("What is in the picture?", "grass"), ("What plant is this?", "grass")),
     ("A close-up of grass.", "Blades of grass seen from above.")),
    ("skimage", "gravel.png", "gravel", (("What is in the picture?", "gravel"), ("What is on the ground?", "gravel")),
     ("A close-up of grey gravel stones.", "Small grey stones of gravel.")),
    ("skimage", "retina.jpg", "eye", (("What part of the body is this?", "eye"),),
     ("A photo of the retina at the back of an eye, with red blood vessels.", "An orange round image of a retina.")),
    ("sklearn", "flower.jpg", "flower",
     (("What is in the picture?", "flower"), ("What colour is the flower?", "orange")),
     ("An orange dahlia flower in front of dark green leaves.", "A close-up photo of an orange flower.")),
    ("sklearn", "china.jpg", "pagoda", (("What building is this?", "pagoda"), ("What is in the picture?", "pagoda")),
     ("A Chinese pagoda with a red and green roof among trees under a blue sky.",
      "A tall temple building on a hill by a lake.")),
)


def _canvas(rng: np.random.Generator) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    size = SIZES[int(rng.integers(len(SIZES)))]
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    img = Image.new("RGB", size, background)
    return img, ImageDraw.Draw(img)


def place_apart(rng: np.random.Generator, size: tuple[int, int], n: int, r: float) -> list[tuple[float, float]]:
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


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


# --- the shape tasks (captions vary; the rng draws for the picture come first, so pictures stay as they were) ---

def colour_item(rng: np.random.Generator) -> ImageItem:
    img, draw = _canvas(rng)
    k = int(rng.integers(2, 4))
    shapes, colours = choose(rng, SHAPES, k), choose(rng, list(COLOURS), k)
    r = min(img.size) * float(rng.uniform(0.10, 0.16))
    centres = place_apart(rng, img.size, k, r)
    for shape, colour, (cx, cy) in zip(shapes, colours, centres, strict=True):
        draw_shape_on(draw, shape, cx, cy, r, COLOURS[colour])
    t = int(rng.integers(k))
    listed = [_a(f"{c} {s}") for s, c in zip(shapes, colours, strict=True)]
    placed = [_a(f"{c} {s} {where(x, y, img.size)}") for s, c, (x, y) in zip(shapes, colours, centres, strict=True)]
    caption = pick(rng, (listing(listed) + ".", listing(placed) + ".", f"{NUMBER_WORDS[k]} shapes: {listing(listed)}.",
                         f"{listing(placed)} on a light background."))
    return ImageItem(img, f"What colour is the {shapes[t]}?", colours[t], sentence(caption), "colour")


def count_item(rng: np.random.Generator) -> ImageItem:
    img, draw = _canvas(rng)
    n = int(rng.integers(1, 6))
    shape, colour = choose(rng, SHAPES, 1)[0], choose(rng, list(COLOURS), 1)[0]
    r = min(img.size) * float(rng.uniform(0.07, 0.10))
    for cx, cy in place_apart(rng, img.size, n, r):
        draw_shape_on(draw, shape, cx, cy, r, COLOURS[colour])
    plural_shape = shape + ("s" if n > 1 else "")
    question = f"How many {shape}s are there?" if rng.random() < 0.5 else "How many shapes are there?"
    caption = pick(rng, (f"{NUMBER_WORDS[n]} {colour} {plural_shape}.",
                         f"There {'is' if n == 1 else 'are'} {NUMBER_WORDS[n]} {colour} {plural_shape} here.",
                         f"{NUMBER_WORDS[n]} {plural_shape}, all {colour}, scattered on a light background."))
    return ImageItem(img, question, str(n), sentence(caption), "count")


def position_item(rng: np.random.Generator) -> ImageItem:
    img, draw = _canvas(rng)
    w, h = img.size
    shapes, colours = choose(rng, SHAPES, 2), choose(rng, list(COLOURS), 2)
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
    one, two = f"{colours[0]} {shapes[0]}", f"{colours[1]} {shapes[1]}"
    relation = "left of" if horizontal else "above"
    caption = pick(rng, (f"{_a(one)} at the {a} and {_a(two)} at the {b}.", f"{_a(one)} {relation} {_a(two)}.",
                         f"the {two} is at the {b}, the {one} at the {a}."))
    return ImageItem(img, question, sides[t], sentence(caption), "position")


def which_red_item(rng: np.random.Generator) -> ImageItem:
    img, draw = _canvas(rng)
    k = int(rng.integers(2, 4))
    shapes = choose(rng, SHAPES, k)
    colours = ["red", *choose(rng, [c for c in COLOURS if c != "red"], k - 1)]
    r = min(img.size) * float(rng.uniform(0.10, 0.16))
    centres = place_apart(rng, img.size, k, r)
    for shape, colour, (cx, cy) in zip(shapes, colours, centres, strict=True):
        draw_shape_on(draw, shape, cx, cy, r, COLOURS[colour])
    others = listing([_a(f"{c} {s}") for s, c in zip(shapes[1:], colours[1:], strict=True)])
    caption = pick(rng, (f"a red {shapes[0]} and {others}.",
                         f"a red {shapes[0]} {where(*centres[0], img.size)}, with {others}.",
                         f"{others} next to a red {shapes[0]}."))
    return ImageItem(img, "Which shape is red?", shapes[0], sentence(caption), "which_red")


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits [1797, 8, 8] in 0..16 and labels [1797], read from its CSV (importing sklearn is slow)."""
    csv = package_file("sklearn", "datasets/data/digits.csv.gz")
    if csv is not None:
        table = np.loadtxt(csv, delimiter=",", dtype=np.float32)  # [1797, 65]: 64 pixels, label
        return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


def digit_picture(rng: np.random.Generator, held_out: bool) -> tuple[Image.Image, int, np.ndarray]:
    """A scikit-learn digit of the split, dark ink on white, upscaled to 112-224 px: (picture, digit, ink [side,
    side] in [0, 1])."""
    images, targets = _digits()
    cut = int(0.8 * len(images))
    i = int(rng.integers(cut, len(images))) if held_out else int(rng.integers(0, cut))
    grey = (255 - images[i] * (255 / 16)).clip(0, 255).astype(np.uint8)  # dark ink on white
    side = int(rng.choice([112, 160, 224]))
    img = Image.fromarray(grey).resize((side, side), Image.Resampling.BILINEAR)
    return img.convert("RGB"), int(targets[i]), 1 - np.asarray(img, np.float32) / 255


def digit_item(rng: np.random.Generator, held_out: bool) -> ImageItem:
    img, d, _ = digit_picture(rng, held_out)
    question = "What digit is this?" if rng.random() < 0.5 else "Which number is written here?"
    caption = pick(rng, (f"A handwritten digit {NUMBER_WORDS[d]}.", f"The number {d}, written by hand in dark ink.",
                         f"A blurry handwritten {NUMBER_WORDS[d]} on a white background."))
    return ImageItem(img, question, str(d), caption, "digit")


# --- photos ---

def photo_picture(rng: np.random.Generator, index: int) -> Image.Image:
    """`PHOTOS[index]` cropped to 70-100 %, maybe mirrored, with a slight colour cast, 224-320 px wide."""
    package, file = PHOTOS[index][:2]
    img = package_photo(package, file)
    w, h = img.size
    scale = float(rng.uniform(0.7, 1.0))
    cw, ch = int(w * scale), int(h * scale)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = img.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gain = rng.uniform(0.85, 1.15, size=3).astype(np.float32)  # brightness and a slight colour cast
    img = Image.fromarray((np.asarray(img, dtype=np.float32) * gain).clip(0, 255).astype(np.uint8))
    side = int(rng.choice([224, 256, 320]))
    return img.resize((side, max(32, int(side * ch / cw))), Image.Resampling.BILINEAR)


def photo_item(rng: np.random.Generator) -> ImageItem:
    index = int(rng.integers(len(PHOTOS)))
    questions, captions = PHOTOS[index][3:]
    question, answer = pick(rng, questions)
    img = photo_picture(rng, index)
    return ImageItem(img, question, answer, pick(rng, captions), "photo")


def make_image(task: str, rng: np.random.Generator, *, held_out: bool = False) -> ImageItem:
    """One item of `task` (see `IMAGE_TASKS`); `held_out` draws the eval split's renders (module docstring)."""
    makers: dict[str, Callable[[np.random.Generator], ImageItem]] = {
        "colour": colour_item, "count": count_item, "position": position_item, "which_red": which_red_item,
        "photo": photo_item, "digit": lambda g: digit_item(g, held_out), "emoji": lambda g: emoji_item(g, held_out),
        "scene": lambda g: scene_item(g, held_out), "text": lambda g: text_item(g, held_out),
    }
    if task not in makers:
        raise ValueError(f"unknown image task {task!r} (expected one of {', '.join(IMAGE_TASKS)})")
    return makers[task](rng)
