"""Streaming Piper TTS: clause cutting, chunked == whole clause by clause, cancel, markup never spoken, rates."""

from __future__ import annotations

import numpy as np
import pytest

from vita.speech.tts import PiperSynth, StreamingTTS, resample, speakable, split_clauses

TEXT = "<1> Sure, I can help with that. The forecast says 3.5 degrees; bring a coat! Anything else?\nBye"


class Recorder:
    """A synthesizer stand-in that records what it is asked to say."""

    out_rate = 16000

    def __init__(self) -> None:
        self.said: list[str] = []

    def __call__(self, text: str) -> np.ndarray:
        self.said.append(text)
        return np.full(10 * len(text), 0.1, np.float32)


def _deltas(text: str, sizes=(1, 3, 2, 5)) -> list[str]:
    out, i, k = [], 0, 0
    while i < len(text):
        n = sizes[k % len(sizes)]
        out.append(text[i : i + n])
        i, k = i + n, k + 1
    return out


def test_clauses():
    assert split_clauses(TEXT) == [
        "<1> Sure, I can help with that.",
        " The forecast says 3.5 degrees;",
        " bring a coat!",
        " Anything else?",
        "\nBye",
    ]
    assert split_clauses("Hi, yes. No.", min_chars=2) == ["Hi,", " yes.", " No."]
    assert speakable("<1> **Hello** <unk> `x` </s>") == "Hello x"


def test_chunked_equals_whole_clause_by_clause(synth):
    tts = StreamingTTS(synth)
    chunks = []
    for d in _deltas(TEXT):
        chunks += tts.step(d)
    chunks += tts.flush()
    clauses = split_clauses(TEXT)
    assert [c.text for c in chunks] == clauses
    assert "".join(c.text for c in chunks) == TEXT
    for c, clause in zip(chunks, clauses, strict=True):
        whole = synth(speakable(clause))
        assert c.sample_rate == 16000 and c.pcm.dtype == np.float32
        np.testing.assert_allclose(c.pcm, whole, atol=1e-6)  # deterministic: noise_scale 0


def test_state_tokens_and_markup_never_reach_synth():
    rec = Recorder()
    tts = StreamingTTS(rec, min_chars=4)
    text = "<2><1> **Yes**, <3>that is <unk>right.</s> ☞ Done <audio> here."
    chunks = []
    for d in _deltas(text, (1,)):
        chunks += tts.step(d)
    chunks += tts.flush()
    assert "".join(c.text for c in chunks) == text  # texts add up (heard-text tracking relies on it)
    said = " ".join(rec.said)
    for bad in ("<1>", "<2>", "<3>", "<", ">", "*", "unk", "/s", "☞", "audio"):
        assert bad not in said
    assert said.replace(" ", "") == "Yes,thatisright.Donehere."


def test_markup_only_clause_gives_silent_chunk():
    rec = Recorder()
    tts = StreamingTTS(rec, min_chars=1)
    chunks = tts.step("<1>\n") + tts.step("Hello there. ") + tts.flush()  # markup alone is never cut off
    assert [(c.text, len(c.pcm)) for c in chunks] == [("<1>\nHello there.", 120), (" ", 0)]
    assert rec.said == ["Hello there."]


def test_tiny_fragments_wait():
    rec = Recorder()
    tts = StreamingTTS(rec, min_chars=12)
    assert tts.step("Ok. ") == [] and tts.step("Yes, ") == []
    assert [c.spoken for c in tts.step("that works. ")] == ["Ok. Yes, that works."]
    assert tts.step("3.") == [] and tts.step("5 ") == []  # "3." is not a boundary before the next character


def test_cancel_drops_pending_text_and_audio():
    rec = Recorder()
    tts = StreamingTTS(rec, min_chars=4)
    tts.push("First clause here. Second clause")
    assert tts.pending
    tts.cancel()
    assert not tts.pending and tts.flush() == [] and rec.said == []
    assert [c.spoken for c in tts.step("New answer. ")] == ["New answer."]  # usable after cancel


def test_rates(synth):
    a16 = synth("Hello there.")
    s24 = PiperSynth(out_rate=24000)
    a24 = s24("Hello there.")
    assert abs(len(a24) / 24000 - len(a16) / 16000) < 0.01
    raw = np.concatenate([c.audio_float_array for c in s24.voice.synthesize("Hello there.", s24.syn_config)])
    assert abs(len(a24) - len(raw) * 24000 / 22050) <= 2
    assert np.abs(a24).max() <= 1.0


def test_resample_shapes():
    x = np.sin(np.linspace(0, 100, 22050)).astype(np.float32)
    y = resample(x, 22050, 16000)
    assert abs(len(y) - 16000) <= 2 and y.dtype == np.float32
    assert resample(x, 16000, 16000) is not None and len(resample(x[:0], 22050, 16000)) == 0


@pytest.mark.parametrize("rate", [16000, 24000])
def test_streaming_sample_rate_reported(rate):
    rec = Recorder()
    rec.out_rate = rate
    assert StreamingTTS(rec).sample_rate == rate
