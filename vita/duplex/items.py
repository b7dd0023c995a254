"""Conversation items waiting for the next user turn (`Attach` adds one, `Detach` takes it back), and a turn's
pieces joined into one utterance with the items they carry.

Items (`Attach`: text and images, e.g. a picked picture) wait for the next user turn, typed or spoken: the utterance
committed next (VAD end or `Commit`; UserSpeechEnded.items names them) or the next TextIn / Ask takes them all,
once; a turn speculated on without them is discarded when one comes (the session redoes it at the next pause or at
the end of speech). Like a typed turn's images, their images stay out of the history.

    PendingItems  the items in order: `attach` / `detach`; `ids` and `parts()`, what the next turn starts with;
                  `take(ids)` once a committed turn used them, `clear()` once a typed turn took them all
    joined        two pieces of one user turn heard as one utterance: audio after audio, and the items of the first
                  piece when it was committed (a speculated piece's items are still pending: the second has them)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from vita.config import SAMPLE_RATE
from vita.duplex.turn_taking import Utterance
from vita.processor import Audio, Part


class PendingItems:
    def __init__(self) -> None:
        self._items: list[tuple[str, tuple[Part, ...]]] = []  # (item id, its parts), in the order attached

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids of the items waiting, in order."""
        return tuple(i for i, _ in self._items)

    def parts(self) -> list[Part]:
        """Every waiting item's parts, in order: what the next user turn starts with."""
        return [p for _, parts in self._items for p in parts]

    def attach(self, item_id: str, parts: Iterable[Part]) -> None:
        self._items.append((item_id, tuple(parts)))

    def detach(self, item_id: str) -> None:
        """Take a waiting item back (an id that is not waiting: nothing happens)."""
        self._items = [(i, p) for i, p in self._items if i != item_id]

    def take(self, ids: Iterable[str]) -> None:
        """A committed turn has used the items `ids`: they no longer wait."""
        used = set(ids)
        self._items = [(i, p) for i, p in self._items if i not in used]

    def clear(self) -> None:
        self._items.clear()


def joined(prev: Utterance, utt: Utterance, *, committed: bool) -> Utterance:
    """`utt` heard after `prev` (still undecided, now cancelled) as one utterance: the audio of both, and the items
    `prev` took when it was `committed` (uncommitted, its items are still pending and `utt` holds them again)."""
    carried = prev.attached if committed else []
    audio = utt.audio
    if prev.audio is not None and utt.audio is not None:
        audio = np.concatenate([prev.audio, utt.audio])
    if not carried and audio is utt.audio:
        return utt
    rest = [p for p in utt.parts if not isinstance(p, Audio)]
    parts = carried + rest + ([Audio(audio, SAMPLE_RATE)] if audio is not None else [])
    return replace(utt, parts=parts, audio=audio, attached=carried + utt.attached,
                   items=(prev.items if committed else ()) + utt.items)
