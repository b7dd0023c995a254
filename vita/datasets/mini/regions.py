"""Pictures whose every image row is named: what the vision projector should say at each place of the picture.

vita-mini's tower (EfficientNet-Lite0 at 256 px, stride 32, pixel shuffle 2; before it DINOv2-S at 112 px, patch 14)
gives a 4 x 4 grid of rows per picture, row-major.
The generator knows what it drew where, so each row gets the words of the object covering most of its cell (a shape
scene: "red circle"; an emoji scene: the concept's name, "hedgehog") or "" where no object covers `MIN_COVER` of
it. `vita.training.region_align` makes the projector write those words' embeddings, so that the LLM reads a picture
almost as it reads a description (measured 2026-12-04: the held-out colour of a named shape 22 % -> 84 % after the
same 120 LoRA steps, see that module).

    region_item(rng, grid, mix) -> RegionItem(image, rows)   one of `mix`'s kinds (default `REGION_MIX`): shape
                                                         scenes (1-3 shapes, distinct shapes and colours), emoji scenes
                                                         (1-4 colour emoji), single emoji as the naming task draws
                                                         them (any training style: colour, grey, line drawing; tilted,
                                                         flipped, on any training background), video frames (1-3 dots
                                                         or squares on the grey of `vita.datasets.mini.videos`: "red
                                                         dot", "blue square"), handwritten digits of the training
                                                         split (cells with ink: the digit's word, "seven"), package
                                                         photos (every cell: the photo's name, "horse")
    row_labels(objects, size, grid) -> rows              masks in canvas pixels -> the label of each cell

Cells follow the processor: the picture is stretched to a square (one tile, aspect not kept), so a cell covers the
same fraction of the width and of the height whatever the canvas size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from vita.datasets.mini.canvas import NUMBER_WORDS, SIZES, background, choose, paste, pick, region_luma
from vita.datasets.mini.emoji import CONCEPTS
from vita.datasets.mini.emoji_images import SCENE_BACKGROUNDS, emoji_style, render_sprite
from vita.datasets.mini.images import BACKGROUNDS, COLOURS, PHOTOS, SHAPES, digit_picture, photo_picture, place_apart
from vita.datasets.mini.videos import HEIGHT, WIDTH
from vita.datasets.tiny import draw_shape_on

# what `region_item` draws: single emoji as the naming task shows them, since rows of emoji in scenes only (~10
# pictures per concept) named 1 of 120 held-out single renders (2026-12-05); digits and photos, since the answers of
# vita-mini trained without them stayed near chance there (held-out digits 1-2 of 15, photos 2-5 of 15, 2026-12-06)
REGION_MIX = {"shapes": 0.2, "emoji_scene": 0.2, "emoji_single": 0.3, "video": 0.15, "digit": 0.1, "photo": 0.05}
REGION_GRID = 4  # vita-mini: 112 px / patch 14 / pixel shuffle 2 -> 4 x 4 rows per picture
MIN_COVER = 0.12  # a cell is an object's when at least this fraction of it is that object (and no other covers more)


@dataclass(frozen=True)
class RegionItem:
    image: Image.Image
    rows: tuple[str, ...]  # grid * grid labels, row-major; "" = background


def row_labels(objects: list[tuple[str, np.ndarray]], size: tuple[int, int], grid: int, *,
               keep_small: bool = False) -> tuple[str, ...]:
    """`objects`: (label, mask) with masks [H, W] in [0, 1] at the canvas `size` (W, H), later ones drawn over
    earlier ones; each cell's label is the object covering the largest fraction of it, if >= `MIN_COVER`.
    `keep_small`: an object that covers no cell that much still names the background cell it covers most (a
    video's dot, 7 px across four cells, would otherwise be nowhere)."""
    w, h = size
    visible = np.zeros((h, w), np.float32)
    cover = []
    for _, mask in reversed(objects):  # what is on top hides what is below
        shown = mask * (1 - visible)
        visible = np.maximum(visible, mask)
        img = Image.fromarray(shown.astype(np.float32), mode="F").resize((grid, grid), Image.Resampling.BOX)
        cover.append(np.asarray(img, np.float32).reshape(-1))
    cover = np.stack(cover[::-1])  # [objects, cells], in drawing order
    best = cover.argmax(0)
    rows = [objects[int(b)][0] if cover[b, j] >= MIN_COVER else "" for j, b in enumerate(best)]
    if keep_small:
        for k, (label, _) in enumerate(objects):
            j = int(cover[k].argmax())
            if cover[k, j] > 0 and cover[k].max() < MIN_COVER and not rows[j]:
                rows[j] = label
    return tuple(rows)


def shape_scene(rng: np.random.Generator, grid: int) -> RegionItem:
    """1-3 shapes of distinct kinds and colours on a plain light background; rows "red circle"."""
    size = SIZES[int(rng.integers(len(SIZES)))]
    img = Image.new("RGB", size, BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))])
    draw = ImageDraw.Draw(img)
    k = int(rng.integers(1, 4))
    shapes, colours = choose(rng, SHAPES, k), choose(rng, list(COLOURS), k)
    r = min(size) * float(rng.uniform(0.10, 0.18))
    objects = []
    for shape, colour, (cx, cy) in zip(shapes, colours, place_apart(rng, size, k, r), strict=True):
        draw_shape_on(draw, shape, cx, cy, r, COLOURS[colour])
        mask = Image.new("L", size, 0)
        draw_shape_on(ImageDraw.Draw(mask), shape, cx, cy, r, 255)
        objects.append((f"{colour} {shape}", np.asarray(mask, np.float32) / 255))
    return RegionItem(img, row_labels(objects, size, grid))


def emoji_scene(rng: np.random.Generator, grid: int) -> RegionItem:
    """1-4 colour emoji in a row (some rows jittered) on a plain, gradient, noise or texture background; rows name
    the concept."""
    size = pick(rng, SIZES)
    w, h = size
    img, _ = background(rng, size, kinds=SCENE_BACKGROUNDS)
    n = int(rng.integers(1, 5))
    concepts = [CONCEPTS[int(i)] for i in rng.choice(len(CONCEPTS), size=n, replace=False)]
    slot = w / n
    side = int(min(slot * 0.85, h * 0.75) * float(rng.uniform(0.7, 1.0)))
    objects = []
    for i, concept in enumerate(concepts):
        cx = slot * (i + 0.5) + float(rng.uniform(-0.08, 0.08)) * slot
        cy = h * float(rng.uniform(0.3, 0.7))
        half = side * 0.6
        sprite = render_sprite(rng, concept, "colour", side, float(rng.uniform(-12, 12)),
                         region_luma(img, (cx - half, cy - half, cx + half, cy + half))).image
        x0, y0, _, _ = paste(img, sprite, cx, cy)
        mask = Image.new("L", size, 0)
        mask.paste(sprite.getchannel("A"), (x0, y0))
        objects.append((concept.name, np.asarray(mask, np.float32) / 255))
    return RegionItem(img, row_labels(objects, size, grid))


def video_frame(rng: np.random.Generator, grid: int) -> RegionItem:
    """A frame as `vita.datasets.mini.videos` draws them: 160 x 120, plain grey, 1-3 dots (r 7-11 px) or squares
    (half side 10-18 px) of distinct colours; rows "red dot" / "blue square" (`keep_small`)."""
    size = (WIDTH, HEIGHT)
    img = Image.new("RGB", size, (int(rng.integers(200, 250)),) * 3)
    draw = ImageDraw.Draw(img)
    k = int(rng.integers(1, 4))
    colours = choose(rng, list(COLOURS), k)
    objects = []
    for colour in colours:
        kind = "dot" if rng.random() < 0.5 else "square"
        r = float(rng.uniform(7, 11)) if kind == "dot" else float(rng.uniform(10, 18))
        cx, cy = float(rng.uniform(r + 2, WIDTH - r - 2)), float(rng.uniform(r + 2, HEIGHT - r - 2))
        box = (cx - r, cy - r, cx + r, cy + r)
        mask = Image.new("L", size, 0)
        for canvas, ink in ((draw, COLOURS[colour]), (ImageDraw.Draw(mask), 255)):
            (canvas.ellipse if kind == "dot" else canvas.rectangle)(box, fill=ink)
        objects.append((f"{colour} {kind}", np.asarray(mask, np.float32) / 255))
    return RegionItem(img, row_labels(objects, size, grid, keep_small=True))


def emoji_single(rng: np.random.Generator, grid: int) -> RegionItem:
    """One emoji drawn like the naming task's training pictures (`emoji_images.emoji_item`: training styles and
    backgrounds, 30-75 % of the short side, tilted or flipped); its rows name the concept."""
    concept = CONCEPTS[int(rng.integers(len(CONCEPTS)))]
    style, _ = emoji_style(rng, concept, False)
    size = pick(rng, SIZES)
    w, h = size
    img, _ = background(rng, size)
    side = int(min(w, h) * float(rng.uniform(0.3, 0.75)))
    angle = float(rng.uniform(-35, 35)) if rng.random() < 0.5 else float(rng.uniform(-8, 8))
    half = side * 0.72
    cx = float(rng.uniform(min(half, w / 2), max(w - half, w / 2)))
    cy = float(rng.uniform(min(half, h / 2), max(h - half, h / 2)))
    sprite = render_sprite(rng, concept, style, side, angle,
                           region_luma(img, (cx - half, cy - half, cx + half, cy + half))).image
    if rng.random() < 0.3:
        sprite = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x0, y0, _, _ = paste(img, sprite, cx, cy)
    mask = Image.new("L", size, 0)
    mask.paste(sprite.getchannel("A"), (x0, y0))
    return RegionItem(img, row_labels([(concept.name, np.asarray(mask, np.float32) / 255)], size, grid))


def digit(rng: np.random.Generator, grid: int) -> RegionItem:
    """A handwritten digit as the digit task draws it, from the training split only; cells with ink name it in a word
    ("seven": one token, where " 7" is two)."""
    img, d, ink = digit_picture(rng, held_out=False)
    return RegionItem(img, row_labels([(NUMBER_WORDS[d], ink)], img.size, grid))


def photo(rng: np.random.Generator, grid: int) -> RegionItem:
    """A package photo as the photo task crops it; every cell names what the photo is of ("horse", "coins")."""
    index = int(rng.integers(len(PHOTOS)))
    img = photo_picture(rng, index)
    return RegionItem(img, (PHOTOS[index][2],) * grid ** 2)


_KINDS = {"shapes": shape_scene, "emoji_scene": emoji_scene, "emoji_single": emoji_single, "video": video_frame,
          "digit": digit, "photo": photo}


def region_item(rng: np.random.Generator, grid: int, mix: dict[str, float] | None = None) -> RegionItem:
    """One picture of a kind drawn with the shares of `mix` (default `REGION_MIX`; shares sum to 1)."""
    u, total = rng.random(), 0.0
    mix = mix or REGION_MIX
    kinds = [k for k, share in mix.items() if share > 0]
    for kind in kinds:
        total += mix[kind]
        if u < total:
            return _KINDS[kind](rng, grid)
    return _KINDS[kinds[-1]](rng, grid)
