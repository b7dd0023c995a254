"""Whisper's own ears beside vita-mini's CTC-aligned audio path: its transcript, where it is confident, is what the
LLM reads.

vita-mini's audio adapter reads Whisper tiny.en's states through a CTC head that only ever heard synthetic voices
(`vita.training.embed_align`); one row per heard token reaches the LLM as that token's input embedding
(`AudioAdapter.compress`). Whisper's decoder was trained on real human speech and reads it far better, but misreads
many synthetic voices; so both listen, and Whisper's words win where it is sure of them (`TranscriberConfig`):

    log-mel [T, M] -> clamp, pad with the silence floor to >= window_frames and >= margin_frames after it
    -> audio_encoder blocks [:tap_block] (shared, never fine-tuned)
    -> Whisper's original blocks [tap_block:] + final norm (`blocks`, `final_norm`)
    -> `WhisperDecoder.transcribe` -> confident? -> its text -> LLM token ids (the bound text encoder)

Where the caller gives the read-out too (`vita.models.audio_adapter.ReadOut`: what the CTC path heard and how it
scores any ids), the two ears
vote (`TranscriberConfig.vote_*`): each one scores both transcripts (the read-out by CTC likelihood, Whisper by its
teacher-forced log-probability, `WhisperDecoder.score`) and the read-out's words win where the summed difference says
so. Whisper hears real speech better, the read-out the synthetic voices it was trained on; each is sure of its own
words, so neither alone can judge. With no speech (<|nospeech|> over its threshold) or nothing read out, the rule above.
The vote needs Whisper's text encoder (`bind_whisper_text`, its tokenizer.json); without it, the rule above.

Whisper's ids become text through the byte table of its vocabulary (`token_bytes` / `token_offsets`, built from the
checkpoint's tokenizer.json by `byte_table`), and text becomes LLM ids through `bind(encode)`: the caller that holds
the LLM's tokenizer (`vita.api.Vita`) binds it; an unbound transcriber is never used (training reads the CTC path).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from vita.config import TranscriberConfig, WhisperConfig
from vita.models.audio_adapter import ReadOut
from vita.models.whisper import WhisperBlock, WhisperEncoder, prepare_clip
from vita.models.whisper_decoder import Transcript, WhisperDecoder

__all__ = ["WhisperTranscriber", "byte_table"]


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: printable stand-in character -> byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


def byte_table(tokenizer_json: str | Path, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A byte-level BPE tokenizer.json -> (bytes of every token concatenated [N] uint8, offsets [V + 1] int64);
    special tokens and ids the vocabulary lacks are empty."""
    data = json.loads(Path(tokenizer_json).read_text())
    special = {t["id"] for t in data.get("added_tokens", ()) if t.get("special")}
    decode = _byte_decoder()
    pieces = [b""] * vocab_size
    for token, i in data["model"]["vocab"].items():
        if i < vocab_size and i not in special and all(c in decode for c in token):
            pieces[i] = bytes(decode[c] for c in token)
    offsets = torch.tensor([0, *map(len, pieces)]).cumsum(0)
    return torch.frombuffer(bytearray(b"".join(pieces)), dtype=torch.uint8).clone(), offsets


class WhisperTranscriber(nn.Module):
    """Whisper's top blocks + decoder on a shared bottom; `heard` gives the LLM ids of a confident transcript."""

    def __init__(self, config: TranscriberConfig, encoder: WhisperConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(WhisperBlock(encoder) for _ in range(encoder.num_layers - config.tap_block))
        self.final_norm = nn.LayerNorm(encoder.hidden_size, eps=encoder.layer_norm_eps)
        self.decoder = WhisperDecoder(config.decoder)
        self.register_buffer("token_bytes", torch.zeros(config.text_bytes, dtype=torch.uint8))  # [N]
        self.register_buffer("token_offsets", torch.zeros(config.decoder.vocab_size + 1, dtype=torch.int64))  # [V+1]
        self.encode_text: Callable[[str], list[int]] | None = None  # LLM text -> ids; `bind` sets it
        self.decode_text: Callable[[list[int]], str] | None = None  # LLM ids -> text; `bind_tokenizer` sets it
        self.encode_whisper: Callable[[str], list[int]] | None = None  # text -> Whisper's ids; `bind_whisper_text`
        self._key: str | None = None  # the bound tokenizer's name
        # what the ids depend on besides the weights (the tokenizer, this config): a saved transcript's key
        # (`vita.models.encoder_cache`); None: an encoder of unknown identity, transcripts are not saved
        self.text_key: str | None = None

    def bind(self, encode: Callable[[str], list[int]] | None, key: str | None = None,
             decode: Callable[[list[int]], str] | None = None) -> None:
        """The LLM tokenizer's text -> ids (no special tokens) and, for the vote, ids -> text; None switches the
        transcriber off. `key` names the tokenizer (transcripts are saved to disk only with one)."""
        self.encode_text, self.decode_text = encode, decode if encode is not None else None
        self._key = key
        self._rekey()

    def bind_tokenizer(self, tokenizer) -> None:
        """`bind` the LLM tokenizer (`vita.tokenizer.Tokenizer`): Whisper's text as plain text, never as specials."""
        key = hashlib.sha1(tokenizer.backend.to_str().encode()).hexdigest()
        self.bind(lambda text: tokenizer.encode(text, add_special_tokens=False, plain=((0, len(text)),)), key,
                  lambda ids: tokenizer.decode(ids))

    def bind_whisper_text(self, tokenizer_json: str | Path | None) -> bool:
        """Whisper's own BPE (its tokenizer.json) for scoring the read-out's words in the vote, taken only where its
        vocabulary is the decoder's (the same byte table); None or another vocabulary: no vote. Whether it was taken."""
        self.encode_whisper = None
        if tokenizer_json is not None and Path(tokenizer_json).is_file():
            data, offsets = byte_table(tokenizer_json, self.config.decoder.vocab_size)
            if torch.equal(offsets, self.token_offsets.cpu()) and torch.equal(data, self.token_bytes.cpu()):
                import tokenizers

                bpe = tokenizers.Tokenizer.from_file(str(tokenizer_json))
                self.encode_whisper = lambda text: bpe.encode(" " + text, add_special_tokens=False).ids
        self._rekey()
        return self.encode_whisper is not None

    def _rekey(self) -> None:
        key, votes = self._key, self.votes()
        self.text_key = None if self.encode_text is None or key is None else \
            hashlib.sha1(f"{key}|{self.config!r}|vote={votes}".encode()).hexdigest()

    def votes(self) -> bool:
        """Whether `heard` lets the two ears vote where it is given a read-out."""
        return bool(self.config.vote_scale > 0 and self.encode_whisper is not None and self.decode_text is not None)

    def text(self, ids: tuple[int, ...]) -> str:
        """Whisper ids -> text (undecodable bytes replaced)."""
        data, offsets = self.token_bytes.cpu().numpy(), self.token_offsets.cpu().numpy()  # views, no copy on CPU
        text = b"".join(data[offsets[i] : offsets[i + 1]].tobytes() for i in ids)
        return text.decode("utf-8", errors="replace").strip()

    @torch.no_grad()
    def states(self, encoder: WhisperEncoder, features: torch.Tensor) -> torch.Tensor:
        """One clip's unclamped log-mel [T, M] -> the final encoder states [W/2, D] the decoder reads (the bottom
        blocks are `encoder`'s): what `transcribe` decodes and `vita.training.ears` trains on."""
        mel, floor = prepare_clip(features)  # [T, M]
        if mel.shape[0] > encoder.window_frames - self.config.margin_frames:  # Whisper's first window only
            mel = mel[: encoder.window_frames - self.config.margin_frames]
        frames = max(self.config.window_frames, mel.shape[0] + self.config.margin_frames)
        frames += frames % 2
        mel = F.pad(mel, (0, 0, 0, frames - mel.shape[0]), value=floor)  # [W, M]
        x = encoder.encode(mel[None].to(self.final_norm.weight.device), blocks=self.config.tap_block)  # [1, W/2, D]
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)[0]

    @torch.no_grad()
    def transcribe(self, encoder: WhisperEncoder, features: torch.Tensor, max_tokens: int | None = None) -> Transcript:
        """One clip's unclamped log-mel [T, M] -> Whisper's greedy transcript (the bottom blocks are `encoder`'s)."""
        return self.decoder.transcribe(self.states(encoder, features), max_tokens)

    def heard(self, encoder: WhisperEncoder, features: torch.Tensor, limit: int, readout: ReadOut | None = None
              ) -> list[int] | None:
        """The LLM ids (at most `limit`) of what Whisper confidently hears in the clip (or, with `readout`, wins the
        vote: module docstring), or None: keep the CTC read-out (unbound, unsure, no speech, or nothing said)."""
        return self.choose(encoder, features, limit, readout)["ids"]

    def choose(self, encoder: WhisperEncoder, features: torch.Tensor, limit: int, readout: ReadOut | None = None
               ) -> dict:
        """`heard` with its reasons: {"ids": LLM ids or None, "whisper": Whisper's text, "transcript": its
        `Transcript`, "vote": None (no vote) or (CTC difference, Whisper difference) read-out minus Whisper}."""
        out = {"ids": None, "whisper": "", "transcript": None, "vote": None}
        if self.encode_text is None:
            return out
        states = self.decoder.start(self.states(encoder, features)[None])  # the cross-attention's keys, once
        heard = self.decoder.transcribe(states, max_tokens=2 * limit)
        text = self.text(heard.ids)
        ids = self.encode_text(text)[:limit]
        out |= {"whisper": text, "transcript": heard}
        cfg = self.config
        if readout is None or not self.votes() or not readout.ids or heard.no_speech >= cfg.no_speech_threshold:
            out["ids"] = (ids or None) if self.sure(heard) else None
            return out
        if not ids:
            return out
        ctc_w, ctc_r = readout.ctc(ids, cfg.vote_scale), readout.ctc(readout.ids, cfg.vote_scale)
        if ctc_r is None:
            out["ids"] = ids
            return out
        if ctc_w is None:
            return out
        read_text = self.decode_text(readout.ids).strip()
        whisper_r = self.decoder.score(states, self.encode_whisper(read_text)) if read_text else -float("inf")
        whisper_w = heard.avg_logprob if heard.ended else self.decoder.score(states, heard.ids)
        out["vote"] = (ctc_r - ctc_w, whisper_r - whisper_w)
        if (ctc_r - ctc_w) + cfg.vote_weight * (whisper_r - whisper_w) <= cfg.vote_margin:
            out["ids"] = ids
        return out

    def sure(self, heard: Transcript) -> bool:
        """Whether Whisper's words replace the read-out's: a likely transcript of speech (`TranscriberConfig`)."""
        cfg = self.config
        return heard.avg_logprob > cfg.logprob_threshold and heard.no_speech < cfg.no_speech_threshold
