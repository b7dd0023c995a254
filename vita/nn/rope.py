"""Rotary position embedding, HF Llama convention ("rotate_half": the two halves of each head are the pairs).

Shapes: cos/sin tables [S, Dh] (S = positions); x [B, H, L, Dh] with cos/sin rows [L, Dh] for its positions.
"""

from __future__ import annotations

import torch


def rope_tables(head_dim: int, max_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 cos/sin tables [max_len, head_dim] for positions 0..max_len-1."""
    # same float32 arithmetic as HF (inv_freq from int64 arange, product position * inv_freq) -> bit-equal tables
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))  # [Dh/2]
    freqs = torch.outer(torch.arange(max_len, dtype=torch.int64).float(), inv_freq)  # [S, Dh/2]
    emb = torch.cat([freqs, freqs], dim=-1)  # [S, Dh]
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)  # [..., Dh/2] each
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, L, Dh]; cos, sin [L, Dh] already in x's dtype."""
    return x * cos + rotate_half(x) * sin
