"""The native bf16 GEMV (`vita.nn.native`, `vita/nn/csrc/gemv_bf16.cpp`): exact where the sums are exact, float32
accurate otherwise, the same bits on any thread count, usable inside a compiled graph, and a clear fallback."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from vita.nn import linear as linear_mod
from vita.nn import native

# Not `native.available()`: on an AVX2 machine with a compiler the kernels must load, and `op` fails if they do not.
needs_native = pytest.mark.skipif(
    not native.cpu_has("avx2", "fma") or native._compiler() is None or os.environ.get("VITA_NATIVE_KERNELS") == "0",
    reason="needs an AVX2/FMA CPU and a C++ compiler (and VITA_NATIVE_KERNELS not 0)",
)

SHAPES = [(1, 1), (3, 31), (64, 32), (65, 576), (130, 577), (960, 576), (576, 1536), (4099, 64)]


@pytest.fixture(scope="module")
def op():
    gemv = native.native_gemv()
    assert gemv is not None, "AVX2 CPU with a compiler, but the native GEMV did not load (see the warning)"
    return gemv


@needs_native
@pytest.mark.parametrize("shape", SHAPES)
def test_exact_sums_are_exact(op, shape):
    # small integers: every partial sum is exact in float32, so the only rounding is the final one to bf16
    g = torch.Generator().manual_seed(shape[0] * 7919 + shape[1])
    w = torch.randint(-8, 9, shape, generator=g).bfloat16()
    x = torch.randint(-8, 9, (shape[1],), generator=g).bfloat16()
    exact = (w.double() @ x.double()).bfloat16()  # [N]
    assert torch.equal(op(w, x), exact)


@needs_native
@pytest.mark.parametrize("shape", SHAPES)
def test_random_values_within_float32_accumulation_error(op, shape):
    g = torch.Generator().manual_seed(shape[0] + shape[1])
    w = torch.randn(shape, generator=g).bfloat16()
    x = torch.randn(shape[1], generator=g).bfloat16()
    ref = w.double() @ x.double()  # [N]
    got = op(w, x).double()
    # one bf16 rounding of the result (relative 2^-8) plus float32 summation error over K terms
    bound = ref.abs() * 2.0**-8 + shape[1] * 2.0**-23 * (w.double().abs() @ x.double().abs()) + 1e-30
    assert ((got - ref).abs() <= bound).all()


@needs_native
def test_same_bits_on_one_and_two_threads(op):
    w = torch.randn(3072, 576).bfloat16()
    x = torch.randn(576).bfloat16()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = op(w, x)
        torch.set_num_threads(2)
        two = op(w, x)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)  # each row is summed by one thread in one order


@needs_native
def test_strided_inputs_and_bad_inputs(op):
    w = torch.randn(96, 200).bfloat16()
    x = torch.randn(400).bfloat16()
    assert torch.equal(op(w.t().contiguous().t(), x[::2]), op(w, x[::2].contiguous()))
    with pytest.raises(RuntimeError, match="gemv_bf16: expected bfloat16"):
        op(w.float(), x[:200].float())
    with pytest.raises(RuntimeError, match=r"gemv_bf16: expected weight \[N, K\] and x \[K\]"):
        op(w, x)


@needs_native
def test_linear_uses_it_for_one_row_eager_and_compiled(op):
    x = torch.randn(1, 1, 576).bfloat16()
    w = torch.randn(960, 576).bfloat16()
    b = torch.randn(960).bfloat16()
    with torch.no_grad():
        assert linear_mod.row_gemv() is op
        eager = linear_mod.linear(x, w, b)
        assert torch.equal(eager, (op(w, x.reshape(-1)) + b).view(1, 1, 960))
        compiled = torch.compile(lambda a, c, d: linear_mod.linear(a, c, d), fullgraph=True)
        assert torch.equal(compiled(x, w, b), eager)


@pytest.fixture
def fresh_state(monkeypatch, tmp_path):
    """native_gemv() undecided again, with its own cache folder; restored afterwards."""
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setenv("VITA_NATIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VITA_NATIVE_KERNELS", raising=False)
    return tmp_path


def test_disabled_by_environment(fresh_state, monkeypatch):
    monkeypatch.setenv("VITA_NATIVE_KERNELS", "0")
    assert native.native_gemv() is None
    assert linear_mod.row_gemv() is linear_mod.gemv  # the torch.mv custom op
    assert not (fresh_state / "cache").exists()  # nothing was built


def test_no_compiler_warns_and_falls_back(fresh_state, monkeypatch):
    monkeypatch.setattr(native, "cpu_has", lambda *flags: True)
    monkeypatch.setattr(native, "_compiler", lambda: None)
    with pytest.warns(UserWarning, match="native bf16 kernels are unavailable .*no C\\+\\+ compiler"):
        assert native.native_gemv() is None


@pytest.mark.skipif(native._compiler() is None, reason="needs a C++ compiler")
def test_a_failed_build_names_the_source_and_leaves_no_library(fresh_state):
    broken = fresh_state / "broken_kernel.cpp"
    broken.write_text("this is not C++;\n")
    with pytest.raises(RuntimeError, match="compiling broken_kernel.cpp failed"):
        native.build([broken])
    assert not native.library_path([broken]).exists()


def test_cache_key_follows_the_source(fresh_state):
    src = fresh_state / "k.cpp"
    shutil.copy(native.SOURCES[0], src)
    first = native.library_path([src])
    src.write_text(src.read_text() + "\n// changed\n")
    second = native.library_path([src])
    assert second != first
    (fresh_state / "k.h").write_text("// a header beside the source is part of the key\n")
    assert native.library_path([src]) != second
    assert first.parent == fresh_state / "cache"
