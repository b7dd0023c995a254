"""generate(): cached greedy == uncached greedy, stop ids / stop_fn / max tokens, and the sampling filters.

Every test that decodes runs through both decode steps, the module path and the native whole step (the `native`
fixture of tests/conftest.py), whatever the machine would pick by default."""

from __future__ import annotations

import pytest
import torch

from vita.config import LLMConfig
from vita.errors import ConfigError
from vita.generation.generate import GenerationResult, generate, generate_all
from vita.generation.sampling import SamplingConfig, filter_logits, sample
from vita.models.llm import LLM


def _llm(moe: bool = False, bias: bool = False, seed: int = 0) -> LLM:
    torch.manual_seed(seed)
    cfg = LLMConfig(vocab_size=97, hidden_size=48, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                    max_position_embeddings=256, num_experts=4 if moe else 0, qkv_bias=bias,
                    family="mixtral" if moe else ("qwen2" if bias else "llama"))
    llm = LLM(cfg).eval()
    with torch.no_grad():  # larger logits than the default init: greedy paths that are not all one token
        llm.tok_embeddings.weight.mul_(8)
    return llm


def _uncached_greedy(llm: LLM, prompt: torch.Tensor, n: int) -> list[int]:
    ids = prompt.clone()
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(llm(ids)[0, -1].argmax())
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


PROMPT = torch.tensor([[5, 17, 33, 2, 81, 40, 9]])


@pytest.mark.parametrize("moe,bias", [(False, False), (True, False), (False, True)])
def test_cached_greedy_equals_uncached(moe, bias, native):
    llm = _llm(moe, bias)
    expected = _uncached_greedy(llm, PROMPT, 24)
    assert len(set(expected)) > 3, "degenerate test model: the greedy path should not be one repeated token"
    got = generate_all(llm, native=native, token_ids=PROMPT, max_new_tokens=24)
    assert got.token_ids == expected
    assert got.stop_reason == "max_new_tokens" and got.prompt_len == PROMPT.shape[1]


def test_input_embeds_prompt_gives_the_same_tokens(native):
    llm = _llm()
    with torch.no_grad():
        embeds = llm.embed(PROMPT)  # [1, L, D]
    a = generate_all(llm, native=native, token_ids=PROMPT, max_new_tokens=12).token_ids
    b = generate_all(llm, native=native, input_embeds=embeds, max_new_tokens=12).token_ids
    c = generate_all(llm, native=native, input_embeds=embeds[0], max_new_tokens=12).token_ids  # [L, D] too
    assert a == b == c


def test_generator_yields_each_token_as_it_is_chosen(native):
    llm = _llm()
    gen = generate(llm, native=native, token_ids=PROMPT, max_new_tokens=5)
    seen = []
    while True:
        try:
            seen.append(next(gen))
        except StopIteration as stop:
            result: GenerationResult = stop.value
            break
    assert seen == result.token_ids and len(seen) == 5


def test_stop_id_ends_generation_and_is_not_yielded(native):
    llm = _llm()
    full = generate_all(llm, native=native, token_ids=PROMPT, max_new_tokens=24).token_ids
    stop = full[5]
    first = full.index(stop)
    got = generate_all(llm, native=native, token_ids=PROMPT, max_new_tokens=24, stop_ids=[stop])
    assert got.token_ids == full[:first]
    assert got.stop_reason == "stop_id" and got.stop_id == stop


def test_stop_fn_ends_after_the_token_that_satisfied_it(native):
    llm = _llm()
    full = generate_all(llm, native=native, token_ids=PROMPT, max_new_tokens=24).token_ids
    got = generate_all(llm, native=native, token_ids=PROMPT, max_new_tokens=24, stop_fn=lambda ids: len(ids) == 4)
    assert got.token_ids == full[:4] and got.stop_reason == "stop_fn"


def test_max_new_tokens_zero_and_one(native):
    llm = _llm()
    assert generate_all(llm, native=native, token_ids=PROMPT, max_new_tokens=0).token_ids == []
    one = generate_all(llm, native=native, token_ids=PROMPT, max_new_tokens=1).token_ids
    assert one == _uncached_greedy(llm, PROMPT, 1)


def test_cache_reuse_across_calls_of_different_lengths(native):
    llm = _llm()
    long_prompt = torch.randint(0, 97, (1, 70), generator=torch.Generator().manual_seed(3))
    first = generate_all(llm, native=native, token_ids=PROMPT, max_new_tokens=10).token_ids
    generate_all(llm, native=native, token_ids=long_prompt, max_new_tokens=10)  # grows the cache, leaves stale ones
    assert generate_all(llm, native=native, token_ids=PROMPT, max_new_tokens=10).token_ids == first


def test_batched_prompt_is_refused():
    with pytest.raises(ValueError, match="batch 1"):
        generate_all(_llm(), token_ids=PROMPT.repeat(2, 1), max_new_tokens=3)


def test_sampling_is_reproducible_with_a_seeded_generator(native):
    llm = _llm()
    cfg = SamplingConfig(temperature=1.0, top_k=20, top_p=0.9)

    def run(seed):
        return generate_all(llm, native=native, token_ids=PROMPT, max_new_tokens=16, sampling=cfg,
                            generator=torch.Generator().manual_seed(seed)).token_ids

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_top_k_one_is_greedy(native):
    llm = _llm()
    greedy = generate_all(llm, native=native, token_ids=PROMPT, max_new_tokens=12).token_ids
    top1 = SamplingConfig(temperature=0.7, top_k=1)
    k1 = generate_all(llm, native=native, token_ids=PROMPT, max_new_tokens=12, sampling=top1,
                      generator=torch.Generator().manual_seed(0)).token_ids
    assert k1 == greedy


def test_top_k_and_top_p_filters_keep_the_right_sets():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    kept = filter_logits(logits, SamplingConfig(temperature=1.0, top_k=2)).isfinite()
    assert kept.tolist() == [[True, True, False, False, False]]
    probs = logits.softmax(-1)[0]  # [0.55, 0.20, 0.12, 0.07, 0.03] roughly
    p = float(probs[0] + probs[1]) - 1e-4  # the first two already reach p: the third is dropped
    kept = filter_logits(logits, SamplingConfig(temperature=1.0, top_p=p)).isfinite()
    assert kept.tolist() == [[True, True, False, False, False]]
    kept = filter_logits(logits, SamplingConfig(temperature=1.0, top_p=0.01)).isfinite()
    assert kept.tolist() == [[True, False, False, False, False]]  # the most likely token always survives


def test_samples_follow_the_softmax_distribution():
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5]]).repeat(20000, 1)
    draws = sample(logits, SamplingConfig(temperature=1.0), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    torch.testing.assert_close(freq, logits[0].softmax(-1), atol=0.015, rtol=0)
    hot = sample(logits, SamplingConfig(temperature=0.25), torch.Generator().manual_seed(0))
    assert (hot == 0).float().mean() > 0.8  # a low temperature sharpens towards the argmax


@pytest.mark.parametrize("kwargs", [dict(temperature=-1), dict(top_k=-2), dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_sampling_settings_are_refused(kwargs):
    with pytest.raises(ConfigError):
        SamplingConfig(**kwargs)


@pytest.mark.slow
def test_compiled_decode_step_gives_the_same_tokens():
    llm = _llm().fuse_()
    eager = generate_all(llm, token_ids=PROMPT, max_new_tokens=10, native=False).token_ids
    with torch.inference_mode():
        compiled = generate_all(llm, token_ids=PROMPT, max_new_tokens=10, compile=True, native=False).token_ids
        native = generate_all(llm, token_ids=PROMPT, max_new_tokens=10).token_ids  # the native step where built
    assert compiled == eager
    assert native == eager
