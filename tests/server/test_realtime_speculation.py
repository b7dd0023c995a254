"""Speculative turns on `/v1/realtime` (server VAD): prepared at the user's first short silence, invisible until the
commit, identical to the turn computed at the end of speech, discarded without a trace when speech resumes.

Tiny random weights; a VAD that calls a 32 ms window speech when its RMS is over 0.01 (a tone is speech, zeros are
silence), so pauses are exact. VAD: pause (speculation) after 96 ms of silence, commit after 250 ms once the state
says "answer", end of speech after 300 ms. Spoken turns force only the state token `<1>` and then decode freely
(the text depends on every prompt row and cache entry), typed "say X" is answered X. Each scenario runs on a
speculative session and on one with `speculative=False`; events (ids and times aside), text, history and the
role cache must be the same (the server's VAD keeps a 96 ms end pad, what the pause has heard:
`realtime.session_config`).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from tests.server.realtime_helpers import (  # noqa: E402
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
from vita.duplex.roles import Script  # noqa: E402
from vita.server import realtime_roles, realtime_stats  # noqa: E402
from vita.server.audio_out import SpeechOut  # noqa: E402
from vita.server.engine import Engine  # noqa: E402
from vita.server.realtime import RealtimeConfig, session_config  # noqa: E402
from vita.speech.echo import GateConfig  # noqa: E402
from vita.speech.vad import StreamingVAD  # noqa: E402

RATE = 16000
CHUNK = 640  # samples per append: 40 ms




@pytest.fixture(scope="module")
def make(model, kit):
    def build(*, speculative: bool):
        forcings: list[Forcing] = []

        def forcing():
            forcings.append(Forcing(lambda: Script("<1>", complete=False)))
            return forcings[-1]

        session = replace(session_config(min_silence_ms=300), lead_s=0.0, gate=GateConfig(enabled=False),
                          speculative=speculative)
        vad = session.vad
        config = RealtimeConfig(
            forcing=forcing, max_new_tokens=8, session=lambda: session,
            vad=lambda: StreamingVAD(vad, model=EnergyModel()))
        app = kit.make_app(Engine(model), realtime=config, speech=SpeechOut(factory=lambda: synth))
        from fastapi.testclient import TestClient

        client = TestClient(app)
        client.forcings = forcings
        return client
    return build


def normal(events: list[dict]) -> list:
    """Events without ids and times; consecutive deltas of one kind joined (their chunking follows the clock)."""
    out: list = []
    for e in events:
        kind = e["type"]
        if kind.endswith(".delta"):
            value = base64.b64decode(e["delta"]) if kind == "response.audio.delta" else e["delta"]
            if out and out[-1][0] == kind:
                out[-1] = (kind, out[-1][1] + value)
            else:
                out.append((kind, value))
        elif kind == "response.done":
            r = e["response"]
            out.append((kind, r["status"], r["vita_state"], json.dumps(r["output"][0]["content"])))
        elif kind == "response.created":
            out.append((kind, e["response"]["vita_state"]))
        else:
            out.append((kind,))
    return out


def turn_state(client) -> dict:
    """What the turn left in the session: history (text, audio samples) and the role caches' valid contents."""
    (conn,) = client.app.state.vita_realtime.connections
    s = conn.session
    wait_for(lambda: not s.busy)
    history = []
    for t in s.history:
        parts = [t.content] if isinstance(t.content, str) else t.content
        history.append((t.role, [p if isinstance(p, str) else np.asarray(p.source).copy() for p in parts]))
    caches = []
    for c in s.caches:
        n = c.length
        caches.append((n, c.rows.clone(), [(layer.k_cache[..., :n, :].clone(), layer.v_cache[..., :n, :].clone())
                                           for layer in c.caches]))
    return {"history": history, "caches": caches, "stages": dict(s.stages)}


def assert_same_turn(a: dict, b: dict) -> None:
    assert len(a["history"]) == len(b["history"])
    for (role_a, parts_a), (role_b, parts_b) in zip(a["history"], b["history"], strict=True):
        assert role_a == role_b and len(parts_a) == len(parts_b)
        for x, y in zip(parts_a, parts_b, strict=True):
            assert (x == y) if isinstance(x, str) else np.array_equal(x, y)
    for (n_a, rows_a, kv_a), (n_b, rows_b, kv_b) in zip(a["caches"], b["caches"], strict=True):
        assert n_a == n_b
        torch.testing.assert_close(rows_a, rows_b, rtol=0, atol=1e-5)
        for (k_a, v_a), (k_b, v_b) in zip(kv_a, kv_b, strict=True):
            torch.testing.assert_close(k_a, k_b, rtol=0, atol=1e-5)
            torch.testing.assert_close(v_a, v_b, rtol=0, atol=1e-5)


def speculation_held(client) -> bool:
    (conn,) = client.app.state.vita_realtime.connections
    s = conn.session
    return s is not None and s.speculating and s.listening.job.state_resolved and s.next_unit != "listen"


def spoken_turn(client, pieces: list[np.ndarray], modalities: list[str]) -> tuple[list[dict], dict]:
    """Speak `pieces`: after each but the last (each ends in a 160 ms pause), wait until a speculative session has
    its turn prepared and held back, and check that nothing reached the client meanwhile."""
    speculative = client.app.state.vita_realtime.config.session().speculative
    with client.websocket_connect("/v1/realtime") as ws:
        opened(ws, modalities, RATE)
        events = []
        for i, piece in enumerate(pieces):
            send_audio(ws, piece, CHUNK)
            if i == 0:
                events.append(recv(ws))
                assert events[-1]["type"] == "input_audio_buffer.speech_started"
            if i < len(pieces) - 1:
                if speculative:
                    wait_for(lambda: speculation_held(client))
                nothing_for(ws, 0.15)  # prepared, held back: not one event
        events += until(ws, "response.done")
        return events, turn_state(client)


@pytest.mark.parametrize("modalities", [["text"], ["audio", "text"]])
def test_committed_speculation_equals_the_turn_computed_at_the_end(make, modalities):
    """The turn prepared in the pause and committed at the end of speech is the turn computed after it: the same
    events, text, audio, history and role caches; and it was prepared (state token and first text) before the commit."""
    pieces = [np.concatenate([silence(0.2), tone(0.8), silence(0.16)]), silence(0.6)]
    with make(speculative=True) as a:
        events_a, state_a = spoken_turn(a, pieces, modalities)
    with make(speculative=False) as b:
        events_b, state_b = spoken_turn(b, pieces, modalities)
    assert normal(events_a) == normal(events_b)
    kinds = [e[0] for e in normal(events_a)]
    assert kinds[:4] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                         "input_audio_buffer.committed", "response.created"] and kinds[-1] == "response.done"
    assert any(k.endswith("transcript.delta") or k.endswith("text.delta") for k in kinds)
    assert ("response.audio.delta" in kinds) == ("audio" in modalities)  # a spoken question is answered aloud
    assert_same_turn(state_a, state_b)
    (stages,) = state_a["stages"].values()
    assert stages["state"] < stages["vad_end"] and stages["first_text"] < stages["vad_end"]
    assert [len(f.prompts) for f in a.forcings] == [1] == [len(f.prompts) for f in b.forcings]
    hub = a.app.state.vita_realtime
    (record,) = hub.stages  # the hub keeps the finished turn's stage times: a spoken turn, prepared ahead
    assert record["spoken"] == 1.0 and record["state"] < record["vad_end"]
    summary = realtime_stats.breakdown(hub)
    assert summary["spoken"]["turns"] == 1 and summary["typed"]["turns"] == 0
    assert summary["spoken"]["stages"]["state"]["before_commit"] == 1.0
    assert "spoken turns" in realtime_stats.report(summary)


def test_discarded_speculation_leaves_no_trace(make):
    """Speech after the pause: what was prepared is dropped (no event, nothing in the history, the caches as after
    the same speech answered without speculation) and the whole utterance is answered once."""
    pieces = [np.concatenate([silence(0.2), tone(0.6), silence(0.16)]), np.concatenate([tone(0.4), silence(0.6)])]
    with make(speculative=True) as a:
        events_a, state_a = spoken_turn(a, pieces, ["text"])
    with make(speculative=False) as b:
        events_b, state_b = spoken_turn(b, pieces, ["text"])
    assert normal(events_a) == normal(events_b)
    assert [e["type"] for e in events_a].count("response.created") == 1
    assert_same_turn(state_a, state_b)
    (forcing,) = a.forcings
    assert len(forcing.prompts) == 2  # prepared at each pause: the first discarded, the second committed
    first, last = (p[-1].content[-1].source for p in (forcing.prompts[0], forcing.prompts[-1]))
    assert len(last) > len(first) + 0.4 * RATE  # the answer heard both pieces
    (audio,) = [p for role, parts in state_a["history"] for p in parts if role == "user"]
    assert np.array_equal(audio, last)


@pytest.fixture
def blocked(monkeypatch):
    """The first prefill step of a reply job blocks on the model thread until released (a speculation mid-work)."""
    gate = {"armed": True, "steps_after_release": 0, "jobs": []}
    entered, release = threading.Event(), threading.Event()
    step = realtime_roles.BoundedJob.step

    def blocking(self):
        if self not in gate["jobs"]:
            gate["jobs"].append(self)
        if release.is_set() and self is gate["jobs"][0]:
            gate["steps_after_release"] += 1
        if gate["armed"] and self.phase == "prefill":
            gate["armed"] = False
            entered.set()
            release.wait(20)
        return step(self)

    monkeypatch.setattr(realtime_roles.BoundedJob, "step", blocking)
    gate["entered"], gate["release"] = entered, release
    yield gate
    release.set()


def test_speech_resuming_mid_speculation(make, blocked):
    """The user goes on while the speculation is mid-prefill on the model thread: the job is cancelled once its step
    returns, nothing leaks, and the answer is the one computed for the whole utterance without speculation."""
    pieces = [np.concatenate([silence(0.2), tone(0.6), silence(0.16)]), np.concatenate([tone(0.4), silence(0.6)])]
    with make(speculative=True) as a, a.websocket_connect("/v1/realtime") as ws:
        opened(ws, ["text"], RATE)
        send_audio(ws, pieces[0], CHUNK)
        assert recv(ws)["type"] == "input_audio_buffer.speech_started"
        assert blocked["entered"].wait(10)
        send_audio(ws, pieces[1], CHUNK)  # speech resumes while the speculative job is blocked mid-prefill
        nothing_for(ws, 0.2)
        blocked["release"].set()
        events_a = [{"type": "input_audio_buffer.speech_started"}] + until(ws, "response.done")
        state_a = turn_state(a)
    first = blocked["jobs"][0]
    assert first.finish_reason == "cancelled"
    with make(speculative=False) as b:
        events_b, state_b = spoken_turn(b, pieces, ["text"])
    assert normal(events_a) == normal(events_b)
    assert_same_turn(state_a, state_b)


def test_session_closed_mid_speculation(make, blocked, caplog):
    """The client leaves while its speculation runs on the model thread: the connection is gone at once, the job
    gets no further step, nothing is logged as failed, and the server answers the next session."""
    with make(speculative=True) as client:
        hub = client.app.state.vita_realtime
        with client.websocket_connect("/v1/realtime") as ws:
            opened(ws, ["text"], RATE)
            send_audio(ws, np.concatenate([silence(0.2), tone(0.6), silence(0.16)]), CHUNK)
            assert recv(ws)["type"] == "input_audio_buffer.speech_started"
            assert blocked["entered"].wait(10)
        wait_for(lambda: hub.active == 0, 5)  # while the model thread is still blocked in its step
        blocked["release"].set()
        time.sleep(0.2)
        assert blocked["steps_after_release"] <= 1  # the step that was running returns; no further tick
        with client.websocket_connect("/v1/realtime") as ws:
            opened(ws, ["text"], RATE)
            ws.send_json({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                                       "content": [{"type": "input_text",
                                                                                    "text": "say Yes."}]}})
            ws.send_json({"type": "response.create"})
            done = until(ws, "response.done")[-1]
        assert done["response"]["status"] == "completed"
        assert done["response"]["output"][0]["content"][0]["text"] == "Yes."
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_speculation_is_not_a_response(make):
    """While a turn is only speculated on, the client has no response: response.cancel is refused as without
    speculation (and the speculation survives), input_audio_buffer.clear drops it with the audio."""
    with make(speculative=True) as client, client.websocket_connect("/v1/realtime") as ws:
        opened(ws, ["text"], RATE)
        send_audio(ws, np.concatenate([silence(0.2), tone(0.6), silence(0.16)]), CHUNK)
        assert recv(ws)["type"] == "input_audio_buffer.speech_started"
        wait_for(lambda: speculation_held(client))
        ws.send_json({"type": "response.cancel", "event_id": "c1"})
        err = recv(ws)
        assert err["type"] == "error" and err["error"]["code"] == "response_cancel_not_active"
        (conn,) = client.app.state.vita_realtime.connections
        assert conn.session.speculating
        ws.send_json({"type": "input_audio_buffer.clear"})
        assert recv(ws)["type"] == "input_audio_buffer.cleared"
        wait_for(lambda: not conn.session.busy, 5)
        assert not conn.session.speculating and conn.session.history == [] and not conn.session.stages
        send_audio(ws, silence(0.6), CHUNK)
        nothing_for(ws, 0.3)  # the cleared speech is never answered
