"""Streaming Silero VAD: chunking invariance, noise rejection, one segment per utterance, pre-roll, lengths."""

from __future__ import annotations

import numpy as np
import pytest

from vita.speech.vad import (
    SAMPLE_RATE,
    WINDOW,
    SileroModel,
    SpeechDiscarded,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    StreamingVAD,
    VADConfig,
)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


def _noise(seconds: float, sigma: float = 0.05, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, sigma, int(seconds * SAMPLE_RATE)).astype(np.float32)


@pytest.fixture(scope="module")
def model() -> SileroModel:
    return SileroModel()


@pytest.fixture(scope="module")
def signal(speech) -> np.ndarray:
    return np.concatenate([_silence(1.0), speech, _silence(1.0), _noise(1.5), _silence(0.5)])


def _run(vad: StreamingVAD, x: np.ndarray, sizes: list[int]) -> list:
    vad.reset()
    events, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        events += vad.step(x[i : i + n])
        i, k = i + n, k + 1
    return events + vad.flush()


def _segments(events: list) -> list:
    """The segment events (no SpeechPaused / SpeechResumed inside a segment)."""
    return [e for e in events if not isinstance(e, SpeechPaused | SpeechResumed)]


def _same(a: list, b: list) -> None:
    assert [type(e) for e in a] == [type(e) for e in b]
    for x, y in zip(a, b, strict=True):
        assert x.t == y.t
        if isinstance(x, SpeechEnded):
            np.testing.assert_array_equal(x.audio, y.audio)


def test_chunked_equals_whole(model, signal):
    vad = StreamingVAD(model=model)
    whole = _run(vad, signal, [len(signal)])
    whole_probs = list(vad.probs)
    assert len(whole_probs) == len(signal) // WINDOW
    for sizes in ([1, 7, 100, 511, 513, 2000], [512], [160], [4096, 3]):
        chunked = _run(vad, signal, sizes)
        assert vad.probs == whole_probs  # exactly the same probabilities
        _same(chunked, whole)
    # and the same as the model fed window by window
    model.reset()
    direct = [float(model.step(signal[i : i + WINDOW])[0]) for i in range(0, len(signal) - WINDOW + 1, WINDOW)]
    assert direct == whole_probs


def test_speech_gives_one_segment_noise_none(model, signal, speech):
    vad = StreamingVAD(VADConfig(min_silence_ms=700), model=model)
    events = _segments(_run(vad, signal, [480]))
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    start, end = events
    assert 0.9 <= start.t <= 1.2 and end.t <= 1.0 + len(speech) / SAMPLE_RATE + 0.1
    assert end.duration >= 0.8 * len(speech) / SAMPLE_RATE
    # the noise burst after the speech never opens a segment
    noise_probs = vad.probs[-(2 * SAMPLE_RATE) // WINDOW :]
    assert max(noise_probs) < 0.5


def test_noise_only_no_segment(model):
    vad = StreamingVAD(model=model)
    x = np.concatenate([_noise(2.0, 0.05, 1), _noise(1.0, 0.2, 2), _silence(0.5)])
    assert _run(vad, x, [333]) == []


def test_pre_roll_keeps_audio_before_onset(model, speech):
    cfg = VADConfig(pre_roll_ms=200, end_pad_ms=0)
    x = np.concatenate([_silence(1.0), speech, _silence(1.0)])
    vad = StreamingVAD(cfg, model=model)
    events = _segments(_run(vad, x, [1024]))
    start, end = events[0], events[-1]
    first = int(round(start.t * SAMPLE_RATE))
    # the segment audio begins 200 ms (rounded to what was seen) before the first speech window
    pre = int(0.2 * SAMPLE_RATE)
    np.testing.assert_array_equal(end.audio[: pre + WINDOW], x[first - pre : first + WINDOW])


def test_short_segment_discarded(model, speech):
    cfg = VADConfig(min_utterance_ms=10_000)
    vad = StreamingVAD(cfg, model=model)
    events = _run(vad, np.concatenate([_silence(0.5), speech, _silence(1.0)]), [512])
    assert SpeechStarted in [type(e) for e in events] and SpeechEnded not in [type(e) for e in events]
    assert isinstance(events[-1], SpeechDiscarded)


def test_int16_input_matches_float(model, speech):
    x = np.concatenate([_silence(0.3), speech, _silence(0.8)])
    x16 = np.round(x * 32767).astype(np.int16)
    vad = StreamingVAD(model=model)
    a = _run(vad, x16.astype(np.float32) / 32768.0, [700])
    pa = list(vad.probs)
    b = _run(vad, x16, [700])
    assert vad.probs == pa
    _same(a, b)


def test_matches_silero_package_wrapper(model, signal):
    """Our onnxruntime loop gives the package's own OnnxWrapper probabilities (its import side effect undone)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    try:
        from silero_vad.utils_vad import OnnxWrapper  # importing silero_vad sets torch threads to 1
    finally:
        torch.set_num_threads(threads)
    from vita.speech.vad import bundled_model_path

    ref = OnnxWrapper(str(bundled_model_path()), force_onnx_cpu=True)
    x = signal[: 3 * SAMPLE_RATE]
    theirs = [ref(torch.from_numpy(x[i : i + WINDOW].copy()), SAMPLE_RATE).item() for i in range(0, len(x) - 511, 512)]
    model.reset()
    ours = model.step(x)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


@pytest.mark.slow
def test_no_global_thread_side_effect():
    """`import silero_vad` calls torch.set_num_threads(1); we load the model file without importing it."""
    import subprocess
    import sys

    code = (
        "import torch; torch.set_num_threads(2)\n"
        "from vita.speech.vad import StreamingVAD; StreamingVAD().step(__import__('numpy').zeros(4096, 'float32'))\n"
        "import sys; sys.exit(0 if torch.get_num_threads() == 2 and 'silero_vad' not in sys.modules else 1)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_pause_inside_a_segment_and_resume(model, speech):
    """A first short silence gives SpeechPaused with the audio SpeechEnded would give there; speech again before
    the end gives SpeechResumed; `end_now` closes the segment at once."""
    half = len(speech) // 2
    cut = half + int(np.argmin(np.abs(speech[half : half + 4000])))  # a quiet sample near the middle
    x = np.concatenate([_silence(0.5), speech[:cut], _silence(0.35), speech[cut:], _silence(1.0)])
    vad = StreamingVAD(VADConfig(min_silence_ms=500, pause_ms=160), model=model)
    events = _run(vad, x, [320])
    kinds = [type(e) for e in events]
    assert kinds[0] is SpeechStarted and kinds[-1] is SpeechEnded and kinds.count(SpeechEnded) == 1
    assert SpeechPaused in kinds and SpeechResumed in kinds
    assert kinds.index(SpeechPaused) < kinds.index(SpeechResumed)
    paused = next(e for e in events if isinstance(e, SpeechPaused))
    assert 0 < paused.speech_s < len(speech) / SAMPLE_RATE and len(paused.audio) < len(events[-1].audio)
    # a pause with nothing after it: SpeechPaused's audio is exactly the audio SpeechEnded gives
    vad = StreamingVAD(VADConfig(min_silence_ms=500, pause_ms=160), model=model)
    events = _run(vad, np.concatenate([_silence(0.5), speech, _silence(1.0)]), [320])
    last_pause = [e for e in events if isinstance(e, SpeechPaused)][-1]
    np.testing.assert_array_equal(last_pause.audio, events[-1].audio)
    # end_now: the turn-taker closes the segment during the pause
    vad.reset()
    out = []
    for i in range(0, len(x), 320):
        out += vad.step(x[i : i + 320])
        if any(isinstance(e, SpeechPaused) for e in out):
            assert vad.silence_ms >= 160 and vad.speech_s > 0
            out += vad.end_now()
            break
    assert isinstance(out[-1], SpeechEnded) and not vad.in_speech and vad.end_now() == []


def _emitted(vad: StreamingVAD, x: np.ndarray, hold_ms: float) -> list[tuple[float, object]]:
    """(seconds of input fed when each segment event came out, event); the first segment is held `hold_ms`."""
    out, ended = [], False
    for i in range(0, len(x), 320):
        if vad.in_speech and not ended:
            vad.hold(hold_ms)
        for e in vad.step(x[i : i + 320]):
            ended = ended or isinstance(e, SpeechEnded)
            out.append(((i + 320) / SAMPLE_RATE, e))
    return [(t, e) for t, e in out if isinstance(e, SpeechEnded)]


def test_hold_keeps_the_segment_open_longer_once(model, speech):
    """`hold(ms)`: the open segment ends after that much silence instead of min_silence_ms, with the same audio; the
    next segment starts without it; a hold shorter than min_silence_ms changes nothing."""
    x = np.concatenate([_silence(0.5), speech, _silence(2.0), speech, _silence(1.0)])
    plain = _emitted(StreamingVAD(VADConfig(min_silence_ms=500), model=model), x, 0.0)
    held = _emitted(StreamingVAD(VADConfig(min_silence_ms=500), model=model), x, 1500.0)
    short = _emitted(StreamingVAD(VADConfig(min_silence_ms=500), model=model), x, 200.0)
    assert len(plain) == len(held) == len(short) == 2
    (t0, e0), (t1, e1) = plain
    (h0, f0), (h1, f1) = held
    assert 0.95 <= h0 - t0 <= 1.05  # 1.5 s of silence instead of 0.5 s
    assert f0.t == e0.t and np.array_equal(f0.audio, e0.audio)  # the same segment
    assert h1 == t1 and f1.t == e1.t  # the next segment ends as it would have
    assert [t for t, _ in short] == [t0, t1]
