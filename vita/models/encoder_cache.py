"""Memo of frozen encoder outputs, keyed by the bytes of their inputs.

A frozen encoder (no parameter requires a gradient), or any encoder run without autograd (inference), is a pure
function of its input tensor, so its output can be reused whenever the same tile or clip comes back: every epoch of a
training stage whose towers are frozen, and every turn of a conversation that keeps its image or, in its history,
the user's earlier spoken turns (`vita.api.Vita` gives every loaded model one). `VitaModel` asks the cache it is given
(`model.encoder_cache = ...`) before running an encoder; the cache stores exact copies (same dtype, on the CPU), so a
hit returns the very tensor the encoder would have computed on this machine, and results are bit-identical with or
without it. A model whose weights change afterwards must `clear()` it.

    key   (encoder name, dtype, shape, sha1 of the input bytes, extra)   e.g. ("vision", float32, (1, 3, 112, 112), ...)
    value tuple of output tensors, cloned to the CPU
Least recently used entries are dropped beyond `max_bytes`.

With `disk=DIR`, the results of the encoders named in `persist` (default: the audio encoder and Whisper's
transcripts, the costly ones: 35 % of a vita-mini stage-3 step was Whisper's decoder, measured 2026-12-06) are also
kept as safetensors files under DIR, keyed by the key above plus a sha1 of the weights (and buffers) of the module
and of the modules it `depends` on, and what decides the last bits (device, autocast, threads, torch version, the
CPU's kernels), so later runs on the same data and frozen weights read them instead of running
the encoder again: exact copies, so a run is bit-identical whether it computed or read them. Files are written
atomically (a temporary file, then a rename); one that cannot be read is computed again and rewritten.

    DIR/NAME/ab/abcdef....safetensors      tensors "0", "1", ... of the result tuple
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

__all__ = ["EncoderCache"]


def _digest(t: torch.Tensor) -> str:
    data = t.detach().contiguous().cpu()
    if data.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the raw 16-bit words
        data = data.view(torch.int16)
    return hashlib.sha1(data.numpy().tobytes()).hexdigest()


def _key(name: str, x: torch.Tensor, extra: tuple) -> tuple:
    return name, x.dtype, tuple(x.shape), _digest(x), extra


def is_frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())


def _numerics(modules: tuple[nn.Module, ...]) -> tuple:
    """What else decides the last bits of an encoder's output: where it runs, autocast, the threads, the kernels."""
    device = next((p.device.type for m in modules for p in m.parameters()), "cpu")
    return (device, torch.is_autocast_enabled(device), str(torch.get_autocast_dtype(device)), torch.get_num_threads(),
            torch.__version__, torch.backends.cpu.get_cpu_capability())


def weights_digest(module: nn.Module) -> str:
    """sha1 over a module's parameters and buffers (names, dtypes, shapes, bytes)."""
    h = hashlib.sha1()
    for name, t in sorted(module.state_dict(keep_vars=False).items()):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(bytes.fromhex(_digest(t)))
    return h.hexdigest()


class EncoderCache:
    """LRU memo of frozen encoders' outputs; `hits` / `misses` count lookups (for logs and tests)."""

    def __init__(self, max_bytes: int = 4 << 30, *, disk: str | Path | None = None,
                 persist: Iterable[str] = ("audio", "transcript")) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self.disk = Path(disk) if disk is not None else None
        self.persist = frozenset(persist)
        self.disk_hits = self.disk_writes = 0
        self._store: OrderedDict[tuple, tuple[torch.Tensor, ...]] = OrderedDict()
        self._weights: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()  # lookups and stores only: the encoders run outside it

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        """Forget what is in memory (and the weights' digests: call it after weights change); files stay."""
        with self._lock:
            self._store.clear()
            self._weights.clear()
            self.bytes = 0

    def _file(self, key: tuple, modules: tuple[nn.Module, ...]) -> Path:
        prints = []
        for m in modules:
            with self._lock:
                known = self._weights.get(m)
            if known is None:
                known = weights_digest(m)
                with self._lock:
                    self._weights[m] = known
            prints.append(known)
        name = key[0]
        digest = hashlib.sha1(repr((key, prints, _numerics(modules))).encode()).hexdigest()
        return self.disk / name / digest[:2] / f"{digest}.safetensors"

    @staticmethod
    def _read(path: Path) -> tuple[torch.Tensor, ...] | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            data = load_file(str(path))
            return tuple(data[str(i)] for i in range(len(data)))
        except (OSError, KeyError, ValueError, RuntimeError, SafetensorError):  # gone or damaged: compute it again
            return None

    def _write(self, path: Path, stored: tuple[torch.Tensor, ...]) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        save_file({str(i): t.contiguous() for i, t in enumerate(stored)}, str(tmp))
        os.replace(tmp, path)
        self.disk_writes += 1

    def peek(self, name: str, x: torch.Tensor, extra: tuple = ()) -> tuple[torch.Tensor, ...] | None:
        """The stored result for `x` (as `run` would return it), or None; never runs anything, counts nothing."""
        with self._lock:
            hit = self._store.get(_key(name, x, extra))
        return None if hit is None else tuple(t.to(x.device) for t in hit)

    def run(self, name: str, module: nn.Module, fn: Callable[[], tuple[torch.Tensor, ...]], x: torch.Tensor,
            extra: tuple = (), *, depends: tuple[nn.Module, ...] = (),
            persist: bool = True) -> tuple[torch.Tensor, ...]:
        """`fn()` (which runs `module` on `x`), or the stored result of an earlier call with equal `x` and `extra`.

        Memoised: a frozen `module`, or any module while autograd is off, on an input that needs no gradient; anything
        else runs `fn` every time. On disk too (`disk`) when `name` is in `persist` and `persist` is True: keyed also
        by the weights of `module` and of the other modules the result `depends` on (`extra` must name whatever
        else it depends on).
        """
        if x.requires_grad or (torch.is_grad_enabled() and not is_frozen(module)):
            return fn()
        key = _key(name, x, extra)
        device = x.device
        with self._lock:
            hit = self._store.get(key)
            if hit is not None:
                self.hits += 1
                self._store.move_to_end(key)
            else:
                self.misses += 1
        if hit is not None:
            return tuple(t.to(device) for t in hit)
        path = None
        if self.disk is not None and persist and name in self.persist:
            path = self._file(key, (module, *depends))
            stored = self._read(path) if path.is_file() else None
            if stored is not None:
                self.disk_hits += 1
                self._remember(key, stored)
                return tuple(t.to(device) for t in stored)
        out = fn()
        stored = tuple(t.detach().to("cpu", copy=True) for t in out)
        if path is not None:
            self._write(path, stored)
        self._remember(key, stored)
        return out

    def _remember(self, key: tuple, stored: tuple[torch.Tensor, ...]) -> None:
        size = sum(t.numel() * t.element_size() for t in stored)
        with self._lock:
            if size <= self.max_bytes and key not in self._store:
                self._store[key] = stored
                self.bytes += size
                while self.bytes > self.max_bytes:
                    _, old = self._store.popitem(last=False)
                    self.bytes -= sum(t.numel() * t.element_size() for t in old)
