"""Streaming Piper TTS: phrase cutting (the first phrase early), token-by-token == whole, joins, the synthesis thread
and its cancel, markup never spoken, rates."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vita.media.audio import resample
from vita.speech.tts import (
    JoinConfig,
    PiperSynth,
    SpeechWorker,
    StreamingTTS,
    join_trim,
    speakable,
    split_clauses,
    split_phrases,
)

LONG_ANSWER = ("<1> The weather today is sunny and warm, with a light breeze from the west. Later it gets cloudy, "
               "and in the evening there may be a little rain.")
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


def test_phrases_first_one_early():
    assert split_phrases(TEXT) == ["<1> Sure,", " I can help with that.", " The forecast says 3.5 degrees;",
                                   " bring a coat!", " Anything else?", "\nBye"]
    long = "<1> The weather today is sunny and warm, with a light breeze. Later it gets cloudy"
    assert split_phrases(long) == ["<1> The weather", " today is sunny and warm,", " with a light breeze.",
                                   " Later it gets cloudy"]
    # no punctuation for a long while: cut after max_words words, at a word boundary
    assert split_phrases("one two three four five six seven eight", max_words=2) == [
        "one two", " three four", " five six", " seven eight"]
    assert split_phrases("<1> **Hi** there you", first_words=2) == ["<1> **Hi** there", " you"]  # markup is no word


@pytest.mark.parametrize("sizes", [(1,), (1, 3, 2, 5), (7, 1)])
def test_token_by_token_equals_whole(synth, sizes):
    """Where phrases are cut depends only on the text: any deltas give the same chunks, sample for sample; each
    chunk is the synthesizer's rendering of its phrase, trimmed for the join."""
    whole = StreamingTTS(synth)
    ref = whole.step(TEXT) + whole.flush()
    tts = StreamingTTS(synth)
    chunks = []
    for d in _deltas(TEXT, sizes):
        chunks += tts.step(d)
    chunks += tts.flush()
    assert [c.text for c in chunks] == [c.text for c in ref] == split_phrases(TEXT)
    assert "".join(c.text for c in chunks) == TEXT
    for c, r in zip(chunks, ref, strict=True):
        assert c.sample_rate == 16000 and c.pcm.dtype == np.float32
        np.testing.assert_array_equal(c.pcm, r.pcm)  # deterministic: noise_scale 0
    last = len(chunks) - 1
    for i, c in enumerate(chunks):
        tail = "end" if i == last else "sentence" if c.text.rstrip()[-1] in ".!?" else "comma"
        np.testing.assert_array_equal(c.pcm, join_trim(synth(c.spoken), 16000, tail, JoinConfig()))


def test_streamed_speech_matches_one_rendering_within_the_joins(synth):
    """Phrase by phrase vs the whole answer in one Piper call: the same length within the join pauses and the same
    level (fixed volume, no per-phrase normalization); no click at a join (edges ramp from silence)."""
    text = LONG_ANSWER
    tts = StreamingTTS(synth)
    chunks = tts.step(text) + tts.flush()
    streamed = np.concatenate([c.pcm for c in chunks])
    one = synth(speakable(text))
    assert len(chunks) >= 4 and abs(len(streamed) - len(one)) / len(one) < 0.08

    def level(x):
        return 20 * np.log10(np.sqrt(np.mean(x[np.abs(x) > 0.004] ** 2)))

    assert abs(level(streamed) - level(one)) < 1.0
    for c in chunks[:-1]:
        assert abs(c.pcm[-1]) < 0.02 and abs(c.pcm[0]) < 0.02  # ramped edges: no step at the join
    first = chunks[0]
    assert first.text == "<1> The weather" and len(first.pcm) / 16000 < 1.0


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
    tts = StreamingTTS(rec, min_chars=12, first_min_chars=12, first_words=100)
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


def test_worker_renders_off_the_caller_thread_in_order(synth):
    threads: list[str] = []

    def voice(text: str) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return synth(text)

    worker = SpeechWorker(voice)
    try:
        for d in _deltas(TEXT, (2,)):
            worker.push(d)
        worker.end_of_text()
        chunks = worker.flush()
    finally:
        worker.close()
    inline = StreamingTTS(synth)
    ref = inline.step(TEXT) + inline.flush()
    assert [c.text for c in chunks] == [c.text for c in ref]
    for c, r in zip(chunks, ref, strict=True):
        np.testing.assert_array_equal(c.pcm, r.pcm)
    assert set(threads) == {"vita-tts"}


def test_worker_calls_on_ready_for_each_chunk_on_its_thread():
    called: list[str] = []
    worker = SpeechWorker(lambda text: np.full(160, 0.1, np.float32),
                          on_ready=lambda: called.append(threading.current_thread().name))
    try:
        worker.push("First clause here. Second clause here. ")
        worker.end_of_text()
        chunks = worker.flush()
    finally:
        worker.close()
    assert len(chunks) == 2 and called == ["vita-tts", "vita-tts"]


def test_worker_cancel_mid_phrase_hands_out_nothing_of_it():
    """A cancel while a phrase is being rendered: that rendering, and everything queued, never comes out."""
    started, release = threading.Event(), threading.Event()

    def slow(text: str) -> np.ndarray:
        started.set()
        release.wait(5)
        return np.full(160, 0.1, np.float32)

    worker = SpeechWorker(slow)
    try:
        worker.push("Sure, I can help with that. And more text follows here. ")
        assert started.wait(5)
        worker.cancel()
        release.set()
        worker.wait(0.5)
        assert worker.synthesize_next() is None and not worker.pending
        release.clear()
        worker.push("Okay then, ")
        release.set()
        assert worker.wait(5) and worker.synthesize_next().text == "Okay then,"
    finally:
        worker.close()


def test_piper_rendering_stops_between_sentences(synth):
    calls = []
    pcm = synth("One. Two. Three. Four.", cancelled=lambda: calls.append(1) or len(calls) >= 2)
    assert len(pcm) == 0 and len(calls) == 2


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
