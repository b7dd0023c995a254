"""The AVX2 bf16 GEMV kernel: exact fp32-accumulated results rounded once to bf16, and the `linear` dispatch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vita.kernels import gemv

pytestmark = pytest.mark.skipif(not gemv.available(), reason="no AVX2+FMA or no C compiler")


@pytest.mark.parametrize("rows", [1, 3, 4])
@pytest.mark.parametrize("n", [1, 7, 64, 203])
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_equals_fp32_math_rounded_to_bf16(rows, n, threads):
    g = torch.Generator().manual_seed(n * 10 + rows)
    x = torch.randn(rows, 96, generator=g).bfloat16()
    w = torch.randn(n, 96, generator=g).bfloat16()
    b = torch.randn(n, generator=g).bfloat16()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = gemv.bf16_gemv(x, w, b)
        no_bias = gemv.bf16_gemv(x, w)
    finally:
        torch.set_num_threads(before)
    ref = x.double() @ w.double().T  # [rows, n]
    # float32 accumulation in another order than float64: allow one bf16 rounding step of the result
    torch.testing.assert_close(got.double(), (ref + b.double()).bfloat16().double(), rtol=8e-3, atol=1e-2)
    torch.testing.assert_close(no_bias.double(), ref.bfloat16().double(), rtol=8e-3, atol=1e-2)
    assert got.dtype == torch.bfloat16 and got.shape == (rows, n)


def test_leading_dims_are_kept():
    x = torch.randn(1, 1, 64).bfloat16()
    w = torch.randn(40, 64).bfloat16()
    assert gemv.bf16_gemv(x, w).shape == (1, 1, 40)


def test_linear_dispatch_matches_f_linear_and_keeps_autograd():
    x = torch.randn(2, 5, 64).bfloat16()
    w = torch.randn(48, 64).bfloat16()
    with torch.no_grad():
        for rows in (x[:1, :1], x):  # the GEMV path and the widened-GEMM path
            torch.testing.assert_close(gemv.linear(rows, w).float(), F.linear(rows.float(), w.float()),
                                       rtol=1e-2, atol=5e-2)
    wp = w.clone().requires_grad_()
    out = gemv.linear(x[:1, :1], wp)  # training: must stay differentiable
    out.float().sum().backward()
    assert wp.grad is not None and wp.grad.shape == w.shape


def test_kernel_runs_inside_a_compiled_graph():
    x = torch.randn(1, 64).bfloat16()
    w = torch.randn(40, 64).bfloat16()
    compiled = torch.compile(lambda a, b: gemv.linear(a, b) * 2, fullgraph=True)
    with torch.no_grad():
        gemv.linear(x, w)  # the first eager call settles whether the kernel is used
        torch.testing.assert_close(compiled(x, w), gemv.bf16_gemv(x, w) * 2)
