"""Mic front end: the reference gate (and AEC3 when installed) keep our own playback out of the VAD."""

from __future__ import annotations

import numpy as np
import pytest

from vita.speech.echo import FRAME, GateConfig, MicFrontEnd, aec_available, level_db

RATE = 16000


def _feed(front: MicFrontEnd, mic: np.ndarray, ref: np.ndarray | None, chunk: int, delay: int = 0) -> np.ndarray:
    """Play `ref` and record `mic` in lockstep, `chunk` samples at a time (ref written as the mic advances)."""
    out = []
    for i in range(0, len(mic), chunk):
        if ref is not None:
            front.play(ref[i : i + chunk])
        out.append(front.step(mic[i : i + chunk]))
    return np.concatenate(out)


@pytest.fixture(scope="module")
def far(speech) -> np.ndarray:
    return np.concatenate([speech, speech])  # ~6 s of our voice


def _echo(far: np.ndarray, gain: float, delay: int) -> np.ndarray:
    return np.concatenate([np.zeros(delay, np.float32), gain * far[: len(far) - delay]]).astype(np.float32)


def test_no_playback_passes_mic_unchanged(speech):
    front = MicFrontEnd(GateConfig(aec=False))
    out = _feed(front, speech, None, 333)
    np.testing.assert_array_equal(out, speech[: len(out)])
    assert len(speech) - len(out) < FRAME and front.gated_frames == 0


@pytest.mark.parametrize("aec", [False, True])
def test_echo_is_gated(far, aec):
    if aec and not aec_available():
        pytest.skip("pywebrtc-audio not installed")
    mic = _echo(far, 0.5, 640) + np.random.default_rng(0).normal(0, 3e-4, len(far)).astype(np.float32)
    front = MicFrontEnd(GateConfig(aec=aec))
    out = _feed(front, mic, far, 320)
    loud = [level_db(out[i : i + FRAME]) for i in range(0, len(out), FRAME)]
    assert max(loud) < -45  # nothing the VAD could take for speech (raw echo peaks near -14 dBFS)
    assert front.gated_frames > 0.5 * len(loud)


def test_loud_user_passes_without_aec(far, speech):
    """Without AEC a barge-in must beat the echo: a user 12 dB above the playback level gets through."""
    front = MicFrontEnd(GateConfig(aec=False))
    user = np.zeros_like(far)
    user[RATE : RATE + len(speech)] = 4.0 * speech
    out = _feed(front, _echo(far, 0.5, 640) + user, far, 320)
    active = [i for i in range(0, len(speech) - FRAME, FRAME) if level_db(speech[i : i + FRAME]) > -35]
    passed = [i for i in active if np.any(out[RATE + i : RATE + i + FRAME] != 0)]
    assert len(passed) > 0.5 * len(active)


def test_chunk_size_does_not_matter(far):
    mic = _echo(far, 0.5, 640)[: 3 * RATE]
    ref = far[: 3 * RATE]
    a = _feed(MicFrontEnd(GateConfig(aec=False)), mic, ref, 160)
    b = _feed(MicFrontEnd(GateConfig(aec=False)), mic, ref, 160 * 7)
    n = min(len(a), len(b))
    np.testing.assert_array_equal(a[:n], b[:n])
