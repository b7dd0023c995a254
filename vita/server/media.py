"""Media of a chat request -> `vita.processor` parts, decoded under the server's limits.

Images, video and audio arrive as base64: data URLs (`data:image/png;base64,...`, `data:video/mp4;base64,...`) or
the bare base64 of `input_audio.data`. Remote http(s) URLs are refused unless the server runs with
`--allow-remote-media`. Every error names the request field (`messages[1].content[0].image_url.url`) and, for a
limit, the CLI flag and the value that broke it.

Decoding happens here, once, so limits can be checked on real sizes: an image becomes an RGB PIL image, a video a
list of sampled frames (the official 1 fps / 4..16 rule, `vita.media.video`), a clip a float32 wave at 16 kHz; the
processor then treats them exactly as it would the original files.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import time

from PIL import Image as PILImage

from vita.config import SAMPLE_RATE
from vita.errors import MediaError
from vita.media.audio import AudioTooLong, load_audio
from vita.media.image import load_image
from vita.media.video import VideoTooLarge, read_video_frames
from vita.processor import Audio, Image, Video
from vita.server import fetch as remote
from vita.server.errors import bad_request, limit_exceeded
from vita.server.limits import Limits

_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[^;,]*)*);base64,(?P<data>.*)", re.S)
_AUDIO_MAGIC = {"wav": (b"RIFF", b"RF64"), "flac": (b"fLaC",), "ogg": (b"OggS",), "mp3": (b"ID3", b"\xff")}
# the FFmpeg demuxer of each accepted video type: named, never probed (no playlist or concat demuxer can open)
_VIDEO_FORMAT = {"video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "matroska",
                 "video/x-matroska": "matroska", "video/x-msvideo": "avi", "video/avi": "avi"}
# image formats decoded (OpenAI's list plus BMP); anything else is refused before PIL reads past the signature
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")


def decode_base64(data: str, param: str) -> bytes:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request(f"{param}: invalid base64 data ({exc})", param, code="invalid_base64") from exc
    if not raw:
        raise bad_request(f"{param}: empty media data", param)
    return raw


class MediaDecoder:
    """Decodes one request's media, keeping count of what it has used against `Limits`."""

    def __init__(self, limits: Limits, *, allow_remote: bool = False, audio_rate: int = SAMPLE_RATE) -> None:
        self.limits = limits
        self.allow_remote = allow_remote
        self.audio_rate = audio_rate
        self.images = 0
        self.frames = 0
        self.clips = 0
        self.audio_seconds = 0.0
        self.fetched: dict[str, tuple[str, bytes]] = {}  # remote URL -> (mime, bytes), filled by `prefetch`

    def prefetch(self, urls: list[str]) -> None:
        """Fetch the request's remote URLs (on a plain thread, before the model thread), under one deadline
        (--max-remote-media-seconds) and one byte budget (--max-request-bytes) for them all."""
        lim = self.limits
        if len(urls) > lim.max_images + lim.max_frames:
            raise limit_exceeded(f"messages: {len(urls)} remote media URLs > --max-images + --max-frames "
                                 f"{lim.max_images + lim.max_frames}", "messages")
        deadline, budget = time.monotonic() + lim.max_remote_media_seconds, lim.max_request_bytes
        for url in dict.fromkeys(urls):
            try:
                mime, data = remote.fetch(url, deadline=deadline, max_bytes=budget)
            except remote.FetchError as exc:
                raise bad_request(f"{url[:100]!r}: {exc} (--max-remote-media-seconds "
                                  f"{lim.max_remote_media_seconds:g}, --max-request-bytes {lim.max_request_bytes})",
                                  "messages", code="fetch_failed") from None
            budget -= len(data)
            self.fetched[url] = (mime, data)

    # -- sources -----------------------------------------------------------------------------------------------

    def fetch(self, url: str, param: str) -> tuple[str, bytes]:
        """A data URL (or, if allowed, an http(s) URL) -> (mime type, bytes)."""
        if url.startswith(("http://", "https://")):
            if not self.allow_remote:
                raise bad_request(
                    f"{param}: remote media URLs are disabled; send the media inline as a data URL "
                    "(data:image/png;base64,...) or start the server with --allow-remote-media", param,
                    code="remote_media_disabled")
            if url not in self.fetched:  # only chat requests prefetch (off the model thread)
                raise bad_request(f"{param}: remote media URLs are not supported here", param,
                                  code="remote_media_disabled")
            return self.fetched[url]
        match = _DATA_URL.fullmatch(url)
        if match is None:
            raise bad_request(f"{param}: expected a base64 data URL (data:<mime>;base64,<data>), got "
                              f"{url[:40]!r}{'...' if len(url) > 40 else ''}", param, code="invalid_url")
        return (match["mime"] or "application/octet-stream").lower(), decode_base64(match["data"], param)

    # -- kinds -------------------------------------------------------------------------------------------------

    def image_url(self, url: str, param: str) -> Image | Video:
        """An `image_url` part: an image, or a video clip when the data URL says `video/...`."""
        mime, data = self.fetch(url, param)
        if mime.startswith("video/"):
            return self._video_bytes(mime, data, param)
        self._count_images(1, param)
        return Image(self._image(data, param))

    def video_url(self, url: str, param: str) -> Video:
        mime, data = self.fetch(url, param)
        return self._video_bytes(mime, data, param)

    def video_frames(self, urls: list[str], param: str) -> Video:
        self._count_frames(len(urls), param)
        return Video([self._image(self.fetch(u, f"{param}[{i}]")[1], f"{param}[{i}]") for i, u in enumerate(urls)])

    def audio(self, data: str, fmt: str, param: str) -> Audio:
        self.clips += 1
        if self.clips > self.limits.max_audio_clips:
            raise limit_exceeded(f"{param}: more than --max-audio-clips {self.limits.max_audio_clips} audio clips "
                                 "in this request", param)
        raw = decode_base64(data, param)
        magic = _AUDIO_MAGIC[fmt]
        if not raw.startswith(magic) or (fmt == "mp3" and raw[:1] == b"\xff" and len(raw) > 1 and raw[1] < 0xE0):
            raise bad_request(f"{param}: the data is not {fmt} audio (its first bytes are {raw[:4]!r})", param,
                              code="invalid_audio")
        cap = self.limits.max_audio_seconds
        left = max(cap - self.audio_seconds, 0.0)  # the decode budget: what this request has not used yet
        try:
            wave = load_audio(raw, target_rate=self.audio_rate, name=f"{fmt} audio", max_seconds=left)  # [N] float32
        except AudioTooLong as exc:
            total = self.audio_seconds + exc.seconds
            raise limit_exceeded(f"{param}: {'more than ' if exc.at_least else ''}{total:.1f} s of audio in this "
                                 f"request > --max-audio-seconds {cap:g}"
                                 f"{' (the header says so: nothing decoded)' if not exc.at_least else ''}",
                                 param) from exc
        except MediaError as exc:
            raise bad_request(f"{param}: {exc}", param, code="invalid_audio") from exc
        self.audio_seconds += wave.numel() / self.audio_rate
        if self.audio_seconds > self.limits.max_audio_seconds:
            raise limit_exceeded(f"{param}: {self.audio_seconds:.1f} s of audio in this request > "
                                 f"--max-audio-seconds {self.limits.max_audio_seconds:g}", param)
        return Audio(wave, sample_rate=self.audio_rate)

    # -- helpers -----------------------------------------------------------------------------------------------

    def _count_images(self, n: int, param: str) -> None:
        self.images += n
        if self.images > self.limits.max_images:
            raise limit_exceeded(f"{param}: more than --max-images {self.limits.max_images} images in this request",
                                 param)

    def _count_frames(self, n: int, param: str) -> None:
        self.frames += n
        if self.frames > self.limits.max_frames:
            raise limit_exceeded(f"{param}: {self.frames} video frames in this request > --max-frames "
                                 f"{self.limits.max_frames}", param)

    def _check_pixels(self, width: int, height: int, param: str) -> None:
        cap, aspect = self.limits.max_image_pixels, self.limits.max_image_aspect_ratio
        if width * height > cap:
            raise limit_exceeded(f"{param}: image is {width}x{height} = {width * height} pixels > "
                                 f"--max-image-pixels {cap}", param)
        if min(width, height) > 0 and max(width, height) > aspect * min(width, height):
            raise limit_exceeded(f"{param}: image is {width}x{height}, an aspect ratio of "
                                 f"{max(width, height) / min(width, height):.0f}:1 > --max-image-aspect-ratio "
                                 f"{aspect:g}", param)

    def _image(self, data: bytes, param: str) -> PILImage.Image:
        try:  # the header alone gives the size (PIL's open is lazy): refuse a huge image before decoding it
            with PILImage.open(io.BytesIO(data), formats=IMAGE_FORMATS) as probe:
                width, height = probe.size
        except PILImage.DecompressionBombError as exc:  # PIL's own cap (2 x MAX_IMAGE_PIXELS) from the header
            raise limit_exceeded(f"{param}: image has more than {2 * PILImage.MAX_IMAGE_PIXELS} pixels > "
                                 f"--max-image-pixels {self.limits.max_image_pixels}", param) from exc
        except Exception:  # noqa: BLE001 - load_image below reports what is wrong with it
            width = height = 0
        self._check_pixels(width, height, param)
        try:
            return load_image(data, max_pixels=self.limits.max_image_pixels, formats=IMAGE_FORMATS,
                              max_aspect=self.limits.max_image_aspect_ratio)
        except MediaError as exc:
            raise bad_request(f"{param}: {exc}", param, code="invalid_image") from exc

    def _video_bytes(self, mime: str, data: bytes, param: str) -> Video:
        container = _VIDEO_FORMAT.get(mime)
        if container is None:
            raise bad_request(f"{param}: unsupported video type {mime[:40]!r} (accepted: "
                              f"{', '.join(_VIDEO_FORMAT)})", param, code="invalid_video")
        lim = self.limits
        try:  # decoded from memory: no temporary file, so no server path can reach a message
            frames = read_video_frames(data, name=f"({mime})", container_format=container,
                                       max_pixels=lim.max_image_pixels, max_seconds=lim.max_video_seconds)
        except VideoTooLarge as exc:
            flag = "--max-image-pixels" if exc.kind == "pixels" else "--max-video-seconds"
            raise limit_exceeded(f"{param}: {str(exc).rsplit(' > ', 1)[0]} > {flag} {exc.limit:g}", param) from exc
        except MediaError as exc:
            raise bad_request(f"{param}: {exc}", param, code="invalid_video") from exc
        self._count_frames(len(frames), param)
        for frame in frames:
            self._check_pixels(frame.width, frame.height, param)
        return Video(frames)
