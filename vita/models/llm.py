"""Decoder-only LLM of the Llama / Mistral / Mixtral / Qwen2 family, built from `LLMConfig`.

Architecture (per layer, pre-norm):
    h = x + Attention(RMSNorm(x))        GQA, RoPE (rotate_half, theta from the config), optional q/k/v bias
    y = h + FeedForward(RMSNorm(h))      SwiGLU MLP, or a Mixtral top-k MoE of SwiGLU experts when num_experts > 0
then a final RMSNorm and the output head (tied to the input embedding when `tie_word_embeddings`).

Shapes: B batch, L new positions, S cache length (max_seq_len), D hidden, V vocab.
    token_ids [B, L] -> embed -> [B, L, D] -> layers -> norm -> [B, L, D] -> output -> logits [B, L, V]

Parameter names (our checkpoint layout; `vita.checkpoint.hf_llm` maps HF names onto them):
    tok_embeddings.weight                         [V, D]
    layers.{i}.attention_norm.weight              [D]
    layers.{i}.attention.wq/wk/wv.weight (.bias)  [H*Dh, D], [H_kv*Dh, D], [H_kv*Dh, D]  (bias: Qwen2)
    layers.{i}.attention.wo.weight                [D, H*Dh]
    layers.{i}.ffn_norm.weight                    [D]
    layers.{i}.feed_forward.w1/w3.weight          [I, D]   (dense; w1 = gate, w3 = up)
    layers.{i}.feed_forward.w2.weight             [D, I]
    layers.{i}.feed_forward.gate.weight           [E, D]   (MoE router)
    layers.{i}.feed_forward.experts.{e}.w1/w2/w3.weight    (MoE experts, shapes as dense)
    norm.weight                                   [D]
    output.weight                                 [V, D]   (absent when tied)

Two forward modes:
  * uncached (input_pos None): plain causal attention over the given sequence, positions 0..L-1 (training and the
    reference path); an optional right-padding `attention_mask` [B, L] hides padded keys.
  * cached (input_pos [L] = absolute positions): keys/values are written into a static cache and every query attends
    to the cache positions <= its own (prefill: input_pos = arange(L); decode: [pos]). The cache is the caller's
    `StaticCache` (`cache=`, made by `new_cache`: the model keeps no reference, so two duplex roles or a chat request
    and a realtime session each own one over the same weights), or else the model's default one (`setup_caches`).
"""

from __future__ import annotations

import torch
from torch import nn

from vita.config import LLMConfig
from vita.errors import ConfigError
from vita.nn.attention import Attention
from vita.nn.kv_cache import KVCache, StaticCache
from vita.nn.linear import linear, project
from vita.nn.mlp import FeedForward
from vita.nn.moe import MoE
from vita.nn.norm import RMSNorm
from vita.nn.rope import rope_tables


class Block(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attention = Attention(
            cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, qkv_bias=cfg.qkv_bias
        )
        self.ffn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.feed_forward: FeedForward | MoE
        if cfg.num_experts:
            self.feed_forward = MoE(cfg.hidden_size, cfg.intermediate_size, cfg.num_experts, cfg.num_experts_per_tok)
        else:
            self.feed_forward = FeedForward(cfg.hidden_size, cfg.intermediate_size)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        input_pos: torch.Tensor | None,
        kv_cache: KVCache | None = None,
        kv_len: int | None = None,
    ) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, mask=mask, input_pos=input_pos,
                               kv_cache=kv_cache, kv_len=kv_len)  # [B, L, D]
        return h + self.feed_forward(self.ffn_norm(h))  # [B, L, D]


class LLM(nn.Module):
    def __init__(self, config: LLMConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        # tied: the head reads tok_embeddings.weight, so the checkpoint holds the matrix once
        self.output: nn.Linear | None = None
        if not config.tie_word_embeddings:
            self.output = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        # float32 RoPE tables [N, Dh], grown on demand; plain attributes so dtype casts of the model never round them
        self._rope_cos = torch.empty(0, config.head_dim)
        self._rope_sin = torch.empty(0, config.head_dim)
        self.cache: StaticCache | None = None  # the default cache, once setup_caches ran
        self.causal_mask: torch.Tensor | None = None  # [S, S] bool: the default cache's mask

    # ---- properties -------------------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.norm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.norm.weight.device

    @property
    def max_seq_len(self) -> int:
        """Length of the default static KV cache (0 when no cache is set up)."""
        return 0 if self.cache is None else self.cache.max_seq_len

    @property
    def cache_batch_size(self) -> int:
        return 0 if self.cache is None else self.cache.batch_size

    @property
    def rope(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The float32 RoPE tables (cos, sin) [N, Dh], N >= every cache's length (the native decode step reads them)."""
        return self._rope_cos, self._rope_sin

    # ---- caches -----------------------------------------------------------------------------------------------
    def new_cache(
        self,
        max_seq_len: int,
        batch_size: int = 1,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> StaticCache:
        """A static KV cache [B, H_kv, max_seq_len, Dh] per layer, owned by the caller (`forward(cache=...)`)."""
        if max_seq_len > self.config.max_position_embeddings:
            raise ConfigError(
                f"max_seq_len {max_seq_len} exceeds max_position_embeddings {self.config.max_position_embeddings}"
            )
        device = torch.device(device) if device is not None else self.device
        cfg = self.config
        self._ensure_rope(max_seq_len, device)
        return StaticCache.allocate(cfg.num_layers, batch_size, cfg.num_kv_heads, max_seq_len, cfg.head_dim,
                                    dtype=dtype or self.dtype, device=device)

    def setup_caches(
        self,
        batch_size: int,
        max_seq_len: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        """Allocate the model's default cache (`new_cache`), used when forward gets input_pos and no cache."""
        self.cache = self.new_cache(max_seq_len, batch_size, dtype, device)
        for layer, kv in zip(self.layers, self.cache.layers, strict=True):
            layer.attention.kv_cache = kv
        self.causal_mask = self.cache.mask  # [S, S]

    def reset_caches(self) -> None:
        """Zero the default cache (not needed for correctness: positions beyond input_pos are masked)."""
        if self.cache is not None:
            self.cache.reset()

    def drop_caches(self) -> None:
        """Free the default cache; the model goes back to the uncached path (or caller-owned caches) only."""
        for layer in self.layers:
            layer.attention.kv_cache = None
        self.cache = None
        self.causal_mask = None

    def fuse_(self) -> LLM:
        """Inference-time weight fusion (q/k/v and gate/up); state-dict names and values are unchanged.

        Call after moving the model to its final dtype/device (a later `.to()` would copy views and buffer apart).
        """
        for layer in self.layers:
            layer.attention.fuse_()
            layer.feed_forward.fuse_()
        return self

    def _ensure_rope(self, n: int, device: torch.device) -> None:
        if self._rope_cos.shape[0] < n or self._rope_cos.device != device:
            size = max(n, 2 * self._rope_cos.shape[0]) if self._rope_cos.device == device else n
            cos, sin = rope_tables(self.config.head_dim, size, self.config.rope_theta)  # [N, Dh] float32
            self._rope_cos, self._rope_sin = cos.to(device), sin.to(device)

    # ---- forward ----------------------------------------------------------------------------------------------
    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """token_ids [B, L] -> [B, L, D]."""
        return self.tok_embeddings(token_ids)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final-normed hidden [B, L, D] -> logits [B, L, V]."""
        if self.output is None:
            return linear(hidden, self.tok_embeddings.weight)
        return project(self.output, hidden)  # an nn.Linear, or a quantized head (`vita.nn.quant`)

    def hidden_states(
        self,
        token_ids: torch.Tensor | None = None,
        *,
        input_embeds: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        cache: StaticCache | None = None,
    ) -> torch.Tensor:
        """Final-normed hidden states [B, L, D]; arguments as in `forward`."""
        if (token_ids is None) == (input_embeds is None):
            raise ValueError("pass exactly one of token_ids and input_embeds")
        x = self.embed(token_ids) if input_embeds is None else input_embeds  # [B, L, D]
        L = x.shape[1]
        kvs: list[KVCache | None] = [None] * len(self.layers)
        kv_len = None
        if input_pos is not None:
            cache = cache if cache is not None else self.cache
            if cache is None:
                raise ValueError("input_pos given but no KV cache: pass cache= (new_cache) or call setup_caches()")
            if attention_mask is not None or segment_ids is not None:
                raise ValueError("attention_mask and segment_ids are for the uncached path only (input_pos=None)")
            kvs = list(cache.layers)
            cos, sin = self._rope_cos[input_pos], self._rope_sin[input_pos]  # [L, Dh]
            mask = cache.mask[None, None, input_pos]  # [1, 1, L, S]: query at p sees cache positions <= p
            if L > 1:  # a prefill attends to the positions up to its last one, not the whole (empty) cache
                kv_len = int(input_pos[-1]) + 1  # positions increase: the last is the largest
                mask = mask[..., :kv_len]  # [1, 1, L, kv_len]
        else:
            self._ensure_rope(L, x.device)
            cos, sin = self._rope_cos[:L], self._rope_sin[:L]  # [L, Dh]
            mask = None  # plain causal (SDPA is_causal)
            if attention_mask is not None or segment_ids is not None:
                causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()  # [L, L]
                keep = attention_mask.bool()[:, None, None, :] if attention_mask is not None else True  # [B,1,1,L]
                # a query always sees itself, so rows of padding never become all-masked (NaN)
                mask = (causal & keep) | torch.eye(L, dtype=torch.bool, device=x.device)  # [B, 1, L, L]
            if segment_ids is not None:  # true packing: attend within the own segment, positions restart at 0
                segment_ids = segment_ids.to(x.device)
                same = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]  # [B, 1, L, L]
                mask = mask & same
                cos, sin = self._segment_rope(segment_ids)  # [B, 1, L, Dh]
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # HF casts the float32 tables to the activation dtype
        for layer, kv in zip(self.layers, kvs, strict=True):
            x = layer(x, cos, sin, mask, input_pos, kv, kv_len)  # [B, L, D]
        return self.norm(x)  # [B, L, D]

    def _segment_rope(self, segment_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE rows for packed rows: position = index - start of its segment. segment_ids [B, L] -> [B, 1, L, Dh]."""
        L = segment_ids.shape[1]
        idx = torch.arange(L, device=segment_ids.device).expand_as(segment_ids)  # [B, L]
        starts = torch.ones_like(segment_ids, dtype=torch.bool)  # [B, L]
        starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
        pos = idx - torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values  # [B, L]
        return self._rope_cos[pos][:, None], self._rope_sin[pos][:, None]  # [B, 1, L, Dh]

    def forward(
        self,
        token_ids: torch.Tensor | None = None,
        *,
        input_embeds: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        return_hidden: bool = False,
        cache: StaticCache | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, L, V] (and, with return_hidden, the final-normed hidden states [B, L, D]).

        Args:
            token_ids: [B, L] ids; exactly one of token_ids / input_embeds.
            input_embeds: [B, L, D] embeddings (e.g. text with spliced media features).
            input_pos: [L] absolute positions; uses `cache`, or the default cache (`setup_caches`). None: uncached
                causal forward with positions 0..L-1.
            attention_mask: [B, L] (1 = real token, 0 = padding), uncached path only; meant for right padding.
            segment_ids: [B, L] ints, uncached path only (true packing): a token attends only to earlier tokens of
                the same segment, and RoPE positions restart at 0 wherever the id changes.
            return_hidden: also return the final-normed hidden states.
            cache: the caller's `StaticCache` (`new_cache`) for the cached path.
        """
        hidden = self.hidden_states(
            token_ids, input_embeds=input_embeds, input_pos=input_pos, attention_mask=attention_mask,
            segment_ids=segment_ids, cache=cache,
        )  # [B, L, D]
        logits = self.head(hidden)  # [B, L, V]
        return (logits, hidden) if return_hidden else logits
