"""Grouped-query self-attention with RoPE, optional q/k/v bias (Qwen2), over an optional static KV cache.

Shapes: B batch, L new positions, S cache length, D model width, H query heads, H_kv key/value heads, Dh head width.
    x [B, L, D] -> q [B, H, L, Dh], k/v [B, H_kv, L, Dh] -> (cache) k/v [B, H_kv, S, Dh] -> out [B, L, D]

Parameters (checkpoint names): `wq`, `wk`, `wv` (weight, and bias when `qkv_bias`), `wo` (weight only).
`fuse_()` (inference only) concatenates wq/wk/wv into one [H*Dh + 2*H_kv*Dh, D] buffer and turns the three weights
into views of it: one GEMV instead of three per step, the same state-dict names and no extra memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vita.nn.fused import fuse_rows
from vita.nn.kv_cache import KVCache
from vita.nn.linear import linear, project, widen_bf16
from vita.nn.rope import apply_rope


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, *, gqa: bool) -> torch.Tensor:
    """SDPA; plain causal when mask is None. bf16 inference on CPUs without native bf16 runs it in float32."""
    dtype = q.dtype
    if dtype == torch.bfloat16 and q.device.type == "cpu" and not torch.is_grad_enabled() and widen_bf16():
        q, k, v = q.float(), k.float(), v.float()
    if mask is None:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=q.shape[2] > 1, enable_gqa=gqa)  # [B, H, L, Dh]
    else:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)  # [B, H, L, Dh]
    return y.to(dtype)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, head_dim: int, *, qkv_bias: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.wq = nn.Linear(dim, num_heads * head_dim, bias=qkv_bias)
        self.wk = nn.Linear(dim, num_kv_heads * head_dim, bias=qkv_bias)
        self.wv = nn.Linear(dim, num_kv_heads * head_dim, bias=qkv_bias)
        self.wo = nn.Linear(num_heads * head_dim, dim, bias=False)
        self.kv_cache: KVCache | None = None
        # fused weight/bias, non-persistent buffers filled by fuse_()
        self.wqkv: torch.Tensor | None
        self.bqkv: torch.Tensor | None
        self.register_buffer("wqkv", None, persistent=False)
        self.register_buffer("bqkv", None, persistent=False)

    def fuse_(self) -> None:
        """Fuse q/k/v projections for inference (idempotent). The separate weights become views of the fused one."""
        if self.wqkv is not None:
            return
        fuse_rows(self, "wqkv", [self.wq, self.wk, self.wv], "weight")
        if self.wq.bias is not None:
            fuse_rows(self, "bqkv", [self.wq, self.wk, self.wv], "bias")

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        kv_len: int | None = None,
    ) -> torch.Tensor:
        """x [B, L, D]; cos/sin [L, Dh]; mask: bool, broadcastable to [B, 1, L, S] (True = attend), or None for
        plain causal attention over the L new positions (uncached path); input_pos [L] for the cached path, over
        `kv_cache` (the caller's) or else the module's own `self.kv_cache` (`LLM.setup_caches`); `kv_len`: attend to
        the first kv_len cache positions only (a prefill never needs the empty rest; the mask must match)."""
        B, L, _ = x.shape
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        if self.wqkv is not None:
            q, k, v = linear(x, self.wqkv, self.bqkv).split([q_size, kv_size, kv_size], dim=-1)
        else:
            q, k, v = project(self.wq, x), project(self.wk, x), project(self.wv, x)
        q = q.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, L, Dh]
        k = k.view(B, L, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, H_kv, L, Dh]
        v = v.view(B, L, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, H_kv, L, Dh]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        cache = kv_cache if kv_cache is not None else self.kv_cache
        if cache is not None and input_pos is not None:
            k, v = cache.update(input_pos, k, v)  # [B, H_kv, S, Dh]
            if kv_len is not None:
                k, v = k[:, :, :kv_len], v[:, :, :kv_len]  # [B, H_kv, kv_len, Dh]
        y = _sdpa(q, k, v, mask, gqa=self.num_kv_heads != self.num_heads)  # [B, H, L, Dh]
        y = y.transpose(1, 2).reshape(B, L, q_size)  # [B, L, H*Dh]
        return project(self.wo, y)
