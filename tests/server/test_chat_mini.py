"""Chat completions on vita-mini, the default model (its audio encoder is Whisper, whose front end is a log-mel, not a
Kaldi fbank: the engine must read the sample rate from whichever front end the model has)."""

from __future__ import annotations

import pytest

from vita.server.engine import Engine


@pytest.fixture(scope="module")
def mini_client(kit):
    import vita
    from vita.server.app import create_app

    return kit.client(create_app(Engine(vita.load("vita-mini")), model_id="vita-mini",
                                 allowed_hosts=["testserver"]))


def test_engine_audio_rate_from_whisper_front_end():
    from vita.config import LogMelConfig, WhisperConfig

    class Stub:
        class config:
            audio = WhisperConfig(logmel=LogMelConfig(sample_rate=8000))
            max_length = 64

        class model:
            class llm:
                class config:
                    max_position_embeddings = 64

    assert Engine(Stub).audio_rate == 8000


@pytest.mark.parametrize("parts", ["text", "audio", "image"])
def test_chat_on_vita_mini_answers(mini_client, kit, parts):
    content = {"text": [kit.text_part("What is the capital of France?")],
               "audio": [kit.audio_part(kit.wav(1.0)), kit.text_part("Transcribe the speech.")],
               "image": [kit.image_part(kit.png()), kit.text_part("What colour is the shape?")]}[parts]
    r = mini_client.post("/v1/chat/completions", json={
        "model": "vita-mini", "messages": [{"role": "user", "content": content}],
        "temperature": 0, "max_tokens": 8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["message"]["vita_state"] in ("<1>", "<2>", "<3>")
    assert body["usage"]["completion_tokens"] >= 1
