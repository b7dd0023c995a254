"""Image loading, InternVL dynamic tiling and CLIP-style normalisation (VITA-1.0 image path).

Shapes:
    W, H      width / height of the input image in pixels
    S         tile side = `VisionConfig.image_size` (448 for the release, 112 for the tiny fixture)
    cols/rows tiling grid chosen by `find_grid`
    N         number of tiles = cols*rows (+1 thumbnail when cols*rows > 1)

Pipeline (`preprocess_image`): `load_image` -> `tile_image` (resize to (S*cols, S*rows) with PIL's default bicubic,
row-major S x S crops, whole-image thumbnail last) -> `normalize` -> pixel_values [N, 3, S, S] float32.
Every step reproduces the official code bit for bit (the golden fixtures compare with max abs diff 0), including
Pillow 10.4's resize pass order (horizontal first), which newer Pillow no longer guarantees (see `resize_bicubic`).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vita.config import VisionConfig
from vita.errors import MediaError

ImageInput = str | os.PathLike | bytes | bytearray | Image.Image | np.ndarray

# Guard against decompression bombs and absurd inputs (~100 megapixels; an 8K frame is 33 MP).
DEFAULT_MAX_PIXELS = 100_000_000
# CLIPImageProcessor's default rescale factor, a Python float (1/255 in double precision).
RESCALE_FACTOR = 1 / 255


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def _check_size(width: int, height: int, max_pixels: int, name: str, max_aspect: float | None = None) -> None:
    if width <= 0 or height <= 0:
        raise MediaError(f"image {name}: zero-size image ({width}x{height})")
    if width * height > max_pixels:
        raise MediaError(f"image {name}: too large ({width}x{height} = {width * height} pixels > {max_pixels})")
    if max_aspect is not None and max(width, height) > max_aspect * min(width, height):
        ratio = max(width, height) / min(width, height)
        raise MediaError(f"image {name}: aspect ratio {width}x{height} = {ratio:.0f}:1 > max_aspect {max_aspect:g}:1")


def _from_array(arr: np.ndarray, name: str, max_pixels: int) -> Image.Image:
    if arr.dtype != np.uint8:
        raise MediaError(f"image {name}: array dtype must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]  # [H, W, 1] -> [H, W]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise MediaError(f"image {name}: array must be [H, W], [H, W, 3] or [H, W, 4], got shape {arr.shape}")
    _check_size(arr.shape[1], arr.shape[0], max_pixels, name)
    return Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")


class _InputReader:
    """The encoded input as PIL reads it, noting whether a read came back empty while decoding: the decoder wanted
    more bytes than the file has, so a decoding error means a truncated file rather than corrupt data."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self.raw = raw
        self.ran_out = False

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if size != 0 and not data:
            self.ran_out = True
        return data

    def readline(self, size: int = -1) -> bytes:
        line = self.raw.readline(size)
        if size != 0 and not line:
            self.ran_out = True
        return line

    def __getattr__(self, attr: str):  # seek, tell, ... as the file's own
        return getattr(self.raw, attr)


def _open_encoded(fp: io.BytesIO | Path, name: str, max_pixels: int,
                  formats: Sequence[str] | None = None, max_aspect: float | None = None) -> Image.Image:
    reader = None
    try:
        with warnings.catch_warnings(), (open(fp, "rb") if isinstance(fp, Path) else fp) as raw:
            # our own max_pixels guard replaces PIL's bomb warning; PIL's hard bomb error is still mapped below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            reader = _InputReader(raw)
            with Image.open(reader, formats=list(formats) if formats is not None else None) as img:
                # `open` reads the header only: the size is checked before a single pixel is decoded
                _check_size(img.width, img.height, max_pixels, name, max_aspect)
                reader.ran_out = False  # from here on, an empty read is the image data ending early
                img.load()
                return img.convert("RGB")
    except MediaError:
        raise
    except Image.DecompressionBombError as exc:
        raise MediaError(f"image {name}: too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        allowed = f" (accepted: {', '.join(formats)})" if formats is not None else ""
        raise MediaError(f"image {name}: not an image (format not recognised{allowed})") from exc
    except OSError as exc:
        if reader is not None and reader.ran_out:
            raise MediaError(f"image {name}: truncated file ({exc})") from exc
        raise MediaError(f"image {name}: corrupt image data ({exc})") from exc
    except (SyntaxError, ValueError, EOFError) as exc:  # PIL plugins signal broken headers with these
        raise MediaError(f"image {name}: corrupt image data ({exc})") from exc


def load_image(source: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               formats: Sequence[str] | None = None, max_aspect: float | None = None) -> Image.Image:
    """Load a path, encoded bytes, a PIL image or a uint8 array as an RGB PIL image.

    `formats`: the PIL format names an encoded input may have (None: any PIL reads), e.g. ("PNG", "JPEG").
    `max_aspect`: refuse a long side over this many times the short one (checked from the header too).
    Raises `MediaError` naming the input when it is missing, empty, not an image, corrupt, truncated, zero-size,
    or larger than `max_pixels` (read from the header, before decoding).
    """
    name = _describe(source)
    if isinstance(source, Image.Image):
        _check_size(source.width, source.height, max_pixels, name)
        return source if source.mode == "RGB" else source.convert("RGB")
    if isinstance(source, np.ndarray):
        return _from_array(source, name, max_pixels)
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise MediaError(f"image {name}: empty input")
        return _open_encoded(io.BytesIO(bytes(source)), name, max_pixels, formats, max_aspect)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise MediaError(f"image {name}: file not found")
        if path.stat().st_size == 0:
            raise MediaError(f"image {name}: empty file (0 bytes)")
        return _open_encoded(path, name, max_pixels, formats, max_aspect)
    raise MediaError(f"image {name}: unsupported input type {type(source).__name__}")


def resize_bicubic(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """PIL bicubic resize to (width, height) exactly as Pillow 10.4 (the official pin) computes it.

    Pillow 10.4 always runs the horizontal pass first and rounds to uint8 between the passes; newer Pillow may run
    the vertical pass first, which changes pixels by a few levels. Two explicit single-axis resizes pin the order
    (a resize that keeps a size is a plain copy, so no pass is added).

    Exception: a strip (a side over 65,536 pixels) or a shape whose horizontal-first intermediate (width x source
    height) would be far larger than both the source and the result (1 x 2,500,000 resized to 448 wide) goes
    through one PIL resize with `reducing_gap` (a box reduction first): memory stays proportional to the input and
    the output, where the exact passes would build a 448 x 2,500,000 intermediate or a filter table of ~32 bytes
    per source pixel of the long side (such images have no official result worth matching).
    """
    width, height = size
    bic = Image.Resampling.BICUBIC
    if max(img.size) > _MAX_EXACT_SIDE or \
            width * img.height > max(_MAX_INTERMEDIATE, 4 * (img.width * img.height + width * height)):
        return img.resize((width, height), bic, reducing_gap=2.0)
    return img.resize((width, img.height), bic).resize((width, height), bic)


_MAX_INTERMEDIATE = 1 << 24  # pixels of the horizontal-first intermediate always allowed (every practical image)
_MAX_EXACT_SIDE = 1 << 16


def candidate_grids(min_tiles: int, max_tiles: int) -> list[tuple[int, int]]:
    """Grids (cols, rows) with min_tiles <= cols*rows <= max_tiles, in the official order.

    The official code builds a Python set and sorts it by area with a stable sort, so grids of equal area keep the
    set's iteration order; building the same set the same way reproduces that order exactly (tuples of small ints
    hash deterministically in CPython).
    """
    grids = {
        (i, j)
        for n in range(min_tiles, max_tiles + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_tiles <= i * j <= max_tiles
    }
    return sorted(grids, key=lambda g: g[0] * g[1])


def find_grid(width: int, height: int, image_size: int, min_tiles: int = 1, max_tiles: int = 12) -> tuple[int, int]:
    """The tiling grid (cols, rows) whose aspect ratio is closest to width/height (InternVL rule).

    Ties in aspect-ratio distance go to the later (larger) grid only if the image area exceeds half the area the
    grid would cover (0.5 * S^2 * cols * rows); float arithmetic is the official one, so exact ties behave alike.
    """
    aspect = width / height
    area = width * height
    best_diff = float("inf")
    best = (1, 1)
    for cols, rows in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best_diff, best = diff, (cols, rows)
        elif diff == best_diff and area > 0.5 * image_size * image_size * cols * rows:
            best = (cols, rows)
    return best


def tile_image(img: Image.Image, cfg: VisionConfig) -> list[Image.Image]:
    """Split an RGB image into S x S tiles: row-major grid tiles, then (if more than one) a thumbnail, last."""
    size = cfg.image_size
    cols, rows = find_grid(img.width, img.height, size, cfg.min_tiles, cfg.max_tiles)
    # PIL's default resize filter (bicubic for RGB), as the official `image.resize((w, h))`
    resized = resize_bicubic(img, (size * cols, size * rows))
    tiles = [
        resized.crop((c * size, r * size, (c + 1) * size, (r + 1) * size)) for r in range(rows) for c in range(cols)
    ]
    if cfg.use_thumbnail and len(tiles) > 1:
        tiles.append(resize_bicubic(img, (size, size)))  # aspect ratio not preserved
    return tiles


def center_crop_tile(img: Image.Image, size: int) -> Image.Image:
    """CLIPImageProcessor resize + crop: shortest edge -> size (bicubic), then a centred size x size crop."""
    width, height = img.size
    short, long = min(width, height), max(width, height)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    if new_long > _MAX_CROP_ASPECT * size:
        # extreme aspect ratio (a 1 x 2,500,000 strip would resize to 112 x 280,000,000): resample only the source
        # box that becomes the crop, never the whole strip (equal to the crop of the full resize up to rounding)
        sx, sy = width / new_w, height / new_h
        box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
        return img.resize((size, size), Image.Resampling.BICUBIC, box=box)
    # PIL returns a plain copy when the size does not change, so exact tiles pass through untouched
    resized = resize_bicubic(img, (new_w, new_h))
    # PIL pads with zeros outside the image, like the processor's padding for a crop larger than the image
    return resized.crop((left, top, left + size, top + size))


_MAX_CROP_ASPECT = 16  # beyond this long/short ratio the centre crop resamples a source box only


def normalize(tiles: Sequence[Image.Image], cfg: VisionConfig) -> torch.Tensor:
    """Tiles -> pixel_values [N, 3, S, S] float32, computed exactly like CLIPImageProcessor.

    uint8 * (1/255) in float64, cast to float32, then (x - mean) / std in float32. A tile that is not S x S first
    goes through `center_crop_tile`, as the processor would resize and crop it.
    """
    if not tiles:
        raise MediaError("normalize: no tiles given")
    size = cfg.image_size
    mean = np.asarray(cfg.image_mean, dtype=np.float32)
    std = np.asarray(cfg.image_std, dtype=np.float32)
    out = []
    for tile in tiles:
        if tile.size != (size, size):
            tile = center_crop_tile(tile, size)
        arr = np.asarray(tile.convert("RGB"), dtype=np.uint8)  # [S, S, 3]
        x = (arr.astype(np.float64) * RESCALE_FACTOR).astype(np.float32)
        x = (x - mean) / std  # float32 throughout, channel-last broadcast
        out.append(x.transpose(2, 0, 1))  # [S, S, 3] -> [3, S, S]
    return torch.from_numpy(np.ascontiguousarray(np.stack(out)))  # [N, 3, S, S]


def preprocess_image(source: ImageInput, cfg: VisionConfig, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Load, tile and normalise one image -> pixel_values [N, 3, S, S] (one `<image>` placeholder per tile)."""
    return normalize(tile_image(load_image(source, max_pixels=max_pixels), cfg), cfg)
