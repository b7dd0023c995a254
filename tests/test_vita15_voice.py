"""The VITA-1.5 voice where answers are spoken: `--voice` resolution, `vita chat --speak`, `vita serve` speech out,
and the duplex session's TTS, all on the tiny VITA-1.5 checkpoint with its own speech decoder."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile as sf

import vita
from vita.errors import ConfigError
from vita.speech.voices import make_voice, resolve_voice, voice_factory

pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def ckpt(ref15_root):
    return ref15_root / "checkpoint"


@pytest.fixture(scope="module")
def model(ckpt):
    return vita.load(str(ckpt))


def test_voice_resolution(ckpt, tmp_path):
    assert resolve_voice("auto", ckpt) == "vita15" == resolve_voice("vita15", ckpt)
    assert resolve_voice("piper", ckpt) == "piper"
    assert resolve_voice("auto", "tiny-random") == "piper" == resolve_voice("auto", tmp_path)
    with pytest.raises(ConfigError, match="vita_tts_ckpt"):
        resolve_voice("vita15", "tiny-random")
    with pytest.raises(ConfigError, match="unknown voice"):
        resolve_voice("alloy", ckpt)


@pytest.mark.parametrize("rate", [16000, 24000])
def test_the_models_own_voice_speaks(model, ckpt, rate):
    voice = make_voice("auto", model, ckpt, rate)
    assert voice.out_rate == rate
    pcm = voice("Sure, the red car is on the left side.")
    assert pcm.dtype == np.float32 and pcm.size > 0 and np.abs(pcm).max() <= 1.0


def test_chat_speak_writes_the_models_voice(ckpt, tmp_path, monkeypatch, capsys):
    from vita.cli import main

    out = tmp_path / "answers.wav"
    monkeypatch.setattr("sys.stdin", io.StringIO("What is in the picture?\n"))
    assert main(["chat", "--model", str(ckpt), "--speak", str(out), "--max-new-tokens", "8"]) == 0
    pcm, rate = sf.read(out)
    assert rate == 16000 and pcm.size > 0


def test_serve_speaks_with_the_models_voice(model, ckpt):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vita.server.app import create_app
    from vita.server.audio_out import OUTPUT_RATE, SpeechOut
    from vita.server.engine import Engine

    app = create_app(Engine(model, max_new_tokens=8), model_id="vita15",
                     speech=SpeechOut(voice_factory("vita15", model, ckpt, OUTPUT_RATE)))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        r = client.post("/v1/chat/completions", json={
            "model": "vita15", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8,
            "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}})
    assert r.status_code == 200, r.text
    pcm, rate = sf.read(io.BytesIO(base64.b64decode(r.json()["choices"][0]["message"]["audio"]["data"])))
    assert rate == OUTPUT_RATE and pcm.size > 0


def test_voice_over_a_bf16_model(ckpt, model):
    """The decoder reads the LLM's own table (no float32 copy of it) and runs in float32 whatever the LLM's dtype."""
    half = vita.load(str(ckpt), dtype="bf16")
    voice = make_voice("vita15", half, ckpt, 24000)
    assert voice.synth.embeddings.data_ptr() == half.model.llm.tok_embeddings.weight.data_ptr()
    pcm = voice("Sure, the red car is on the left side.")
    assert pcm.dtype == np.float32 and pcm.size > 0
