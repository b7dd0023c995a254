"""`linear`: bf16 prefill widened to float32 on CPUs without native bf16, one bf16 row through a GEMV
(native or torch.mv), identical to F.linear otherwise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vita.nn import linear as gemv  # the module: tests patch its state


@pytest.fixture
def widen(monkeypatch):
    monkeypatch.setattr(gemv, "_widen_bf16", True)


def test_prefill_rows_are_widened_and_rounded_once(widen):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 64, generator=g).bfloat16()
    w = torch.randn(48, 64, generator=g).bfloat16()
    b = torch.randn(48, generator=g).bfloat16()
    with torch.no_grad():
        got = gemv.linear(x, w, b)
    expected = F.linear(x.float(), w.float(), b.float()).bfloat16()  # float32 math, one rounding to bf16
    assert got.dtype == torch.bfloat16 and torch.equal(got, expected)


def test_one_bf16_row_is_a_gemv(widen, native, monkeypatch):
    if not native:
        monkeypatch.setattr(gemv.native, "_loaded", False)  # as on a CPU without the native kernels
    x = torch.randn(1, 1, 64).bfloat16()
    w = torch.randn(48, 64).bfloat16()
    b = torch.randn(48).bfloat16()
    with torch.no_grad():
        got = gemv.linear(x, w, b)
        assert got.shape == (1, 1, 48)
        torch.testing.assert_close(got, F.linear(x, w, b), atol=2e-2, rtol=1e-2)  # bf16 rounding of the sum
        assert (gemv.row_gemv() is not gemv.gemv) == native  # the native GEMV, else the torch.mv op
        assert torch.equal(gemv.linear(x, w), gemv.row_gemv()(w, x.reshape(-1)).view(1, 1, 48))
        compiled = torch.compile(lambda a, c, d: gemv.linear(a, c, d), fullgraph=True)
        assert torch.equal(compiled(x, w, b), got)  # an opaque op: inductor calls it, same bits


def test_torch_mv_fallback_is_opaque_and_exact(monkeypatch):
    monkeypatch.setattr(gemv.native, "_loaded", False)  # as on a CPU without the native kernels
    x = torch.randn(1, 1, 64).bfloat16()
    w = torch.randn(48, 64).bfloat16()
    with torch.no_grad():
        assert gemv.row_gemv() is gemv.gemv
        assert torch.equal(gemv.linear(x, w), torch.mv(w, x.reshape(-1)).view(1, 1, 48))
        compiled = torch.compile(lambda a, c: gemv.linear(a, c), fullgraph=True)
        assert torch.equal(compiled(x, w), torch.mv(w, x.reshape(-1)).view(1, 1, 48))


def test_training_and_other_dtypes_use_f_linear(widen):
    x = torch.randn(3, 10, 64)
    w = torch.randn(48, 64, requires_grad=True)
    assert torch.equal(gemv.linear(x, w), F.linear(x, w))  # fp32
    xb, wb = x.bfloat16(), w.detach().bfloat16().requires_grad_()
    out = gemv.linear(xb, wb)  # bf16 with autograd: no widening, gradients flow
    assert torch.equal(out, F.linear(xb, wb))
    out.float().sum().backward()
    assert wb.grad is not None and wb.grad.shape == wb.shape


def test_linear_traces_inside_a_compiled_graph(widen):
    x = torch.randn(8, 64).bfloat16()
    w = torch.randn(40, 64).bfloat16()
    compiled = torch.compile(lambda a, b: gemv.linear(a, b) * 2, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, w), gemv.linear(x, w) * 2)
