"""Shared speech fixtures: one Piper voice and one synthesized utterance per test session (16 kHz)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("piper")
pytest.importorskip("onnxruntime")
if importlib.util.find_spec("silero_vad") is None:  # not imported: its import sets torch threads to 1
    pytest.skip("silero-vad not installed", allow_module_level=True)

UTTERANCE = "Hello, I am your assistant. How can I help you today?"


@pytest.fixture(scope="session")
def synth():
    from vita.speech.tts import PiperSynth

    return PiperSynth(out_rate=16000)


@pytest.fixture(scope="session")
def speech(synth, tmp_path_factory) -> np.ndarray:
    """[N] float32 16 kHz: the utterance at half scale, cached as a wav in the session's tmp dir."""
    import soundfile as sf

    pcm = 0.5 * synth(UTTERANCE)
    sf.write(tmp_path_factory.mktemp("speech") / "hello16k.wav", pcm, 16000)
    return pcm.astype(np.float32)
