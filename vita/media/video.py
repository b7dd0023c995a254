"""Video input: official frame sampling, PyAV decoding, one centre-cropped tile per frame (VITA-1.0 video path).

Shapes:
    num_frames  frames in the file (container header count, else counted packets)
    F           sampled frames (min_frames..max_frames; duplicates possible for short clips)
    S           tile side = `VisionConfig.image_size`

A video becomes pixel_values [F, 3, S, S]: frames are NOT tiled; each frame is resized so its shortest edge is S
(bicubic) and centre-cropped to S x S, then normalised like an image tile (one `<image>` placeholder per frame).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from vita.config import VisionConfig
from vita.errors import MediaError
from vita.media.image import ImageInput, center_crop_tile, load_image, normalize

VideoInput = str | os.PathLike | Sequence[ImageInput]

# PyAV raises FFmpeg errors (subclasses of OSError/ValueError/EOFError) and, for some broken headers, IndexError.
_AV_ERRORS = (av.error.FFmpegError, OSError, ValueError, EOFError, IndexError)


def sample_frame_indices(
    num_frames: int, avg_fps: float, *, fps: int = 1, min_frames: int = 4, max_frames: int = 16
) -> list[int]:
    """Frame positions the official `_get_rawvideo_dec` reads.

    One frame every round(avg_fps / fps) frames starting at 0; more than `max_frames` positions are thinned to
    `max_frames` and fewer than `min_frames` padded to `min_frames`, both by picking entries of the position list at
    `np.linspace(0, len - 1, num, dtype=int)` (truncating, so short clips repeat positions).
    """
    if num_frames <= 0:
        raise MediaError(f"video has no frames (num_frames={num_frames})")
    if not avg_fps > 0:
        raise MediaError(f"video frame rate must be positive, got {avg_fps}")
    if int(fps) < 1 or not 1 <= min_frames <= max_frames:
        raise MediaError(f"bad sampling options fps={fps}, min_frames={min_frames}, max_frames={max_frames}")
    # Python's round (half to even) as the official code; a stride of 0 (fps < 0.5 per sample) would loop forever
    stride = max(1, int(round(float(avg_fps) / int(fps))))
    positions = list(range(0, num_frames, stride))
    if len(positions) > max_frames:
        picks = np.linspace(0, len(positions) - 1, num=max_frames, dtype=int)
    elif len(positions) < min_frames:
        picks = np.linspace(0, len(positions) - 1, num=min_frames, dtype=int)
    else:
        return positions
    return [positions[int(k)] for k in picks]


def _count_packets(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


def read_video_frames(
    path: str | os.PathLike, *, fps: int = 1, min_frames: int = 4, max_frames: int = 16
) -> list[Image.Image]:
    """Decode a video file with PyAV and return the sampled frames as RGB PIL images, in sampling order.

    Raises `MediaError` naming the file when it is missing, empty, not a readable container, has no video stream,
    has zero frames, or cannot be decoded up to the frames the header promises (truncated or corrupt).
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"video {path}: file not found")
    if path.stat().st_size == 0:
        raise MediaError(f"video {path}: empty file (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"video {path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise MediaError(f"video {path}: frame rate unknown")
            num_frames = stream.frames
        if num_frames <= 0:  # the container does not state a count (e.g. some mkv/webm/avi): count packets
            num_frames = _count_packets(path)
        if num_frames <= 0:
            raise MediaError(f"video {path}: zero frames")
        positions = sample_frame_indices(num_frames, float(rate), fps=fps, min_frames=min_frames, max_frames=max_frames)
        wanted = set(positions)
        last = max(positions)
        decoded: dict[int, Image.Image] = {}
        count = 0
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                count = index + 1
                if index in wanted:
                    decoded[index] = Image.fromarray(frame.to_ndarray(format="rgb24"))  # [H, W, 3] uint8
                if index >= last:
                    break
    except MediaError:
        raise
    except _AV_ERRORS as exc:
        raise MediaError(f"video {path}: corrupt or truncated video ({exc})") from exc
    if count == 0:
        raise MediaError(f"video {path}: zero decodable frames")
    if last not in decoded:
        raise MediaError(f"video {path}: truncated (header promises {num_frames} frames, decoded only {count})")
    return [decoded[p] for p in positions]


def frames_to_pixel_values(frames: Sequence[ImageInput], cfg: VisionConfig) -> torch.Tensor:
    """Frames (paths / bytes / PIL / uint8 arrays) -> pixel_values [F, 3, S, S], one centre-cropped tile each."""
    if len(frames) == 0:
        raise MediaError("video: empty frame list")
    tiles = [center_crop_tile(load_image(frame), cfg.image_size) for frame in frames]
    return normalize(tiles, cfg)  # [F, 3, S, S]


def load_video(
    source: VideoInput, cfg: VisionConfig, *, fps: int = 1, min_frames: int = 4, max_frames: int = 16
) -> torch.Tensor:
    """A video file (sampled with the official rule) or a list of already chosen frames -> [F, 3, S, S]."""
    if isinstance(source, (str, os.PathLike)):
        frames: Sequence[ImageInput] = read_video_frames(source, fps=fps, min_frames=min_frames, max_frames=max_frames)
    elif isinstance(source, (list, tuple)):
        frames = source  # taken as given: the caller already chose the frames
    else:
        raise MediaError(f"video <{type(source).__name__}>: expected a file path or a list of frames")
    return frames_to_pixel_values(frames, cfg)
