"""VitaModel: vision tower + projector, audio encoder + adapter, and the LLM, composed (no inheritance).

    pixel_values [N, 3, S, S] -- vision --> [N, T_img, 4C] -- vision_projector --> [N, T_img, D] --+
    fbank [T, 80] per clip -- audio_encoder --> [1, T', H] -- audio_adapter --> [1, ceil(T'/2), D] -+-- splice
    token_ids [B, L] (placeholders expanded) -- llm.embed --> [B, L, D] ---------------------------+
    embeds [B, L, D] -- llm --> logits [B, L, V]

Audio features per encoder (`config.audio.kind`): whale takes a Kaldi fbank (T' = T/4), whisper an unclamped
Whisper log-mel (T' = ceil(T/2)).

Attribute names fix the canonical checkpoint layout: `llm.*`, `vision.*`, `vision_projector.*`,
`audio_encoder.*`, `audio_adapter.*`, and with `config.video_projector` a second projector `video_projector.*` for
the rows of video frames (`video_rows`; the tower still runs once over all tiles and frames).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from vita.config import VisionConfig, VitaConfig
from vita.errors import PromptError
from vita.models.audio_adapter import AudioAdapter, ReadOut
from vita.models.efficientnet import EfficientNetLite
from vita.models.encoder_cache import EncoderCache
from vita.models.fusion import splice
from vita.models.llm import LLM
from vita.models.projector import VisionProjector
from vita.models.transcriber import WhisperTranscriber
from vita.models.vision import InternViT
from vita.models.whale import WhaleEncoder
from vita.models.whisper import WhisperEncoder
from vita.tokens import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID


def _audio_encoder(config: VitaConfig) -> WhaleEncoder | WhisperEncoder | None:
    """The encoder `config.audio.kind` names; both map (features [B, T, 80], lengths [B]) to (states, mask)."""
    if config.audio is None:
        return None
    return WhisperEncoder(config.audio) if config.audio.kind == "whisper" else WhaleEncoder(config.audio)


def vision_tower(cfg: VisionConfig) -> nn.Module:
    """The tower `cfg.tower` names: InternViT (VITA's, DINOv2) or EfficientNet-Lite0; both give [N, T, 4C]."""
    return EfficientNetLite(cfg) if cfg.tower == "efficientnet_lite0" else InternViT(cfg)


class VitaModel(nn.Module):
    def __init__(self, config: VitaConfig) -> None:
        super().__init__()
        self.config = config
        self.llm = LLM(config.llm)
        self.vision = vision_tower(config.vision) if config.vision is not None else None
        self.vision_projector = (
            VisionProjector(config.vision_projector) if config.vision_projector is not None else None
        )
        self.video_projector = VisionProjector(config.video_projector) if config.video_projector is not None else None
        self.audio_encoder = _audio_encoder(config)
        self.audio_adapter = AudioAdapter(config.audio_adapter) if config.audio_adapter is not None else None
        self.transcriber = (
            WhisperTranscriber(config.transcriber, config.audio) if config.transcriber is not None else None
        )
        # frozen encoders' outputs by input bytes (`vita.models.encoder_cache`); None: always run the encoders
        self.encoder_cache: EncoderCache | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.norm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.llm.norm.weight.device

    def encode_images(self, pixel_values: torch.Tensor, video_rows: torch.Tensor | None = None) -> torch.Tensor:
        """[N, 3, S, S] tiles/frames -> [N * T_img, D] rows for the image placeholders, in tile order.

        `video_rows` (bool [N], True where pixel_values[i] is a video frame): with a `video_projector`, those rows go
        through it and the others through `vision_projector`; without one, or None, all go through `vision_projector`.
        """
        if self.vision is None or self.vision_projector is None:
            raise PromptError("this model has no vision encoder")
        param = self.vision_projector.fc1.weight
        feats = self._vision(pixel_values.to(param.device, param.dtype))  # [N, T_img, 4C]
        proj = self.vision_projector(feats)  # [N, T_img, D]
        if self.video_projector is not None and video_rows is not None:
            if video_rows.shape != feats.shape[:1] or video_rows.dtype != torch.bool:
                raise PromptError(f"video_rows must be a bool tensor of shape [{feats.shape[0]}] (one flag per tile "
                                  f"or frame), got {video_rows.dtype} {tuple(video_rows.shape)}")
            # both projectors over every row, then a pick: each row is exactly what its projector alone would give
            # (a subset's matmul may round differently), and a frame's gradient reaches only `video_projector`
            # pictures alone at inference (a camera frame, an image prompt): nothing more to run; with gradients on,
            # the projector stays in every step's graph (DDP expects each trainable parameter to get a gradient)
            if torch.is_grad_enabled() or bool(video_rows.any()):
                frames = video_rows.to(feats.device)[:, None, None]  # [N, 1, 1]
                proj = torch.where(frames, self.video_projector(feats), proj)
        return proj.reshape(-1, proj.shape[-1])  # [N * T_img, D]

    def _vision(self, pixels: torch.Tensor) -> torch.Tensor:
        cache = self.encoder_cache
        if cache is None:
            return self.vision(pixels)
        return torch.cat([cache.run("vision", self.vision, lambda t=t: (self.vision(t),), t)[0]
                          for t in pixels.split(1)])  # tile by tile: a tile's key is its own bytes

    def _audio(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self.encoder_cache
        if cache is None:
            return self.audio_encoder(x, lengths)
        enc, mask = cache.run("audio", self.audio_encoder, lambda: self.audio_encoder(x, lengths), x,
                              extra=(*lengths.tolist(), repr(self.audio_encoder.config)))
        return enc, mask

    def encode_audio(self, fbanks: Sequence[torch.Tensor], transcribe: bool = True) -> torch.Tensor:
        """One [T, 80] fbank per clip -> [sum_i T''_i, D] rows for the audio placeholders, in clip order.

        Clips are encoded one at a time: results are those of a batch of one, exactly like the official demo,
        and no padded frame can leak into the prompt. `transcribe=False`: Whisper's own decoder does not run; only
        its transcripts memoised already are used (`transcribe_clips` fills them in, e.g. on another thread), the
        other clips read the CTC read-out.
        """
        if self.audio_encoder is None or self.audio_adapter is None:
            raise PromptError("this model has no audio encoder")
        rows = []
        for feats in fbanks:
            clip = self._clip_rows(feats)  # [T'', D]
            if self.audio_adapter.config.ctc_vocab:  # one row per heard token (AudioAdapter.compress)
                read_out = self._read_out(clip)
                heard = self._transcribed(feats, clip, run=transcribe, read_out=read_out)
                clip = self.audio_adapter.compress(clip, self.llm.tok_embeddings.weight, heard,
                                                   None if heard is not None else read_out())
            rows.append(clip)
        return torch.cat(rows)

    def _clip_rows(self, feats: torch.Tensor) -> torch.Tensor:
        """One clip's fbank [T, 80] -> the adapter's rows [T'', D] (before the CTC read-out)."""
        param = next(self.audio_adapter.parameters())
        x = feats.to(param.device, torch.float32).unsqueeze(0)  # [1, T, 80]; CMVN runs in float32
        lengths = torch.tensor([feats.shape[0]], device=param.device)
        enc, mask = self._audio(x, lengths)  # [1, T', H], [1, T']
        emb, emb_mask = self.audio_adapter(enc, mask)  # [1, T'', D], [1, T'']
        return emb[0, emb_mask[0]]

    def listens(self) -> bool:
        """Whether Whisper's own decoder reads this model's clips (a bound transcriber beside a CTC read-out)."""
        return (self.transcriber is not None and self.transcriber.encode_text is not None
                and self.audio_adapter is not None and bool(self.audio_adapter.config.ctc_vocab))

    def transcribed(self, fbanks: Sequence[torch.Tensor]) -> bool:
        """Whether `encode_audio` would run no decoder: every clip's transcript is memoised, or none is needed."""
        return not self.listens() or all(self._memoised(f, len(self._clip_rows(f)))[0] for f in fbanks)

    def transcribe_clips(self, fbanks: Sequence[torch.Tensor]) -> None:
        """Run Whisper's decoder on every clip whose transcript is not memoised yet, and memoise it."""
        if self.listens():
            for feats in fbanks:
                rows = self._clip_rows(feats)
                self._transcribed(feats, rows, read_out=self._read_out(rows))

    def _read_out(self, rows: torch.Tensor) -> Callable[[], ReadOut]:
        """The read-out of a clip's adapter rows [T'', D] (`AudioAdapter.listen`), computed on first call only."""
        return functools.cache(lambda: self.audio_adapter.listen(rows, self.llm.tok_embeddings.weight))

    def _transcribed(self, feats: torch.Tensor, rows: torch.Tensor, run: bool = True,
                     read_out: Callable[[], ReadOut] | None = None) -> list[int] | None:
        """The LLM ids Whisper's own decoder confidently hears in the clip, or that win the vote against the read-out
        of its adapter rows [T'', D] (`vita.models.transcriber`), or None. `run=False`: a memoised transcript only
        (None where there is none)."""
        if not self.listens():
            return None
        if not run:
            return self._memoised(feats, len(rows))[1]
        read_out = read_out or self._read_out(rows)
        vote = self.transcriber.votes()  # else the read-out is not needed here
        compute = lambda: (torch.tensor(self.transcriber.heard(self.audio_encoder, feats, len(rows),  # noqa: E731
                                                               read_out() if vote else None) or [-1]),)
        if self.encoder_cache is not None:
            key = self.transcriber.text_key
            (ids,) = self.encoder_cache.run("transcript", self.transcriber, compute, feats, extra=(len(rows), key),
                                            depends=(self.audio_encoder, self.audio_adapter, self.llm.tok_embeddings),
                                            persist=key is not None)
        else:
            (ids,) = compute()
        return None if ids[0] < 0 else ids.tolist()

    def _memoised(self, feats: torch.Tensor, rows: int) -> tuple[bool, list[int] | None]:
        """(whether the clip's transcript is memoised, its ids or None)."""
        cache = self.encoder_cache
        hit = cache.peek("transcript", feats, extra=(rows, self.transcriber.text_key)) if cache is not None else None
        if hit is None:
            return False, None
        return True, (None if hit[0][0] < 0 else hit[0].tolist())

    def embed(
        self,
        token_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        fbanks: Sequence[torch.Tensor] = (),
        transcribe: bool = True,
        *,
        video_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Expanded ids [B, L] + media -> input embeddings [B, L, D] (`transcribe`: see `encode_audio`; `video_rows`:
        see `encode_images`)."""
        text = self.llm.embed(token_ids.clamp_min(0))  # [B, L, D]; placeholder rows are overwritten below
        features: dict[int, torch.Tensor] = {}
        if pixel_values is not None and pixel_values.shape[0]:
            features[IMAGE_TOKEN_ID] = self.encode_images(pixel_values, video_rows)
        if fbanks:
            features[AUDIO_TOKEN_ID] = self.encode_audio(fbanks, transcribe)
        return splice(text, token_ids, features)

    def forward(
        self,
        token_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        fbanks: Sequence[torch.Tensor] = (),
        *,
        segment_ids: torch.Tensor | None = None,
        video_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Uncached forward over the whole sequence: logits [B, L, V].

        segment_ids [B, L] (true packing): attention stays within a segment and positions restart per segment.
        video_rows [N]: which of pixel_values are video frames (`encode_images`).
        """
        embeds = self.embed(token_ids, pixel_values, fbanks, video_rows=video_rows)
        return self.llm(input_embeds=embeds, segment_ids=segment_ids)
