"""vita-mini's emoji images: one emoji object to name (`emoji_item`), and scenes of several (`scene_item`).

See `vita.datasets.mini.images` for the tasks, their questions and their held-out renders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from vita.datasets.mini import artists
from vita.datasets.mini.canvas import (
    HELD_OUT_BACKGROUNDS,
    NUMBER_WORDS,
    PALETTE,
    SIZES,
    ImageItem,
    background,
    ink_for,
    jitter,
    listing,
    paste,
    pick,
    region_luma,
    sentence,
    where,
)
from vita.datasets.mini.emoji import (
    CONCEPTS,
    Concept,
    colour_glyph,
    has_line_glyph,
    line_glyph,
    plural,
    stable_hash,
    with_article,
)

EMOJI_QUESTIONS = ("What is this?", "What is in the picture?", "Name the object.", "What do you see?",
                   "What is shown in the image?", "What is this called?", "What is in this image?")
CATEGORY_QUESTIONS = {"animal": "What animal is this?", "food": "What food is this?", "drink": "What drink is this?",
                      "plant": "What plant is this?", "vehicle": "What vehicle is this?",
                      "building": "What building is this?"}


# --- emoji sprites ---

def line_split(concept: Concept) -> str:
    """ "train" if `concept` is drawn in line style in training, "held_out" if only held-out images show it so."""
    return "train" if stable_hash("line:" + concept.name) % 2 == 0 else "held_out"


@dataclass
class _Sprite:
    image: Image.Image  # RGBA
    style: str  # "colour", "grey" or "line"
    description: str  # "a colour emoji", "a grey picture", "a navy line drawing"


def render_sprite(rng: np.random.Generator, concept: Concept, style: str, side: int, angle: float,
                  under: float, drawing: Image.Image | None = None) -> _Sprite:
    """`drawing`: another artist's drawing of `concept` (`artists.drawing`: an alpha mask for "line", RGBA else) in
    place of the fonts' glyphs."""
    if style == "line":
        mask = drawing if drawing is not None else line_glyph(concept.char)
        assert mask is not None
        ink = ink_for(rng, under)
        glyph = Image.new("RGBA", mask.size, (*jitter(rng, PALETTE[ink], 10), 255))
        glyph.putalpha(mask)
        description = f"a {ink} line drawing"
    else:
        glyph = drawing if drawing is not None else colour_glyph(concept.char)
        if style == "grey":
            alpha = glyph.getchannel("A")
            glyph = ImageOps.grayscale(glyph.convert("RGB")).convert("RGBA")
            glyph.putalpha(alpha)
        description = "a grey picture" if style == "grey" else pick(rng, ("a colour emoji", "a cartoon", "an emoji"))
    scale = side / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                         Image.Resampling.LANCZOS)
    if abs(angle) > 0.5:
        glyph = glyph.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    return _Sprite(glyph, style, description)


def emoji_style(rng: np.random.Generator, concept: Concept, held_out: bool) -> tuple[str, str]:
    """(style, eval subgroup) of one render of `concept`."""
    if held_out:
        if has_line_glyph(concept) and rng.random() < 0.5:
            return "line", "line_seen" if line_split(concept) == "train" else "line_unseen"
        return ("grey" if rng.random() < 0.1 else "colour"), "colour"
    u = float(rng.random())
    if u < 0.3 and has_line_glyph(concept) and line_split(concept) == "train":
        return "line", "line_seen"
    return ("grey" if u > 0.9 else "colour"), "colour"


def emoji_item(rng: np.random.Generator, held_out: bool, concept: Concept | None = None,
               artist: str | None = None) -> ImageItem:
    """One emoji naming item; `concept` fixes the concept (the rng still draws one, so the rest is unchanged).
    `artist` (a key of `artists.ARTISTS`, training renders only): that artist's drawing of the concept, in its own
    style (a line drawing for a line artist, colour or grey else), subgroup "artist"."""
    drawn = CONCEPTS[int(rng.integers(len(CONCEPTS)))]
    concept = concept or drawn
    drawing = None
    if artist is None:
        style, subgroup = emoji_style(rng, concept, held_out)
    else:
        drawing = artists.drawing(concept.char, artist)
        if drawing is None:
            raise ValueError(f"{artist} has no drawing of {concept.name!r} ({concept.char!r})")
        style = "line" if artists.ARTISTS[artist].line else ("grey" if rng.random() < 0.1 else "colour")
        subgroup = "artist"
    size = pick(rng, SIZES)
    w, h = size
    img, bg = background(rng, size, held_out)
    side = int(min(w, h) * float(rng.uniform(0.3, 0.75)))
    angle = float(rng.uniform(-35, 35)) if rng.random() < 0.5 else float(rng.uniform(-8, 8))
    flip = bool(rng.random() < 0.3)
    # the centre: anywhere the (rotated) sprite fits
    half = side * 0.72
    cx = float(rng.uniform(min(half, w / 2), max(w - half, w / 2)))
    cy = float(rng.uniform(min(half, h / 2), max(h - half, h / 2)))
    sprite = render_sprite(rng, concept, style, side, angle,
                           region_luma(img, (cx - half, cy - half, cx + half, cy + half)), drawing)
    image = sprite.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else sprite.image
    x0, y0, x1, y1 = paste(img, image, cx, cy)
    covered = ""
    if rng.random() < 0.25:  # partial occlusion: a box over 15-35 % of the sprite, from one side
        c = pick(rng, list(PALETTE))
        frac = float(rng.uniform(0.15, 0.35))
        edge = int(rng.integers(4))
        bw, bh = (x1 - x0) * frac, (y1 - y0) * frac
        box = ((x0 - 4, y0 - 4, x0 + bw, y1 + 4), (x1 - bw, y0 - 4, x1 + 4, y1 + 4),
               (x0 - 4, y0 - 4, x1 + 4, y0 + bh), (x0 - 4, y1 - bh, x1 + 4, y1 + 4))[edge]
        ImageDraw.Draw(img).rectangle(box, fill=jitter(rng, PALETTE[c]))
        covered = f", partly covered by a {c} box"
    name, thing = concept.name, with_article(concept.name)
    place = where(cx, cy, size)
    scale = "small" if side < 0.4 * min(w, h) else "large" if side > 0.62 * min(w, h) else ""
    tilt = " tilted to the left" if angle > 15 else " tilted to the right" if angle < -15 else ""
    u = float(rng.random())
    if u < 0.3:
        question = CATEGORY_QUESTIONS.get(concept.category, pick(rng, EMOJI_QUESTIONS))
    else:
        question = pick(rng, EMOJI_QUESTIONS)
    caption = pick(rng, (
        f"{thing} {place} on {bg}{covered}.",
        f"{sprite.description} of {thing}{tilt}, {place}, on {bg}{covered}.",
        f"{bg} with {with_article(name, scale)} {place}{covered}.",
        f"this picture shows {thing}{tilt} against {bg}.",
        f"{with_article(name, scale)}, drawn as {sprite.description}, {place}{covered}.",
        f"{thing}. It is {place}, on {bg}.",
    ))
    return ImageItem(img, question, name, sentence(caption), "emoji", subgroup)


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
    kind = pick(rng, SCENE_KINDS)
    size = pick(rng, SIZES)
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
        sprite = render_sprite(rng, concept, style, side, angle,
                         region_luma(img, (cx - half, cy - half, cx + half, cy + half)))
        paste(img, sprite.image, cx, cy)
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
        question = pick(rng, (f"Is there {with_article(asked)} in the picture?", f"Do you see {with_article(asked)}?",
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
        caption = pick(rng, (f"{listing(parts)} on {bg}.", f"there are {NUMBER_WORDS[n]} objects: {listing(parts)}.",
                             f"{bg} with {listing(parts)}."))
    else:
        things = [with_article(x) for x in names]
        placed = [f"{t} {_row_place(i, n)}" for i, t in enumerate(things)]
        caption = pick(rng, (f"from left to right: {listing(things)}, on {bg}.", f"{listing(placed)}.",
                             f"{NUMBER_WORDS[n]} objects in a row on {bg}: {listing(things)}.",
                             f"{things[0]} on the left and {things[-1]} on the right"
                             + (f", with {listing(things[1:-1])} between them" if n > 2 else "") + "."))
    return ImageItem(img, question, answer, sentence(caption), "scene", kind)
