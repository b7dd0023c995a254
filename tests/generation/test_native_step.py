"""The native whole-step decode kernel (`vita.generation.native_step`): as accurate as the bf16 module path against
float32, the same cache writes, the same bits on one and two threads, used by generate(compile=True), clear refusals."""

from __future__ import annotations

import copy

import pytest
import torch

from vita.config import LLMConfig
from vita.generation.generate import decode_step_kind, generate_all
from vita.generation.native_step import NativeStep
from vita.generation.steps import decode_one_token, prefill
from vita.models.llm import LLM

pytestmark = pytest.mark.usefixtures("requires_native")

PROMPT = torch.tensor([[5, 17, 33, 2, 81, 40, 9, 60, 11]])


def _llm(*, bias: bool = False, tied: bool = False, hidden: int = 64, heads: int = 4, kv_heads: int = 2,
         moe: bool = False, seed: int = 0) -> LLM:
    torch.manual_seed(seed)
    cfg = LLMConfig(vocab_size=211, hidden_size=hidden, intermediate_size=80, num_layers=3, num_heads=heads,
                    num_kv_heads=kv_heads, max_position_embeddings=128, qkv_bias=bias, tie_word_embeddings=tied,
                    num_experts=4 if moe else 0, family="mixtral" if moe else ("qwen2" if bias else "llama"))
    llm = LLM(cfg).eval()
    with torch.no_grad():
        llm.tok_embeddings.weight.mul_(8)  # decisive logits, as in test_generate
        if bias:
            for layer in llm.layers:
                for lin in (layer.attention.wq, layer.attention.wk, layer.attention.wv):
                    lin.bias.normal_(0, 0.5)
    return llm


def _teacher_forced(llm: LLM, steps, ids: list[int]) -> list[torch.Tensor]:
    """float32 logits of each decode step along `ids` (positions after PROMPT), one step function per model."""
    out = []
    for i, tok in enumerate(ids):
        out.append(steps(tok, PROMPT.shape[1] + i).float().view(-1))
    return out


def _module_step(llm: LLM):
    return lambda tok, pos: decode_one_token(llm, torch.tensor([[tok]]), torch.tensor([pos]))[1]


def _prefilled(llm: LLM) -> LLM:
    llm.setup_caches(1, 64)
    prefill(llm, token_ids=PROMPT, input_pos=torch.arange(PROMPT.shape[1]))
    return llm


@pytest.mark.parametrize("kw", [{}, {"bias": True}, {"tied": True}, {"heads": 4, "kv_heads": 4},
                                {"hidden": 72, "heads": 4, "kv_heads": 1}])
def test_as_accurate_as_the_bf16_module_path(kw):
    base = _llm(**kw)
    exact = _prefilled(copy.deepcopy(base).float())
    module = _prefilled(copy.deepcopy(base).bfloat16())
    fast = _prefilled(copy.deepcopy(base).bfloat16())
    ids = [7, 100, 3, 150, 42, 8, 99, 13]
    with torch.no_grad():
        ref = _teacher_forced(exact, _module_step(exact), ids)
        bf16 = _teacher_forced(module, _module_step(module), ids)
        got = _teacher_forced(fast, NativeStep(fast), ids)
    for r, b, g in zip(ref, bf16, got, strict=True):
        module_err = (b - r).abs().mean()
        native_err = (g - r).abs().mean()
        assert native_err <= 1.5 * module_err + 1e-3, (native_err, module_err)
        assert (g - b).abs().max() <= 0.05 * r.abs().max()
    # after the same steps both caches hold the same keys and values, up to bf16 rounding
    for a, b in zip(module.layers, fast.layers, strict=True):
        for name in ("k_cache", "v_cache"):
            x, y = getattr(a.attention.kv_cache, name).float(), getattr(b.attention.kv_cache, name).float()
            torch.testing.assert_close(y, x, atol=0.1, rtol=0.05)
            assert torch.equal(x[:, :, : PROMPT.shape[1]], y[:, :, : PROMPT.shape[1]])  # prefill slots untouched


@pytest.mark.parametrize("kw", [{}, {"bias": True}, {"hidden": 72, "heads": 4, "kv_heads": 1}])
def test_float32_as_accurate_as_the_module_path(kw):
    base = _llm(**kw)
    exact = _prefilled(copy.deepcopy(base).double())
    module = _prefilled(copy.deepcopy(base))
    fast = _prefilled(copy.deepcopy(base))
    ids = [7, 100, 3, 150, 42]
    with torch.no_grad():
        ref = _teacher_forced(exact, _module_step(exact), ids)
        f32 = _teacher_forced(module, _module_step(module), ids)
        got = _teacher_forced(fast, NativeStep(fast), ids)
    for r, m, g in zip(ref, f32, got, strict=True):
        scale = r.abs().max()
        assert (g.double() - r).abs().max() <= 2 * (m.double() - r).abs().max() + 1e-6 * scale
    for a, b in zip(module.layers, fast.layers, strict=True):
        torch.testing.assert_close(b.attention.kv_cache.k_cache, a.attention.kv_cache.k_cache, atol=1e-5, rtol=1e-5)


def test_same_bits_on_one_and_two_threads():
    llm = _llm(bias=True).bfloat16()
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            m = _prefilled(copy.deepcopy(llm))
            step = NativeStep(m)
            results.append([step(tok, PROMPT.shape[1] + i) for i, tok in enumerate([4, 5, 6])])
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_generate_compile_uses_it_and_yields_its_greedy_tokens():
    llm = _llm().bfloat16()
    assert decode_step_kind(llm, True) == "native" and decode_step_kind(llm, False) == "native"
    assert decode_step_kind(llm, False, native=False) == "eager"
    assert decode_step_kind(llm, True, native=False) == "compiled"
    L = PROMPT.shape[1]
    with torch.no_grad():
        got = generate_all(llm, token_ids=PROMPT, max_new_tokens=12, compile=True).token_ids
        manual = copy.deepcopy(llm)
        manual.setup_caches(1, 64)
        first, _ = prefill(manual, token_ids=PROMPT, input_pos=torch.arange(L))
        step = NativeStep(manual)
        expected = [int(first)]  # the first token comes from the prefill, each next one from the native step
        for i in range(11):
            expected.append(int(step(expected[-1], L + i).argmax()))
    assert got == expected
    assert len(set(got)) > 1
    assert llm.layers[0].attention.wqkv is None  # the native step reads the parameters as they are: no fusing


def test_fused_and_unfused_parameters_give_the_same_bits():
    llm = _llm(bias=True).bfloat16()
    plain, fused = _prefilled(copy.deepcopy(llm)), copy.deepcopy(llm)
    fused.fuse_()  # q/k/v and gate/up become views of one buffer each
    _prefilled(fused)
    a, b = NativeStep(plain), NativeStep(fused)
    for i, tok in enumerate([4, 5, 6]):
        assert torch.equal(a(tok, PROMPT.shape[1] + i), b(tok, PROMPT.shape[1] + i))


def test_refusals_name_the_reason():
    assert NativeStep.unsupported(_llm().half()).startswith("torch.float16")
    assert NativeStep.unsupported(_llm(moe=True).bfloat16()) == "MoE layers"
    from vita.training.lora import add_lora

    adapted = _llm().bfloat16()
    add_lora(adapted, ["*.wq"], r=2, alpha=4)
    assert NativeStep.unsupported(adapted) == "adapters on a projection (merge them first)"
    assert decode_step_kind(adapted, True) == "compiled"
    with pytest.raises(ValueError, match="no batch-1 KV cache"):
        NativeStep(_llm().bfloat16())


def test_bad_token_or_position_is_a_clear_error():
    llm = _prefilled(_llm().bfloat16())
    step = NativeStep(llm)
    with pytest.raises(RuntimeError, match="token id 211 outside the vocabulary"):
        step(211, PROMPT.shape[1])
    with pytest.raises(RuntimeError, match="position 64 outside the cache"):
        step(3, 64)
