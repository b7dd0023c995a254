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
              one of 404 emoji concepts (`mini_emoji.CONCEPTS`) at a random size, position, rotation, over a plain,
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
    emoji     the SAME concepts in other renders: half are Symbola line drawings; `mini_emoji.line_split` keeps half
              the concepts out of line style in training, so subgroup "line_unseen" is a concept never seen in that
              style, "line_seen" one seen in it, "colour" a colour emoji; two background kinds (checkerboard,
              stripes) appear only in held-out images
    scene     the same concepts over the held-out background kinds too
    text      half the words (or numbers) come from a held-out tenth of the list (subgroup "out_of_vocab"), half
              from the training words ("in_vocab"); the fonts are shared
    photo / shapes   other random crops and layouts of the same sources
Captions (vision alignment) are drawn from several templates and name what is where: objects, positions, colours,
background, style. The photos and clips the developers' guide reserves for independent evaluation are never used
(`tests/training/test_mini_images.py` lists them and greps the package for any loader of them).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from vita.training.mini_emoji import (
    CONCEPTS,
    FONT_ROOT,
    Concept,
    colour_glyph,
    has_line_glyph,
    line_glyph,
    plural,
    stable_hash,
    with_article,
)
from vita.training.tiny_data import draw_shape_on

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 220), "yellow": (230, 200, 30),
           "purple": (140, 50, 170), "orange": (245, 130, 20)}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ((250, 250, 250), (225, 225, 225), (200, 210, 225), (235, 225, 205))
SIZES = ((224, 224), (256, 192), (192, 256), (320, 224))
IMAGE_TASKS = ("colour", "count", "position", "which_red", "digit", "photo", "emoji", "scene", "text")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# named colours for backgrounds, inks and signs (captions say the name)
PALETTE = {
    "white": (246, 246, 244), "light grey": (205, 205, 205), "grey": (128, 128, 128), "dark grey": (62, 62, 62),
    "black": (18, 18, 18), "cream": (245, 236, 205), "beige": (215, 195, 155), "light blue": (170, 200, 240),
    "blue": (40, 80, 200), "navy": (25, 35, 100), "pink": (245, 170, 200), "light green": (170, 225, 160),
    "dark green": (25, 95, 45), "yellow": (240, 215, 60), "orange": (240, 140, 40), "red": (200, 35, 35),
    "purple": (120, 60, 160), "brown": (120, 75, 40), "teal": (20, 130, 130),
}
TRAIN_BACKGROUNDS = ("plain", "gradient", "noise", "texture", "clutter")
HELD_OUT_BACKGROUNDS = ("checker", "stripes")  # only ever in held-out renders
TEXTURES = {"brick.png": "a brick wall", "grass.png": "grass", "gravel.png": "gravel"}  # inside scikit-image

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

# text: fonts from Debian fonts-dejavu-core, fonts-liberation, fonts-freefont-ttf (all 34 must be installed, so
# the data is the same on every machine): (package, path under /usr/share/fonts, style named in captions)
_FONT_FILES = {
    "fonts-dejavu-core": ("dejavu/DejaVu", ["Sans", "Sans-Bold", "SansMono", "SansMono-Bold", "Serif", "Serif-Bold"]),
    "fonts-liberation": ("liberation/Liberation", [f"{f}-{s}" for f in ("Sans", "Serif", "Mono", "SansNarrow")
                                                   for s in ("Regular", "Bold", "Italic", "BoldItalic")]),
    "fonts-freefont-ttf": ("freefont/Free", [f + s for f in ("Sans", "Serif", "Mono")
                                             for s in ("", "Bold", "Oblique" if f != "Serif" else "Italic",
                                                       "BoldOblique" if f != "Serif" else "BoldItalic")]),
}


def _font_style(stem: str) -> str:
    kind = "monospace" if "Mono" in stem else "serif" if "Serif" in stem else "narrow" if "Narrow" in stem \
        else "sans-serif"
    weight = "bold " if "Bold" in stem else ""
    slant = "italic " if ("Italic" in stem or "Oblique" in stem) else ""
    return f"{weight}{slant}{kind}"


TEXT_FONTS: tuple[tuple[str, str, str], ...] = tuple(
    (package, f"truetype/{prefix}{stem}.ttf", _font_style(stem))
    for package, (prefix, stems) in _FONT_FILES.items() for stem in stems)
WORD_LIST = ("wamerican", Path("/usr/share/dict/american-english"))
# sha256[:10] of offensive words in the list (so the source does not spell them): never rendered
_BLOCKED = frozenset(
    "0033728f0f 01b3c12692 0508a63444 08a841e996 095080134d 0f28c4960d 11cf8376a1 120f6e5b4e 12e90b8e74 130229cd36 "
    "13a465fc66 158869a973 17bde8b406 1b83044895 2062f80093 2189c0ed71 262f86db0a 2c32c156cf 2f34b7a451 30a989afc8 "
    "31506a8448 4140197ec7 45cd3e1bb4 45fb7c3b72 517ae3f732 522788b65f 566f532d48 594810adcb 59cc3cb8a4 5a9d9dcefb "
    "5b3ae48be1 5d59a0e048 5e5fe40957 63bd9333b1 6ac3c336e4 737dd1bca2 76f0362224 78a00d189c 7902e27065 796e43a5a8 "
    "7991d51fe6 7bc671151c 7e85c676fd 7f5a9ba14c 805c0cdff8 8171c4ecae 82159dd028 83ebccea9f 85fc17f706 867d789766 "
    "886d51e97a 89133bc00e 8c5c043913 8f5083e3e5 92a9bf818e 937d56e497 94a2b576a9 984979b992 984b5c6ef0 986c990041 "
    "98d44e13f4 9915ba2d82 99e367bcad 9ae315a94e a76d588d00 ad505b0be8 b04a8a4006 b690cdbe59 b81d6dc258 baa9c15307 "
    "bb61ef4081 c20363e686 c2c3b68b48 cbbd0f71af cc02032349 ccff74c2d5 d2ce238bf4 d75a838dc7 daec0c235d dc2abe4ed2 "
    "e30c2ea7a7 e512a05583 e7b98c6aa5 e9143a2903 e99d55248f e9b6438440 eef3bd0916 eff26b1816 f6952d6eef f9d0d9b18a "
    "fda6539b84".split())

EMOJI_QUESTIONS = ("What is this?", "What is in the picture?", "Name the object.", "What do you see?",
                   "What is shown in the image?", "What is this called?", "What is in this image?")
CATEGORY_QUESTIONS = {"animal": "What animal is this?", "food": "What food is this?", "drink": "What drink is this?",
                      "plant": "What plant is this?", "vehicle": "What vehicle is this?",
                      "building": "What building is this?"}
WORD_QUESTIONS = ("What word is written?", "What is written here?", "What does it say?", "Read the text in the image.",
                  "What does the text say?")
NUMBER_QUESTIONS = ("What number is written?", "What number is shown?", "What does it say?", "Read the number.")


@dataclass
class ImageItem:
    image: Image.Image
    question: str
    answer: str
    caption: str
    task: str
    subgroup: str = ""  # finer eval group inside the task: emoji "colour" / "line_seen" / "line_unseen", text
    #                     "in_vocab" / "out_of_vocab", scene the question kind (`SCENE_KINDS`); "" elsewhere


def _pick(rng: np.random.Generator, options: tuple | list):
    return options[int(rng.integers(len(options)))]


def _sentence(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text[0].upper() + text[1:]


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


def where(cx: float, cy: float, size: tuple[int, int]) -> str:
    """ "in the top left corner", "at the bottom", "on the right", "in the centre" for a point of the canvas."""
    w, h = size
    col = "left" if cx < 0.38 * w else "right" if cx > 0.62 * w else ""
    row = "top" if cy < 0.38 * h else "bottom" if cy > 0.62 * h else ""
    if row and col:
        return f"in the {row} {col} corner"
    if row:
        return f"at the {row}"
    return f"on the {col}" if col else "in the centre"


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# --- the shape tasks (captions vary; the rng draws for the picture come first, so pictures stay as they were) ---

def colour_item(rng: np.random.Generator) -> ImageItem:
    img, draw = _canvas(rng)
    k = int(rng.integers(2, 4))
    shapes, colours = _names(rng, SHAPES, k), _names(rng, list(COLOURS), k)
    r = min(img.size) * float(rng.uniform(0.10, 0.16))
    centres = _place(rng, img.size, k, r)
    for shape, colour, (cx, cy) in zip(shapes, colours, centres, strict=True):
        draw_shape_on(draw, shape, cx, cy, r, COLOURS[colour])
    t = int(rng.integers(k))
    listed = [_a(f"{c} {s}") for s, c in zip(shapes, colours, strict=True)]
    placed = [_a(f"{c} {s} {where(x, y, img.size)}") for s, c, (x, y) in zip(shapes, colours, centres, strict=True)]
    caption = _pick(rng, (_and(listed) + ".", _and(placed) + ".", f"{NUMBER_WORDS[k]} shapes: {_and(listed)}.",
                          f"{_and(placed)} on a light background."))
    return ImageItem(img, f"What colour is the {shapes[t]}?", colours[t], _sentence(caption), "colour")


def count_item(rng: np.random.Generator) -> ImageItem:
    img, draw = _canvas(rng)
    n = int(rng.integers(1, 6))
    shape, colour = _names(rng, SHAPES, 1)[0], _names(rng, list(COLOURS), 1)[0]
    r = min(img.size) * float(rng.uniform(0.07, 0.10))
    for cx, cy in _place(rng, img.size, n, r):
        draw_shape_on(draw, shape, cx, cy, r, COLOURS[colour])
    plural_shape = shape + ("s" if n > 1 else "")
    question = f"How many {shape}s are there?" if rng.random() < 0.5 else "How many shapes are there?"
    caption = _pick(rng, (f"{NUMBER_WORDS[n]} {colour} {plural_shape}.",
                          f"There {'is' if n == 1 else 'are'} {NUMBER_WORDS[n]} {colour} {plural_shape} here.",
                          f"{NUMBER_WORDS[n]} {plural_shape}, all {colour}, scattered on a light background."))
    return ImageItem(img, question, str(n), _sentence(caption), "count")


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
    one, two = f"{colours[0]} {shapes[0]}", f"{colours[1]} {shapes[1]}"
    relation = "left of" if horizontal else "above"
    caption = _pick(rng, (f"{_a(one)} at the {a} and {_a(two)} at the {b}.", f"{_a(one)} {relation} {_a(two)}.",
                          f"the {two} is at the {b}, the {one} at the {a}."))
    return ImageItem(img, question, sides[t], _sentence(caption), "position")


def which_red_item(rng: np.random.Generator) -> ImageItem:
    img, draw = _canvas(rng)
    k = int(rng.integers(2, 4))
    shapes = _names(rng, SHAPES, k)
    colours = ["red", *_names(rng, [c for c in COLOURS if c != "red"], k - 1)]
    r = min(img.size) * float(rng.uniform(0.10, 0.16))
    centres = _place(rng, img.size, k, r)
    for shape, colour, (cx, cy) in zip(shapes, colours, centres, strict=True):
        draw_shape_on(draw, shape, cx, cy, r, COLOURS[colour])
    others = _and([_a(f"{c} {s}") for s, c in zip(shapes[1:], colours[1:], strict=True)])
    caption = _pick(rng, (f"a red {shapes[0]} and {others}.",
                          f"a red {shapes[0]} {where(*centres[0], img.size)}, with {others}.",
                          f"{others} next to a red {shapes[0]}."))
    return ImageItem(img, "Which shape is red?", shapes[0], _sentence(caption), "which_red")


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits [1797, 8, 8] in 0..16 and labels [1797], read from its CSV (importing sklearn is slow)."""
    csv = _package_file("sklearn", "datasets/data/digits.csv.gz")
    if csv is not None:
        table = np.loadtxt(csv, delimiter=",", dtype=np.float32)  # [1797, 65]: 64 pixels, label
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
    caption = _pick(rng, (f"A handwritten digit {NUMBER_WORDS[d]}.", f"The number {d}, written by hand in dark ink.",
                          f"A blurry handwritten {NUMBER_WORDS[d]} on a white background."))
    return ImageItem(img, question, str(d), caption, "digit")


# --- photos ---

def _package_file(package: str, rel: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(root) / rel).is_file():
            return Path(root) / rel
    return None


@cache
def _photo(package: str, name: str) -> Image.Image:
    folder = {"skimage": "data", "sklearn": "datasets/images"}[package]
    path = _package_file(package, f"{folder}/{name}")
    if path is None:
        raise FileNotFoundError(f"{package} has no {folder}/{name}: install {package} (pip install -e '.[train]')")
    return Image.open(path).convert("RGB")


def photo_item(rng: np.random.Generator) -> ImageItem:
    package, file, _, questions, captions = PHOTOS[int(rng.integers(len(PHOTOS)))]
    question, answer = _pick(rng, questions)
    img = _photo(package, file)
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
    img = img.resize((side, max(32, int(side * ch / cw))), Image.Resampling.BILINEAR)
    return ImageItem(img, question, answer, _pick(rng, captions), "photo")


# --- backgrounds ---

def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int = 12) -> tuple[int, int, int]:
    r, g, b = (int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)
    return r, g, b


@cache
def _texture(name: str) -> np.ndarray:
    return np.asarray(_photo("skimage", name).convert("L"), dtype=np.float32) / 255.0  # [H, W] in 0..1


def background(rng: np.random.Generator, size: tuple[int, int], held_out: bool = False,
               kinds: tuple[str, ...] | None = None) -> tuple[Image.Image, str]:
    """An RGB background of `size` and its description ("a plain light blue background"). Kinds: plain, gradient,
    noise, texture, clutter; held-out renders may also be a checkerboard or stripes."""
    w, h = size
    pool = kinds or (TRAIN_BACKGROUNDS + HELD_OUT_BACKGROUNDS if held_out else TRAIN_BACKGROUNDS)
    kind = _pick(rng, pool)
    c1, c2 = _names(rng, list(PALETTE), 2)
    a, b = np.array(_jitter(rng, PALETTE[c1]), np.float32), np.array(_jitter(rng, PALETTE[c2]), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "gradient":
        angle = float(rng.uniform(0, 2 * np.pi))
        t = xx * np.cos(angle) + yy * np.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        pixels = a * (1 - t[..., None]) + b * t[..., None]
        desc = f"a {c1} to {c2} gradient"
    elif kind == "noise":
        cells = int(rng.integers(4, 24))
        coarse = rng.uniform(-1, 1, size=(h // cells + 2, w // cells + 2, 3)).astype(np.float32)
        coarse_img = Image.fromarray(((coarse + 1) * 127.5).astype(np.uint8)).resize(
            (w, h), Image.Resampling.BICUBIC)
        smooth = np.asarray(coarse_img, np.float32) / 127.5 - 1
        pixels = a + smooth * float(rng.uniform(25, 60)) + rng.normal(0, 8, size=(h, w, 3))
        desc = f"a mottled {c1} texture"
    elif kind == "texture":
        file = _pick(rng, tuple(TEXTURES))
        tex = _texture(file)
        y0, x0 = int(rng.integers(0, tex.shape[0] - 64)), int(rng.integers(0, tex.shape[1] - 64))
        crop = Image.fromarray((tex[y0:, x0:] * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
        t = np.asarray(crop, np.float32)[..., None] / 255.0
        pixels = a * (0.35 + 0.9 * t)
        desc = f"{TEXTURES[file]} tinted {c1}"
    elif kind == "checker":
        cell = int(rng.integers(8, 40))
        mask = ((xx // cell + yy // cell) % 2)[..., None]
        pixels = a * (1 - mask) + b * mask
        desc = f"a {c1} and {c2} checkerboard"
    elif kind == "stripes":
        width, angle = float(rng.uniform(6, 30)), float(rng.uniform(0, np.pi))
        mask = ((xx * np.cos(angle) + yy * np.sin(angle)) // width % 2)[..., None]
        pixels = a * (1 - mask) + b * mask
        desc = f"{c1} and {c2} stripes"
    else:  # plain, or the base of clutter
        pixels = np.broadcast_to(a, (h, w, 3)).copy()
        desc = f"a plain {c1} background"
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if kind == "clutter":
        layer = Image.new("RGBA", size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        for _ in range(int(rng.integers(12, 40))):
            colour = (*_jitter(rng, PALETTE[_pick(rng, list(PALETTE))], 20), int(rng.integers(60, 200)))
            x, y, s = float(rng.uniform(0, w)), float(rng.uniform(0, h)), float(rng.uniform(4, 0.2 * min(w, h)))
            shape = int(rng.integers(3))
            if shape == 0:
                draw.ellipse((x - s, y - s, x + s, y + s * float(rng.uniform(0.5, 1.5))), fill=colour)
            elif shape == 1:
                draw.rectangle((x - s, y - s / 2, x + s, y + s / 2), fill=colour)
            else:
                draw.line((x, y, x + float(rng.uniform(-3, 3)) * s, y + float(rng.uniform(-3, 3)) * s), fill=colour,
                          width=int(rng.integers(1, 6)))
        img = Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")
        desc = f"a cluttered {c1} background"
    return img, desc


def _luma(rgb: tuple[int, ...] | np.ndarray) -> float:
    r, g, b = (float(x) for x in rgb[:3])
    return 0.299 * r + 0.587 * g + 0.114 * b


def _ink(rng: np.random.Generator, under: float) -> str:
    """A palette colour name that reads well over a region of mean luma `under`."""
    names = [n for n, rgb in PALETTE.items() if abs(_luma(rgb) - under) > 90]
    return _pick(rng, names or ["black" if under > 128 else "white"])


# --- emoji sprites ---

def line_split(concept: Concept) -> str:
    """ "train" if `concept` is drawn in line style in training, "held_out" if only held-out images show it so."""
    return "train" if stable_hash("line:" + concept.name) % 2 == 0 else "held_out"


@dataclass
class _Sprite:
    image: Image.Image  # RGBA
    style: str  # "colour", "grey" or "line"
    description: str  # "a colour emoji", "a grey picture", "a navy line drawing"


def _sprite(rng: np.random.Generator, concept: Concept, style: str, side: int, angle: float,
            under: float) -> _Sprite:
    if style == "line":
        mask = line_glyph(concept.char)
        assert mask is not None
        ink = _ink(rng, under)
        glyph = Image.new("RGBA", mask.size, (*_jitter(rng, PALETTE[ink], 10), 255))
        glyph.putalpha(mask)
        description = f"a {ink} line drawing"
    else:
        glyph = colour_glyph(concept.char)
        if style == "grey":
            alpha = glyph.getchannel("A")
            glyph = ImageOps.grayscale(glyph.convert("RGB")).convert("RGBA")
            glyph.putalpha(alpha)
        description = "a grey picture" if style == "grey" else _pick(rng, ("a colour emoji", "a cartoon", "an emoji"))
    scale = side / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                         Image.Resampling.LANCZOS)
    if abs(angle) > 0.5:
        glyph = glyph.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    return _Sprite(glyph, style, description)


def _paste(canvas: Image.Image, sprite: Image.Image, cx: float, cy: float) -> tuple[int, int, int, int]:
    x, y = round(cx - sprite.width / 2), round(cy - sprite.height / 2)
    canvas.paste(sprite, (x, y), sprite)
    return x, y, x + sprite.width, y + sprite.height


def _region_luma(img: Image.Image, box: tuple[float, float, float, float]) -> float:
    x0, y0, x1, y1 = (int(v) for v in box)
    crop = np.asarray(img.crop((max(0, x0), max(0, y0), max(x0 + 1, x1), max(y0 + 1, y1))), np.float32)
    return _luma(crop.reshape(-1, 3).mean(0))


def _emoji_style(rng: np.random.Generator, concept: Concept, held_out: bool) -> tuple[str, str]:
    """(style, eval subgroup) of one render of `concept`."""
    if held_out:
        if has_line_glyph(concept) and rng.random() < 0.5:
            return "line", "line_seen" if line_split(concept) == "train" else "line_unseen"
        return ("grey" if rng.random() < 0.1 else "colour"), "colour"
    u = float(rng.random())
    if u < 0.3 and has_line_glyph(concept) and line_split(concept) == "train":
        return "line", "line_seen"
    return ("grey" if u > 0.9 else "colour"), "colour"


def emoji_item(rng: np.random.Generator, held_out: bool, concept: Concept | None = None) -> ImageItem:
    """One emoji naming item; `concept` fixes the concept (the rng still draws one, so the rest is unchanged)."""
    drawn = CONCEPTS[int(rng.integers(len(CONCEPTS)))]
    concept = concept or drawn
    style, subgroup = _emoji_style(rng, concept, held_out)
    size = _pick(rng, SIZES)
    w, h = size
    img, bg = background(rng, size, held_out)
    side = int(min(w, h) * float(rng.uniform(0.3, 0.75)))
    angle = float(rng.uniform(-35, 35)) if rng.random() < 0.5 else float(rng.uniform(-8, 8))
    flip = bool(rng.random() < 0.3)
    # the centre: anywhere the (rotated) sprite fits
    half = side * 0.72
    cx = float(rng.uniform(min(half, w / 2), max(w - half, w / 2)))
    cy = float(rng.uniform(min(half, h / 2), max(h - half, h / 2)))
    sprite = _sprite(rng, concept, style, side, angle, _region_luma(img, (cx - half, cy - half, cx + half, cy + half)))
    image = sprite.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else sprite.image
    x0, y0, x1, y1 = _paste(img, image, cx, cy)
    covered = ""
    if rng.random() < 0.25:  # partial occlusion: a box over 15-35 % of the sprite, from one side
        c = _pick(rng, list(PALETTE))
        frac = float(rng.uniform(0.15, 0.35))
        edge = int(rng.integers(4))
        bw, bh = (x1 - x0) * frac, (y1 - y0) * frac
        box = ((x0 - 4, y0 - 4, x0 + bw, y1 + 4), (x1 - bw, y0 - 4, x1 + 4, y1 + 4),
               (x0 - 4, y0 - 4, x1 + 4, y0 + bh), (x0 - 4, y1 - bh, x1 + 4, y1 + 4))[edge]
        ImageDraw.Draw(img).rectangle(box, fill=_jitter(rng, PALETTE[c]))
        covered = f", partly covered by a {c} box"
    name, thing = concept.name, with_article(concept.name)
    place = where(cx, cy, size)
    scale = "small" if side < 0.4 * min(w, h) else "large" if side > 0.62 * min(w, h) else ""
    tilt = " tilted to the left" if angle > 15 else " tilted to the right" if angle < -15 else ""
    u = float(rng.random())
    if u < 0.3:
        question = CATEGORY_QUESTIONS.get(concept.category, _pick(rng, EMOJI_QUESTIONS))
    else:
        question = _pick(rng, EMOJI_QUESTIONS)
    caption = _pick(rng, (
        f"{thing} {place} on {bg}{covered}.",
        f"{sprite.description} of {thing}{tilt}, {place}, on {bg}{covered}.",
        f"{bg} with {with_article(name, scale)} {place}{covered}.",
        f"this picture shows {thing}{tilt} against {bg}.",
        f"{with_article(name, scale)}, drawn as {sprite.description}, {place}{covered}.",
        f"{thing}. It is {place}, on {bg}.",
    ))
    return ImageItem(img, question, name, _sentence(caption), "emoji", subgroup)


# --- scenes of several emoji ---

SCENE_KINDS = ("left", "right", "middle", "yes", "no", "count", "next_to")
SCENE_BACKGROUNDS = ("plain", "gradient", "noise", "texture")  # no clutter: it hides small objects


def _row_place(i: int, n: int) -> str:
    """Where the i-th of n objects in a row is: "on the left", "second from the right", "in the middle"."""
    if i == 0:
        return "on the left"
    if i == n - 1:
        return "on the right"
    if n == 3:
        return "in the middle"
    return "second from the left" if i == 1 else "second from the right"


def scene_item(rng: np.random.Generator, held_out: bool) -> ImageItem:
    kind = _pick(rng, SCENE_KINDS)
    size = _pick(rng, SIZES)
    w, h = size
    img, bg = background(rng, size, held_out,
                         kinds=SCENE_BACKGROUNDS + (HELD_OUT_BACKGROUNDS if held_out else ()))
    if kind == "count":
        countable = [c for c in CONCEPTS if c.countable]
        target = countable[int(rng.integers(len(countable)))]
        k, others = int(rng.integers(1, 4)), int(rng.integers(0, 3))
        pool = [c for c in CONCEPTS if c.name != target.name]
        objects = [target] * k + [pool[int(i)] for i in rng.choice(len(pool), size=others, replace=False)]
        objects = [objects[int(i)] for i in rng.permutation(len(objects))]
    else:
        n = 3 if kind == "middle" else int(rng.integers(2, 5))
        objects = [CONCEPTS[int(i)] for i in rng.choice(len(CONCEPTS), size=n, replace=False)]
    n = len(objects)
    # a row of slots, left to right, each with its own jitter; counting scenes may use two rows
    rows = 2 if kind == "count" and n > 3 else 1
    cols = -(-n // rows)
    slot_w, slot_h = w / cols, h / rows
    side = int(min(slot_w * 0.8, slot_h * 0.7) * float(rng.uniform(0.75, 1.0)))
    centres = []
    for i in range(n):
        r, c = divmod(i, cols)
        centres.append((slot_w * (c + 0.5) + float(rng.uniform(-0.08, 0.08)) * slot_w,
                        slot_h * (r + 0.5) + float(rng.uniform(-0.12, 0.12)) * slot_h))
    for concept, (cx, cy) in zip(objects, centres, strict=True):
        angle = float(rng.uniform(-12, 12))
        style = "grey" if rng.random() < 0.05 else "colour"
        half = side * 0.6
        sprite = _sprite(rng, concept, style, side, angle,
                         _region_luma(img, (cx - half, cy - half, cx + half, cy + half)))
        _paste(img, sprite.image, cx, cy)
    names = [c.name for c in objects]
    if kind in ("left", "right", "middle"):
        question = f"What is {'in the middle' if kind == 'middle' else 'on the ' + kind}?"
        answer = names[{"left": 0, "right": -1, "middle": 1}[kind]]
    elif kind in ("yes", "no"):
        if kind == "yes":
            asked = names[int(rng.integers(n))]
        else:
            absent = [c.name for c in CONCEPTS if c.name not in names]
            asked = absent[int(rng.integers(len(absent)))]
        question = _pick(rng, (f"Is there {with_article(asked)} in the picture?", f"Do you see {with_article(asked)}?",
                               f"Is there {with_article(asked)} here?"))
        answer = kind
    elif kind == "count":
        if rng.random() < 0.8:
            question, answer = f"How many {plural(target.name)} are there?", str(k)
        else:
            question, answer = "How many objects are there?", str(n)
    else:  # next_to: an object at one end of the row has one neighbour
        end = int(rng.integers(2)) if n > 2 else int(rng.integers(n))
        i = 0 if end == 0 else n - 1
        question, answer = f"What is next to the {names[i]}?", names[1 if i == 0 else n - 2]
    if kind == "count":
        counted = {}
        for name in names:
            counted[name] = counted.get(name, 0) + 1
        parts = [with_article(name) if m == 1 else f"{NUMBER_WORDS[m]} {plural(name)}" for name, m in counted.items()]
        caption = _pick(rng, (f"{_and(parts)} on {bg}.", f"there are {NUMBER_WORDS[n]} objects: {_and(parts)}.",
                              f"{bg} with {_and(parts)}."))
    else:
        things = [with_article(x) for x in names]
        placed = [f"{t} {_row_place(i, n)}" for i, t in enumerate(things)]
        caption = _pick(rng, (f"from left to right: {_and(things)}, on {bg}.", f"{_and(placed)}.",
                              f"{NUMBER_WORDS[n]} objects in a row on {bg}: {_and(things)}.",
                              f"{things[0]} on the left and {things[-1]} on the right"
                              + (f", with {_and(things[1:-1])} between them" if n > 2 else "") + "."))
    return ImageItem(img, question, answer, _sentence(caption), "scene", kind)


# --- rendered text ---

@cache
def text_font_paths() -> tuple[Path, ...]:
    """The 34 `TEXT_FONTS` files; FileNotFoundError naming the Debian packages if any is missing."""
    paths = tuple(FONT_ROOT / rel for _, rel, _ in TEXT_FONTS)
    missing = sorted({pkg for (pkg, _, _), p in zip(TEXT_FONTS, paths, strict=True) if not p.is_file()})
    if missing:
        raise FileNotFoundError(f"the text task needs fonts from Debian {' '.join(missing)}: "
                                f"apt-get install {' '.join(missing)} (part of `make setup`)")
    return paths


@cache
def _font(i: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(text_font_paths()[i]), size)


def _blocked(word: str) -> bool:
    return hashlib.sha256(word.encode()).hexdigest()[:10] in _BLOCKED


@cache
def text_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training words, held-out words): lowercase a-z words of 3-8 letters from Debian `wamerican`, minus offensive
    words and articles; one in ten (by a hash of the word, so it does not depend on the list's order) is held out."""
    package, path = WORD_LIST
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: apt-get install {package} (part of `make setup`)")
    words = sorted({w for w in path.read_text(encoding="utf-8", errors="ignore").split()
                    if re.fullmatch(r"[a-z]{3,8}", w) and w != "the" and not _blocked(w)})
    held = tuple(w for w in words if is_held_out_text(w))
    return tuple(w for w in words if not is_held_out_text(w)), held


def is_held_out_text(text: str) -> bool:
    """Words and numbers whose hash is 0 mod 10 are only ever rendered in held-out images."""
    return stable_hash("text:" + text) % 10 == 0


def _number(rng: np.random.Generator, held: bool) -> str:
    for _ in range(1000):
        n = str(int(rng.integers(0, 10 ** int(rng.integers(1, 5)))))
        if is_held_out_text(n) == held:
            return n
    raise RuntimeError("no number found")  # unreachable: a tenth of all numbers are held out


def text_item(rng: np.random.Generator, held_out: bool) -> ImageItem:
    train_words, held_words = text_words()
    unseen = held_out and rng.random() < 0.5
    is_number = rng.random() < 0.15
    if is_number:
        text = _number(rng, unseen)
    else:
        pool = held_words if unseen else train_words
        text = pool[int(rng.integers(len(pool)))]
    case = float(rng.random())
    shown = text.upper() if case < 0.25 else text.capitalize() if case < 0.5 else text
    size = _pick(rng, SIZES)
    w, h = size
    img, bg = background(rng, size, held_out, kinds=("plain", "plain", "gradient", "noise", "texture", "clutter"))
    font_index = int(rng.integers(len(TEXT_FONTS)))
    style = TEXT_FONTS[font_index][2]
    px = int(h * float(rng.uniform(0.12, 0.32)))
    font = _font(font_index, px)
    while px > 10 and font.getbbox(shown)[2] - font.getbbox(shown)[0] > 0.8 * w:
        px = int(px * 0.9)
        font = _font(font_index, px)
    left, top, right, bottom = font.getbbox(shown)
    tw, th = right - left, bottom - top
    pad = int(px * float(rng.uniform(0.25, 0.6)))
    layer = Image.new("RGBA", (tw + 2 * pad, th + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    on_sign = bool(rng.random() < 0.5)
    angle = float(rng.uniform(-10, 10))
    cx = float(rng.uniform(layer.width / 2, max(layer.width / 2, w - layer.width / 2)))
    cy = float(rng.uniform(layer.height / 2, max(layer.height / 2, h - layer.height / 2)))
    if on_sign:
        plate = _pick(rng, list(PALETTE))
        plate_rgb = _jitter(rng, PALETTE[plate], 8)
        border = _pick(rng, (None, _ink(rng, _luma(plate_rgb))))
        draw.rounded_rectangle((0, 0, layer.width - 1, layer.height - 1), radius=int(pad * 0.6), fill=plate_rgb,
                               outline=PALETTE[border] if border else None, width=max(1, px // 12))
        under = _luma(plate_rgb)
    else:
        under = _region_luma(img, (cx - layer.width / 2, cy - layer.height / 2, cx + layer.width / 2,
                                   cy + layer.height / 2))
    ink = _ink(rng, under)
    draw.text((pad - left, pad - top), shown, font=font, fill=(*_jitter(rng, PALETTE[ink], 10), 255))
    layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    _paste(img, layer, cx, cy)
    kind = "number" if is_number else "word"
    if on_sign:
        question = _pick(rng, ("What does the sign say?",) + (NUMBER_QUESTIONS if is_number else WORD_QUESTIONS))
        sign = f"a {plate} sign"
        caption = _pick(rng, (f'{sign} that says "{shown}" in {ink} {style} letters.',
                              f'{sign} {where(cx, cy, size)} with the {kind} "{shown}" on it, on {bg}.',
                              f'the {kind} "{shown}" written in {ink} on {sign}.'))
    else:
        question = _pick(rng, NUMBER_QUESTIONS if is_number else WORD_QUESTIONS)
        caption = _pick(rng, (f'the {kind} "{shown}" in {ink} {style} letters on {bg}.',
                              f'"{shown}" written in {ink} {where(cx, cy, size)}.',
                              f'{bg} with the {kind} "{shown}" in {style} type'
                              + (", slightly tilted." if abs(angle) > 4 else ".")))
    return ImageItem(img, question, text, _sentence(caption), "text",
                     "out_of_vocab" if is_held_out_text(text) else "in_vocab")


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
