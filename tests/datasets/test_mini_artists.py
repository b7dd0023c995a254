"""Emoji by other artists (`vita.datasets.mini.artists`): unpacked from npm tarballs, drawn into naming items."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vita.datasets.mini import artists
from vita.datasets.mini.emoji import CONCEPTS
from vita.datasets.mini.emoji_images import emoji_item
from vita.errors import DataError

RAT = next(c for c in CONCEPTS if c.char == "\U0001f400")
SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 72 72"><circle cx="36" cy="30" r="20" '
       b'fill="none" stroke="#000" stroke-width="4"/></svg>')


def _cairo() -> bool:
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _tarball(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _png() -> bytes:
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    img.paste((200, 30, 30, 255), (10, 20, 50, 44))  # a 40 x 24 red box inside a transparent margin
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache folder with the two tarballs holding the rat only (Twemoji's PNG, OpenMoji's SVGs)."""
    _tarball(tmp_path / artists.ARTISTS["twemoji"].archive,
             {"package/img/twitter/64/1f400.png": _png(), "package/README.md": b"x"})
    _tarball(tmp_path / artists.ARTISTS["openmoji"].archive,
             {"package/color/svg/1F400.svg": SVG, "package/black/svg/1F400.svg": SVG})
    monkeypatch.setenv("VITA_EMOJI_ARTISTS", str(tmp_path))
    artists._index.cache_clear()
    yield tmp_path
    artists._index.cache_clear()


def test_file_names_with_and_without_the_variation_selector() -> None:
    assert artists.file_names("\u2600", False, ".png") == ["2600.png", "2600-fe0f.png"]
    assert artists.file_names("\U0001f400", True, ".svg") == ["1F400.svg", "1F400-FE0F.svg"]


def test_png_artist_unpacks_cropped_and_keyed_by_the_tarball(cache) -> None:
    folder = artists.unpack("twemoji")
    digest = hashlib.sha256((cache / artists.ARTISTS["twemoji"].archive).read_bytes()).hexdigest()[:16]
    assert folder == cache / f"twemoji-{digest}"
    assert json.loads((folder / "index.json").read_text()) == {RAT.char: "1f400.png"}
    img = artists.drawing(RAT.char, "twemoji")
    assert img.mode == "RGBA" and img.size == (40, 24)  # cropped to the drawing
    assert np.asarray(img)[..., :3].reshape(-1, 3).tolist()[0] == [200, 30, 30]
    assert artists.has_drawing(RAT.char, "twemoji")
    assert artists.drawing(CONCEPTS[1].char, "twemoji") is None and not artists.has_drawing(CONCEPTS[1].char, "twemoji")
    assert artists.unpack("twemoji") == folder  # built once


@pytest.mark.skipif(not _cairo(), reason="cairosvg / libcairo not installed")
def test_svg_artists_rasterise_and_the_line_artist_is_a_mask(cache) -> None:
    colour, line = artists.drawing(RAT.char, "openmoji"), artists.drawing(RAT.char, "openmoji_black")
    assert colour.mode == "RGBA" and line.mode == "L"
    side = artists.RASTER_SIDE
    assert 0.4 * side < line.width < 0.7 * side  # the circle's ring, cropped: (40 + 4) / 72 of the square
    ring = np.asarray(line)
    assert ring.max() == 255 and ring[ring.shape[0] // 2, ring.shape[1] // 2] == 0  # ink on the ring, none inside


@pytest.mark.skipif(not _cairo(), reason="cairosvg / libcairo not installed")
def test_artist_items_are_deterministic_training_renders(cache) -> None:
    def item(seed: int, artist: str):
        return emoji_item(np.random.default_rng(seed), False, RAT, artist)

    a, b = item(3, "twemoji"), item(3, "twemoji")
    assert a.image.tobytes() == b.image.tobytes() and a.answer == "rat" and a.subgroup == "artist"
    assert item(4, "twemoji").image.tobytes() != a.image.tobytes()
    line = item(3, "openmoji_black")
    assert line.answer == "rat" and line.subgroup == "artist" and line.image.tobytes() != a.image.tobytes()
    with pytest.raises(ValueError, match="twemoji has no drawing of 'mouse'"):
        emoji_item(np.random.default_rng(0), False, next(c for c in CONCEPTS if c.name == "mouse"), "twemoji")


def test_missing_and_corrupt_tarballs_are_clear_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="unknown emoji artist 'noto': one of twemoji, openmoji, openmoji_black"):
        artists.unpack("noto", tmp_path)
    with pytest.raises(DataError, match=r"emoji-datasource-twitter-16.0.0.tgz is missing: fetch it with "
                                        r"`python -m vita.cli.tools emoji_artists --fetch`"):
        artists.unpack("twemoji", tmp_path)
    (tmp_path / artists.ARTISTS["twemoji"].archive).write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="not a readable npm tarball"):
        artists.unpack("twemoji", tmp_path)
    assert not list(tmp_path.glob("twemoji-*/index.json"))  # nothing half-built is taken for done


@pytest.mark.skipif(not all((artists.default_cache() / a.archive).is_file() for a in artists.ARTISTS.values())
                    or not _cairo(), reason="the npm tarballs are not fetched (`make setup`) or no cairosvg")
def test_the_real_packages_draw_every_concept() -> None:
    artists._index.cache_clear()
    for name in artists.ARTISTS:
        missing = [c.name for c in CONCEPTS if not artists.has_drawing(c.char, name)]
        assert not missing, (name, missing[:10])
