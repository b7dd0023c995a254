"""Autoregressive generation of ids: `generate` (over `vita.generation.loop.TokenLoop`, whose module steps
`prefill`, `decode_one_token` are in `vita.generation.steps`).

Shapes: L prompt length, D hidden; `generate` decodes batch 1.

`generate` is a Python generator: it yields each new token id as soon as it is chosen and *returns* a
`GenerationResult` (the value of StopIteration; `result = yield from generate(...)` in a caller that is itself a
generator, or `generate_all(...)` to just collect). A stop id ends generation and is NOT yielded nor included in
`GenerationResult.token_ids`; it is reported as `stop_id`. `stop_fn(ids_so_far)` is called after each yielded id;
when it returns True generation ends (that id was yielded and is kept).

Only the decode step is worth compiling (`compile=True`): its shapes are static (one token, a fixed-size cache,
input_pos [1]), so one graph serves every step. The prompt-dependent prefill stays eager. For a dense model in bf16
or float32 on an AVX2 CPU, decoding steps through the native whole-step kernel instead, compiled or not
(`vita.generation.native_step`: one call per token, no compile wait; `native=False` keeps the module path);
`decode_step_kind(llm, compile, native)` says which step a call would use.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from vita.generation.loop import PromptCache, TokenLoop
from vita.generation.native_step import NativeStep
from vita.generation.sampling import GREEDY, SamplingConfig
from vita.models.llm import LLM

StopReason = Literal["stop_id", "stop_fn", "max_new_tokens"]


@dataclass
class GenerationResult:
    token_ids: list[int] = field(default_factory=list)  # the yielded ids (no stop id)
    stop_reason: StopReason = "max_new_tokens"
    stop_id: int | None = None  # the stop id that ended generation, if any
    prompt_len: int = 0


def decode_step_kind(llm: LLM, compile: bool, native: bool = True) -> Literal["eager", "compiled", "native"]:
    """Which decode step `generate(llm, compile=compile, native=native)` uses."""
    if native and NativeStep.unsupported(llm) is None:
        return "native"
    return "compiled" if compile else "eager"


def _ensure_cache(llm: LLM, batch_size: int, needed: int) -> None:
    cache = llm.cache
    # a cache made under inference_mode cannot be written outside it: then allocate a fresh one
    usable = cache is not None and (torch.is_inference_mode_enabled() or not cache.layers[0].k_cache.is_inference())
    if usable and llm.cache_batch_size == batch_size and llm.max_seq_len >= needed:
        return  # reuse: stale entries beyond the current position are masked and overwritten before use
    size = min(-(-needed // 64) * 64, llm.config.max_position_embeddings)  # round up: fewer re-allocations
    llm.setup_caches(batch_size, max(size, needed))


def generate(
    llm: LLM,
    *,
    token_ids: torch.Tensor | None = None,
    input_embeds: torch.Tensor | None = None,
    max_new_tokens: int,
    sampling: SamplingConfig = GREEDY,
    stop_ids: Sequence[int] = (),
    stop_fn: Callable[[list[int]], bool] | None = None,
    generator: torch.Generator | None = None,
    compile: bool = False,
    native: bool = True,
    cache: PromptCache | None = None,
) -> Generator[int, None, GenerationResult]:
    """Yield new token ids one at a time for a batch-1 prompt; return a `GenerationResult`.

    The loop is `vita.generation.loop.TokenLoop` (whole prompt in one prefill step, then one decode step per id).

    Args:
        token_ids: [1, L] or [L] prompt ids; exactly one of token_ids / input_embeds.
        input_embeds: [1, L, D] or [L, D] prompt embeddings (text with spliced media).
        max_new_tokens: upper bound on the number of ids generated (a stop id counts as generated).
        sampling: greedy by default.
        stop_ids: ids that end generation (not yielded).
        stop_fn: called with all yielded ids after each one; True ends generation.
        generator: RNG for sampling.
        compile: use the compiled decode step (first call compiles, which takes a while) where the native step
            does not apply.
        native: use the native whole-step kernel where the model allows it (dense, bf16/float32, CPU).
        cache: the caller's cache (prefix reuse across calls); None: the model's default cache (`setup_caches`),
            grown to fit.
    """
    if (token_ids is None) == (input_embeds is None):
        raise ValueError("pass exactly one of token_ids and input_embeds")
    if token_ids is not None and token_ids.dim() == 1:
        token_ids = token_ids[None]  # [1, L]
    if input_embeds is not None and input_embeds.dim() == 2:
        input_embeds = input_embeds[None]  # [1, L, D]
    prompt = token_ids if token_ids is not None else input_embeds
    B, L = prompt.shape[:2]
    if B != 1:
        raise ValueError(f"generate() decodes batch 1, got batch {B}")
    result = GenerationResult(prompt_len=L)
    if max_new_tokens <= 0:
        return result
    if cache is None:
        _ensure_cache(llm, B, L + max_new_tokens)
        assert llm.cache is not None
        cache = PromptCache(llm, llm.max_seq_len, kv=llm.cache)
    with torch.no_grad():
        embeds = llm.embed(token_ids.to(llm.device)) if token_ids is not None else input_embeds  # [1, L, D]
    loop = TokenLoop(llm, cache, embeds, max_new_tokens=max_new_tokens, sampling=sampling, generator=generator,
                     stop_ids=stop_ids, native=native, compile=compile)
    for tok in loop:
        result.token_ids.append(tok)
        yield tok
        if stop_fn is not None and stop_fn(result.token_ids):
            loop.cancel()
            result.stop_reason = "stop_fn"
            return result
    if loop.stop_id is not None:
        result.stop_reason, result.stop_id = "stop_id", loop.stop_id
    return result


def generate_all(llm: LLM, **kwargs) -> GenerationResult:
    """Run `generate` to the end and return its result (same keyword arguments)."""
    gen = generate(llm, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
