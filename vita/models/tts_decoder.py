"""VITA-1.5's codec-token decoder (official `LLM2TTSCodecAR`): LLM embedding rows of the reply text -> codec tokens.

    text ids [n] -- LLM input embedding table --> [n, D_llm] -- reshape --> hidden [R = n * D_llm / D, D]
    hidden -- pre_nn (num_blocks // 2 Llama layers, positions 0..R-1, bidirectional) --> prenn_out [R, D]
    prefix = [embedding[BOS_MARKER]; prenn_out] [R + 1, D] -- lm layers, positions 0..R, bidirectional --> K/V only
    then autoregressive, one token a step: embedding[START], then each emitted code, at position = cache length,
    attending to the whole cache -> norm -> out_fnn (with bias) -> logits [odim + 4]; EOS ends it (not emitted)

Token ids of the decoder's vocabulary (odim = the codec's codebook size): 0..odim-1 codec codes, odim = BOS
marker, odim+1 = START, odim+2 = EOS, odim+3 = pad. Shapes: R rows, D decoder width (the release: 896 = 3584 / 4),
V = odim + 4. The AR part is an `LLM` (Llama family, our attention and KV cache) whose head has a bias, so the one
reply loop (`vita.generation.loop.TokenLoop`) drives it; only the bidirectional prefix is written here.

Parameter names (ours <- official `final.pt`, `vita.checkpoint.vita15_tts`):
    pre_nn.{l}.{attention,feed_forward,attention_norm,ffn_norm}.*   <- layers_pre_nn.{l}.* (Llama decoder layer)
    lm.tok_embeddings.weight [V, D] <- embedding.weight;  lm.layers.{l}.* <- layers.{l}.*;  lm.norm.weight <- norm
    lm.output.weight [V, D], lm.output.bias [V] <- out_fnn.*
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vita.config import LLMConfig
from vita.models.llm import LLM, Block
from vita.nn.linear import linear
from vita.nn.rope import rope_tables

__all__ = ["CodecLM", "TTSDecoder", "TTSDecoderConfig"]


@dataclass(frozen=True)
class TTSDecoderConfig:
    """Sizes of `LLM2TTSCodecAR` (from `decoder/model.json`: [idim, odim, args])."""

    hidden_size: int  # transformer_attention_dim = idim (the rows the LLM embeddings are cut into)
    num_heads: int  # transformer_attention_heads
    intermediate_size: int  # transformer_linear_units
    num_layers: int  # transformer_num_blocks (the pre-NN stack has num_layers // 2)
    num_codes: int  # odim: the codec codebook size
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_positions: int = 2048

    @property
    def vocab_size(self) -> int:
        return self.num_codes + 4

    @property
    def bos_marker(self) -> int:
        return self.num_codes

    @property
    def start(self) -> int:
        return self.num_codes + 1

    @property
    def eos(self) -> int:
        return self.num_codes + 2

    @property
    def pad(self) -> int:
        return self.num_codes + 3

    def llm(self) -> LLMConfig:
        return LLMConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_layers=self.num_layers, num_heads=self.num_heads, num_kv_heads=self.num_heads,
            rms_norm_eps=self.rms_norm_eps, rope_theta=self.rope_theta, max_position_embeddings=self.max_positions,
            bos_token_id=self.start, eos_token_id=self.eos, family="llama",
        )


class CodecLM(LLM):
    """The autoregressive part: a Llama whose output head has a bias (official `out_fnn`). Decode it with
    `native=False` (the native step computes the head without a bias)."""

    def __init__(self, config: LLMConfig) -> None:
        super().__init__(config)
        self.output = nn.Linear(config.hidden_size, config.vocab_size, bias=True)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final-normed hidden [B, L, D] -> logits [B, L, V] (with the bias)."""
        return linear(hidden, self.output.weight, self.output.bias)


class TTSDecoder(nn.Module):
    def __init__(self, config: TTSDecoderConfig) -> None:
        super().__init__()
        self.config = config
        llm = config.llm()
        self.pre_nn = nn.ModuleList(Block(llm) for _ in range(config.num_layers // 2))
        self.lm = CodecLM(llm)

    def _rope(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = rope_tables(self.lm.config.head_dim, n, self.lm.config.rope_theta)  # float32 [n, Dh], as the LM's
        return cos.to(device), sin.to(device)

    def pre(self, hidden: torch.Tensor) -> torch.Tensor:
        """The bidirectional pre-NN stack: hidden [R, D] -> prenn_out [R, D]."""
        x = hidden[None].to(self.lm.dtype)  # [1, R, D]
        cos, sin = self._rope(x.shape[1], x.device)
        everything = torch.ones(1, 1, x.shape[1], x.shape[1], dtype=torch.bool, device=x.device)  # no mask at all
        for layer in self.pre_nn:
            x = layer(x, cos.to(x.dtype), sin.to(x.dtype), everything, None)  # [1, R, D]
        return x[0]

    def prefix(self, hidden: torch.Tensor) -> torch.Tensor:
        """The rows the AR stack sees before the first code: [embedding[BOS_MARKER]; pre(hidden)] -> [R + 1, D]."""
        marker = self.lm.tok_embeddings.weight[self.config.bos_marker][None]  # [1, D]
        return torch.cat([marker, self.pre(hidden)])  # [R + 1, D]

    def prefill_prefix(self, prefix: torch.Tensor, kv) -> None:
        """Write the K/V of `prefix` [P, D] at positions 0..P-1 of the cache `kv`, attending bidirectionally inside
        the prefix (the official code runs it without a mask); the hidden states are not needed."""
        P = prefix.shape[0]
        x = prefix[None].to(self.lm.dtype)  # [1, P, D]
        cos, sin = self._rope(P, x.device)
        mask = torch.zeros(1, 1, P, kv.max_seq_len, dtype=torch.bool, device=x.device)  # [1, 1, P, S]
        mask[..., :P] = True  # every prefix position sees the whole prefix, nothing beyond it
        pos = torch.arange(P, device=x.device)
        for layer, cache in zip(self.lm.layers, kv.layers, strict=True):
            x = layer(x, cos.to(x.dtype), sin.to(x.dtype), mask, pos, cache)  # [1, P, D]

    def start_row(self) -> torch.Tensor:
        return self.lm.tok_embeddings.weight[self.config.start][None]  # [1, D]
