"""What a helper beside the vision tower said about a picture, remembered: the prompt text of the last pictures seen
(a conversation's earlier pictures are not looked at again at every turn; a training epoch's repeats hit too).

    memo = PictureMemo(keep=256)
    memo.get(picture, config, compute)  -> compute(picture) once per (config, pixels), then the kept text
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from PIL import Image

__all__ = ["PictureMemo"]


class PictureMemo:
    """A thread-safe LRU of text keyed by (a frozen config, sha256 of the picture's pixels, size and mode)."""

    def __init__(self, keep: int = 256) -> None:
        self.keep = keep
        self._items: OrderedDict[tuple[Hashable, bytes], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, picture: Image.Image, config: Hashable, compute: Callable[[Image.Image], str]) -> str:
        key = (config, hashlib.sha256(picture.tobytes() + repr((picture.size, picture.mode)).encode()).digest())
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        text = compute(picture)  # outside the lock: two threads may compute one picture, never block each other
        with self._lock:
            self._items[key] = text
            while len(self._items) > self.keep:
                self._items.popitem(last=False)
        return text

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
