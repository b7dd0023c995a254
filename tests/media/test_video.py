"""Video sampling, PyAV decoding and frame tiles: golden parity plus behaviour and failure modes."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vita.config import VisionConfig
from vita.errors import MediaError
from vita.media.video import frames_to_pixel_values, load_video, read_video_frames, sample_frame_indices

LEVEL = 12  # frame i is a flat grey of value LEVEL * i, so decoded frames reveal their index


def tiny_cfg() -> VisionConfig:
    return VisionConfig(image_size=112, patch_size=14, hidden_size=32, num_heads=4, intermediate_size=128, num_layers=2)


def make_video(
    path: Path, num_frames: int, fps: int = 4, codec: str = "libx264", size: tuple[int, int] = (64, 48), **options
) -> Path:
    width, height = size
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 4_000_000  # keep flat grey levels close to exact even for mpeg4
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), LEVEL * i % 256, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_index(img: Image.Image) -> int:
    return int(round(float(np.asarray(img, dtype=np.float64).mean()) / LEVEL))


# ---------------------------------------------------------------- sampling rule


@pytest.mark.reference
def test_sampling_probe_matches_reference(ref_index: dict) -> None:
    video = ref_index["video"]
    assert video["sampling_probe"], "fixture lists no sampling probes"
    for row in video["sampling_probe"]:
        picked = sample_frame_indices(row["num_frames"], row["avg_fps"])
        assert picked == row["sampled_positions"], row
        assert len(picked) == row["slice_len"]
    fake = video["fake_video"]
    assert sample_frame_indices(fake["num_frames"], fake["fps"]) == video["sampled_positions"]


def test_sampling_rule_cases() -> None:
    assert sample_frame_indices(100, 25.0) == [0, 25, 50, 75]
    assert sample_frame_indices(10, 30.0) == [0, 0, 0, 0]  # one candidate, padded to min_frames
    assert sample_frame_indices(20, 2.5) == list(range(0, 20, 2))  # round(2.5) == 2 (half to even)
    many = sample_frame_indices(10_000, 25.0)
    assert len(many) == 16 and many[0] == 0 and many == sorted(many) and many[-1] == 9975
    assert sample_frame_indices(40, 4.0, max_frames=5) == [0, 8, 16, 24, 36]
    # stride 2 -> 20 candidates, thinned to 16 by truncating linspace(0, 19, 16)
    assert sample_frame_indices(40, 4.0, fps=2) == [0, 2, 4, 6, 10, 12, 14, 16, 20, 22, 24, 26, 30, 32, 34, 38]
    with pytest.raises(MediaError, match="no frames"):
        sample_frame_indices(0, 25.0)


def test_sampling_with_two_frames_per_second() -> None:
    # stride round(30 / 2) = 15 -> 8 candidates, kept as is
    assert sample_frame_indices(120, 30.0, fps=2) == list(range(0, 120, 15))


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_read_video_frames_picks_sampled_positions(tmp_path: Path, codec: str) -> None:
    path = make_video(tmp_path / f"clip_{codec}.mp4", 21, fps=2, codec=codec)
    frames = read_video_frames(path)
    assert [frame_index(f) for f in frames] == sample_frame_indices(21, 2.0)  # positions 0, 2, ..., 20
    assert all(f.mode == "RGB" and f.size == (64, 48) for f in frames)


def test_short_video_repeats_frames(tmp_path: Path) -> None:
    path = make_video(tmp_path / "short.mp4", 6, fps=4)
    assert [frame_index(f) for f in read_video_frames(path)] == [0, 0, 0, 4]


def test_load_video_pixel_values(tmp_path: Path) -> None:
    cfg = tiny_cfg()
    path = make_video(tmp_path / "clip.mp4", 20, fps=4, size=(80, 48))
    pixels = load_video(path, cfg)
    assert pixels.shape == (5, 3, 112, 112) and pixels.dtype == torch.float32
    assert torch.equal(pixels, frames_to_pixel_values(read_video_frames(path), cfg))
    # brighter frames later: channel means increase with the sampled index
    means = pixels.mean(dim=(1, 2, 3))
    assert bool((means[1:] > means[:-1]).all())


def test_load_video_accepts_frame_list(tmp_path: Path) -> None:
    cfg = tiny_cfg()
    arrays = [np.full((120, 160, 3), 40 * k, np.uint8) for k in range(3)]
    path = tmp_path / "f0.png"
    Image.fromarray(arrays[0]).save(path)
    pixels = load_video([path, Image.fromarray(arrays[1]), arrays[2]], cfg)
    assert pixels.shape == (3, 3, 112, 112)
    assert torch.equal(pixels[1], load_video([arrays[1]], cfg)[0])


@pytest.mark.reference
def test_video_frames_match_reference_exactly(ref_root: Path, ref_index: dict) -> None:
    vision, pre = ref_index["configs"]["vision"], ref_index["configs"]["preprocessor"]
    cfg = VisionConfig(
        image_size=vision["image_size"],
        patch_size=vision["patch_size"],
        hidden_size=vision["hidden_size"],
        num_heads=vision["num_attention_heads"],
        intermediate_size=vision["intermediate_size"],
        num_layers=vision["num_hidden_layers"],
        image_mean=tuple(pre["image_mean"]),
        image_std=tuple(pre["image_std"]),
    )
    files = [ref_root / f for f in ref_index["video"]["frame_files"]]
    expected = load_file(ref_root / "cases" / "vision.safetensors")["video.pixel_values"]
    pixels = load_video(files, cfg)
    assert pixels.shape == expected.shape
    assert torch.equal(pixels, expected), f"max diff {(pixels - expected).abs().max()}"


# ---------------------------------------------------------------- failures


def _write_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(1600, np.int16).tobytes())
    return path


def _zero_frame_avi(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # header with a video stream, but no frame is ever written
    return path


def test_video_failures_name_the_file(tmp_path: Path) -> None:
    good = make_video(tmp_path / "good.mp4", 30, fps=10, codec="libx264", size=(96, 64))
    data = good.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # moov atom at the end: header lost
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "empty.mp4").write_bytes(b"")
    cases = {
        "missing.mp4": "not found",
        "empty.mp4": "empty",
        "random.mp4": "corrupt",
        "cut.mp4": "truncated",
        _write_wav(tmp_path / "audio.wav").name: "no video stream",
        _zero_frame_avi(tmp_path / "zero.avi").name: "zero",
    }
    for name, message in cases.items():
        with pytest.raises(MediaError, match=message) as info:
            load_video(tmp_path / name, tiny_cfg())
        assert name in str(info.value)


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_truncated_video_with_header_first(tmp_path: Path, codec: str) -> None:
    # faststart puts the frame index first, so a cut file opens but promises frames it no longer has
    rng = np.random.default_rng(1)
    path = tmp_path / f"fast_{codec}.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream(codec, rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(32):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert len(read_video_frames(path)) == 8
    data = path.read_bytes()
    cut = tmp_path / f"cut_{codec}.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated") as info:
        read_video_frames(cut)
    assert cut.name in str(info.value)


def test_bad_video_arguments() -> None:
    with pytest.raises(MediaError, match="empty frame list"):
        load_video([], tiny_cfg())
    with pytest.raises(MediaError, match="expected a file path"):
        load_video(np.zeros((4, 8, 8, 3), np.uint8), tiny_cfg())  # type: ignore[arg-type]
