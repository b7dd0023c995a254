"""A bf16 matrix-vector kernel for CPUs without native bf16 arithmetic (AVX2 + FMA, no AVX512-BF16/AMX).

On such CPUs PyTorch's bf16 `linear` widens and multiplies through generic code that reads weights at a fraction
of memory speed, which caps batch-1 decoding far below the bandwidth bound. `bf16_gemv.c` streams the weights
once with AVX2 (see its header). It is compiled on first use with the system C compiler into a per-user cache
(a few hundred milliseconds, once) and called through ctypes, which releases the GIL; it shares torch's OpenMP
runtime (libgomp is resolved by soname from the already loaded torch).

`linear(x, weight, bias)` is the drop-in used by the LLM layers: it takes the kernel for a few rows of bf16 on
CPU when no gradient is needed, and `F.linear` otherwise (and on any machine where the kernel is unavailable:
no compiler, another architecture, or `VITA_NO_KERNELS=1`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

_SOURCE = Path(__file__).with_name("bf16_gemv.c")
MAX_ROWS = 4  # above this many rows (prefill), a widened fp32 GEMM is faster than repeated GEMVs


def _cpu_has(*flags: str) -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    return all(f in have for f in flags)


def _cache_dir() -> Path:
    root = os.environ.get("VITA_KERNEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "vita", "kernels"
    )
    return Path(root)


@functools.cache
def _library() -> ctypes.CDLL | None:
    """Compile (once per source version) and load the kernel; None where it cannot run here."""
    if os.environ.get("VITA_NO_KERNELS") == "1" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    if not _cpu_has("avx2", "fma"):
        return None
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    source = _SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = _cache_dir() / f"bf16_gemv-{digest}.so"
    if not target.is_file():
        if compiler is None:
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            out = Path(tmp) / target.name
            cmd = [compiler, "-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC", str(_SOURCE), "-o", str(out)]
            if subprocess.run(cmd, capture_output=True).returncode != 0:
                return None
            os.replace(out, target)  # atomic: concurrent first uses never load a half-written file
    lib = ctypes.CDLL(str(target))
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.vita_bf16_gemv.argtypes = [p, i64, p, p, p, i64, i64, p, ctypes.c_int]
    lib.vita_bf16_gemv.restype = None
    return lib


def available() -> bool:
    return _library() is not None


def bf16_gemv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [..., K] bf16 with few rows, weight [N, K] bf16, bias [N] -> [..., N] bf16 (fp32 accumulation)."""
    lib = _library()
    if lib is None:
        raise RuntimeError("the bf16 GEMV kernel is not available on this machine")
    K = x.shape[-1]
    x2 = x.reshape(-1, K).contiguous()  # [M, K]
    w = weight.contiguous()
    N = w.shape[0]
    y = torch.empty(x2.shape[0], N, dtype=torch.bfloat16)  # [M, N]
    scratch = torch.empty(x2.shape[0], K, dtype=torch.float32)  # x widened once, shared by the threads
    b = bias.contiguous() if bias is not None else None
    lib.vita_bf16_gemv(x2.data_ptr(), x2.shape[0], w.data_ptr(), b.data_ptr() if b is not None else None,
                       y.data_ptr(), N, K, scratch.data_ptr(), torch.get_num_threads())
    return y.view(*x.shape[:-1], N)


@torch.library.custom_op("vita::bf16_gemv", mutates_args=())
def _bf16_gemv_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The kernel as a torch operator, so compiled graphs (torch.compile) can call it without a graph break."""
    return bf16_gemv(x, weight, bias)


@_bf16_gemv_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], weight.shape[0])


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, with a faster path for bf16 inference on CPUs without native bf16 (see the module docstring)."""
    if (
        weight.dtype == torch.bfloat16
        and x.dtype == torch.bfloat16
        and weight.device.type == "cpu"
        and weight.shape[-1] % 8 == 0
        and not (torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad))
        and _use_kernel()
    ):
        if x.numel() // x.shape[-1] <= MAX_ROWS:
            if torch.compiler.is_compiling():
                return _bf16_gemv_op(x, weight, bias)
            return bf16_gemv(x, weight, bias)
        return F.linear(x.float(), weight.float(), None if bias is None else bias.float()).to(torch.bfloat16)
    return F.linear(x, weight, bias)


_kernel_ok: bool | None = None  # resolved on the first eager call; compiled graphs read the settled value


def _use_kernel() -> bool:
    global _kernel_ok
    if _kernel_ok is None:
        if torch.compiler.is_compiling():
            return False  # never probe the CPU or the compiler from inside a trace
        # CPUs with AVX512-BF16 or AMX run bf16 natively through oneDNN: leave them to PyTorch
        _kernel_ok = not _cpu_has("avx512_bf16") and not _cpu_has("amx_bf16") and available()
    return _kernel_ok
