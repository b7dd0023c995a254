"""Replies that loop: a short block of ids said again and again ("put put put ...", "memory's memory's ...").

`TokenLoop(loop_window=N)` ends a reply once `repeats_block(ids, N)` holds; `TextStream(loop_window=N)` then cuts the
finished reply back to the first block of that run (`loop_kept`), so the text a caller keeps (the reply, the chat
history, a transcript scored by WER) says the block once. While the reply streams, `run_kept` holds back what follows
the first block of a run of two or more blocks at the end of the ids: released when the run breaks ("very very good"),
never shown when it becomes a loop, so what is streamed out (and spoken) says the block once too.
"""

from __future__ import annotations

from collections.abc import Sequence


def _period(tail: Sequence[int]) -> int | None:
    """The smallest p <= len(tail) // 3 with tail[i] == tail[i - p] for every i, or None."""
    n = len(tail)
    return next((p for p in range(1, n // 3 + 1) if all(tail[i] == tail[i - p] for i in range(p, n))), None)


def repeats_block(ids: Sequence[int], window: int) -> bool:
    """Whether the last `window` of `ids` are one block of at most `window // 3` ids said again and again (the block
    may be cut short at either end: period p means ids[-k] == ids[-k - p] for every k the window holds)."""
    if len(ids) < window or window < 3:
        return False
    return _period(ids[-window:]) is not None


def loop_kept(ids: Sequence[int], window: int) -> int:
    """How many of `ids` to keep: all of them, unless their last `window` repeat a block (`repeats_block`); then up to
    the end of the first block of the run (the run traced back as far as the period holds)."""
    p = _period(ids[-window:]) if len(ids) >= window >= 3 else None
    return len(ids) if p is None else _first_block_end(ids, len(ids) - window, p)


def run_kept(ids: Sequence[int], window: int) -> int:
    """How many of `ids` may be shown while more may follow: all of them, unless they end in two or more repeats of a
    block of at most `window // 3` ids (the smallest such block); then up to the end of that run's first block."""
    if window < 3:
        return len(ids)
    n = len(ids)
    p = next((p for p in range(1, min(window // 3, n // 2) + 1)
              if all(ids[n - k] == ids[n - k - p] for k in range(1, p + 1))), None)
    return n if p is None else _first_block_end(ids, n - 2 * p, p)


def _first_block_end(ids: Sequence[int], start: int, p: int) -> int:
    """The end of the first block of the period-`p` run that holds from `start` to the end of `ids`, the run traced
    back as far as the period holds."""
    while start > 0 and ids[start - 1] == ids[start - 1 + p]:
        start -= 1
    return start + p
