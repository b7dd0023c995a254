"""Static key/value cache: preallocated once, written in place at absolute positions (no allocation per step).

Shapes: k_cache, v_cache [B, H_kv, S, Dh] (S = max_seq_len); an update writes k, v [B, H_kv, L, Dh] at input_pos [L].
    KVCache       one layer's K/V
    StaticCache   one sequence's K/V through every layer (a KVCache per layer) + its causal mask [S, S]: the object
                  a caller owns and hands to `LLM.forward(cache=...)`
"""

from __future__ import annotations

import torch
from torch import nn


class KVCache(nn.Module):
    def __init__(
        self,
        batch_size: int,
        num_kv_heads: int,
        max_seq_len: int,
        head_dim: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        shape = (batch_size, num_kv_heads, max_seq_len, head_dim)
        # non-persistent: the cache is run-time state, never part of a checkpoint
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    @property
    def batch_size(self) -> int:
        return self.k_cache.shape[0]

    @property
    def max_seq_len(self) -> int:
        return self.k_cache.shape[2]

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, H_kv, L, Dh] at positions input_pos [L]; return the whole caches [B, H_kv, S, Dh]."""
        self.k_cache.index_copy_(2, input_pos, k.to(self.k_cache.dtype))
        self.v_cache.index_copy_(2, input_pos, v.to(self.v_cache.dtype))
        return self.k_cache, self.v_cache

    def reset(self) -> None:
        self.k_cache.zero_()
        self.v_cache.zero_()


class StaticCache:
    """The K/V of one sequence through every layer of a model: a `KVCache` per layer and a causal mask [S, S].

    Owned by its caller (a reply, a duplex role, a chat request) and passed to `LLM.forward(..., cache=...)`; the
    model keeps no reference to it, so any number of caches share one set of weights. `LLM.new_cache` makes one.
    """

    def __init__(self, layers: list[KVCache], mask: torch.Tensor) -> None:
        if mask.shape != (layers[0].max_seq_len, layers[0].max_seq_len):
            raise ValueError(f"mask {tuple(mask.shape)} does not match a cache of {layers[0].max_seq_len} positions")
        self.layers = layers
        self.mask = mask  # [S, S] bool: position p sees positions <= p

    @classmethod
    def allocate(
        cls,
        num_layers: int,
        batch_size: int,
        num_kv_heads: int,
        max_seq_len: int,
        head_dim: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str | None = None,
    ) -> StaticCache:
        layers = [KVCache(batch_size, num_kv_heads, max_seq_len, head_dim, dtype=dtype, device=device)
                  for _ in range(num_layers)]
        mask = torch.ones(max_seq_len, max_seq_len, dtype=torch.bool, device=device).tril()  # [S, S]
        return cls(layers, mask)

    @property
    def batch_size(self) -> int:
        return self.layers[0].batch_size

    @property
    def max_seq_len(self) -> int:
        return self.layers[0].max_seq_len

    @property
    def nbytes(self) -> int:
        """Bytes of K and V over all layers (the mask not counted)."""
        return sum(c.k_cache.nbytes + c.v_cache.nbytes for c in self.layers)

    def copy_prefix_(self, other: StaticCache, n: int) -> None:
        """Take the first n positions of every layer's K/V from `other` (a causal model's K/V at a position depend
        only on the rows up to it, so a shared prefix need not be recomputed)."""
        for mine, theirs in zip(self.layers, other.layers, strict=True):
            mine.k_cache[:, :, :n].copy_(theirs.k_cache[:, :, :n])
            mine.v_cache[:, :, :n].copy_(theirs.v_cache[:, :, :n])

    def reset(self) -> None:
        for c in self.layers:
            c.reset()
