"""Video input: official frame sampling, PyAV decoding, one centre-cropped tile per frame (VITA-1.0 video path).

Shapes:
    num_frames  frames in the file (container header count, else counted packets)
    F           sampled frames (min_frames..max_frames; duplicates possible for short clips)
    S           tile side = `VisionConfig.image_size`

A video becomes pixel_values [F, 3, S, S]: frames are NOT tiled; each frame is resized so its shortest edge is S
(bicubic) and centre-cropped to S x S, then normalised like an image tile (one `<image>` placeholder per frame).
"""

from __future__ import annotations

import io
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
    count = -(-num_frames // stride)  # positions 0, stride, 2*stride, ... < num_frames (never listed: a header may
    # claim 50 M frames)
    if count > max_frames:
        picks = np.linspace(0, count - 1, num=max_frames, dtype=int)
    elif count < min_frames:
        picks = np.linspace(0, count - 1, num=min_frames, dtype=int)
    else:
        return list(range(0, num_frames, stride))
    return [int(k) * stride for k in picks]


class VideoTooLarge(MediaError):
    """A video over a decode limit (`max_pixels` per frame or `max_seconds`), refused before decoding past it.

    kind: "pixels" or "seconds"; value: the size / duration that broke `limit`.
    """

    def __init__(self, message: str, *, kind: str, value: float, limit: float) -> None:
        super().__init__(message)
        self.kind, self.value, self.limit = kind, value, limit


def _open(source: Path | bytes, container_format: str | None) -> av.container.InputContainer:
    return av.open(str(source) if isinstance(source, Path) else io.BytesIO(source), format=container_format)


def _count_packets(source: Path | bytes, container_format: str | None, limit: int | None) -> int:
    count = 0
    with _open(source, container_format) as container:
        for packet in container.demux(container.streams.video[0]):
            count += bool(packet.size)
            if limit is not None and count > limit:
                break
    return count


def _reason(exc: Exception) -> str:
    """FFmpeg's reason without the file name it may append (a server's temp path must not reach clients)."""
    return getattr(exc, "strerror", None) or type(exc).__name__


def read_video_frames(
    source: str | os.PathLike | bytes, *, fps: int = 1, min_frames: int = 4, max_frames: int = 16,
    name: str | None = None, container_format: str | None = None, max_pixels: int | None = None,
    max_seconds: float | None = None,
) -> list[Image.Image]:
    """Decode a video (a file, or its bytes) with PyAV and return the sampled frames as RGB PIL images, in order.

    name: how errors call the video (default: the path). container_format: the FFmpeg demuxer to use ("mp4",
    "matroska", ...; default: probed). Limits, checked from the header before decoding and again on every frame
    before it is converted: `max_pixels` per frame, `max_seconds` of video (the header's frame count / rate, then
    the frames actually decoded), both raising `VideoTooLarge`.
    Raises `MediaError` naming the video when it is missing, empty, not a readable container, has no video stream,
    has zero frames, or cannot be decoded up to the frames the header promises (truncated or corrupt).
    """
    if isinstance(source, (bytes, bytearray)):
        data: Path | bytes = bytes(source)
        what = name or f"<{len(data)} bytes>"
        if not data:
            raise MediaError(f"video {what}: empty input (0 bytes)")
    else:
        data = Path(source)
        what = name or str(data)
        if not data.is_file():
            raise MediaError(f"video {what}: file not found")
        if data.stat().st_size == 0:
            raise MediaError(f"video {what}: empty file (0 bytes)")

    def check_pixels(width: int, height: int) -> None:
        if max_pixels is not None and width * height > max_pixels:
            raise VideoTooLarge(f"video {what}: frames are {width}x{height} = {width * height} pixels > "
                                f"max_pixels {max_pixels}", kind="pixels", value=width * height, limit=max_pixels)

    def too_long(seconds: float, at_least: bool) -> VideoTooLarge:
        verb = "decoding stopped after more than" if at_least else "the header declares"
        return VideoTooLarge(f"video {what}: {verb} {seconds:.1f} s of video > max_seconds {max_seconds:g}",
                             kind="seconds", value=seconds, limit=max_seconds)

    try:
        with _open(data, container_format) as container:
            if not container.streams.video:
                raise MediaError(f"video {what}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise MediaError(f"video {what}: frame rate unknown")
            num_frames = stream.frames
            if stream.codec_context is None:
                raise MediaError(f"video {what}: unsupported or unknown video codec")
            check_pixels(stream.codec_context.width, stream.codec_context.height)  # the header's frame size
        rate = float(rate)
        if max_seconds is not None and num_frames > 0 and num_frames / rate > max_seconds:
            raise too_long(num_frames / rate, at_least=False)
        budget = None if max_seconds is None else int(max_seconds * rate) + 1  # frames
        if num_frames <= 0:  # the container does not state a count (e.g. some mkv/webm/avi): count packets
            num_frames = _count_packets(data, container_format, budget)
            if budget is not None and num_frames > budget:
                raise too_long(num_frames / rate, at_least=True)
        if num_frames <= 0:
            raise MediaError(f"video {what}: zero frames")
        positions = sample_frame_indices(num_frames, rate, fps=fps, min_frames=min_frames, max_frames=max_frames)
        wanted = set(positions)
        last = max(positions)
        decoded: dict[int, Image.Image] = {}
        count = 0
        with _open(data, container_format) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                count = index + 1
                check_pixels(frame.width, frame.height)  # a stream may change size midway: before converting
                if budget is not None and count > budget:
                    raise too_long(count / rate, at_least=True)
                if index in wanted:
                    decoded[index] = Image.fromarray(frame.to_ndarray(format="rgb24"))  # [H, W, 3] uint8
                if index >= last:
                    break
    except MediaError:
        raise
    except _AV_ERRORS as exc:
        raise MediaError(f"video {what}: corrupt or truncated video ({_reason(exc)})") from exc
    if count == 0:
        raise MediaError(f"video {what}: zero decodable frames")
    if last not in decoded:
        raise MediaError(f"video {what}: truncated (header promises {num_frames} frames, decoded only {count})")
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
