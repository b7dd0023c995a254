"""The module steps of decoding: `prefill` and `decode_one_token` (and its compiled form), over `LLM.forward`.

Shapes: B batch, L prompt length, V vocab, D hidden.
    prefill:          token_ids [B, L] | input_embeds [B, L, D], input_pos [L]  -> next [B], logits [B, V]
    decode_one_token: token [B, 1], input_pos [1]                               -> next [B], logits [B, V]

The reply loop (`vita.generation.loop.TokenLoop`) decodes with `decode_one_token` (or `compiled_decode_one_token`)
wherever the native whole-step kernel (`vita.generation.native_step`) does not apply.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from vita.generation.sampling import GREEDY, SamplingConfig, sample
from vita.models.llm import LLM
from vita.nn.kv_cache import StaticCache
from vita.nn.native import native_gemv


@torch.no_grad()
def prefill(
    llm: LLM,
    *,
    token_ids: torch.Tensor | None = None,
    input_embeds: torch.Tensor | None = None,
    input_pos: torch.Tensor,
    sampling: SamplingConfig = GREEDY,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the prompt through the cache; only the last position goes through the output head."""
    hidden = llm.hidden_states(token_ids, input_embeds=input_embeds, input_pos=input_pos)  # [B, L, D]
    logits = llm.head(hidden[:, -1])  # [B, V]
    return sample(logits, sampling, generator), logits


@torch.no_grad()
def decode_one_token(
    llm: LLM,
    token: torch.Tensor,
    input_pos: torch.Tensor,
    sampling: SamplingConfig = GREEDY,
    generator: torch.Generator | None = None,
    *,
    cache: StaticCache | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One cached step: token [B, 1] at input_pos [1] -> (next [B], logits [B, V]), over `cache` or the default."""
    logits = llm(token, input_pos=input_pos, cache=cache)[:, -1]  # [B, V]
    return sample(logits, sampling, generator), logits


@functools.cache
def compiled_decode_one_token() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """`decode_one_token` compiled with inductor (built once per process; graphs are cached per model/shape).

    `freezing` lets inductor treat the weights as constants and pre-pack them for the CPU GEMM library, which is
    what makes batch-1 decode fast on CPU; it assumes the weights do not change after the first call.
    The native bf16 GEMV is resolved here, eagerly, so the trace can call it (`vita.nn.linear.row_gemv`).
    """
    native_gemv()
    return torch.compile(decode_one_token, fullgraph=False, dynamic=False, options={"freezing": True})
