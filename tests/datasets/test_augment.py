"""Speech augmentation: plans are deterministic from the seed, noise lands at the asked SNR (measured), the
telephone band is 300-3400 Hz, the room decays as asked, speed and gain do what they say."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from vita.config import SAMPLE_RATE as RATE
from vita.datasets.augment import (
    NOISES,
    AugmentConfig,
    Plan,
    add_noise,
    apply,
    draw_plan,
    make_noise,
    room_impulse,
    snr_db,
    tag_ops,
    telephone,
)
from vita.datasets.mini.speech import Speaker
from vita.datasets.negatives import mix_at_snr


def _speech(seconds: float = 1.5, seed: int = 0, f0: float = 120.0) -> np.ndarray:
    """A speech-like test signal: harmonics of a pitch gliding up from f0 under a syllable-rate envelope."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = f0 + 80 * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    rng = np.random.default_rng(seed)
    x = sum(rng.uniform(0.2, 1) / k * np.sin(k * phase) for k in range(1, 20))
    return (0.3 * x / np.abs(x).max() * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def _pool() -> list[np.ndarray]:
    return [_speech(1.0 + 0.2 * k, seed=k + 1, f0=170.0 + 23 * k) for k in range(5)]


def test_plans_deterministic_from_the_seed() -> None:
    a = [draw_plan(np.random.default_rng([7, i])) for i in range(50)]
    b = [draw_plan(np.random.default_rng([7, i])) for i in range(50)]
    c = [draw_plan(np.random.default_rng([8, i])) for i in range(50)]
    assert a == b and a != c
    plan = next(p for p in a if p.noise and p.rt60)
    x = _speech()
    assert np.array_equal(apply(x, plan, _pool()), apply(x, plan, _pool()))
    other = Plan(**{**plan.__dict__, "seed": plan.seed + 1})
    assert not np.array_equal(apply(x, plan, _pool()), apply(x, other, _pool()))
    assert np.array_equal(apply(x, Plan(seed=3)), x)


def test_fraction_and_tags() -> None:
    plans = [draw_plan(np.random.default_rng([1, i]), AugmentConfig(p=0.4)) for i in range(2000)]
    share = sum(not p.clean for p in plans) / len(plans)
    assert 0.36 < share < 0.44
    assert all(p.tag == "" for p in plans if p.clean)
    assert all(tag_ops(p.tag) for p in plans if not p.clean)
    assert {op for p in plans for op in tag_ops(p.tag)} == {
        "speed", "reverb", "telephone", "gain", *(f"noise/{n}" for n in NOISES)}
    assert all(p.snr_db >= 10 for p in plans if p.noise == "babble")
    assert tag_ops(Plan(speed=1.1, noise="pink", snr_db=5.0, telephone=True, gain_db=3.0, seed=2).tag) == [
        "speed", "noise/pink", "telephone", "gain"]


@pytest.mark.parametrize("kind", NOISES)
@pytest.mark.parametrize("snr", [0.0, 5.0, 12.5, 20.0])
def test_noise_at_the_asked_snr(kind: str, snr: float) -> None:
    x = _speech()
    noise = make_noise(kind, x.shape[0], np.random.default_rng(0), _pool())
    assert abs(float(np.sqrt(np.mean(noise.astype(np.float64) ** 2))) - 1) < 1e-3
    mixed, gain = mix_at_snr(x, noise, snr)
    assert abs(snr_db(x, mixed, gain) - snr) < 1e-3
    assert np.array_equal(add_noise(x, noise, snr), mixed)
    quiet = x * 0.25  # through the whole pipeline: no peak limiting at this level, so the gain is 1
    plan = Plan(noise=kind, snr_db=snr, seed=4)
    out = apply(quiet, plan, _pool())
    assert abs(snr_db(quiet, out, 1.0) - snr) < 1e-3
    assert abs(snr_db(quiet, out) - snr) < 0.3  # least-squares estimate of the gain: close
    loud = apply(x * 3, plan, _pool())  # limited: scaled down as a whole, the same mixture up to its scale
    assert np.abs(loud).max() <= 0.99 + 1e-6
    np.testing.assert_allclose(loud / np.abs(loud).max(), out / np.abs(out).max(), atol=1e-5)


def test_snr_survives_the_written_file(tmp_path) -> None:
    """Measured back from the 16-bit wav the builder writes."""
    x = _speech()

    class Fixed:
        name = "fixed"

        def __call__(self, text: str) -> np.ndarray:
            return x

    speaker = Speaker(tmp_path, "speech", clean=_pool())
    for snr in (5.0, 10.0, 20.0):
        clip = speaker.say(Fixed(), "hello", Plan(noise="pink", snr_db=snr, seed=1))
        written, rate = sf.read(str(tmp_path / clip.rel), dtype="float32")
        assert rate == RATE and np.abs(written).max() < 0.99  # not limited: the gain is 1
        assert abs(snr_db(x, written, 1.0) - snr) < 0.01


def test_telephone_band() -> None:
    x = np.random.default_rng(0).standard_normal(RATE).astype(np.float32) * 0.1
    y = telephone(x)
    assert y.shape == x.shape
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(y.shape[0], 1 / RATE)
    inside = spectrum[(f > 500) & (f < 3200)].mean()
    for band in ((0, 200), (3600, 8000)):
        outside = spectrum[(f >= band[0]) & (f < band[1])].mean()
        assert 10 * np.log10(outside / inside) < -30, band


def test_room_decays_by_60_db_at_rt60() -> None:
    rt60 = 0.5
    h = room_impulse(rt60, 3.0, np.random.default_rng(0))
    tail = h.copy()
    tail[0] = 0.0
    edc = np.cumsum(tail[::-1] ** 2)[::-1]  # Schroeder backward integral
    at = int(0.01 * RATE)
    drop = 10 * np.log10(edc[int(0.25 * RATE)] / edc[at])  # T30-style: -30 dB at half of rt60
    assert -36 < drop < -24
    assert abs(10 * np.log10(h[0] ** 2 / np.sum(tail**2)) - 3.0) < 1e-6  # direct-to-reverberant ratio


def test_speed_and_gain() -> None:
    x = _speech(2.0)
    fast = apply(x, Plan(speed=1.1, seed=1))
    assert abs(fast.shape[0] - x.shape[0] / 1.1) < 50
    quiet = apply(x, Plan(gain_db=-6.0, seed=1))
    assert abs(20 * np.log10(np.abs(quiet).max() / np.abs(x).max()) + 6.0) < 1e-3
    loud = apply(x, Plan(gain_db=20.0, seed=1))
    assert np.abs(loud).max() <= 0.99 + 1e-6  # scaled down as a whole, never clipped
