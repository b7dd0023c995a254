"""The reply's playback queue, paced by the clock, that knows which text has been heard.

Synthesized clauses (`SpeechChunk`: pcm + the text it says) are queued; `release(now)` hands out the samples a
speaker would have played since the last call (at most `max_burst_s` after a stall, plus an optional `lead_s` head
start for the transport's jitter buffer; after the first samples, pieces of at least `min_chunk_s` where set) and
nothing while paused. What was released counts as played.
`heard_text()` maps played samples back to text: whole clauses, plus the played fraction of the current clause cut
back to a word boundary.
Shapes: pcm [N] float32 at `rate`.
"""

from __future__ import annotations

import re
from collections import deque

import numpy as np

from vita.speech.tts import SpeechChunk


class Playout:
    def __init__(self, rate: int, *, lead_s: float = 0.0, max_burst_s: float | None = 0.1,
                 min_chunk_s: float = 0.0) -> None:
        self.rate = rate
        self.lead_s = lead_s
        # after a reply's first samples, nothing is handed out until this much is due (or the reply's end is): a
        # transport with a jitter buffer (`lead_s`) then sends a few larger messages instead of one per call
        self.min_chunk_s = min_chunk_s
        # after a stall (a long unit of work) the speaker did not play the time it missed: at most this much is
        # released at once, so the device queue (and the stop latency) cannot grow with every stall
        self.max_burst_s = max_burst_s
        self.reset(0.0)

    def reset(self, now: float) -> None:
        """Drop everything (a new reply, or a cancel)."""
        self._queue: deque[np.ndarray] = deque()  # unreleased pcm pieces
        self._clauses: list[tuple[str, int]] = []  # (text, samples) of every queued clause, in order
        self.queued = 0  # samples ever queued for this reply
        self.played = 0  # samples released
        self.paused = False
        self._credit = 0.0  # samples the speaker may still take
        self._last = now
        self._lead_given = False

    @property
    def buffered(self) -> int:
        """Samples queued but not yet released."""
        return self.queued - self.played

    @property
    def buffered_s(self) -> float:
        return self.buffered / self.rate

    def add(self, chunk: SpeechChunk) -> None:
        if chunk.sample_rate != self.rate:
            raise ValueError(f"chunk at {chunk.sample_rate} Hz, playout at {self.rate} Hz")
        self._clauses.append((chunk.text, len(chunk.pcm)))
        if len(chunk.pcm):
            self._queue.append(chunk.pcm)
            self.queued += len(chunk.pcm)

    def pause(self, now: float) -> None:
        self._advance(now)
        self.paused = True

    def resume(self, now: float) -> None:
        self._advance(now)
        self.paused = False
        self._credit = 0.0

    def _advance(self, now: float) -> None:
        if not self.paused:
            self._credit += (now - self._last) * self.rate
        self._last = now

    def release(self, now: float) -> np.ndarray:
        """The samples due by `now` (possibly none)."""
        self._advance(now)
        if self.paused or self.buffered == 0:
            self._credit = 0.0  # an underrun is silence: no credit is saved for later
            return np.zeros(0, np.float32)
        if self.max_burst_s is not None:
            self._credit = min(self._credit, self.max_burst_s * self.rate)
        first = not self._lead_given
        if first:
            self._credit += self.lead_s * self.rate
            self._lead_given = True
        n = min(int(self._credit), self.buffered)
        if not first and n < min(self.min_chunk_s * self.rate, self.buffered):
            return np.zeros(0, np.float32)  # the credit waits for a larger chunk
        out = []
        need = n
        while need > 0:
            head = self._queue[0]
            take = head[:need]
            out.append(take)
            need -= len(take)
            if len(take) == len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[len(take) :]
        self._credit -= n
        self.played += n
        if self.buffered == 0:
            self._credit = 0.0
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def heard_text(self) -> str:
        """Visible text of what was played: whole clauses, then the played share of the current one (whole words)."""
        left = self.played
        out = []
        for text, n in self._clauses:
            if n <= left:
                out.append(text)
                left -= n
                continue
            part = text[: int(len(text) * left / n)]
            if len(part) < len(text) and not text[len(part)].isspace():
                part = re.sub(r"\S+$", "", part)  # a word cut in the middle was not heard
            out.append(part)
            break
        return "".join(out)
