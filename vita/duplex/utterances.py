"""The user's turns as they are made: what the next utterance holds, and its id.

A user turn takes, in order, the items waiting for it (`Attach`, `vita.duplex.items`), then what the user said: typed
parts, or the spoken audio with the latest camera frame before it (one newer than `camera_window_s`). A segment that
continues the question of the reply playing (the user had only paused, `turn_taking.is_pause`) is heard after that
question: its audio first (`continued`), and its items when the session builds the utterance while the reply is
still there (`after`).

    Utterances   `see` a camera frame; `typed` / `spoken` build the next utterance (ids 1, 2, ...; stamped with the
                 clock's time); `stale` says a turn speculated on lacks a frame or an item that came since; `items`
                 the pending items (a committed turn `take`s the ones it used)
    continued    the user's audio after the audio of the question it continues
"""

from __future__ import annotations

from collections import deque

import numpy as np

from vita.config import SAMPLE_RATE
from vita.duplex.events import Clock
from vita.duplex.items import PendingItems
from vita.duplex.turn_taking import Utterance
from vita.processor import Audio, Image, Part

PAUSE_GAP_S = 0.3  # silence put between a continued question's audio and the rest of the user's speech


class Utterances:
    def __init__(self, clock: Clock, *, camera_window_s: float) -> None:
        self.clock, self.camera_window_s = clock, camera_window_s
        self.items = PendingItems()  # the items (`Attach`) waiting for the next user turn
        self._frames: deque[tuple[float, np.ndarray]] = deque(maxlen=4)  # (clock time, image)
        self._last_id = 0

    def see(self, image: np.ndarray, t: float | None = None) -> None:
        """A camera frame taken at clock time `t` (None: now)."""
        self._frames.append((self.clock.now() if t is None else t, image))

    def latest_frame(self) -> np.ndarray | None:
        """The camera frame that joins an utterance ending now (None: none recent enough)."""
        if self._frames and self._frames[-1][0] >= self.clock.now() - self.camera_window_s:
            return self._frames[-1][1]
        return None

    def typed(self, given: list[Part]) -> Utterance | None:
        """A typed turn: the pending items, then `given`; it takes the items (None: nothing at all to ask)."""
        attached = self.items.parts()
        if not (attached or given):
            return None
        utt = self._new(attached + given, None, attached=attached, items=self.items.ids)
        self.items.clear()
        return utt

    def spoken(self, audio: np.ndarray, *, after: Utterance | None = None) -> Utterance:
        """An utterance of the user's `audio`, after the items of `after` (the question this segment continues), the
        pending items and the latest camera frame. It takes the items once committed (`items.take`)."""
        attached = (after.attached if after is not None else []) + self.items.parts()
        frame = self.latest_frame()
        parts = attached + ([Image(frame)] if frame is not None else []) + [Audio(audio, SAMPLE_RATE)]
        return self._new(parts, audio, attached=attached, items=self.items.ids, frame=frame)

    def stale(self, utt: Utterance) -> bool:
        """A camera frame or an item came after `utt` was built (a turn speculated on): it belongs to the turn."""
        return utt.frame is not self.latest_frame() or utt.items != self.items.ids

    def _new(self, parts: list[Part], audio: np.ndarray | None, *, attached: list[Part], items: tuple[str, ...],
             frame: np.ndarray | None = None) -> Utterance:
        self._last_id += 1
        return Utterance(self._last_id, parts, audio, self.clock.now(), attached, items, frame)


def continued(audio: np.ndarray, question: Utterance | None) -> np.ndarray:
    """The user's `audio`, after the audio of the `question` it continues (a pause; None or typed: `audio` alone)."""
    if question is None or question.audio is None:
        return audio
    return np.concatenate([question.audio, np.zeros(int(PAUSE_GAP_S * SAMPLE_RATE), np.float32), audio])
