"""Duplex fixtures: tiny random weights, Piper speech synthesized once per session."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("piper")
pytest.importorskip("onnxruntime")

RATE = 16000


@pytest.fixture(scope="session")
def tiny():
    import vita

    return vita.load("tiny-random")


@pytest.fixture(scope="session")
def piper():
    from vita.speech.tts import PiperSynth

    return PiperSynth(out_rate=RATE)


@pytest.fixture(scope="session")
def voices(piper, tmp_path_factory) -> dict[str, np.ndarray]:
    """User utterances at half scale, [N] float32 16 kHz, written once to the session's tmp dir."""
    import soundfile as sf

    texts = {
        "question": "What is the weather like today?",
        "barge": "Tell me a joke instead.",
        "chatter": "Yes, I will call you back after lunch.",
    }
    out, folder = {}, tmp_path_factory.mktemp("voices")
    for name, text in texts.items():
        pcm = (0.5 * piper(text)).astype(np.float32)
        sf.write(folder / f"{name}.wav", pcm, RATE)
        out[name] = pcm
    return out


@pytest.fixture(scope="module")
def voice(piper):
    """Piper replies memoized per clause (`session_harness.Voice`), one memo per test module."""
    from tests.duplex.session_harness import Voice

    return Voice(piper)
