"""The reply loop over caller-owned caches: equal to generate(), no cross-talk between caches over one set of weights,
nothing after a cancel, the first id out of the prefill step, exact prefix reuse (own and donor).

Tests that decode run through both decode steps (the `native` fixture of tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

from vita.config import LLMConfig
from vita.generation.generate import generate_all
from vita.generation.loop import PromptCache, TextLoop, TokenLoop, run_batched
from vita.generation.native_step import NativeStep
from vita.generation.repeats import repeats_block
from vita.generation.sampling import GREEDY, SamplingConfig
from vita.models.llm import LLM
from vita.presets import byte_tokenizer

PROMPT = torch.tensor([5, 17, 33, 2, 81, 40, 9, 12, 60, 3])


def _llm(dtype: torch.dtype = torch.float32, vocab_size: int = 97) -> LLM:
    torch.manual_seed(0)
    cfg = LLMConfig(vocab_size=vocab_size, hidden_size=48, intermediate_size=64, num_layers=2, num_heads=4,
                    num_kv_heads=2, max_position_embeddings=256)
    llm = LLM(cfg).eval()
    with torch.no_grad():
        llm.tok_embeddings.weight.mul_(8)
    return llm.to(dtype)


def _embeds(llm: LLM, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return llm.embed(ids[None])[0]  # [L, D]


@pytest.mark.parametrize("chunk", [None, 3])
def test_equals_generate_and_the_model_holds_no_cache(native, chunk):
    llm = _llm()
    expected = generate_all(llm, token_ids=PROMPT, max_new_tokens=16, native=native).token_ids
    llm.drop_caches()
    loop = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=16, prefill_chunk=chunk,
                     native=native)
    assert list(loop) == expected and loop.finish_reason == "length"
    assert llm.cache is None and all(layer.attention.kv_cache is None for layer in llm.layers)


def test_native_step_is_used_where_the_model_allows_it():
    llm = _llm()
    if NativeStep.unsupported(llm) is not None:
        pytest.skip(NativeStep.unsupported(llm))
    assert TokenLoop(llm, PromptCache(llm, 32), _embeds(llm, PROMPT), max_new_tokens=2)._native is not None
    assert TokenLoop(llm, PromptCache(llm, 32), _embeds(llm, PROMPT), max_new_tokens=2, native=False)._native is None


def test_two_caches_over_one_model_do_not_see_each_other(native):
    """Two loops stepped in turn (the duplex roles) give what each gives alone."""
    llm = _llm()
    other = torch.tensor([44, 8, 90, 13, 7])
    alone = [list(TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, p), max_new_tokens=12, native=native))
             for p in (PROMPT, other)]
    a = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=12, native=native, prefill_chunk=4)
    b = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, other), max_new_tokens=12, native=native, prefill_chunk=2)
    got: list[list[int]] = [[], []]
    while not (a.done and b.done):
        for i, loop in enumerate((a, b)):
            tok = loop.step()
            if tok is not None:
                got[i].append(tok)
    assert got == alone
    assert a.cache.kv.layers[0].k_cache.data_ptr() != b.cache.kv.layers[0].k_cache.data_ptr()


def test_first_id_comes_out_of_the_last_prefill_step():
    llm = _llm()
    loop = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=4, prefill_chunk=4)
    outs = [loop.step() for _ in range(3)]  # 10 positions in chunks of 4: 4, 4, 2
    assert outs[:2] == [None, None] and outs[2] is not None and loop.decode_steps == 0


def test_nothing_runs_or_comes_out_after_cancel(native):
    llm = _llm()
    tok = type("Tok", (), {"decode": staticmethod(lambda ids: " ".join(f"w{i}" for i in ids))})()
    loop = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=30, native=native)
    reply = TextLoop(loop, tok, stop_strings=())
    text = "".join(reply.step() for _ in range(4))
    assert text
    steps, length = loop.decode_steps, loop.cache.length
    reply.cancel()
    assert [reply.step() for _ in range(5)] == [""] * 5 and [loop.step() for _ in range(3)] == [None] * 3
    assert list(reply) == [] and list(loop) == []
    assert loop.decode_steps == steps and loop.cache.length == length and loop.finish_reason == "cancelled"


def test_stop_id_and_forced_ids(native):
    llm = _llm()
    free = list(TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=10, native=native))
    loop = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=10, native=native,
                     stop_ids=[free[3]])
    assert list(loop) == free[: free.index(free[3])] and loop.stop_id == free[3] and loop.finish_reason == "stop"
    forced = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=10, native=native,
                       forced=[1, 2, 3])
    assert list(forced) == [1, 2, 3] and forced.finish_reason == "stop"
    assert forced.decode_steps == 3  # the forced ids ran through the model (their K/V are in the cache)


def test_prefix_reuse_and_donor_copy_are_exact(native):
    llm = _llm()
    first = TokenLoop(llm, (warm := PromptCache(llm, 96)), _embeds(llm, PROMPT), max_new_tokens=6, native=native)
    answer = list(first)
    follow = torch.cat([PROMPT, torch.tensor(answer[:-1]), torch.tensor([21, 22, 23])])
    cold = TokenLoop(llm, PromptCache(llm, 96), _embeds(llm, follow), max_new_tokens=8, native=native)
    reuse = TokenLoop(llm, warm, _embeds(llm, follow), max_new_tokens=8, native=native)
    assert reuse.reused == len(PROMPT) + len(answer) - 1 and cold.reused == 0
    expected = list(cold)
    assert list(reuse) == expected
    donor = PromptCache(llm, 96)
    list(TokenLoop(llm, donor, _embeds(llm, follow), max_new_tokens=8, native=native))
    copied = TokenLoop(llm, PromptCache(llm, 96), _embeds(llm, follow), max_new_tokens=8, native=native, donor=donor)
    assert copied.copied == copied.reused == len(follow) - 1
    assert list(copied) == expected


def test_prompt_must_fit_and_batch_one():
    llm = _llm()
    with pytest.raises(ValueError, match="does not fit"):
        TokenLoop(llm, PromptCache(llm, 8), _embeds(llm, PROMPT), max_new_tokens=2)
    with pytest.raises(ValueError, match="batch 1"):
        TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT)[None].expand(2, -1, -1), max_new_tokens=2)
    assert TokenLoop(llm, PromptCache(llm, 12), _embeds(llm, PROMPT), max_new_tokens=50).max_new_tokens == 2


@pytest.mark.parametrize("sampled", [False, True])
def test_a_right_guess_saves_one_decode_step_and_changes_no_id(native, sampled):
    """`guess`: right -> the same ids with one decode forward fewer; wrong -> the same ids, the position dropped."""
    llm = _llm()
    sampling = SamplingConfig(temperature=0.8, top_k=20) if sampled else GREEDY

    def run(guess=None, chunk=None):
        g = torch.Generator().manual_seed(3)
        loop = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=12, native=native,
                         sampling=sampling, generator=g, guess=guess, prefill_chunk=chunk)
        return loop, list(loop)

    plain, ids = run()
    right, with_right = run(guess=ids[0], chunk=4)
    assert with_right == ids and right.guessed and right.decode_steps == plain.decode_steps - 1
    assert right.cache.length == plain.cache.length
    torch.testing.assert_close(right.cache.kv.layers[0].k_cache[..., : right.cache.length, :],
                               plain.cache.kv.layers[0].k_cache[..., : plain.cache.length, :], atol=1e-5, rtol=1e-4)
    wrong, with_wrong = run(guess=(ids[0] + 1) % 97)
    assert with_wrong == ids and not wrong.guessed and wrong.decode_steps == plain.decode_steps
    assert wrong.cache.length == plain.cache.length
    forced = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=3, forced=[7], guess=ids[0])
    assert list(forced) == [7] and not forced.guessed


@pytest.mark.parametrize("chunk", [None, 3])
def test_probe_keeps_the_logits_after_a_prompt_position(chunk):
    """`probe`: the next-token logits of one prompt position, as the uncached forward gives them; the ids unchanged;
    a cache that holds the position keeps only the rows before it."""
    llm = _llm()
    plain = list(TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=6))
    loop = TokenLoop(llm, (cache := PromptCache(llm, 64)), _embeds(llm, PROMPT), max_new_tokens=6, probe=4,
                     prefill_chunk=chunk)
    assert list(loop) == plain
    with torch.no_grad():
        expected = llm(PROMPT[None])[0, 4].float()  # [V] uncached causal forward
    torch.testing.assert_close(loop.probe_logits[0], expected, rtol=1e-4, atol=1e-4)
    again = TokenLoop(llm, cache, _embeds(llm, PROMPT), max_new_tokens=6, probe=4)  # the cache holds position 4
    assert list(again) == plain and again.reused == 4
    torch.testing.assert_close(again.probe_logits[0], expected, rtol=1e-4, atol=1e-4)
    assert TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=2, probe=99).probe is None


@pytest.mark.usefixtures("requires_native")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loops_stepped_side_by_side_give_the_ids_they_give_alone(dtype, monkeypatch):
    """Three replies over one model, their forwards run together (`pending_step` -> `run_batched` -> `supply`):
    the same ids as each loop alone; a cancelled loop with logits supplied gives nothing more."""
    llm = _llm(dtype)
    prompts = [PROMPT, PROMPT[:4], torch.tensor([7, 7, 1, 90, 33, 12, 44])]

    def loop(ids):
        return TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, ids), max_new_tokens=12)

    alone = [list(loop(p)) for p in prompts]
    loops = [loop(p) for p in prompts]
    single = []  # batch-1 forwards run (a round of one pending step runs one; the loops run none of their own)
    step_alone = NativeStep.__call__
    monkeypatch.setattr(NativeStep, "__call__", lambda self, *a: single.append(1) or step_alone(self, *a))
    got: list[list[int]] = [[] for _ in prompts]
    rounds = ones = 0
    while not all(lp.done for lp in loops):
        pending = [p for p in (lp.pending_step() for lp in loops) if p is not None]
        run_batched(pending)
        assert all(lp.pending_step() is None for lp in loops)  # supplied: not named twice
        rounds += len(pending) > 1
        ones += len(pending) == 1
        for i, lp in enumerate(loops):
            tok = lp.step()
            if tok is not None:
                got[i].append(tok)
    assert got == alone and rounds >= 5 and len(single) == ones
    last = loop(prompts[0])
    last.step()  # the prompt: the first id
    p = last.pending_step()
    assert p is not None
    run_batched([p])
    last.cancel()
    assert last.step() is None and last.decode_steps == 0


@pytest.mark.usefixtures("requires_native")
def test_steps_the_batched_kernel_cannot_run_together_run_one_by_one():
    """Quantized weights (the batched kernel is dense only): `run_batched` runs each loop's forward alone, same ids."""
    from vita.nn.quant import quantize_llm_

    llm = quantize_llm_(_llm(torch.bfloat16), 8)

    def loop(ids):
        return TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, ids), max_new_tokens=6)

    alone = [list(loop(p)) for p in (PROMPT, PROMPT[:5])]
    loops = [loop(p) for p in (PROMPT, PROMPT[:5])]
    got: list[list[int]] = [[], []]
    rounds = 0
    while not all(lp.done for lp in loops):
        pending = [p for p in (lp.pending_step() for lp in loops) if p is not None]
        assert all(p.step.quantization is not None for p in pending)
        run_batched(pending)
        rounds += len(pending) > 1
        for i, lp in enumerate(loops):
            tok = lp.step()
            if tok is not None:
                got[i].append(tok)
    assert got == alone and rounds >= 3


def test_a_reply_that_repeats_a_block_ends_there(native):
    llm = _llm()
    block = [11, 12, 13] * 10
    looped = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=30, forced=block,
                       forced_complete=False, native=native, loop_window=9)
    assert list(looped) == block[:9] and looped.finish_reason == "stop" and looped.looped
    steps = looped.decode_steps
    assert looped.step() is None and looped.decode_steps == steps  # nothing runs after it
    off = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=30, forced=block,
                    forced_complete=False, native=native)
    assert list(off) == block and off.finish_reason == "length" and not off.looped
    with pytest.raises(ValueError, match="loop_window"):
        TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=4, loop_window=-1)


def test_a_free_reply_is_cut_where_it_first_repeats_and_is_otherwise_unchanged(native):
    """The guard only ends a reply: the ids before the cut are those the unguarded loop gives (this random model
    falls into an 11-id cycle: a 33-id window sees it three times)."""
    llm = _llm()
    free = list(TokenLoop(llm, PromptCache(llm, 128), _embeds(llm, PROMPT), max_new_tokens=80, native=native))
    cut = next(n for n in range(33, len(free) + 1) if repeats_block(free[:n], 33))
    assert cut < len(free)
    guarded = TokenLoop(llm, PromptCache(llm, 128), _embeds(llm, PROMPT), max_new_tokens=80, native=native,
                        loop_window=33)
    assert list(guarded) == free[:cut] and guarded.looped and guarded.finish_reason == "stop"
    narrow = TokenLoop(llm, PromptCache(llm, 128), _embeds(llm, PROMPT), max_new_tokens=80, native=native,
                       loop_window=6)  # blocks of <= 2 ids only: the 11-id cycle runs on
    assert list(narrow) == free and not narrow.looped


def test_a_text_loop_that_loops_keeps_the_first_block(native):
    """The ids are the guard's; the text streamed out and the reply kept (ids, visible text) say the block once."""
    tok = byte_tokenizer()
    llm = _llm(vocab_size=len(tok))
    said = tok.encode("<1>like put", add_special_tokens=False) + tok.encode(" put", add_special_tokens=False) * 12
    tokens = TokenLoop(llm, PromptCache(llm, 128), _embeds(llm, PROMPT), max_new_tokens=80, forced=said,
                       forced_complete=False, native=native, loop_window=12)
    reply = TextLoop(tokens, tok)
    streamed = "".join(reply)
    # the repeats were held back while streaming (all but the start of the second saying, not yet known as one)
    assert tokens.looped and streamed.startswith("like put") and "put put" not in streamed
    assert reply.visible_text == "like put" and tok.decode(reply.token_ids) == "<1>like put"


def test_a_state_bias_moves_only_the_step_after_its_prefix(native):
    llm = _llm()
    plain = list(TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=6, native=native))
    target = next(i for i in range(97) if i not in plain)
    for prefix in ((), (plain[0],), (plain[0], plain[1])):  # the first id, the second after a forced first, ...
        loop = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=6, native=native,
                         forced=list(prefix), forced_complete=False, state_bias=(prefix, target, 1e4))
        got = list(loop)
        assert got[len(prefix)] == target and got[: len(prefix)] == list(prefix)
    other = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=6, native=native,
                      state_bias=((plain[0] + 1,), target, 1e4))  # a prefix the reply never has: nothing moves
    assert list(other) == plain
    guessed = TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, PROMPT), max_new_tokens=6, native=native,
                        guess=plain[0], state_bias=((plain[0],), target, 1e4))  # the guessed row's logits too
    assert list(guessed)[:2] == [plain[0], target] and guessed.guessed
