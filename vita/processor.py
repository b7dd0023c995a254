"""Turn a conversation with media into model inputs: expanded token ids, pixel tiles and fbank features.

A message's content is a string or a list of parts: `str` (text), `Image(x)`, `Video(x)`, `Audio(x)` (x: a path,
bytes, an array or an already decoded object). Media go into the prompt at their position in the part list;
a text part may instead hold explicit `<image>` / `<video>` / `<audio>` markers, each consuming the next medium
of that kind from the same message. Shapes: N tiles or frames, S tile size, T fbank frames, L expanded length.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from vita.config import SAMPLE_RATE, VitaConfig
from vita.errors import MediaError, PromptError
from vita.media.audio import load_audio
from vita.media.fbank import fbank, num_llm_tokens
from vita.media.image import load_image, preprocess_image
from vita.media.logmel import log_mel_unclamped
from vita.media.prompt import Message, Modality, expand_placeholders, render_with_spans, tokenize_with_placeholders
from vita.media.video import load_video
from vita.tokenizer import Tokenizer
from vita.tokens import (
    AUDIO_PLACEHOLDER,
    AUDIO_TOKEN_ID,
    IMAGE_PLACEHOLDER,
    IMAGE_TOKEN_ID,
    VIDEO_PLACEHOLDER,
)


@dataclass(frozen=True)
class Image:
    source: Any


@dataclass(frozen=True)
class Video:
    source: Any


@dataclass(frozen=True)
class Audio:
    source: Any
    sample_rate: int | None = None  # required for raw PCM arrays


Part = str | Image | Video | Audio


@dataclass
class Turn:
    role: str  # "system" | "user" | "assistant"
    content: str | Sequence[Part]


@dataclass
class ModelInputs:
    token_ids: torch.Tensor  # [1, L] with IMAGE_TOKEN_ID / AUDIO_TOKEN_ID repeated to their exact counts
    pixel_values: torch.Tensor | None  # [N, 3, S, S] tiles and frames in prompt order
    fbanks: list[torch.Tensor] = field(default_factory=list)  # one [T, 80] per clip (fbank or log-mel), in order
    prompt: str = ""
    modality: Modality = "lang"
    typed: bool = False  # the last turn is the user's and holds typed text (`VitaConfig.typed_state`)
    after_exchange: bool = False  # an earlier exchange is in the prompt (`VitaConfig.state_bias_after`)
    # [N] bool, True where pixel_values[i] is a video's frame (`VitaConfig.video_projector`); None without pixels
    video_rows: torch.Tensor | None = None


def _typed(turns: Sequence[Turn]) -> bool:
    """Whether the last turn is the user's and holds typed text (not only media and whitespace)."""
    if not turns or turns[-1].role != "user":
        return False
    content = turns[-1].content
    return any(isinstance(p, str) and p.strip() for p in ([content] if isinstance(content, str) else content))


def after_exchange(turns: Sequence[Turn]) -> bool:
    """Whether the prompt holds an earlier exchange: an assistant turn before the newest one."""
    return any(t.role == "assistant" for t in turns)


MIN_AUDIO_FRAMES = 7  # the 4x conv subsampling yields no output frame below this


def _name(source: Any) -> str:
    return str(source) if isinstance(source, str) or hasattr(source, "__fspath__") else "<in-memory clip>"


_MARKERS = re.compile(f"({re.escape(IMAGE_PLACEHOLDER)}|{re.escape(VIDEO_PLACEHOLDER)}|{re.escape(AUDIO_PLACEHOLDER)})")


class Processor:
    def __init__(self, tokenizer: Tokenizer, config: VitaConfig, *, strict_audio: bool = False) -> None:
        self.tokenizer = tokenizer
        self.config = config
        # strict_audio: refuse audio that is not already 16 kHz mono instead of resampling / down-mixing it
        self.strict_audio = strict_audio

    # -- media -------------------------------------------------------------------------------------------------

    def audio_tokens(self, num_frames: int) -> int:
        """LLM tokens of a clip of `num_frames` feature frames, for this model's encoder and adapter stride."""
        adapter = self.config.audio_adapter
        return num_llm_tokens(num_frames, self.config.audio.kind if self.config.audio else "whale",
                              adapter.stride if adapter else 2)

    def image_tiles(self, source: Any) -> torch.Tensor:
        """One image -> its tiles [n_tiles, 3, S, S] in prompt order: the grid row by row, then any thumbnail."""
        return self._image(source, read=False)[0]

    def _image(self, source: Any, *, read: bool = True) -> tuple[torch.Tensor, str]:
        """One image -> (its tiles, the text its reader and tagger add after them: "" without them or `read`)."""
        if self.config.vision is None:
            raise PromptError("this model has no vision encoder: images and videos are not supported")
        picture = load_image(source)
        words = ""
        if read and self.config.reader is not None:
            from vita.media.ocr import reader_text

            words = reader_text(picture, self.config.reader)
        if read and self.config.tagger is not None:
            from vita.tagger import tagger_text

            words += tagger_text(picture, self.config.tagger)
        return preprocess_image(picture, self.config.vision), words  # [n_tiles, 3, S, S]

    def video_frames(self, source: Any) -> torch.Tensor:
        """One video -> its sampled frames [n_frames, 3, S, S] in time order."""
        if self.config.vision is None:
            raise PromptError("this model has no vision encoder: images and videos are not supported")
        return load_video(source, self.config.vision)  # [n_frames, 3, S, S]

    def audio_features(self, source: Any) -> torch.Tensor:
        """One clip (path, bytes or samples at 16 kHz) -> the audio encoder's input features [T, 80]."""
        return self._audio(Audio(source))

    def _audio(self, part: Audio) -> torch.Tensor:
        if self.config.audio is None:
            raise PromptError("this model has no audio encoder: audio input is not supported")
        audio = self.config.audio
        rate = audio.sample_rate
        wave = load_audio(part.source, sample_rate=part.sample_rate, target_rate=rate,
                          require_rate=rate if self.strict_audio else None)  # [n_samples] at 16 kHz
        if audio.kind == "whisper":  # unclamped Whisper log-mel; the encoder clamps and pads per clip
            feats = log_mel_unclamped(wave, audio.logmel)  # [ceil(N / 160), 80]
            if feats.shape[0] == 0:
                raise MediaError(f"audio {_name(part.source)}: empty clip")
            return feats
        feats = fbank(wave, audio.fbank)  # [T, 80]
        if feats.shape[0] < MIN_AUDIO_FRAMES:
            raise MediaError(
                f"audio {_name(part.source)}: too short ({wave.shape[0] / SAMPLE_RATE:.3f} s); the encoder needs at "
                f"least {MIN_AUDIO_FRAMES} frames (about 0.085 s)"
            )
        return feats

    # -- prompt ------------------------------------------------------------------------------------------------

    def render_message(self, content: str | Sequence[Part], pixels: list, fbanks: list, kinds: set[str],
                       video_rows: list | None = None) -> str:
        """Render one message's parts to text with markers, loading its media in order.

        Appends each image's tiles / video's frames to `pixels`, each clip's fbank to `fbanks`, and "image"/"video"
        to `kinds`; training (`vita.training.sample`) calls this too, so media load exactly as at inference.
        `video_rows`: gets, beside each entry of `pixels`, a bool [n] telling its rows are a video's frames.
        """
        if isinstance(content, str):
            content = [content]
        queues: dict[type, list[Any]] = {Image: [], Video: [], Audio: []}
        texts: list[str] = []
        marked = any(isinstance(p, str) and _MARKERS.search(p) for p in content)
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, (Image, Video, Audio)):
                queues[type(part)].append(part)
                if not marked:  # no explicit markers: each medium sits where it was given
                    texts.append({Image: IMAGE_PLACEHOLDER, Video: VIDEO_PLACEHOLDER, Audio: AUDIO_PLACEHOLDER}[
                        type(part)])
            else:
                raise PromptError(f"unsupported message part of type {type(part).__name__}")
        text = "".join(texts)
        out: list[str] = []
        used = {Image: 0, Video: 0, Audio: 0}
        for piece in _MARKERS.split(text):
            kind = {IMAGE_PLACEHOLDER: Image, VIDEO_PLACEHOLDER: Video, AUDIO_PLACEHOLDER: Audio}.get(piece)
            if kind is None:
                out.append(piece)
                continue
            if used[kind] >= len(queues[kind]):
                raise PromptError(
                    f"the prompt has more {piece} placeholders than {kind.__name__.lower()} inputs "
                    f"({len(queues[kind])})"
                )
            part = queues[kind][used[kind]]
            used[kind] += 1
            if kind is Audio:
                fbanks.append(self._audio(part))
                out.append(AUDIO_PLACEHOLDER)
                continue
            tiles, read = self._image(part.source) if kind is Image else (self.video_frames(part.source), "")
            kinds.add("image" if kind is Image else "video")
            pixels.append(tiles)
            if video_rows is not None:
                video_rows.append(torch.full((tiles.shape[0],), kind is Video, dtype=torch.bool))
            out.append(IMAGE_PLACEHOLDER * tiles.shape[0] + read)  # a reader's words right after the rows
        for kind, queue in queues.items():
            if used[kind] != len(queue):
                raise PromptError(
                    f"{len(queue)} {kind.__name__.lower()} input(s) given but only {used[kind]} placeholder(s)"
                )
        return "".join(out)

    def __call__(self, turns: Sequence[Turn], *, system: str | None = None) -> ModelInputs:
        pixels: list[torch.Tensor] = []
        fbanks: list[torch.Tensor] = []
        kinds: set[str] = set()
        frames: list[torch.Tensor] = []
        messages = [Message(t.role, self.render_message(t.content, pixels, fbanks, kinds, frames))
                    for t in turns]  # type: ignore[arg-type]
        modality: Modality = "video" if "video" in kinds else "image" if "image" in kinds else "lang"
        prompt, spans = render_with_spans(messages, template=self.config.template, modality=modality, system=system)
        ids = tokenize_with_placeholders(self.tokenizer, prompt, spans)  # message text never forms special tokens
        pixel_values = torch.cat(pixels) if pixels else None
        counts: dict[int, list[int]] = {}
        if pixel_values is not None:
            counts[IMAGE_TOKEN_ID] = [self.config.vision.tokens_per_tile] * pixel_values.shape[0]
        if fbanks:
            counts[AUDIO_TOKEN_ID] = [self.audio_tokens(f.shape[0]) for f in fbanks]
        ids = expand_placeholders(ids, counts)
        return ModelInputs(torch.tensor([ids]), pixel_values, fbanks, prompt, modality, _typed(turns),
                           after_exchange(turns), torch.cat(frames) if frames else None)

    def simple(
        self,
        text: str | None = None,
        *,
        images: Sequence[Any] = (),
        video: Any | None = None,
        audio: Any | None = None,
        history: Sequence[Turn] = (),
    ) -> ModelInputs:
        """One user turn laid out like the official demo: `<image>`s (or video frames), "\\n", text, `<audio>`."""
        parts: list[Part] = [Image(x) for x in images]
        if video is not None:
            parts.append(Video(video))
        if parts:
            parts.append("\n")
        if text:
            parts.append(text)
        if audio is not None:
            parts.append(audio if isinstance(audio, Audio) else Audio(audio))
        if not parts:
            raise PromptError("nothing to answer: give a text prompt, an image, a video or an audio clip")
        return self([*history, Turn("user", parts)])
