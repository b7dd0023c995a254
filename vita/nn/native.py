"""Native CPU kernels: C++ sources in `vita/nn/csrc`, compiled with the system C++ compiler into a PyTorch op library.

Today one kernel: `gemv_bf16` (see `csrc/gemv_bf16.cpp`), the bf16 matrix-vector product of batch-1 decoding on
AVX2 CPUs. `make setup` builds it (`python -m vita.nn.native`, ~20 s); otherwise the first call that needs it builds
it. The library is cached under `$VITA_NATIVE_CACHE` (default `~/.cache/vita/native`), keyed by the source, the
torch version and the flags, so a changed source or torch never loads a stale build.

Where it cannot be used — no AVX2/FMA, no compiler, a failed build, `VITA_NATIVE_KERNELS=0` — `native_gemv()`
returns None (with one warning saying why, unless disabled on purpose) and callers fall back to `torch.mv`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

SOURCE = Path(__file__).parent / "csrc" / "gemv_bf16.cpp"
FLAGS = ["-O3", "-mavx2", "-mfma", "-fopenmp", "-std=c++17", "-shared", "-fPIC", "-w"]


def cpu_has(*flags: str) -> bool:
    """True when /proc/cpuinfo lists every one of `flags` (False where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    return all(f in have for f in flags)


def _compiler() -> str | None:
    return next((c for c in (os.environ.get("CXX"), "c++", "g++", "clang++") if c and shutil.which(c)), None)


def _command(cxx: str, source: Path, out: Path) -> list[str]:
    from torch.utils.cpp_extension import include_paths, library_paths

    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    includes = [f"-I{p}" for p in include_paths()]
    libs = [arg for p in library_paths() for arg in (f"-L{p}", f"-Wl,-rpath,{p}")]
    return [cxx, *FLAGS, abi, *includes, str(source), "-o", str(out), *libs, "-lc10", "-ltorch_cpu"]


def library_path(source: Path = SOURCE) -> Path:
    """Where the build of `source` for this torch and these flags lives (it may not exist yet)."""
    key = hashlib.sha256()
    key.update(source.read_bytes())
    key.update(f"{torch.__version__}|{' '.join(FLAGS)}|{sys.platform}".encode())
    root = Path(os.environ.get("VITA_NATIVE_CACHE") or Path.home() / ".cache" / "vita" / "native")
    return root / f"{source.stem}-{key.hexdigest()[:16]}.so"


def build(source: Path = SOURCE) -> Path:
    """Compile `source` into its cached library (no-op when already built); return the library path."""
    out = library_path(source)
    if out.exists():
        return out
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (tried $CXX, c++, g++, clang++)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        staged = Path(tmp) / out.name
        done = subprocess.run(_command(cxx, source, staged), capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"compiling {source.name} failed: " + " | ".join(tail))
        os.replace(staged, out)  # atomic: a concurrent builder or loader never sees a partial file
    return out


_gemv: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
_resolved = False


def resolved() -> bool:
    """True once `native_gemv()` has decided (whatever it decided)."""
    return _resolved


def native_gemv() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The `vita_native::gemv_bf16` op (weight [N, K] bf16, x [K] bf16 -> [N] bf16), or None where unavailable.

    Resolved once per process; call it eagerly (not while torch.compile traces) before the first compiled step.
    """
    global _gemv, _resolved
    if _resolved:
        return _gemv
    _resolved = True
    if os.environ.get("VITA_NATIVE_KERNELS", "1") == "0":
        return None
    if not cpu_has("avx2", "fma"):
        return None
    try:
        torch.ops.load_library(str(build()))
    except (OSError, RuntimeError) as e:
        warnings.warn(f"vita: the native bf16 GEMV is unavailable ({e}); batch-1 bf16 decoding uses torch.mv",
                      stacklevel=2)
        return None
    op = torch.ops.vita_native.gemv_bf16.default

    @torch.library.register_fake("vita_native::gemv_bf16")
    def _(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return weight.new_empty(weight.shape[0])

    _gemv = op
    return _gemv


def main() -> int:
    """`python -m vita.nn.native`: build the kernels now (what `make setup` runs) and say where they are."""
    if not cpu_has("avx2", "fma"):
        print("vita.nn.native: this CPU has no AVX2/FMA; nothing to build (torch.mv is used)")
        return 0
    try:
        path = build()
    except RuntimeError as e:
        print(f"vita.nn.native: not built ({e}); batch-1 bf16 decoding will use torch.mv", file=sys.stderr)
        return 0  # optional speed-up: never fail the set-up over it
    print(f"vita.nn.native: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
