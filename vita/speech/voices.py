"""Which voice speaks the answers: `--voice auto|piper|vita15` for `vita chat --speak`, its duplex mode and
`vita serve`.

    piper    the packaged Piper voice (`vita.speech.tts.PiperSynth`), for every model
    vita15   the model's own end-to-end speech decoder (`vita.speech.vita15_tts.Vita15Voice`): a VITA-1.5 checkpoint
             with `vita_tts_ckpt/` (decoder + codec) and a model whose embedding table feeds it
    auto     vita15 when the model directory holds `vita_tts_ckpt/`, else piper

Both are `Synthesizer`s (speakable text -> float32 pcm at `out_rate`), so `StreamingTTS`, the duplex session and
the server's speech out take either unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vita.errors import ConfigError

VOICES = ("auto", "piper", "vita15")
TTS_FOLDER = "vita_tts_ckpt"  # vita.checkpoint.vita15_tts.TTS_FOLDER (not imported: keeps this module light)


def resolve_voice(name: str, model_path: str | Path) -> str:
    """'piper' or 'vita15' for a --voice value and a --model value (a directory or a preset name)."""
    if name not in VOICES:
        raise ConfigError(f"unknown voice {name!r} (known: {', '.join(VOICES)})")
    own = (Path(model_path) / TTS_FOLDER).is_dir()
    if name == "vita15" and not own:
        raise ConfigError(f"--voice vita15: {model_path} has no {TTS_FOLDER}/ (the VITA-1.5 speech decoder)")
    return ("vita15" if own else "piper") if name == "auto" else name


class _Serialized:
    """A synthesizer that renders one text at a time (the VITA-1.5 voice keeps one KV cache)."""

    def __init__(self, synth: Callable[[str], np.ndarray]) -> None:
        self.synth, self.out_rate = synth, synth.out_rate  # type: ignore[attr-defined]
        self._lock = threading.Lock()

    def __call__(self, text: str) -> np.ndarray:
        with self._lock:
            return self.synth(text)


def voice_factory(name: str, vita, model_path: str | Path, out_rate: int) -> Callable[[], Callable[[str], np.ndarray]]:
    """A function that loads the chosen voice (loading is deferred: Piper takes about a second)."""
    kind = resolve_voice(name, model_path)
    if kind == "piper":
        def piper():
            from vita.speech.tts import PiperSynth

            return PiperSynth(out_rate=out_rate)
        return piper

    def own():
        from vita.speech.vita15_tts import Vita15Voice

        return _Serialized(Vita15Voice.load(Path(model_path) / TTS_FOLDER, vita, out_rate=out_rate))
    return own


def make_voice(name: str, vita, model_path: str | Path, out_rate: int) -> Callable[[str], np.ndarray]:
    return voice_factory(name, vita, model_path, out_rate)()
