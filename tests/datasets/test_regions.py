"""vita.datasets.mini.regions: every image row of a generated picture named by what covers its cell."""

from __future__ import annotations

import numpy as np

from vita.datasets.mini.images import COLOURS
from vita.datasets.mini.regions import MIN_COVER, REGION_GRID, emoji_scene, row_labels, shape_scene, video_frame


def _box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), np.float32)
    m[y0:y1, x0:x1] = 1
    return m


def test_each_cell_takes_the_object_covering_most_of_it_row_major() -> None:
    # 80 x 40 canvas (W x H), grid 2: cells are 40 x 20; "a" fills the top-left cell, "b" the bottom-right one,
    # "c" only 5 % of the top-right one (below MIN_COVER)
    objects = [("a", _box(40, 80, 0, 20, 0, 40)), ("b", _box(40, 80, 20, 40, 40, 80)),
               ("c", _box(40, 80, 0, 2, 60, 80))]
    assert 0.05 < MIN_COVER
    assert row_labels(objects, (80, 40), 2) == ("a", "", "", "b")


def test_an_object_on_top_hides_what_is_under_it() -> None:
    under = ("under", _box(40, 40, 0, 40, 0, 40))  # the whole canvas
    top = ("top", _box(40, 40, 0, 20, 0, 20))  # the top-left cell
    assert row_labels([under, top], (40, 40), 2) == ("top", "under", "under", "under")
    assert row_labels([top, under], (40, 40), 2) == ("under",) * 4  # drawn first, then covered


def test_shape_rows_name_colours_that_are_in_their_cells() -> None:
    for seed in range(12):
        item = shape_scene(np.random.default_rng(seed), REGION_GRID)
        assert len(item.rows) == REGION_GRID ** 2 and any(item.rows)
        # the processor's view: the picture stretched to a square, cut into the grid's cells
        side = 28 * REGION_GRID
        px = np.asarray(item.image.resize((side, side)), np.float32)
        for j, label in enumerate(item.rows):
            if not label:
                continue
            colour, shape = label.split()
            r, c = divmod(j, REGION_GRID)
            cell = px[28 * r:28 * (r + 1), 28 * c:28 * (c + 1)].reshape(-1, 3)
            near = np.abs(cell - np.array(COLOURS[colour], np.float32)).max(-1) < 40
            assert near.mean() >= MIN_COVER / 2, (seed, j, label, near.mean())
            assert shape in ("circle", "square", "triangle")


def test_emoji_rows_are_concept_names_and_the_draw_is_seeded() -> None:
    a, b = emoji_scene(np.random.default_rng(3), REGION_GRID), emoji_scene(np.random.default_rng(3), REGION_GRID)
    assert a.rows == b.rows and np.array_equal(np.asarray(a.image), np.asarray(b.image))
    named = {r for r in a.rows if r}
    assert named and all(r == r.lower() for r in named)


def test_keep_small_names_the_best_cell_of_an_object_too_small_for_any() -> None:
    # "c" covers 5 % of the top-right cell only: background by the rule, its own with keep_small; "a" fills a cell,
    # so its sliver in the next cell stays background either way
    objects = [("a", _box(40, 80, 0, 20, 0, 42)), ("c", _box(40, 80, 0, 2, 60, 80))]
    assert row_labels(objects, (80, 40), 2) == ("a", "", "", "")
    assert row_labels(objects, (80, 40), 2, keep_small=True) == ("a", "c", "", "")


def test_video_frames_name_every_dot_and_square_where_it_is() -> None:
    from vita.datasets.mini.videos import HEIGHT, WIDTH

    for seed in range(12):
        item = video_frame(np.random.default_rng(seed), REGION_GRID)
        assert item.image.size == (WIDTH, HEIGHT) and len(item.rows) == REGION_GRID ** 2
        px = np.asarray(item.image.resize((28 * REGION_GRID,) * 2), np.float32)
        named = {label for label in item.rows if label}
        assert named and all(label.split()[1] in ("dot", "square") for label in named)
        for j, label in enumerate(item.rows):
            if label:
                r, c = divmod(j, REGION_GRID)
                cell = px[28 * r:28 * (r + 1), 28 * c:28 * (c + 1)].reshape(-1, 3)
                colour = np.array(COLOURS[label.split()[0]], np.float32)
                assert (np.abs(cell - colour).max(-1) < 40).any(), (seed, j, label)


def test_single_emoji_rows_name_one_concept_in_training_styles_and_the_mix_is_followed() -> None:
    from vita.datasets.mini.emoji import CONCEPTS
    from vita.datasets.mini.regions import emoji_single, region_item

    names = {c.name for c in CONCEPTS}
    for seed in range(10):
        item = emoji_single(np.random.default_rng(seed), REGION_GRID)
        named = {r for r in item.rows if r}
        assert len(named) == 1 and named <= names, (seed, item.rows)
        again = emoji_single(np.random.default_rng(seed), REGION_GRID)
        assert again.rows == item.rows and np.array_equal(np.asarray(again.image), np.asarray(item.image))
    only = [region_item(np.random.default_rng(s), REGION_GRID, {"emoji_single": 1.0}) for s in range(6)]
    assert all(len({r for r in it.rows if r}) == 1 for it in only)
    frames = [region_item(np.random.default_rng(s), REGION_GRID, {"video": 1.0}) for s in range(6)]
    assert all(all(not r or r.split()[1] in ("dot", "square") for r in it.rows) for it in frames)


def test_digit_rows_name_the_digit_where_there_is_ink_from_the_training_split_only() -> None:
    from vita.datasets.mini.canvas import NUMBER_WORDS
    from vita.datasets.mini.images import digit_item
    from vita.datasets.mini.regions import digit

    for seed in range(12):
        item = digit(np.random.default_rng(seed), REGION_GRID)
        named = {r for r in item.rows if r}
        assert len(named) == 1 and named <= set(NUMBER_WORDS), item.rows
        # the same draw as the digit task's training picture (never a held-out digit), labelled with its answer
        task = digit_item(np.random.default_rng(seed), held_out=False)
        assert np.array_equal(np.asarray(task.image), np.asarray(item.image))
        assert NUMBER_WORDS[int(task.answer)] in named
        side = 28 * REGION_GRID
        ink = 1 - np.asarray(item.image.convert("L").resize((side, side)), np.float32) / 255
        for j, label in enumerate(item.rows):
            r, c = divmod(j, REGION_GRID)
            cover = ink[28 * r:28 * (r + 1), 28 * c:28 * (c + 1)].mean()
            assert (cover >= MIN_COVER * 0.8) if label else (cover < MIN_COVER * 1.2), (seed, j, label, cover)


def test_photo_rows_name_the_photo_in_every_cell() -> None:
    from vita.datasets.mini.images import PHOTOS
    from vita.datasets.mini.regions import photo

    names = {p[2] for p in PHOTOS}
    seen = set()
    for seed in range(16):
        item = photo(np.random.default_rng(seed), REGION_GRID)
        assert len(set(item.rows)) == 1 and item.rows[0] in names and len(item.rows) == REGION_GRID ** 2
        seen.add(item.rows[0])
    assert len(seen) >= 5  # the draw covers the photos
