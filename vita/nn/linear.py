"""`linear` for bf16 inference on CPUs without native bf16 arithmetic (AVX2 only: no AVX512-BF16, no AMX).

There PyTorch's bf16 matrix multiply runs through generic widening code: a 64-token prefill of SmolLM2-135M took
~1 s in bf16 against ~0.4 s when the weights are widened to float32 for the product (measured on this project's
2-core AVX2 machine). So for more than a few rows (prefill, batched scoring) `linear` widens both operands, runs
the float32 GEMM and rounds the result back to bf16. Two to four rows stay on `F.linear` in bf16: memory-bound,
where widening would triple the bytes moved.

One row (batch-1 decoding) in bf16 is a matrix-vector product. On AVX2 CPUs it runs the native kernel
`vita.nn.native` builds (`csrc/gemv_bf16.cpp`: one contiguous block of rows per thread, bf16 widened in registers,
called through the C++ dispatcher). On this project's 2-core AVX2 machine a decode step's GEMVs (SmolLM2-135M
shapes, 2 threads) took ~17 ms through it against ~23 ms through `torch.mv`, and the whole compiled step ~22 ms
against ~38 ms with `torch.mv` behind a Python custom op (which cost ~60 us a call; `vita bench decode`). Elsewhere
(no AVX2, no compiler) the row goes through `torch.mv` as the opaque custom op `vita::gemv`, so that inductor calls it
rather than generating its own slower reduction loops; on an AVX512-BF16/AMX machine that took ~12 ms for the GEMV
sequence against ~19 ms through `F.linear` (oneDNN's matmul path).

Attention (`vita.nn.attention`) widens its bf16 inputs on such CPUs for the same reason (a decode step's bf16
SDPA over a 128-position cache took 165 us against 50 us in float32).

Training (autograd) and every other dtype or device go straight to `F.linear`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vita.nn import native

MAX_GEMV_ROWS = 4  # up to this many rows the product is memory-bound: keep bf16


_widen_bf16: bool | None = None  # resolved on the first eager call; compiled graphs read the settled value


def widen_bf16() -> bool:
    """True on CPUs where widened float32 math beats PyTorch's bf16 kernels (no native bf16 units)."""
    global _widen_bf16
    if _widen_bf16 is None:
        if torch.compiler.is_compiling():
            return False  # never read /proc from inside a trace
        _widen_bf16 = not native.cpu_has("avx512_bf16") and not native.cpu_has("amx_bf16")
    return _widen_bf16


@torch.library.custom_op("vita::gemv", mutates_args=())
def gemv(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """weight [N, K] @ x [K] -> [N] through `torch.mv`; an opaque op, so inductor calls it rather than generating
    its own (slower) reduction loops for it."""
    return torch.mv(weight, x)


@gemv.register_fake
def _(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return weight.new_empty(weight.shape[0])


def row_gemv() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The bf16 GEMV for one row: the native kernel where it is available, else `gemv` (torch.mv).

    Never builds or loads the kernel while torch.compile traces: `vita.generation.generate` resolves it eagerly
    before the first compiled step, and a trace that comes first falls back to `gemv`."""
    if native.resolved() or not torch.compiler.is_compiling():
        op = native.native_gemv()
        if op is not None:
            return op
    return gemv


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, with bf16 prefill widened to float32 on CPUs without native bf16 and one bf16 row as a GEMV
    (see the module docstring)."""
    if (
        weight.dtype == torch.bfloat16
        and x.dtype == torch.bfloat16
        and weight.device.type == "cpu"
        and x.numel() == x.shape[-1]
        and not (torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad))
    ):
        out = row_gemv()(weight, x.reshape(-1))  # [N]
        if bias is not None:
            out = out + bias
        return out.view(*x.shape[:-1], weight.shape[0])  # [..., N]
    if (
        weight.dtype == torch.bfloat16
        and x.dtype == torch.bfloat16
        and weight.device.type == "cpu"
        and x.numel() // max(x.shape[-1], 1) > MAX_GEMV_ROWS
        and not (torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad))
        and widen_bf16()
    ):
        out = F.linear(x.float(), weight.float(), None if bias is None else bias.float())  # [..., N] float32
        return out.to(torch.bfloat16)
    return F.linear(x, weight, bias)


def project(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """A model's linear layer applied to x: `linear` for a plain `nn.Linear`, the module's own forward otherwise
    (a training adapter such as `vita.training.lora.LoRALinear`, which must be on every path)."""
    if type(module) is nn.Linear:
        return linear(x, module.weight, module.bias)
    return module(x)
