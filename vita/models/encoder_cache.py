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
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

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


class EncoderCache:
    """LRU memo of frozen encoders' outputs; `hits` / `misses` count lookups (for logs and tests)."""

    def __init__(self, max_bytes: int = 4 << 30) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._store: OrderedDict[tuple, tuple[torch.Tensor, ...]] = OrderedDict()
        self._lock = threading.Lock()  # lookups and stores only: the encoders run outside it

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        with self._lock:
            self._store.clear()
            self.bytes = 0

    def peek(self, name: str, x: torch.Tensor, extra: tuple = ()) -> tuple[torch.Tensor, ...] | None:
        """The stored result for `x` (as `run` would return it), or None; never runs anything, counts nothing."""
        with self._lock:
            hit = self._store.get(_key(name, x, extra))
        return None if hit is None else tuple(t.to(x.device) for t in hit)

    def run(self, name: str, module: nn.Module, fn: Callable[[], tuple[torch.Tensor, ...]], x: torch.Tensor,
            extra: tuple = ()) -> tuple[torch.Tensor, ...]:
        """`fn()` (which runs `module` on `x`), or the stored result of an earlier call with equal `x` and `extra`.

        Memoised: a frozen `module`, or any module while autograd is off, on an input that needs no gradient; anything
        else runs `fn` every time.
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
        out = fn()
        stored = tuple(t.detach().to("cpu", copy=True) for t in out)
        size = sum(t.numel() * t.element_size() for t in stored)
        with self._lock:
            if size <= self.max_bytes and key not in self._store:
                self._store[key] = stored
                self.bytes += size
                while self.bytes > self.max_bytes:
                    _, old = self._store.popitem(last=False)
                    self.bytes -= sum(t.numel() * t.element_size() for t in old)
        return out
