"""Playout: clock-paced release, pause/resume without loss, played samples -> heard text."""

from __future__ import annotations

import numpy as np

from vita.duplex.playout import Playout
from vita.speech.tts import SpeechChunk


def _chunk(text: str, n: int) -> SpeechChunk:
    return SpeechChunk(np.arange(n, dtype=np.float32), text, text.strip(), 1000)


def test_paced_release_and_pause():
    p = Playout(1000, max_burst_s=None)
    p.add(_chunk("Hello there,", 1000))
    p.add(_chunk(" how are you?", 1000))
    assert len(p.release(0.0)) == 0
    assert len(p.release(0.25)) == 250
    p.pause(0.5)  # what was not released yet was not played: it waits
    assert len(p.release(0.5)) == 0
    assert len(p.release(3.0)) == 0  # paused: nothing, and no credit piles up
    p.resume(3.0)
    got = p.release(3.1)
    assert len(got) == 100 and got[0] == 250  # continues exactly where it stopped
    assert len(p.release(10.0)) == 1650 and p.buffered == 0
    assert p.heard_text() == "Hello there, how are you?"


def test_underrun_saves_no_credit():
    p = Playout(1000)
    p.add(_chunk("a b", 100))
    assert len(p.release(1.0)) == 100
    p.add(_chunk(" c d", 100))
    assert len(p.release(1.01)) == 10  # not the 900 samples "owed" while the queue was empty


def test_heard_text_cuts_at_words():
    p = Playout(1000, max_burst_s=None)
    p.add(_chunk("The weather is sunny,", 2100))  # 100 samples per character
    p.add(_chunk(" and warm.", 1000))
    p.release(0.0)
    assert p.heard_text() == ""
    p.release(0.55)  # 5.5 characters: "The we" -> the cut word is dropped
    assert p.heard_text() == "The "
    p.release(1.25)  # 12.5 characters: "The weather " ends at a space
    assert p.heard_text() == "The weather "
    p.release(2.3)
    assert p.heard_text() == "The weather is sunny, "


def test_a_stall_releases_at_most_a_burst():
    p = Playout(1000, max_burst_s=0.1)
    p.add(_chunk("a long clause", 5000))
    p.release(0.0)
    assert len(p.release(0.02)) == 20
    assert len(p.release(0.5)) == 100  # a 480 ms stall: the speaker missed it, only a burst goes out
    assert len(p.release(0.52)) == 20


def test_lead_is_given_once():
    p = Playout(1000, lead_s=0.1)
    p.add(_chunk("x", 1000))
    assert len(p.release(0.0)) == 100
    assert len(p.release(0.05)) == 50


def test_min_chunk_hands_out_larger_pieces_and_never_holds_the_first_or_the_tail():
    p = Playout(1000, lead_s=0.1, min_chunk_s=0.06)
    p.add(_chunk("a clause", 300))
    assert len(p.release(0.0)) == 100  # the first samples (the lead) go at once
    assert len(p.release(0.02)) == 0 and len(p.release(0.05)) == 0  # 20, then 50 samples due: held
    got = p.release(0.07)
    assert len(got) == 70 and got[0] == 100  # nothing lost or skipped: the held credit comes out in one piece
    assert len(p.release(0.16)) == 90
    assert len(p.release(0.19)) == 0  # 30 due of the 40 left: held
    assert len(p.release(0.2)) == 40 and p.buffered == 0  # the whole tail is due: it goes although under a chunk
