"""Conversation items on `/v1/realtime` that join the next user turn, typed or spoken (OpenAI's behaviour): an image
item created without response.create goes with the next spoken question, once; a speculation prepared without it
is redone; the limits on waiting items and images hold; a typed question during a reply cancels it and is answered.

Tiny random weights; an energy VAD (a tone is speech, zeros are silence: pauses are exact) with the server's
speculation (pause after 96 ms, end of speech after 300 ms). Replies are teacher-forced: "say X" -> "<1> X",
anything else "<1> ok."; every prompt a connection's jobs start from is kept (`Forcing.prompts`), so the tests see
what the model was given. Text-only replies unless a test asks for audio (0.1 s of tone per word).
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image as PILImage

pytest.importorskip("onnxruntime")

from tests.server.realtime_helpers import (  # noqa: E402
    RATE,
    EnergyModel,
    Forcing,
    nothing_for,
    opened,
    recv,
    send_audio,
    silence,
    synth,
    tone,
    until,
    wait_for,
)
from vita.processor import Audio, Image  # noqa: E402
from vita.server.audio_out import SpeechOut  # noqa: E402
from vita.server.engine import Engine  # noqa: E402
from vita.server.limits import Limits  # noqa: E402
from vita.server.realtime import RealtimeConfig, session_config  # noqa: E402
from vita.speech.echo import GateConfig  # noqa: E402
from vita.speech.vad import StreamingVAD  # noqa: E402

CHUNK = 640  # samples per append: 40 ms
LONG = " ".join(["one two three four five"] * 6)




@pytest.fixture(scope="module")
def make(model, kit):
    def build(**limits):
        forcings: list[Forcing] = []

        def forcing():
            forcings.append(Forcing())
            return forcings[-1]

        session = replace(session_config(min_silence_ms=300), lead_s=0.0, gate=GateConfig(enabled=False))
        config = RealtimeConfig(forcing=forcing, max_new_tokens=64, session=lambda: session,
                                vad=lambda: StreamingVAD(session.vad, model=EnergyModel()))
        app = kit.make_app(Engine(model), limits=Limits(**limits), realtime=config,
                           speech=SpeechOut(factory=lambda: synth))
        from fastapi.testclient import TestClient

        client = TestClient(app)
        client.forcings = forcings
        return client
    return build


def of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


def item(ws, item_id: str | None, *, text: str | None = None, image: bytes | None = None, kit=None) -> None:
    content = []
    if text is not None:
        content.append({"type": "input_text", "text": text})
    if image is not None:
        content.append({"type": "input_image", "image_url": kit.data_url(image, "image/png")})
    body = {"type": "message", "role": "user", "content": content} | ({"id": item_id} if item_id else {})
    ws.send_json({"type": "conversation.item.create", "event_id": f"ev_{item_id}", "item": body})


def question() -> np.ndarray:
    return np.concatenate([silence(0.2), tone(0.8), silence(0.6)])


def images_of(prompt) -> list:
    """The images of a prompt's last (user) turn, as the server decoded them (PIL)."""
    content = prompt[-1].content
    return [p.source for p in ([content] if isinstance(content, str) else content) if isinstance(p, Image)]


def connection(client):
    (conn,) = client.app.state.vita_realtime.connections
    return conn


def test_an_image_item_goes_with_the_next_spoken_turn_once(make, kit):
    with make() as client, client.websocket_connect("/v1/realtime") as ws:
        opened(ws, ["text"], RATE)
        item(ws, "pic", image=kit.png(123, 77, seed=7), kit=kit)  # an image alone, no response.create
        nothing_for(ws, 0.3)  # it waits: no response, no error
        conn, (forcing,) = connection(client), client.forcings
        wait_for(lambda: conn.session.pending_items == ("pic",))
        send_audio(ws, question(), CHUNK)
        events = until(ws, "response.done")
        (committed,) = of(events, "input_audio_buffer.committed")
        assert committed["vita_items"] == ["pic"]
        assert events[-1]["response"]["status"] == "completed" and not of(events, "error")
        # every prompt of the turn (prepared in the pause, committed at the end) had the picture, then the audio
        assert forcing.prompts and all([im.size for im in images_of(p)] == [(123, 77)] for p in forcing.prompts)
        last = forcing.prompts[-1][-1].content
        assert isinstance(last[0], Image) and isinstance(last[-1], Audio)
        picture = PILImage.open(io.BytesIO(kit.png(123, 77, seed=7))).convert("RGB")
        assert np.array_equal(np.asarray(images_of(forcing.prompts[-1])[0].convert("RGB")), np.asarray(picture))
        # used: nothing waits any more; the history keeps the turn like a typed one (its images left out)
        wait_for(lambda: not conn.session.busy)
        assert conn.pending == {} and conn.session.pending_items == ()
        (user,) = [t for t in conn.session.history if t.role == "user"]
        assert [type(p) for p in user.content] == [Audio]
        # once: the next spoken turn goes without it, and there is nothing left for response.create
        seen = len(forcing.prompts)
        send_audio(ws, question(), CHUNK)
        events = until(ws, "response.done")
        assert of(events, "input_audio_buffer.committed")[0]["vita_items"] == []
        assert len(forcing.prompts) > seen and not any(images_of(p) for p in forcing.prompts[seen:])
        ws.send_json({"type": "response.create", "event_id": "again"})
        err = recv(ws)
        assert err["type"] == "error" and err["error"]["code"] == "no_pending_input"


def test_an_item_during_a_speculation_has_the_turn_prepared_again(make, kit):
    with make() as client, client.websocket_connect("/v1/realtime") as ws:
        opened(ws, ["text"], RATE)
        send_audio(ws, np.concatenate([silence(0.2), tone(0.8), silence(0.16)]), CHUNK)
        assert recv(ws)["type"] == "input_audio_buffer.speech_started"
        conn, (forcing,) = connection(client), client.forcings
        s = conn.session
        wait_for(lambda: s.speculating and s.listening.job.state_resolved)  # prepared (without the image)
        prepared = len(forcing.prompts)
        assert prepared >= 1 and images_of(forcing.prompts[-1]) == []
        item(ws, "late", image=kit.png(64, 48, seed=3), kit=kit)
        wait_for(lambda: s.pending_items == ("late",) and not s.speculating)  # discarded: it lacked the image
        nothing_for(ws, 0.1)  # still nothing for the client
        send_audio(ws, silence(0.6), CHUNK)
        events = until(ws, "response.done")
        assert of(events, "input_audio_buffer.committed")[0]["vita_items"] == ["late"]
        assert len(of(events, "response.created")) == 1 and not of(events, "error")
        assert len(forcing.prompts) == prepared + 1  # redone once, at the end of speech, with the image
        assert [im.size for im in images_of(forcing.prompts[-1])] == [(64, 48)]
        wait_for(lambda: not s.busy)
        assert conn.pending == {} and s.pending_items == ()


def test_waiting_items_stay_bounded_and_a_spoken_turn_frees_them(make, kit):
    with make(max_images=1, max_realtime_pending_items=2) as client, client.websocket_connect("/v1/realtime") as ws:
        opened(ws, ["text"], RATE)
        item(ws, "a", image=kit.png(seed=1), kit=kit)
        item(ws, "b", image=kit.png(seed=2), kit=kit)
        err = recv(ws)["error"]
        assert err["code"] == "limit_exceeded" and "--max-images 1" in err["message"] and err["event_id"] == "ev_b"
        item(ws, "a", text="the same id")
        assert recv(ws)["error"]["param"] == "item.id"
        item(ws, "t", text="and this")
        item(ws, "u", text="one too many")
        err = recv(ws)["error"]
        assert err["code"] == "limit_exceeded" and "--max-realtime-pending-items 2" in err["message"]
        send_audio(ws, question(), CHUNK)
        events = until(ws, "response.done")
        assert of(events, "input_audio_buffer.committed")[0]["vita_items"] == ["a", "t"]
        content = client.forcings[0].prompts[-1][-1].content
        assert [type(p) for p in content] == [Image, str, Audio] and content[1] == "and this"
        wait_for(lambda: connection(client).pending == {})
        item(ws, "b", text="say Both are free again.", image=kit.png(seed=2), kit=kit)  # room again
        ws.send_json({"type": "response.create"})
        events = until(ws, "response.done")
        assert not of(events, "error")
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Both are free again."


def test_a_deleted_item_goes_with_no_turn(make, kit):
    with make() as client, client.websocket_connect("/v1/realtime") as ws:
        opened(ws, ["text"], RATE)
        item(ws, "x", image=kit.png(seed=4), kit=kit)
        ws.send_json({"type": "conversation.item.delete", "item_id": "x"})
        deleted = recv(ws)
        assert deleted["type"] == "conversation.item.deleted" and deleted["item_id"] == "x"
        ws.send_json({"type": "conversation.item.delete", "item_id": "x", "event_id": "d2"})
        err = recv(ws)["error"]
        assert err["code"] == "item_not_found" and err["event_id"] == "d2"
        send_audio(ws, question(), CHUNK)
        events = until(ws, "response.done")
        assert of(events, "input_audio_buffer.committed")[0]["vita_items"] == []
        assert not any(images_of(p) for p in client.forcings[0].prompts)


def test_a_typed_question_during_a_reply_cancels_it_and_is_answered(make):
    """What the page sends for a question typed while the answer plays: response.cancel, the item, response.create,
    back to back. The cancel is applied first: no conversation_already_has_active_response, the old reply ends
    cancelled (what was heard of it kept), the new one is answered."""
    with make() as client, client.websocket_connect("/v1/realtime") as ws:
        opened(ws, ["audio", "text"], RATE)
        item(ws, None, text="say " + LONG)
        ws.send_json({"type": "response.create"})
        first = until(ws, "response.audio.delta")  # 3 s of speech, played in real time
        rid = of(first, "response.created")[0]["response"]["id"]
        ws.send_json({"type": "response.cancel", "event_id": "stop"})
        item(ws, None, text="say Second.")
        ws.send_json({"type": "response.create", "event_id": "next"})
        events = until(ws, "response.done", n=2)
        assert not of(events, "error")
        old, new = (e["response"] for e in of(events, "response.done"))
        assert old["id"] == rid and old["status"] == "cancelled"
        assert old["status_details"]["reason"] == "client_cancelled"
        heard = old["output"][0]["content"][0]["transcript"]
        assert LONG.startswith(heard) and len(heard) < len(LONG)
        (created,) = of(events, "response.created")
        assert created["response"]["id"] == new["id"] != rid and new["status"] == "completed"
        assert new["output"][0]["content"][0]["transcript"] == "Second."
        after = events[events.index(of(events, "response.done")[0]):]
        assert not [e for e in after if e.get("response_id") == rid]  # nothing of the old one after its done
        (conn,) = client.app.state.vita_realtime.connections
        wait_for(lambda: not conn.session.busy)
        user, answer = conn.session.history[-2:]
        assert user.content == ["say Second."] and answer.role == "assistant" and "Second." in answer.content
