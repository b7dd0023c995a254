"""VITA-1.5's own voice: reply text -> the LLM's embedding rows -> codec tokens -> 24 kHz audio, streamed.

    text --tokenizer--> ids [n] --LLM input embedding table--> [n, D_llm] --reshape--> hidden [n * D_llm / D, D]
    hidden --TTSDecoder (bidirectional prefix, then `TokenLoop` over a caller-owned cache)--> codes, one per step
    codes --every chunk + padding codes: CodecDecoder--> 600 samples a code, cut at a quiet point--> segments

Streaming is the official `llm2TTS.run` (the demo server never streamed it: it generated the whole answer first):
whenever left + chunk + padding codes are held (left = 0 for the first chunk, then `padding`), they are decoded in
one codec call; the audio of the first `left` and the last `padding` codes is cut off (those codes are decoded
again with context on both sides by the next call), the last 2 * padding codes are kept, and the chunk is split at
a quiet sample: the window of N = 2401 samples with the smallest sum of |x| from the middle of the chunk on; if its
mean is below `threshold`, the chunk is cut at the smallest |x| inside that window, everything before the cut goes
out (after what was buffered), the rest is buffered; otherwise the whole chunk is buffered. At the end the held
codes are decoded once more, the first `left` codes' audio cut, and buffer + that goes out. The codec sees only
`padding` codes of context at chunk borders, so the streamed audio differs slightly from one call on all codes.

Text as the server prepares it: state tokens ☞ ☟ ☜ and tags (`<|im_end|>`, `<unk>`) removed, lower-cased; the first
sentence of a reply uses `chunk` 20 and threshold 0.1 and speaks commas as full stops ("，" / "," -> "。"), later
ones `chunk` 40 and threshold 0.015. (The server also rewrites math symbols into Chinese words; not done here.)

`Vita15Voice` is a `vita.speech.tts.Synthesizer` (text -> float32 pcm at `out_rate`), so `StreamingTTS`, the duplex
session, `vita chat --speak` and the server's speech out can use it in place of Piper.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from vita.checkpoint.vita15_tts import TTS_FOLDER, load_codec, load_tts_decoder
from vita.errors import CheckpointError
from vita.generation.loop import PromptCache, TokenLoop
from vita.generation.sampling import GREEDY, SamplingConfig
from vita.media.audio import resample
from vita.models.tts_codec import CodecDecoder
from vita.models.tts_decoder import TTSDecoder
from vita.speech.tts import speakable
from vita.tokenizer import Tokenizer

QUIET_WINDOW = 2401  # samples (official `find_min_sum_index` N)


@dataclass(frozen=True)
class StreamConfig:
    """How codes become audio segments (the official server's two settings are `FIRST` and `LATER`)."""

    chunk: int = 40  # codes decoded per codec call (besides the padding)
    padding: int = 10  # codes of context on each side, decoded but cut off
    threshold: float = 0.015  # mean |x| a quiet window must stay below to cut there
    window: int = QUIET_WINDOW


FIRST = StreamConfig(chunk=20, threshold=0.1)  # the first sentence of a reply: audio sooner
LATER = StreamConfig()


def prepare_text(text: str, *, first: bool) -> str:
    """The text the server gives the decoder: no state tokens or tags, lower case; commas as full stops in the
    first sentence."""
    text = speakable(text).lower()
    return text.replace("，", "。").replace(",", "。") if first else text


def quiet_cut(syn: torch.Tensor, window: int, threshold: float) -> int | None:
    """Where to split a chunk syn [N] (official `find_min_sum_index`), or None to keep all of it buffered."""
    L = syn.shape[0]
    if L < window:
        return None
    sums = F.conv1d(syn.abs()[None, None], torch.ones(1, 1, window, dtype=syn.dtype))[0, 0]  # [L - window + 1]
    start = L // 2 - window // 2
    low, at = torch.min(sums[start:], dim=0)
    a = max(0, int(at) + start)
    b = min(L, a + window)
    cut = a + int(torch.argmin(syn[a:b].abs()))
    return cut if float(low) / window < threshold else None


def stream_audio(codes: Iterator[int], codec: CodecDecoder, config: StreamConfig = LATER) -> Iterator[torch.Tensor]:
    """Codes as they are generated -> waveform segments [n] at the codec's rate (the official chunking)."""
    spc = codec.config.samples_per_code
    held: list[int] = []
    left = 0
    buffer = torch.zeros(0)
    for code in codes:
        held.append(code)
        if len(held) < left + config.chunk + config.padding:
            continue
        with torch.inference_mode():
            wave = codec(torch.tensor(held))  # [len(held) * spc]
        syn = wave[left * spc : wave.shape[0] - config.padding * spc]
        held, left = held[-2 * config.padding :], config.padding
        cut = quiet_cut(syn, config.window, config.threshold)
        if cut is None:
            buffer = torch.cat([buffer, syn])
        else:
            yield torch.cat([buffer, syn[:cut]])
            buffer = syn[cut:]
    if held:
        with torch.inference_mode():
            wave = codec(torch.tensor(held))
        buffer = torch.cat([buffer, wave[left * spc :]])
    if buffer.numel():
        yield buffer


class Vita15Voice:
    """VITA-1.5's speech decoder over a loaded model's embedding table and tokenizer: a `Synthesizer`.

    Args:
        decoder, codec: the two parts of `vita_tts_ckpt` (`load`).
        embeddings: the LLM's input embedding table [V, D_llm] (its rows are the decoder's input).
        tokenizer: the LLM's tokenizer.
        out_rate: rate of the pcm `__call__` returns (the codec's own is 24 kHz).
        top_k: 1 is greedy (deterministic); the official server samples with top_k 2.
        max_codes: at most this many codes per call (the official default: 1000, 25 s).
        seed: the generator for top_k > 1 (None: torch's global one).
    """

    def __init__(self, decoder: TTSDecoder, codec: CodecDecoder, embeddings: torch.Tensor, tokenizer: Tokenizer, *,
                 out_rate: int = 24000, top_k: int = 1, max_codes: int = 1000, seed: int | None = None) -> None:
        width = decoder.config.hidden_size
        if embeddings.shape[1] % width:
            raise CheckpointError(f"LLM width {embeddings.shape[1]} is not a multiple of the decoder width {width}")
        self.decoder, self.codec, self.embeddings, self.tokenizer = decoder, codec, embeddings, tokenizer
        self.out_rate, self.top_k, self.max_codes = out_rate, top_k, max_codes
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.cache: PromptCache | None = None  # ours: one reply at a time
        self.last_first_audio_s: float | None = None  # time to the first segment of the last call

    @property
    def sample_rate(self) -> int:
        return self.codec.config.sampling_rate

    @classmethod
    def load(cls, folder: str | Path, vita, **kw) -> Vita15Voice:
        """From a `vita_tts_ckpt` folder (or a VITA-1.5 checkpoint holding one) and a loaded `vita.Vita`."""
        folder = Path(folder)
        if (folder / TTS_FOLDER).is_dir():
            folder = folder / TTS_FOLDER
        decoder, codec = load_tts_decoder(folder / "decoder"), load_codec(folder / "codec")
        table = vita.model.llm.tok_embeddings.weight.detach()  # shared with the LLM: no copy (2 GB at 7B)
        return cls(decoder, codec, table, vita.tokenizer, **kw)

    # ---- the parts ------------------------------------------------------------------------------------------
    def hidden(self, text: str) -> torch.Tensor:
        """The decoder's input for (prepared) text: embedding rows of its ids, cut to the decoder width [R, D]."""
        ids = self.tokenizer.encode(text)
        rows = self.embeddings[torch.tensor(ids, dtype=torch.long, device=self.embeddings.device)]  # [n, D_llm]
        rows = rows.to("cpu", torch.float32)  # the decoder runs in float32 on the CPU
        return rows.reshape(-1, self.decoder.config.hidden_size)  # [n * D_llm / D, D]

    def codes(self, hidden: torch.Tensor, *, top_k: int | None = None, max_codes: int | None = None,
              forced: list[int] | tuple[int, ...] = ()) -> TokenLoop:
        """The code loop over our cache: iterate it for codes (EOS ends it, not emitted). `forced` teacher-forces."""
        top_k = self.top_k if top_k is None else top_k
        max_codes = self.max_codes if max_codes is None else max_codes
        dec, lm = self.decoder, self.decoder.lm
        with torch.inference_mode():
            prefix = dec.prefix(hidden)  # [R + 1, D]
            needed = prefix.shape[0] + max_codes + 1
            if needed > lm.config.max_position_embeddings:
                raise ValueError(f"{hidden.shape[0]} rows + {max_codes} codes exceed the decoder's "
                                 f"{lm.config.max_position_embeddings} positions: speak shorter sentences")
            if self.cache is None or self.cache.max_seq_len < needed:
                self.cache = PromptCache(lm, min(max(needed, 256), lm.config.max_position_embeddings))
            self.cache.truncate(0)
            dec.prefill_prefix(prefix, self.cache.kv)  # bidirectional inside the prefix
            self.cache.append(prefix)  # so the loop finds it cached and runs the START row only
        sampling = GREEDY if top_k <= 1 else SamplingConfig(temperature=1.0, top_k=top_k)
        return TokenLoop(lm, self.cache, torch.cat([prefix, dec.start_row()]), max_new_tokens=max_codes,
                         sampling=sampling, generator=self.generator, stop_ids=(dec.config.eos,), native=False,
                         forced=forced, forced_complete=bool(forced))

    # ---- text -> audio --------------------------------------------------------------------------------------
    def stream(self, text: str, *, first: bool = False, config: StreamConfig | None = None,
               top_k: int | None = None) -> Iterator[torch.Tensor]:
        """Reply text -> 24 kHz float32 segments as the decoder produces them."""
        spoken = prepare_text(text, first=first)
        if not spoken:
            return
        start = time.perf_counter()
        self.last_first_audio_s = None
        for segment in stream_audio(iter(self.codes(self.hidden(spoken), top_k=top_k)), self.codec,
                                    config or (FIRST if first else LATER)):
            if self.last_first_audio_s is None:
                self.last_first_audio_s = time.perf_counter() - start
            yield segment

    def __call__(self, text: str, *, first: bool = False) -> np.ndarray:
        """A phrase -> float32 pcm [N] at `out_rate` (the segments of `stream`, joined)."""
        parts = [s.numpy() for s in self.stream(text, first=first)]
        pcm = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        return np.clip(resample(pcm, self.sample_rate, self.out_rate), -1.0, 1.0)
