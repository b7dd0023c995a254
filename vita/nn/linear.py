"""`linear` for bf16 inference on CPUs without native bf16 arithmetic (AVX2 only: no AVX512-BF16, no AMX).

There PyTorch's bf16 matrix multiply runs through generic widening code: a 64-token prefill of SmolLM2-135M took
~1 s in bf16 against ~0.4 s when the weights are widened to float32 for the product (measured on this project's
2-core AVX2 machine). So for more than a few rows (prefill, batched scoring) `linear` widens both operands, runs
the float32 GEMM and rounds the result back to bf16. Batch-1 decoding (a few rows) stays on `F.linear`: it is
memory-bound: widening would triple the bytes moved, and a hand-written AVX2 bf16 GEMV (one sequential stream per
thread) was ~1.3x faster than PyTorch's in isolation but gained nothing measurable in a whole decode step here.

One row (batch-1 decoding) in bf16 goes through `torch.mv` instead: on this project's AVX512-BF16/AMX machine a
decode step's sequence of GEMVs (SmolLM2-135M shapes, 2 threads) took ~12 ms through `torch.mv` against ~19 ms
through `F.linear` (oneDNN's matmul path), compiled or not (`vita bench decode`).

Attention (`vita.nn.attention`) widens its bf16 inputs on such CPUs for the same reason (a decode step's bf16
SDPA over a 128-position cache took 165 us against 50 us in float32).

Training (autograd) and every other dtype or device go straight to `F.linear`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MAX_GEMV_ROWS = 4  # up to this many rows the product is memory-bound: keep bf16


def _cpu_has(*flags: str) -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    return all(f in have for f in flags)


_widen_bf16: bool | None = None  # resolved on the first eager call; compiled graphs read the settled value


def widen_bf16() -> bool:
    """True on CPUs where widened float32 math beats PyTorch's bf16 kernels (no native bf16 units)."""
    global _widen_bf16
    if _widen_bf16 is None:
        if torch.compiler.is_compiling():
            return False  # never read /proc from inside a trace
        _widen_bf16 = not _cpu_has("avx512_bf16") and not _cpu_has("amx_bf16")
    return _widen_bf16


@torch.library.custom_op("vita::gemv", mutates_args=())
def gemv(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """weight [N, K] @ x [K] -> [N] through `torch.mv`; an opaque op, so inductor calls it rather than generating
    its own (slower) reduction loops for it."""
    return torch.mv(weight, x)


@gemv.register_fake
def _(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return weight.new_empty(weight.shape[0])


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
        out = gemv(weight, x.reshape(-1))  # [N]
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
