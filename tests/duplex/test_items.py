"""Pending conversation items (`Attach` / `Detach`) and a turn's pieces joined into one utterance."""

from __future__ import annotations

import numpy as np

from vita.config import SAMPLE_RATE
from vita.duplex.items import PendingItems, joined
from vita.duplex.turn_taking import Utterance
from vita.processor import Audio


def test_items_wait_in_order_until_a_turn_takes_them():
    items = PendingItems()
    items.attach("a", ["first"])
    items.attach("b", ("second", "third"))
    items.attach("c", [])
    assert items.ids == ("a", "b", "c") and items.parts() == ["first", "second", "third"]
    items.detach("b")
    items.detach("never-attached")
    assert items.ids == ("a", "c")
    items.attach("d", ["fourth"])
    items.take(("a", "c"))  # a committed spoken turn used the ones it snapshotted; "d" came later
    assert items.ids == ("d",) and items.parts() == ["fourth"]
    items.clear()
    assert items.ids == () and items.parts() == []


def _spoken(uid: int, seconds: float, attached: list, items: tuple[str, ...]) -> Utterance:
    audio = np.full(int(seconds * SAMPLE_RATE), uid, np.float32)
    return Utterance(uid, [*attached, Audio(audio, SAMPLE_RATE)], audio, 0.0, attached, items)


def test_joined_pieces_keep_a_committed_piece_s_items_once():
    prev, nxt = _spoken(1, 0.5, ["pic"], ("p",)), _spoken(2, 0.25, ["late"], ("l",))
    both = joined(prev, nxt, committed=True)
    assert both.attached == ["pic", "late"] and both.items == ("p", "l")
    assert np.array_equal(both.audio, np.concatenate([prev.audio, nxt.audio]))
    assert both.parts[:2] == ["pic", "late"] and isinstance(both.parts[2], Audio) and len(both.parts) == 3
    # a speculated piece took nothing: its items are still pending, and the next piece holds them again
    spec = joined(_spoken(1, 0.5, ["pic"], ("p",)), _spoken(2, 0.25, ["pic"], ("p",)), committed=False)
    assert spec.attached == ["pic"] and spec.items == ("p",) and len(spec.audio) == int(0.75 * SAMPLE_RATE)
    typed = Utterance(3, ["hello"], None, 0.0)
    assert joined(Utterance(2, ["hi"], None, 0.0), typed, committed=False) is typed  # nothing to join
