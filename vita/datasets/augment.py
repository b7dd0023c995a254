"""Seeded speech augmentation for vita-mini: noise at set SNRs, reverberation, 8 kHz telephone band, gain, speed.

    Plan          what to do to one clip (frozen; `tag` names it, so a clip's file name says how it was made)
    draw_plan     a Plan from the sample's own generator: with probability `p` the clip is augmented, then each
                  operation is drawn on its own (at least one)
    apply         clip + Plan (+ babble pool) -> augmented clip; deterministic: noise comes from `Plan.seed`
Operations, in this order (a talker in a room, noise around them, then the channel, then the level):
    speed      resample by `speed` and play at 16 kHz (tempo and pitch x speed; Kaldi-style perturbation)
    reverb     convolution with a synthetic room impulse response: a direct path plus exponentially decaying noise
               reaching -60 dB after `rt60` seconds, at `drr_db` direct-to-reverberant ratio; output at input RMS
    noise      white, pink (1/f power) or babble (4 other talkers of the same split) added at `snr_db`:
               SNR = 10 log10(mean(speech^2) / mean(noise^2)) over the clip (`vita.datasets.negatives.mix_at_snr`)
    telephone  16 kHz -> 8 kHz -> 16 kHz (`vita.media.audio.resample`), band-pass 300-3400 Hz,
               8-bit mu-law (G.711) quantisation
    gain       `gain_db`
A result louder than full scale is scaled down as a whole (this keeps the SNR). The SNR is set before the channel:
telephone band-limiting removes part of the noise (and of the speech) outside 300-3400 Hz.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vita.config import SAMPLE_RATE
from vita.datasets.negatives import NoiseBank, mix_at_snr, pink_noise

PEAK = 0.99
NOISES = ("white", "pink", "babble")
SNRS_DB = (5.0, 10.0, 15.0, 20.0)  # the set SNRs; babble (speech under speech) uses the upper three only
SPEEDS = (0.9, 0.95, 1.05, 1.1)


@dataclass(frozen=True)
class AugmentConfig:
    p: float = 0.5  # share of clips augmented at all
    p_speed: float = 0.3
    p_reverb: float = 0.3
    p_noise: float = 0.5
    p_telephone: float = 0.15
    p_gain: float = 0.4
    rt60: tuple[float, float] = (0.2, 0.8)
    drr_db: tuple[float, float] = (0.0, 10.0)
    gain_db: tuple[float, float] = (-12.0, 4.0)


DEFAULT_AUGMENT = AugmentConfig()


@dataclass(frozen=True)
class Plan:
    speed: float = 1.0
    rt60: float = 0.0  # 0: no reverberation
    drr_db: float = 0.0
    noise: str = ""  # "", white, pink, babble
    snr_db: float = 0.0
    telephone: bool = False
    gain_db: float = 0.0
    seed: int = 0

    @property
    def clean(self) -> bool:
        return self == Plan(seed=self.seed)

    @property
    def tag(self) -> str:
        """"" for a clean clip, else e.g. "speed0.95+rt0.42/6.1dB+pink@10dB+tel+gain-3.2dB#1234"."""
        if self.clean:
            return ""
        parts = []
        if self.speed != 1.0:
            parts.append(f"speed{self.speed:g}")
        if self.rt60:
            parts.append(f"rt{self.rt60:.2f}/{self.drr_db:.1f}dB")
        if self.noise:
            parts.append(f"{self.noise}@{self.snr_db:g}dB")
        if self.telephone:
            parts.append("tel")
        if self.gain_db:
            parts.append(f"gain{self.gain_db:.1f}dB")
        return "+".join(parts) + f"#{self.seed}"


def tag_ops(tag: str) -> list[str]:
    """The operations a tag names: speed, reverb, noise/white|pink|babble, telephone, gain."""
    ops = []
    for part in tag.split("#")[0].split("+") if tag else ():
        if part.startswith("speed"):
            ops.append("speed")
        elif part.startswith("rt"):
            ops.append("reverb")
        elif "@" in part:
            ops.append("noise/" + part.split("@")[0])
        elif part == "tel":
            ops.append("telephone")
        elif part.startswith("gain"):
            ops.append("gain")
    return ops


def draw_plan(rng: np.random.Generator, cfg: AugmentConfig = DEFAULT_AUGMENT) -> Plan:
    """A Plan drawn from `rng` (the same number of draws whatever the outcome, so later draws do not shift)."""
    u = rng.random(6)
    seed = int(rng.integers(2**31))
    speed = float(SPEEDS[int(rng.integers(len(SPEEDS)))])
    rt60, drr = float(rng.uniform(*cfg.rt60)), float(rng.uniform(*cfg.drr_db))
    noise = NOISES[int(rng.integers(len(NOISES)))]
    snrs = SNRS_DB[1:] if noise == "babble" else SNRS_DB
    snr = float(snrs[int(rng.integers(len(snrs)))])
    gain = float(rng.uniform(*cfg.gain_db))
    if u[0] >= cfg.p:
        return Plan(seed=seed)
    on = [u[1] < cfg.p_speed, u[2] < cfg.p_reverb, u[3] < cfg.p_noise, u[4] < cfg.p_telephone, u[5] < cfg.p_gain]
    if not any(on):  # an augmented clip has at least one operation: the likeliest one
        probs = (cfg.p_speed, cfg.p_reverb, cfg.p_noise, cfg.p_telephone, cfg.p_gain)
        on[int(np.argmax(probs))] = True
    return Plan(speed=speed if on[0] else 1.0, rt60=round(rt60, 3) if on[1] else 0.0,
                drr_db=round(drr, 2) if on[1] else 0.0, noise=noise if on[2] else "", snr_db=snr if on[2] else 0.0,
                telephone=on[3], gain_db=round(gain, 2) if on[4] else 0.0, seed=seed)


def speed_perturb(pcm: np.ndarray, factor: float) -> np.ndarray:
    """Faster and higher by `factor` (> 1) or slower and lower (< 1): resample to SAMPLE_RATE / factor, play at
    SAMPLE_RATE."""
    from vita.media.audio import resample

    return resample(pcm, SAMPLE_RATE, int(round(SAMPLE_RATE / factor))) if factor != 1.0 else pcm


def room_impulse(rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Synthetic RIR [n]: 1 at t=0, then Gaussian noise decaying by 60 dB over rt60 s, its energy drr_db below."""
    n = int(min(rt60 * 1.2, 1.0) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.907755 * t / rt60)  # ln(1000): amplitude -60 dB at rt60
    tail[: int(0.002 * SAMPLE_RATE)] = 0.0  # the first reflection comes ~2 ms after the direct path
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(float(np.sum(tail**2)), 1e-12))
    tail[0] = 1.0
    return tail


def reverberate(pcm: np.ndarray, rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """pcm convolved with `room_impulse` (its tail kept, up to rt60 / 2), scaled back to the input RMS."""
    h = room_impulse(rt60, drr_db, rng)
    n = pcm.shape[0] + h.shape[0] - 1
    size = 1 << (n - 1).bit_length()
    keep = pcm.shape[0] + int(rt60 / 2 * SAMPLE_RATE)
    wet = np.fft.irfft(np.fft.rfft(pcm, size) * np.fft.rfft(h, size), size)[:keep]
    rms_in, rms_out = np.sqrt(np.mean(pcm.astype(np.float64) ** 2)), np.sqrt(np.mean(wet**2))
    return (wet * (rms_in / rms_out if rms_out > 0 else 1.0)).astype(np.float32)


def band_pass(pcm: np.ndarray, low: float = 300.0, high: float = 3400.0, edge: float = 100.0) -> np.ndarray:
    """Zero-phase band-pass in the frequency domain with raised-cosine edges `edge` Hz wide."""
    spectrum = np.fft.rfft(pcm.astype(np.float64))
    f = np.fft.rfftfreq(pcm.shape[0], 1 / SAMPLE_RATE)
    gain = np.clip((f - (low - edge / 2)) / edge, 0, 1) * np.clip(((high + edge / 2) - f) / edge, 0, 1)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    return np.fft.irfft(spectrum * gain, n=pcm.shape[0]).astype(np.float32)


def mu_law(pcm: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """Encode to 8 bits (256 levels) and decode, as a G.711 mu-law channel does."""
    x = np.clip(pcm, -1.0, 1.0)
    code = np.round((np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) + 1) / 2 * 255)
    y = code / 255 * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def telephone(pcm: np.ndarray) -> np.ndarray:
    """8 kHz narrow band: down to 8 kHz and back up, 300-3400 Hz, mu-law; the same length as the input."""
    from vita.media.audio import resample

    level = float(np.abs(pcm).max())
    scale = PEAK / level if level > PEAK else 1.0
    narrow = resample(resample(pcm * scale, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE)
    narrow = np.pad(narrow, (0, max(0, pcm.shape[0] - narrow.shape[0])))[: pcm.shape[0]]
    return mu_law(band_pass(narrow))


def make_noise(kind: str, n: int, rng: np.random.Generator, babble_pool: list[np.ndarray]) -> np.ndarray:
    """Unit-RMS noise [n]: white, pink, or babble summed from 4 clips of `babble_pool` (pink-based if it is short)."""
    if kind == "white":
        x = rng.standard_normal(n)
        return (x / np.sqrt(np.mean(x**2))).astype(np.float32)
    if kind == "pink":
        return pink_noise(n, rng)
    if kind == "babble":
        return NoiseBank([], (), babble_pool).babble(n, rng, exclude=None)
    raise ValueError(f"unknown noise {kind!r} (expected one of {', '.join(NOISES)})")


def add_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """speech + noise scaled to `snr_db` (the mixture scaled down as a whole if it would clip)."""
    return mix_at_snr(speech, noise[: speech.shape[0]], snr_db)[0]


def snr_db(speech: np.ndarray, noisy: np.ndarray, gain: float | None = None) -> float:
    """The SNR of `noisy` = gain x (speech + noise) against the clean `speech`. `gain`: the mixture's overall
    scale (anti-clipping) when known; None estimates it by least squares, which chance correlation between speech
    and noise biases by about 0.1 dB on a one-second clip at 0-5 dB."""
    s, y = speech.astype(np.float64), noisy[: speech.shape[0]].astype(np.float64)
    g = float(np.dot(y, s) / np.dot(s, s)) if gain is None else gain
    return float(10 * np.log10(np.mean((g * s) ** 2) / np.mean((y - g * s) ** 2)))


def apply(pcm: np.ndarray, plan: Plan, babble_pool: list[np.ndarray] | None = None) -> np.ndarray:
    """The clip transformed by `plan`: float32 [M] at 16 kHz (M differs from the input with speed / reverb)."""
    if plan.clean:
        return np.asarray(pcm, dtype=np.float32)
    rng = np.random.default_rng(plan.seed)
    x = np.asarray(pcm, dtype=np.float32)
    if plan.speed != 1.0:
        x = speed_perturb(x, plan.speed)
    if plan.rt60:
        x = reverberate(x, plan.rt60, plan.drr_db, rng)
    if plan.noise:
        x = add_noise(x, make_noise(plan.noise, x.shape[0], rng, babble_pool or []), plan.snr_db)
    if plan.telephone:
        x = telephone(x)
    if plan.gain_db:
        x = x * np.float32(10 ** (plan.gain_db / 20))
    peak = float(np.abs(x).max()) if x.size else 0.0
    return (x * (PEAK / peak) if peak > PEAK else x).astype(np.float32)
