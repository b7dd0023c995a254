"""vita-mini's rendered text images: a word or a number on a sign or straight on the background (`text_item`).

See `vita.datasets.mini.images` for the task, its questions and its held-out words.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vita.datasets.mini.canvas import (
    PALETTE,
    SIZES,
    ImageItem,
    background,
    ink_for,
    jitter,
    luma,
    paste,
    pick,
    region_luma,
    sentence,
    where,
)
from vita.datasets.mini.emoji import FONT_ROOT, stable_hash

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

WORD_QUESTIONS = ("What word is written?", "What is written here?", "What does it say?", "Read the text in the image.",
                  "What does the text say?")
NUMBER_QUESTIONS = ("What number is written?", "What number is shown?", "What does it say?", "Read the number.")


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
    size = pick(rng, SIZES)
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
        plate = pick(rng, list(PALETTE))
        plate_rgb = jitter(rng, PALETTE[plate], 8)
        border = pick(rng, (None, ink_for(rng, luma(plate_rgb))))
        draw.rounded_rectangle((0, 0, layer.width - 1, layer.height - 1), radius=int(pad * 0.6), fill=plate_rgb,
                               outline=PALETTE[border] if border else None, width=max(1, px // 12))
        under = luma(plate_rgb)
    else:
        under = region_luma(img, (cx - layer.width / 2, cy - layer.height / 2, cx + layer.width / 2,
                                  cy + layer.height / 2))
    ink = ink_for(rng, under)
    draw.text((pad - left, pad - top), shown, font=font, fill=(*jitter(rng, PALETTE[ink], 10), 255))
    layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    paste(img, layer, cx, cy)
    kind = "number" if is_number else "word"
    if on_sign:
        question = pick(rng, ("What does the sign say?",) + (NUMBER_QUESTIONS if is_number else WORD_QUESTIONS))
        sign = f"a {plate} sign"
        caption = pick(rng, (f'{sign} that says "{shown}" in {ink} {style} letters.',
                             f'{sign} {where(cx, cy, size)} with the {kind} "{shown}" on it, on {bg}.',
                             f'the {kind} "{shown}" written in {ink} on {sign}.'))
    else:
        question = pick(rng, NUMBER_QUESTIONS if is_number else WORD_QUESTIONS)
        caption = pick(rng, (f'the {kind} "{shown}" in {ink} {style} letters on {bg}.',
                             f'"{shown}" written in {ink} {where(cx, cy, size)}.',
                             f'{bg} with the {kind} "{shown}" in {style} type'
                             + (", slightly tilted." if abs(angle) > 4 else ".")))
    # the answer is the word as the picture shows it ("STRANGER", "Stranger"): the picture reader (vita.media.ocr) gives
    # it so, and copying it is what a small LLM does well (lower-case answers were copied wrong: "stanger" for STRANGER,
    # 2026-12-06); answers are scored case-folded
    return ImageItem(img, question, shown, sentence(caption), "text",
                     "out_of_vocab" if is_held_out_text(text) else "in_vocab")
