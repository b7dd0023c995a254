"""Several caches' decode steps in one native call (`NativeStep.batch`, `vita_native::decode_batch`): every row and
every cache write equal the batch-1 kernel's bit for bit, for sequences at different positions in caches of different
lengths; clear refusals."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.generation.test_native_step import _llm
from vita.generation.native_step import NativeStep
from vita.nn.quant import quantize_llm_

pytestmark = pytest.mark.usefixtures("requires_native")


def _caches(llm, lengths: list[int], sizes: list[int]):
    """One prefilled cache per sequence: a prompt of lengths[b] random ids in a cache of sizes[b] positions."""
    g = torch.Generator().manual_seed(1)
    caches = []
    for n, size in zip(lengths, sizes, strict=True):
        kv = llm.new_cache(size)
        ids = torch.randint(0, llm.config.vocab_size, (1, n), generator=g)
        with torch.inference_mode():
            llm.hidden_states(ids, input_pos=torch.arange(n), cache=kv)
        caches.append(kv)
    return caches


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("kw", [{}, {"bias": True}, {"tied": True}, {"hidden": 72, "heads": 4, "kv_heads": 1}])
def test_each_row_equals_the_batch_1_step(dtype, kw):
    llm = _llm(**kw).to(dtype)
    lengths, sizes = [9, 3, 17, 5, 30], [64, 32, 48, 64, 40]
    batched = _caches(llm, lengths, sizes)
    single = copy.deepcopy(batched)
    steps_b = [NativeStep(llm, kv) for kv in batched]
    steps_s = [NativeStep(llm, kv) for kv in single]
    tokens, pos = [7, 100, 3, 150, 42], list(lengths)
    for _ in range(4):  # a few steps, each sequence at its own position
        got = NativeStep.batch(steps_b, tokens, pos)  # [B, V]
        assert got.shape == (5, steps_b[0].vocab_size) and got.dtype == dtype
        for b, step in enumerate(steps_s):
            assert torch.equal(got[b], step(tokens[b], pos[b])[0]), b
        tokens = [int(t) for t in got.float().argmax(-1)]
        pos = [p + 1 for p in pos]
    for a, b in zip(batched, single, strict=True):
        for la, lb in zip(a.layers, b.layers, strict=True):
            assert torch.equal(la.k_cache, lb.k_cache) and torch.equal(la.v_cache, lb.v_cache)


def test_any_subset_and_order_and_thread_count_give_the_same_bits():
    llm = _llm().bfloat16()
    caches = _caches(llm, [4, 11, 6], [32, 32, 32])
    steps = [NativeStep(llm, kv) for kv in caches]
    full = NativeStep.batch(steps, [1, 2, 3], [4, 11, 6])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        pair = NativeStep.batch([steps[2], steps[0]], [3, 1], [6, 4])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(pair[0], full[2]) and torch.equal(pair[1], full[0])


def test_refusals_name_the_problem():
    llm, other = _llm().bfloat16(), _llm(seed=1).bfloat16()
    a, b = _caches(llm, [3, 3], [16, 16])
    mine, theirs = NativeStep(llm, a), NativeStep(other, other.new_cache(16))
    with pytest.raises(ValueError, match="different models"):
        NativeStep.batch([mine, theirs], [1, 1], [3, 3])
    with pytest.raises(ValueError, match="one cache twice"):
        NativeStep.batch([mine, NativeStep(llm, a)], [1, 1], [3, 3])
    with pytest.raises(RuntimeError, match="position 16 outside its cache"):
        NativeStep.batch([mine, NativeStep(llm, b)], [1, 1], [3, 16])
    with pytest.raises(RuntimeError, match="token id 999 outside the vocabulary"):
        NativeStep.batch([mine, NativeStep(llm, b)], [999, 1], [3, 3])
    quant = quantize_llm_(copy.deepcopy(_llm()).bfloat16(), 8)
    q = [NativeStep(quant, quant.new_cache(16)), NativeStep(quant, quant.new_cache(16))]
    with pytest.raises(ValueError, match="quantized weights"):
        NativeStep.batch(q, [1, 1], [0, 0])


def test_the_avx2_rows_obey_the_same_equalities():
    """Where the CPU has AVX512-BF16 the rows run on it; the AVX2 rows (VITA_NATIVE_DPBF16=0, what other CPUs run)
    must give batched == batch-1 bits too: checked in a process of their own (the choice is made once per process)."""
    code = ("import torch; from tests.generation import test_native_batch as t; "
            "[t.test_each_row_equals_the_batch_1_step(d, kw) for d in (torch.bfloat16, torch.float32) "
            "for kw in ({}, {'hidden': 72, 'heads': 4, 'kv_heads': 1})]; "
            "t.test_any_subset_and_order_and_thread_count_give_the_same_bits()")
    env = {**os.environ, "VITA_NATIVE_DPBF16": "0"}
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], env=env, cwd=root, check=True, timeout=300)
