"""The official `openai` client against a real uvicorn on 127.0.0.1: images, audio, streaming, errors, auth."""

from __future__ import annotations

import base64

import pytest

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(model, kit):
    from vita.server.engine import Engine

    with kit.LiveServer(kit.make_app(Engine(model), api_key="test-key")) as live:
        yield live


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="test-key", max_retries=0, timeout=60)


def _stream_text(stream) -> tuple[str, list]:
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def test_models(client):
    assert [m.id for m in client.models.list()] == ["tiny-random"]


def test_image(client, model, kit):
    png = kit.png()
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": kit.data_url(png, "image/png")}},
        {"type": "text", "text": "What is in the picture?"}]}]
    ref = model.generate("What is in the picture?", images=[png], max_new_tokens=10)
    resp = client.chat.completions.create(model="tiny-random", messages=messages, max_tokens=10, temperature=0)
    assert resp.choices[0].message.content == ref.text
    assert resp.choices[0].message.model_extra["vita_state"] == ref.state
    assert resp.choices[0].finish_reason == ref.finish_reason
    assert resp.usage.completion_tokens == len(ref.token_ids)
    text, chunks = _stream_text(client.chat.completions.create(
        model="tiny-random", messages=messages, max_tokens=10, temperature=0, stream=True))
    assert text.strip() == ref.text
    assert chunks[0].choices[0].delta.role == "assistant" and "vita_state" in chunks[0].choices[0].delta.model_extra
    assert chunks[-1].choices[0].finish_reason == ref.finish_reason


def test_audio_input(client, model, kit):
    wav = kit.wav(0.6)
    messages = [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"}}]}]
    ref = model.generate(audio=wav, max_new_tokens=8)
    resp = client.chat.completions.create(model="tiny-random", messages=messages, max_completion_tokens=8,
                                          temperature=0)
    assert resp.choices[0].message.content == ref.text
    text, _ = _stream_text(client.chat.completions.create(
        model="tiny-random", messages=messages, max_completion_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert text.strip() == ref.text


def test_errors_are_typed(client, kit):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny-random", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}])
    assert err.value.body["param"] == "messages[0].content[0].image_url.url"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny-random", messages=[{"role": "user", "content": "hi"}], n=3)


def test_auth_required(server):
    bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.models.list()
    assert err.value.body["code"] == "invalid_api_key"
