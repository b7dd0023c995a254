"""Image loading, tiling and normalisation: golden parity plus behaviour and failure modes."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vita.config import VisionConfig
from vita.errors import MediaError
from vita.media.image import (
    candidate_grids,
    center_crop_tile,
    find_grid,
    load_image,
    normalize,
    preprocess_image,
    resize_bicubic,
    tile_image,
)

TINY = {"patch_size": 14, "hidden_size": 32, "num_heads": 4, "intermediate_size": 128, "num_layers": 2}


def tiny_cfg(**kw) -> VisionConfig:
    return VisionConfig(**{"image_size": 112, **TINY, **kw})


def ref_cfg(ref_index: dict) -> VisionConfig:
    vision, pre = ref_index["configs"]["vision"], ref_index["configs"]["preprocessor"]
    probe = ref_index["tiling_probe"]
    return VisionConfig(
        image_size=vision["image_size"],
        patch_size=vision["patch_size"],
        hidden_size=vision["hidden_size"],
        num_heads=vision["num_attention_heads"],
        intermediate_size=vision["intermediate_size"],
        num_layers=vision["num_hidden_layers"],
        image_mean=tuple(pre["image_mean"]),
        image_std=tuple(pre["image_std"]),
        min_tiles=probe["min_num"],
        max_tiles=probe["max_num"],
        use_thumbnail=probe["use_thumbnail"],
    )


def png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def random_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- golden parity


@pytest.mark.reference
def test_images_match_reference_exactly(ref_root: Path, ref_index: dict) -> None:
    cfg = ref_cfg(ref_index)
    golden = load_file(ref_root / "cases" / "vision.safetensors")
    assert ref_index["images"], "fixture lists no images"
    for i, case in enumerate(ref_index["images"]):
        img = load_image(ref_root / case["file"])
        assert img.size == (case["width"], case["height"])
        cols, rows = find_grid(img.width, img.height, cfg.image_size, cfg.min_tiles, cfg.max_tiles)
        assert [cols, rows] == case["grid_cols_rows"], case["file"]
        tiles = tile_image(img, cfg)
        assert len(tiles) == case["num_tiles"], case["file"]
        assert (len(tiles) > cols * rows) == case["thumbnail_appended"]
        pixels = preprocess_image(ref_root / case["file"], cfg)
        expected = golden[f"image{i}.pixel_values"]
        assert pixels.dtype == torch.float32 and pixels.shape == expected.shape
        assert torch.equal(pixels, expected), f"{case['file']}: max diff {(pixels - expected).abs().max()}"
        assert len(tiles) * cfg.tokens_per_tile == case["total_image_tokens"]


@pytest.mark.reference
def test_tiling_probe_matches_reference(ref_index: dict) -> None:
    probe = ref_index["tiling_probe"]
    cfg = ref_cfg(ref_index)
    for row in probe["rows"]:
        grid = find_grid(row["width"], row["height"], probe["image_size"], probe["min_num"], probe["max_num"])
        assert list(grid) == row["grid_cols_rows"], row
        tiles = tile_image(Image.new("RGB", (row["width"], row["height"])), cfg)
        assert len(tiles) == row["num_tiles"], row
        assert all(t.size == (cfg.image_size, cfg.image_size) for t in tiles)


# ---------------------------------------------------------------- tiling rule


def test_candidate_grids_sorted_by_area_within_bounds() -> None:
    grids = candidate_grids(2, 6)
    areas = [c * r for c, r in grids]
    assert areas == sorted(areas) and min(areas) == 2 and max(areas) == 6
    assert len(grids) == len(set(grids)) == sum(1 for c in range(1, 7) for r in range(1, 7) if 2 <= c * r <= 6)


def test_find_grid_ties_go_to_larger_grid_only_for_large_images() -> None:
    # aspect 2: (2,1) and (4,2) tie exactly; (4,2) wins only when area > 0.5 * 112^2 * 8 = 50176
    assert find_grid(224, 112, 112, 1, 12) == (2, 1)
    assert find_grid(1000, 500, 112, 1, 12) == (4, 2)
    assert find_grid(316, 158, 112, 1, 12) == (2, 1)  # area 49928
    assert find_grid(318, 159, 112, 1, 12) == (4, 2)  # area 50562
    # square: (1,1), (2,2), (3,3) tie; (2,2) needs area > 25088, (3,3) needs area > 56448
    assert find_grid(158, 158, 112, 1, 12) == (1, 1)  # 24964
    assert find_grid(159, 159, 112, 1, 12) == (2, 2)  # 25281
    assert find_grid(238, 238, 112, 1, 12) == (3, 3)  # 56644
    assert find_grid(100, 100, 112, 4, 12) == (2, 2)  # min_tiles excludes (1, 1)


def test_find_grid_closest_aspect_ratio() -> None:
    assert find_grid(300, 100, 448) == (3, 1)
    assert find_grid(100, 1000, 448) == (1, 10)
    assert find_grid(5000, 100, 448, 1, 6) == (6, 1)  # capped by max_tiles


# ---------------------------------------------------------------- tiles and pixels


def test_tiles_are_row_major_with_thumbnail_last() -> None:
    cfg = tiny_cfg()
    arr = np.zeros((224, 336, 3), np.uint8)  # grid 3 x 2 of flat colours
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
    for k, colour in enumerate(colours):
        r, c = divmod(k, 3)
        arr[r * 112 : (r + 1) * 112, c * 112 : (c + 1) * 112] = colour
    tiles = tile_image(Image.fromarray(arr), cfg)
    assert len(tiles) == 7
    for tile, colour in zip(tiles[:6], colours, strict=True):
        assert tuple(np.asarray(tile)[56, 56]) == colour  # exact-size resize is a copy: flat tiles stay flat
    thumb = np.asarray(tiles[6])
    assert tuple(thumb[10, 10]) == colours[0] and tuple(thumb[100, 100]) == colours[5]


def test_single_tile_has_no_thumbnail_and_thumbnail_can_be_disabled() -> None:
    img = Image.fromarray(random_rgb(90, 100))
    assert len(tile_image(img, tiny_cfg())) == 1
    assert len(tile_image(Image.fromarray(random_rgb(112, 224)), tiny_cfg(use_thumbnail=False))) == 2


def test_resize_matches_pillow_10_4_pass_order() -> None:
    # Known answer recorded with Pillow 10.4.0 (the official pin); newer Pillow gives different values in one call
    arr = ((np.arange(8 * 7 * 3).reshape(8, 7, 3) * 37) % 256).astype(np.uint8)
    expected = [
        [[18, 64, 101], [162, 116, 153], [177, 41, 95], [148, 210, 75], [91, 132, 86], [143, 180, 237]],
        [[46, 87, 124], [142, 139, 176], [110, 73, 118], [180, 143, 98], [114, 112, 112], [166, 208, 137]],
        [[74, 111, 148], [122, 163, 200], [44, 106, 142], [213, 77, 122], [138, 92, 139], [190, 236, 38]],
    ]
    out = np.asarray(resize_bicubic(Image.fromarray(arr), (6, 3)))
    assert out.tolist() == expected


def test_center_crop_tile_offsets() -> None:
    wide = np.tile(np.arange(224, dtype=np.uint8)[None, :, None], (112, 1, 3))  # column index as value
    crop = np.asarray(center_crop_tile(Image.fromarray(wide), 112))
    assert crop.shape == (112, 112, 3) and crop[0, 0, 0] == 56 and crop[0, -1, 0] == 167
    tall = np.tile(np.arange(301, dtype=np.int64)[:, None, None] % 256, (1, 112, 3)).astype(np.uint8)
    crop = np.asarray(center_crop_tile(Image.fromarray(tall), 112))
    assert crop[0, 0, 0] == (301 - 112) // 2
    assert center_crop_tile(Image.fromarray(random_rgb(120, 160)), 112).size == (112, 112)


def test_normalize_values_dtype_and_channel_order() -> None:
    cfg = tiny_cfg()
    red = Image.new("RGB", (112, 112), (255, 0, 0))
    px = normalize([red, red], cfg)
    assert px.shape == (2, 3, 112, 112) and px.dtype == torch.float32
    mean, std = torch.tensor(cfg.image_mean), torch.tensor(cfg.image_std)
    torch.testing.assert_close(
        px[0, :, 5, 5], torch.stack([(1 - mean[0]) / std[0], -mean[1] / std[1], -mean[2] / std[2]])
    )
    # a tile that is not S x S is resized and centre-cropped like the processor would
    assert normalize([Image.new("RGB", (300, 120), (0, 0, 0))], cfg).shape == (1, 3, 112, 112)


# ---------------------------------------------------------------- loading


def test_load_image_accepts_paths_bytes_pil_and_arrays(tmp_path: Path) -> None:
    arr = random_rgb(20, 30)
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(arr))
    for source in (path, str(path), path.read_bytes(), Image.fromarray(arr), arr):
        img = load_image(source)
        assert img.mode == "RGB" and np.array_equal(np.asarray(img), arr)
    gray = load_image(np.full((5, 6), 7, np.uint8))
    assert gray.mode == "RGB" and np.asarray(gray)[0, 0].tolist() == [7, 7, 7]
    rgba = load_image(np.zeros((4, 4, 4), np.uint8))
    assert rgba.mode == "RGB" and rgba.size == (4, 4)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("missing.png", None, "not found"),
        ("empty.png", lambda: b"", "empty"),
        ("text.png", lambda: b"this is not an image\n" * 20, "not an image"),
        ("truncated.png", lambda: png_bytes(random_rgb(64, 80))[:900], "truncated"),
        ("truncated.jpg", lambda: png_bytes(random_rgb(64, 80), "JPEG")[:1500], "truncated"),
        ("corrupt.png", lambda: (lambda b: b[:60] + b"\0" * (len(b) - 60))(png_bytes(random_rgb(64, 80))), "corrupt"),
        ("huge.png", lambda: _png_header_only(12000, 10000), "too large"),
        ("bomb.png", lambda: _png_header_only(100000, 100000), "too large"),
    ],
)
def test_load_image_failures_name_the_file(tmp_path: Path, name: str, make, message: str) -> None:
    path = tmp_path / name
    if make is not None:
        path.write_bytes(make())
    with pytest.raises(MediaError, match=message) as info:
        load_image(path)
    assert name in str(info.value)


def test_load_image_zero_size_and_guard() -> None:
    with pytest.raises(MediaError, match="zero-size"):
        load_image(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(MediaError, match="zero-size"):
        load_image(Image.new("RGB", (0, 4)))
    with pytest.raises(MediaError, match="too large"):
        load_image(random_rgb(20, 20), max_pixels=399)
    assert load_image(random_rgb(20, 20), max_pixels=400).size == (20, 20)
    with pytest.raises(MediaError, match="uint8"):
        load_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(MediaError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(MediaError, match="empty"):
        load_image(b"")
