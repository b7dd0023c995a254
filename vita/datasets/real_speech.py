"""Real human speech for EVALUATION ONLY (never training, tuning or selection): a `vita eval` manifest of
recordings that installed PyPI packages ship, with their known transcripts.

    python -m vita.cli.tools real_speech --out OUT/data/eval
        -> OUT/data/eval/real_speech.jsonl (the case format of eval/asr.jsonl, group "real/<source>")
           OUT/data/eval/media/real/<source>.wav (16 kHz mono PCM_16)
    vita eval --manifest OUT/data/eval/real_speech.jsonl --model M

Sources (`SOURCES`; a package that is not installed is skipped and reported):
    useful-moonshine-onnx (PyPI, MIT licence; `pip install --no-deps useful-moonshine-onnx==20251121`, which
        `make setup` does): moonshine_onnx/assets/beckett.wav, 10.0 s, 16 kHz mono; a man reading Samuel Beckett's
        "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better." (Worstward Ho, 1983). The package
        does not say who recorded it; its noise floor (about -65 dBFS, never digital silence) is that of a
        microphone recording, not of a synthesiser. Moonshine's own documentation transcribes it as these words.
Checked and not usable (no recording, or no transcript): openai-whisper and faster-whisper sdists (their JFK test
clip is not in the published archives), SpeechRecognition 3.17 sdist (no audio), pywhispercpp and speechbrain wheels
(no audio), pyannote.audio (a 30 s meeting sample without a transcript). Never used, whatever they hold: the
recordings the developers' guide reserves for independent evaluation.
One clip is an anecdote, not a figure: report it as such.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from vita.config import SAMPLE_RATE
from vita.media.audio import load_audio

ASR_PROMPT = "Transcribe the speech."


@dataclass(frozen=True)
class RealClip:
    name: str
    package: str  # the PyPI distribution
    module: str  # its import name (located with importlib.util.find_spec, never imported)
    path: str  # the file inside the module folder
    transcript: str
    licence: str


SOURCES = (
    RealClip("moonshine-beckett", "useful-moonshine-onnx", "moonshine_onnx", "assets/beckett.wav",
             "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.", "MIT"),
)


def locate(clip: RealClip) -> Path | None:
    """The installed file, or None when its package is not installed."""
    spec = importlib.util.find_spec(clip.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / clip.path
    return path if path.is_file() else None


def write_manifest(out_dir: str | Path) -> tuple[Path | None, list[str]]:
    """Write real_speech.jsonl + media under `out_dir`; (manifest path or None if no source is installed, the
    packages that were missing)."""
    out = Path(out_dir)
    cases, missing = [], []
    for clip in SOURCES:
        src = locate(clip)
        if src is None:
            missing.append(clip.package)
            continue
        rel = f"media/real/{clip.name}.wav"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(out / rel), load_audio(src).numpy(), SAMPLE_RATE, subtype="PCM_16")  # 16 kHz mono, as eval reads
        cases.append({"id": f"real-{clip.name}", "audio": rel, "text": ASR_PROMPT, "expect_state": "<3>",
                      "transcript": clip.transcript, "group": f"real/{clip.name}"})
    if not cases:
        return None, missing
    manifest = out / "real_speech.jsonl"
    manifest.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases), encoding="utf-8")
    return manifest, missing
