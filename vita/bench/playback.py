"""A realtime client's speaker, for `vita bench serve`: where a reply's audio runs dry.

    player = Player()
    player.add(t, seconds)        # each audio delta as it arrives (t: arrival time, seconds: its duration)
    player.stall                  # silence heard inside the reply (s); a reply stalled when it is over STALL_S
    player.dry_after              # seconds of its audio played before it first ran dry (None: never)
"""

from __future__ import annotations

STALL_S = 0.04  # a reply whose audio runs dry for longer than this (in all) stalled (as `vita bench duplex`)


class Player:
    """One reply's speaker: starts at the first audio delta, plays what it got, pauses when it runs dry. The server
    sends audio paced by the clock with `SessionConfig.lead_s` ahead, so a delta that arrives within that lead never
    stalls it."""

    def __init__(self) -> None:
        self.end: float | None = None  # when what was received runs out
        self.stall = 0.0
        self.received = 0.0  # seconds of audio received
        self.dry_after: float | None = None  # seconds of audio it had played when it first ran dry

    def add(self, t: float, seconds: float) -> None:
        start = t if self.end is None else max(self.end, t)
        if self.end is not None:
            if start > self.end and self.dry_after is None:
                self.dry_after = self.received
            self.stall += start - self.end
        self.end = start + seconds
        self.received += seconds
