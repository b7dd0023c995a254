"""Emoji drawn by other artists than the eval's: more renders of the same concepts for open-vocabulary naming.

    ARTISTS        "twemoji" (Twitter's colour emoji, 64 px PNGs of the npm package emoji-datasource-twitter 16.0.0;
                   graphics CC-BY 4.0, package MIT), "openmoji" and "openmoji_black" (OpenMoji's colour and black
                   line drawings, SVGs of the npm package openmoji 17.0.0; CC-BY-SA 4.0)
    fetch(cache)   `npm pack` the two tarballs into `cache` (`make setup` runs `python -m vita.cli.tools
                   emoji_artists --fetch`)
    drawing(char, artist)  RGBA cropped to the drawing (about 128 px on its long side), or None where the artist
                   has no drawing of `char`; OpenMoji's black drawings come back as an "L" alpha mask to ink, as
                   `emoji.line_glyph` gives Symbola's

The eval split's held-out renders are Noto Color Emoji on held-out backgrounds and Symbola's line drawings
(`emoji.py`): neither artist here, so these only ever add training renders (`recipes/mini/s47/artist_naming.py`).
The tarballs are read in place: each artist's drawings of the `CONCEPTS` are unpacked once (SVGs rasterised with
cairosvg, which needs the system's libcairo) into `cache/<artist>-<sha256 of the tarball>/` with an index.json.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image

from vita.datasets.mini.emoji import CONCEPTS
from vita.errors import DataError


@dataclass(frozen=True)
class Artist:
    package: str  # npm name@version
    archive: str  # the `npm pack` file
    folder: str  # inside the tarball
    upper: bool  # file names in upper-case hex ("1F400.svg") rather than lower ("1f400.png")
    suffix: str  # ".png" or ".svg"
    line: bool  # a black line drawing: returned as an alpha mask to ink


ARTISTS = {
    "twemoji": Artist("emoji-datasource-twitter@16.0.0", "emoji-datasource-twitter-16.0.0.tgz",
                      "package/img/twitter/64/", False, ".png", False),
    "openmoji": Artist("openmoji@17.0.0", "openmoji-17.0.0.tgz", "package/color/svg/", True, ".svg", False),
    "openmoji_black": Artist("openmoji@17.0.0", "openmoji-17.0.0.tgz", "package/black/svg/", True, ".svg", True),
}
RASTER_SIDE = 160  # SVGs are drawn on this square, then cropped to the ink


def default_cache() -> Path:
    return Path(os.environ.get("VITA_EMOJI_ARTISTS") or Path.home() / ".cache/vita/emoji_artists")


def fetch(cache_dir: Path | None = None) -> list[Path]:
    """`npm pack` each artist's tarball into the cache folder (skipped where present); the archives' paths."""
    root = cache_dir or default_cache()
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for artist in {a.archive: a for a in ARTISTS.values()}.values():
        path = root / artist.archive
        if not path.is_file():
            try:
                subprocess.run(["npm", "pack", "-q", artist.package, "--pack-destination", str(root)], check=True,
                               cwd=root, stdout=subprocess.DEVNULL)
            except (OSError, subprocess.CalledProcessError) as e:
                raise DataError(f"npm pack {artist.package} failed ({e}): needs npm and the npm registry") from e
        out.append(path)
    return out


def file_names(char: str, upper: bool, suffix: str) -> list[str]:
    """The names an emoji's drawing may have: its code points in hex, joined by "-", without and with U+FE0F."""
    codes = [f"{ord(c):04x}" for c in char if ord(c) != 0xFE0F]
    names = ["-".join(codes), "-".join([*codes, "fe0f"])]
    return [(n.upper() if upper else n) + suffix for n in names]


def _raster(data: bytes, suffix: str, member: str) -> Image.Image:
    if suffix == ".svg":
        try:
            import cairosvg
        except (ImportError, OSError) as e:  # OSError: cairocffi without the system's libcairo
            raise DataError(f"rendering {member} needs cairosvg and libcairo (`pip install cairosvg`; Debian "
                            f"libcairo2): {e}") from e
        data = cairosvg.svg2png(bytestring=data, output_width=RASTER_SIDE, output_height=RASTER_SIDE)
    return Image.open(io.BytesIO(data)).convert("RGBA")


def unpack(name: str, cache_dir: Path | None = None) -> Path:
    """The folder of `name`'s drawings of every concept it has (PNG, cropped), built from its tarball once."""
    if name not in ARTISTS:
        raise DataError(f"unknown emoji artist {name!r}: one of {', '.join(ARTISTS)}")
    artist = ARTISTS[name]
    root = cache_dir or default_cache()
    archive = root / artist.archive
    if not archive.is_file():
        raise DataError(f"{archive} is missing: fetch it with `python -m vita.cli.tools emoji_artists "
                        f"--fetch` (npm pack {artist.package}; part of `make setup`)")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    folder = root / f"{name}-{digest}"
    if (folder / "index.json").is_file():
        return folder
    wanted = {artist.folder + f: c.char for c in CONCEPTS for f in file_names(c.char, artist.upper, artist.suffix)}
    tmp = root / f"{name}-{digest}.partial"
    tmp.mkdir(parents=True, exist_ok=True)
    index: dict[str, str] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                char = wanted.get(member.name)
                if char is None or char in index or not member.isfile():
                    continue
                img = _raster(tar.extractfile(member).read(), artist.suffix, member.name)
                box = img.getchannel("A").getbbox()
                if box is None:
                    continue
                out = f"{ord(char):x}.png"
                img.crop(box).save(tmp / out)
                index[char] = out
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{archive}: not a readable npm tarball ({e}); delete it and fetch again") from e
    (tmp / "index.json").write_text(json.dumps(index, ensure_ascii=False, sort_keys=True))
    tmp.rename(folder)
    return folder


@cache
def _index(name: str, cache_dir: Path | None) -> tuple[Path, dict[str, str]]:
    folder = unpack(name, cache_dir)
    return folder, json.loads((folder / "index.json").read_text())


def drawn(artist: str, cache_dir: Path | None = None) -> frozenset[str]:
    """The concepts' characters `artist` has a drawing of."""
    return frozenset(_index(artist, cache_dir)[1])


def has_drawing(char: str, artist: str, cache_dir: Path | None = None) -> bool:
    return char in _index(artist, cache_dir)[1]


@cache
def _load(path: Path, line: bool) -> Image.Image:
    img = Image.open(path)
    img.load()
    return img.getchannel("A") if line else img


def drawing(char: str, artist: str, cache_dir: Path | None = None) -> Image.Image | None:
    """`artist`'s drawing of `char`: RGBA, or an "L" alpha mask for a line artist; None if it has none. Read once
    per process, as `emoji.colour_glyph` is (callers never change the image in place)."""
    folder, index = _index(artist, cache_dir)
    return _load(folder / index[char], ARTISTS[artist].line) if char in index else None
