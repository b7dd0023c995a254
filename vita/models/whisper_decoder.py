"""Whisper's text decoder, compact, greedy: what an English Whisper checkpoint itself hears in a clip.

vita-mini's audio path reads Whisper tiny.en's encoder states through a CTC head trained on synthetic voices only; on
real human speech Whisper's own decoder, trained on 680,000 hours of it, hears far better. `WhisperDecoder` is that
decoder (weights: `vita.checkpoint.ct2.load_ct2_whisper_decoder`, from the same CTranslate2 `model.bin`):

    ids [B, L] -> embeddings + positions[:L] -> N x [x + SelfMHA(LN(x)) (causal, cached),
    x + CrossMHA(LN(x), encoder states), x + FC2(GELU(FC1(LN(x))))] -> LN -> logits = x @ embeddings.T

`transcribe(states)` decodes greedily from <|startoftranscript|><|notimestamps|> on one clip's final encoder states
[T', D] (any length up to 1500 frames: the clip's own frames, as `WhisperEncoder` with `pad_to_window=False` gives
them), with Whisper's suppression rules (`suppress` always, `suppress_begin` at the first step; timestamps and special
tokens never) and a loop guard (a tail of n tokens repeated `max_repeats` times is cut back to one copy: tiny models
loop on short windows). Its `no_speech` probability is read at the first step, as openai-whisper does, and with a low
average log-probability the clip counts as no speech (`Transcript.is_speech`).

Shapes: B batch, L decoded positions, T' encoder frames, D width, h heads, V vocabulary (51864 for tiny.en).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from vita.config import WhisperDecoderConfig
from vita.models.whisper import FeedForward, WhisperAttention
from vita.nn.linear import linear, project

__all__ = ["Transcript", "WhisperDecoder"]


@dataclass(frozen=True)
class Transcript:
    ids: tuple[int, ...]  # text tokens of the checkpoint's vocabulary, no special tokens
    avg_logprob: float  # mean log-probability of the chosen tokens (end of text included)
    no_speech: float  # probability of <|nospeech|> at the first step
    ended: bool = False  # closed by <|endoftext|>, nothing cut: avg_logprob is then `WhisperDecoder.score` of ids

    def is_speech(self, no_speech_threshold: float, logprob_threshold: float) -> bool:
        """openai-whisper's rule: silence when no_speech is high AND the decoded text is unlikely."""
        return not (self.no_speech > no_speech_threshold and self.avg_logprob < logprob_threshold)


class _Attention(WhisperAttention):
    """Whisper's attention (no key bias), over keys and values the caller keeps: cached self- or cross-attention."""

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._heads(project(self.k_proj, x)), self._heads(project(self.v_proj, x))  # [B, h, T, d] each

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
        q = self._heads(project(self.q_proj, x))  # [B, h, L, d]
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal and q.shape[2] > 1)  # [B, h, L, d]
        return project(self.o_proj, out.transpose(1, 2).flatten(2))  # [B, L, D]


class _Block(nn.Module):
    def __init__(self, config: WhisperDecoderConfig) -> None:
        super().__init__()
        d, eps = config.hidden_size, config.layer_norm_eps
        self.self_norm = nn.LayerNorm(d, eps=eps)
        self.self_attn = _Attention(d, config.num_heads)
        self.cross_norm = nn.LayerNorm(d, eps=eps)
        self.cross_attn = _Attention(d, config.num_heads)
        self.ffn_norm = nn.LayerNorm(d, eps=eps)
        self.ffn = FeedForward(d, config.intermediate_size)

    def forward(self, x: torch.Tensor, cache: dict[str, torch.Tensor]) -> torch.Tensor:
        """x [B, L_new, D]; `cache`: this block's cross keys/values ("ck", "cv") and the self ones so far."""
        h = self.self_norm(x)
        k, v = self.self_attn.keys_values(h)  # [B, h, L_new, d]
        if "k" in cache:  # decoding step by step: the new positions see every earlier one
            k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
        cache["k"], cache["v"] = k, v
        x = x + self.self_attn.attend(h, k, v, causal=True)
        x = x + self.cross_attn.attend(self.cross_norm(x), cache["ck"], cache["cv"], causal=False)
        h = self.ffn_norm(x)
        return x + project(self.ffn.down, F.gelu(project(self.ffn.up, h)))


class WhisperDecoder(nn.Module):
    """Whisper's decoder; `transcribe` reads one clip greedily (module docstring)."""

    def __init__(self, config: WhisperDecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.register_buffer("positions", torch.zeros(config.max_positions, config.hidden_size))  # [P, D]
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def start(self, states: torch.Tensor | list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        """Encoder states [B, T', D] -> a fresh cache per block holding the cross-attention keys and values.
        Already started (a list of such caches): fresh caches sharing those keys and values."""
        if isinstance(states, list):
            return [{"ck": c["ck"], "cv": c["cv"]} for c in states]
        states = states.to(self.embed.weight.dtype)
        return [dict(zip(("ck", "cv"), block.cross_attn.keys_values(states), strict=True)) for block in self.blocks]

    def _begin(self, states: torch.Tensor | list[dict[str, torch.Tensor]]
               ) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor, torch.Tensor]:
        """One clip's states [T', D] (or their `start`) -> (a fresh cache, the masks of every step and the first)."""
        cache = self.start(states if isinstance(states, list) else states[None])
        return (cache, *self._mask(cache[0]["ck"].device))

    def forward(self, ids: torch.Tensor, cache: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """New ids [B, L_new] after the cache's positions -> logits [B, L_new, V] (float32)."""
        past = cache[0]["k"].shape[2] if "k" in cache[0] else 0
        x = self.embed(ids) + self.positions[past : past + ids.shape[1]]  # [B, L_new, D]
        for block, block_cache in zip(self.blocks, cache, strict=True):
            x = block(x, block_cache)
        return linear(self.final_norm(x), self.embed.weight).float()  # [B, L_new, V]; one bf16 row: the native GEMV

    def _mask(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Additive masks [V]: (every step, first step)."""
        cfg = self.config
        always = torch.zeros(cfg.vocab_size, device=device)
        always[list(cfg.suppress)] = -torch.inf
        always[cfg.eot + 1 :] = -torch.inf  # special and timestamp tokens are never text
        first = always.clone()
        first[list(cfg.suppress_begin)] = -torch.inf
        return always, first

    @torch.no_grad()
    def transcribe(self, states: torch.Tensor | list[dict[str, torch.Tensor]], max_tokens: int | None = None
                   ) -> Transcript:
        """One clip's final encoder states [T', D] (or `start` of them [1, T', D]) -> its greedy transcript (module
        docstring)."""
        cfg = self.config
        limit = min(max_tokens or cfg.max_positions, cfg.max_positions - len(cfg.prompt))
        cache, always, first = self._begin(states)
        device = always.device
        logits = self.forward(torch.tensor([cfg.prompt], device=device), cache)[0]  # [2, V]
        no_speech = float(logits[0].softmax(-1)[cfg.no_speech])  # read at <|startoftranscript|>
        step = logits[-1] + first  # [V]
        ids: list[int] = []
        total = 0.0
        while True:
            logp = step.log_softmax(-1)
            token = int(logp.argmax())
            total += float(logp[token])
            if token == cfg.eot or len(ids) >= limit:
                break
            ids.append(token)
            if _looping(ids, cfg.max_repeats):
                break
            step = self.forward(torch.tensor([[token]], device=device), cache)[0, -1] + always
        kept = _cut_loop(ids, cfg.max_repeats)
        return Transcript(tuple(kept), total / (len(kept) + 1), no_speech, ended=token == cfg.eot and kept == ids)

    @torch.no_grad()
    def score(self, states: torch.Tensor | list[dict[str, torch.Tensor]], ids: list[int] | tuple[int, ...]) -> float:
        """Mean log-probability of text ids [L] then <|endoftext|>, read from one clip's final encoder states [T', D]
        with the masks `transcribe` decodes under (teacher-forced: how likely Whisper finds a transcript it did
        not write; of its own greedy ids, their `Transcript.avg_logprob` unless the loop guard cut them)."""
        cfg = self.config
        ids = list(ids)[: cfg.max_positions - len(cfg.prompt) - 1]
        cache, always, first = self._begin(states)
        logits = self.forward(torch.tensor([[*cfg.prompt, *ids]], device=always.device), cache)[0]
        steps = logits[len(cfg.prompt) - 1 :]  # [L + 1, V]: the step before each target
        steps = steps + torch.stack([first, *([always] * len(ids))])
        targets = torch.tensor([*ids, cfg.eot], device=steps.device)
        return float(steps.log_softmax(-1).gather(1, targets[:, None]).mean())


def _looping(ids: list[int], repeats: int) -> bool:
    """True when the tail is one n-gram (n <= 8) said `repeats` times in a row."""
    return any(len(ids) >= n * repeats and ids[-n * repeats :] == ids[-n:] * repeats for n in range(1, 9))


def _cut_loop(ids: list[int], repeats: int) -> list[int]:
    """A looping tail cut back to one copy of its n-gram."""
    for n in range(1, 9):
        if len(ids) >= n * repeats and ids[-n * repeats :] == ids[-n:] * repeats:
            return ids[: len(ids) - n * (repeats - 1)]
    return ids
