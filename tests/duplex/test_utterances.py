"""What a user turn holds (`vita.duplex.utterances`): pending items, the latest camera frame, audio, ids."""

from __future__ import annotations

import numpy as np

from vita.config import SAMPLE_RATE
from vita.duplex.events import FakeClock
from vita.duplex.utterances import PAUSE_GAP_S, Utterances, continued
from vita.processor import Audio, Image


def test_a_typed_turn_takes_every_pending_item_once():
    clock = FakeClock()
    turns = Utterances(clock, camera_window_s=1.0)
    assert turns.typed([]) is None  # nothing pending, nothing given: nothing to ask
    turns.items.attach("pic", ["a picture"])
    clock.advance(2.0)
    utt = turns.typed(["what is it?"])
    assert utt is not None and utt.parts == ["a picture", "what is it?"] and utt.audio is None
    assert (utt.id, utt.t_end, utt.items, utt.attached) == (1, 2.0, ("pic",), ["a picture"])
    assert turns.items.ids == ()
    assert turns.typed(["again"]).id == 2


def test_a_spoken_turn_holds_items_frame_and_audio_in_order():
    clock = FakeClock()
    turns = Utterances(clock, camera_window_s=1.0)
    old, new = np.zeros((2, 2, 3), np.uint8), np.ones((2, 2, 3), np.uint8)
    turns.see(old, t=0.0)
    clock.advance(1.5)
    assert turns.latest_frame() is None  # older than camera_window_s
    turns.see(new)  # taken now
    turns.items.attach("note", ["a note"])
    audio = np.zeros(SAMPLE_RATE // 2, np.float32)
    utt = turns.spoken(audio)
    assert utt.parts[0] == "a note" and isinstance(utt.parts[1], Image) and isinstance(utt.parts[2], Audio)
    assert utt.frame is new and utt.items == ("note",) and utt.audio is audio
    assert turns.items.ids == ("note",)  # a spoken turn takes its items only once committed
    assert not turns.stale(utt)
    turns.items.attach("late", ["later"])
    assert turns.stale(utt)  # an item came after the snapshot
    question = turns.spoken(audio)
    after = turns.spoken(audio, after=question)
    assert after.attached == question.attached + ["a note", "later"]


def test_continued_audio_follows_the_question_after_a_gap():
    clock = FakeClock()
    question = Utterances(clock, camera_window_s=1.0).spoken(np.ones(100, np.float32))
    more = np.full(50, 2.0, np.float32)
    assert continued(more, None) is more
    joined = continued(more, question)
    gap = int(PAUSE_GAP_S * SAMPLE_RATE)
    assert len(joined) == 100 + gap + 50
    assert (joined[:100] == 1).all() and (joined[100:100 + gap] == 0).all() and (joined[-50:] == 2).all()
