"""What the vita-mini image tasks draw with (`vita.datasets.mini.images`): the item, the canvas sizes and named
colours, backgrounds (plain, gradient, noise, texture, clutter; checkerboard and stripes only in held-out renders),
inks that read over them, placement and the phrases captions are built from.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZES = ((224, 224), (256, 192), (192, 256), (320, 224))
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


@dataclass
class ImageItem:
    image: Image.Image
    question: str
    answer: str
    caption: str
    task: str
    subgroup: str = ""  # finer eval group inside the task: emoji "colour" / "line_seen" / "line_unseen", text
    #                     "in_vocab" / "out_of_vocab", scene the question kind (`SCENE_KINDS`); "" elsewhere


def pick(rng: np.random.Generator, options: tuple | list):
    return options[int(rng.integers(len(options)))]


def sentence(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text[0].upper() + text[1:]


def choose(rng: np.random.Generator, pool: tuple[str, ...] | list[str], k: int) -> list[str]:
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


def listing(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# --- files inside installed packages ---

def package_file(package: str, rel: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(root) / rel).is_file():
            return Path(root) / rel
    return None


@cache
def package_photo(package: str, name: str) -> Image.Image:
    folder = {"skimage": "data", "sklearn": "datasets/images"}[package]
    path = package_file(package, f"{folder}/{name}")
    if path is None:
        raise FileNotFoundError(f"{package} has no {folder}/{name}: install {package} (pip install -e '.[train]')")
    return Image.open(path).convert("RGB")


# --- backgrounds ---

def jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int = 12) -> tuple[int, int, int]:
    r, g, b = (int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)
    return r, g, b


@cache
def _texture(name: str) -> np.ndarray:
    return np.asarray(package_photo("skimage", name).convert("L"), dtype=np.float32) / 255.0  # [H, W] in 0..1


def background(rng: np.random.Generator, size: tuple[int, int], held_out: bool = False,
               kinds: tuple[str, ...] | None = None) -> tuple[Image.Image, str]:
    """An RGB background of `size` and its description ("a plain light blue background"). Kinds: plain, gradient,
    noise, texture, clutter; held-out renders may also be a checkerboard or stripes."""
    w, h = size
    pool = kinds or (TRAIN_BACKGROUNDS + HELD_OUT_BACKGROUNDS if held_out else TRAIN_BACKGROUNDS)
    kind = pick(rng, pool)
    c1, c2 = choose(rng, list(PALETTE), 2)
    a, b = np.array(jitter(rng, PALETTE[c1]), np.float32), np.array(jitter(rng, PALETTE[c2]), np.float32)
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
        file = pick(rng, tuple(TEXTURES))
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
            colour = (*jitter(rng, PALETTE[pick(rng, list(PALETTE))], 20), int(rng.integers(60, 200)))
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


def luma(rgb: tuple[int, ...] | np.ndarray) -> float:
    r, g, b = (float(x) for x in rgb[:3])
    return 0.299 * r + 0.587 * g + 0.114 * b


def ink_for(rng: np.random.Generator, under: float) -> str:
    """A palette colour name that reads well over a region of mean luma `under`."""
    names = [n for n, rgb in PALETTE.items() if abs(luma(rgb) - under) > 90]
    return pick(rng, names or ["black" if under > 128 else "white"])


def paste(canvas: Image.Image, sprite: Image.Image, cx: float, cy: float) -> tuple[int, int, int, int]:
    x, y = round(cx - sprite.width / 2), round(cy - sprite.height / 2)
    canvas.paste(sprite, (x, y), sprite)
    return x, y, x + sprite.width, y + sprite.height


def region_luma(img: Image.Image, box: tuple[float, float, float, float]) -> float:
    x0, y0, x1, y1 = (int(v) for v in box)
    crop = np.asarray(img.crop((max(0, x0), max(0, y0), max(x0 + 1, x1), max(y0 + 1, y1))), np.float32)
    return luma(crop.reshape(-1, 3).mean(0))
