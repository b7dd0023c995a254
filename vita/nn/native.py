"""Native CPU kernels: C++ sources in `vita/nn/csrc`, compiled with the system C++ compiler into a PyTorch op library.

Ops in one library, `vita_native`, for batch-1 decoding on AVX2 CPUs: `gemv_bf16` (`csrc/gemv_bf16.cpp`, one bf16
matrix-vector product), `gemv_q8` / `gemv_q4` (`csrc/gemv_quant.cpp`, weight-only int8 / int4 products, the formats
of `vita.nn.quant`) and `decode_step` / `decode_step_quant` (`csrc/decode_step.cpp`, a whole dense Llama-family
decode step in bf16 or float32, with dense or quantized weights; `vita.generation.native_step`) and `decode_batch`
(`csrc/decode_batch.cpp`, that step for several sequences at once, dense weights; `NativeStep.batch`). `make setup`
builds the library (`python -m vita.nn.native`, ~30 s); otherwise the first call that needs it does. It is cached under
`$VITA_NATIVE_CACHE` (default `~/.cache/vita/native`), keyed by the sources and headers, the torch version and the
flags, so a changed source or torch never loads a stale build.

Where it cannot be used — no AVX2/FMA/F16C, no compiler, a failed build, `VITA_NATIVE_KERNELS=0` — `native_gemv()` and
`native_decode_step()` return None (with one warning saying why, unless disabled on purpose) and callers fall back
to PyTorch's ops (`torch.mv`, the compiled module).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

CSRC = Path(__file__).parent / "csrc"
SOURCES = (CSRC / "gemv_bf16.cpp", CSRC / "gemv_quant.cpp", CSRC / "decode_step.cpp", CSRC / "decode_batch.cpp")
FLAGS = ["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-std=c++20", "-shared", "-fPIC", "-w"]  # compile and link


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


def _compile_command(cxx: str, source: Path, obj: Path) -> list[str]:
    from torch.utils.cpp_extension import include_paths

    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    return [cxx, *FLAGS, abi, *(f"-I{p}" for p in include_paths()), "-c", str(source), "-o", str(obj)]


def _link_command(cxx: str, objs: Sequence[Path], out: Path) -> list[str]:
    from torch.utils.cpp_extension import library_paths

    libs = [arg for p in library_paths() for arg in (f"-L{p}", f"-Wl,-rpath,{p}")]
    return [cxx, *FLAGS, *map(str, objs), "-o", str(out), *libs, "-lc10", "-ltorch_cpu"]


def _run(commands: list[list[str]], what: str) -> None:
    """Run the commands side by side (one per source: the build takes the longest compile, not their sum)."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in commands]
    outputs = [p.communicate()[0] for p in procs]
    for proc, output in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            tail = output.strip().splitlines()[-5:]
            raise RuntimeError(f"{what} failed: " + " | ".join(tail))


def library_path(sources: Sequence[Path] = SOURCES) -> Path:
    """Where the library built from `sources` (and the headers beside them) for this torch and these flags lives
    (it may not exist yet)."""
    key = hashlib.sha256()
    headers = sorted({h for src in sources for h in src.parent.glob("*.h")})
    for path in [*sources, *headers]:
        key.update(path.name.encode() + b"\0" + path.read_bytes())
    key.update(f"{torch.__version__}|{' '.join(FLAGS)}|{sys.platform}".encode())
    root = Path(os.environ.get("VITA_NATIVE_CACHE") or Path.home() / ".cache" / "vita" / "native")
    name = "vita_native" if tuple(sources) == SOURCES else sources[0].stem
    return root / f"{name}-{key.hexdigest()[:16]}.so"


def build(sources: Sequence[Path] = SOURCES) -> Path:
    """Compile `sources` into one cached library (no-op when already built); return the library path."""
    out = library_path(sources)
    if out.exists():
        return out
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (tried $CXX, c++, g++, clang++)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        staged = Path(tmp) / out.name
        objs = [Path(tmp) / f"{i}-{src.stem}.o" for i, src in enumerate(sources)]
        names = ", ".join(src.name for src in sources)
        _run([_compile_command(cxx, src, obj) for src, obj in zip(sources, objs, strict=True)], f"compiling {names}")
        _run([_link_command(cxx, objs, staged)], f"linking {out.name}")
        os.replace(staged, out)  # atomic: a concurrent builder or loader never sees a partial file
    return out


_loaded: bool | None = None  # None: undecided; False: unavailable here; True: the ops are registered
_fake_registered = False
_lock = threading.Lock()  # one resolution per process, even when model threads race to the first call


def resolved() -> bool:
    """True once the library has been looked for (whatever the outcome)."""
    return _loaded is not None


def available() -> bool:
    """Load the library if it can be used here (building it first when needed); False where it cannot."""
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = _load()
    return _loaded


def native_gemv() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The `vita_native::gemv_bf16` op (weight [N, K] bf16, x [K] bf16 -> [N] bf16), or None where unavailable.

    Call it eagerly (not while torch.compile traces) before the first compiled step: the first call may build.
    """
    return torch.ops.vita_native.gemv_bf16.default if available() else None


def native_decode_step() -> Callable[..., torch.Tensor] | None:
    """The `vita_native::decode_step` op (see `vita.generation.native_step`), or None where unavailable."""
    return torch.ops.vita_native.decode_step.default if available() else None


def native_decode_batch() -> Callable[..., torch.Tensor] | None:
    """The `vita_native::decode_batch` op (several sequences' decode steps at once: `NativeStep.batch`),
    or None where unavailable."""
    return torch.ops.vita_native.decode_batch.default if available() else None


def native_quant_gemv(bits: int) -> Callable[..., torch.Tensor] | None:
    """`vita_native::gemv_q8` (q, scale, x) for bits 8 or `gemv_q4` (q, scale, offset, x, group) for bits 4, or None
    where the library is unavailable (formats: `vita.nn.quant`)."""
    if not available():
        return None
    return torch.ops.vita_native.gemv_q8.default if bits == 8 else torch.ops.vita_native.gemv_q4.default


def native_decode_step_quant() -> Callable[..., torch.Tensor] | None:
    """The `vita_native::decode_step_quant` op (see `vita.generation.native_step`), or None where unavailable."""
    return torch.ops.vita_native.decode_step_quant.default if available() else None


def _load() -> bool:
    if os.environ.get("VITA_NATIVE_KERNELS", "1") == "0" or not cpu_has("avx2", "fma", "f16c"):
        return False
    try:
        torch.ops.load_library(str(build()))
    except (OSError, RuntimeError) as e:
        warnings.warn(f"vita: the native bf16 kernels are unavailable ({e}); bf16 decoding uses PyTorch's ops",
                      stacklevel=4)
        return False
    global _fake_registered
    if not _fake_registered:  # shapes for torch.compile's tracing; once per process
        torch.library.register_fake("vita_native::gemv_bf16")(_gemv_shape)
        torch.library.register_fake("vita_native::gemv_q8")(_quant_gemv_shape)
        torch.library.register_fake("vita_native::gemv_q4")(_quant_gemv_shape)
        _fake_registered = True
    return True


def _gemv_shape(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return weight.new_empty(weight.shape[0])


def _quant_gemv_shape(q: torch.Tensor, scale: torch.Tensor, *rest: torch.Tensor | int) -> torch.Tensor:
    x = rest[0] if len(rest) == 1 else rest[1]  # gemv_q8 (q, scale, x); gemv_q4 (q, scale, offset, x, group)
    assert isinstance(x, torch.Tensor)
    return x.new_empty(q.shape[0])


def main() -> int:
    """`python -m vita.nn.native`: build the kernels now (what `make setup` runs) and say where they are."""
    if not cpu_has("avx2", "fma", "f16c"):
        print("vita.nn.native: this CPU lacks AVX2/FMA/F16C; nothing to build (PyTorch's ops are used)")
        return 0
    try:
        path = build()
    except RuntimeError as e:
        print(f"vita.nn.native: not built ({e}); bf16 decoding will use PyTorch's ops", file=sys.stderr)
        return 0  # optional speed-up: never fail the set-up over it
    print(f"vita.nn.native: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
