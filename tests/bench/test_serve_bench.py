"""`vita bench serve` on tiny weights: concurrent realtime sessions in real time, no errors, no leakage, healthy
after a client vanishes mid-answer; and the leakage check does catch answers built from another session."""

from __future__ import annotations

import pytest

for mod in ("fastapi", "uvicorn", "websockets", "piper", "onnxruntime"):
    pytest.importorskip(mod)

from vita.bench import serve as bench  # noqa: E402


def test_three_sessions_answer_their_own_questions_and_survive_a_disconnect():
    res = bench.run(sessions=3, seconds=12)  # chat replies take ~1.5 s beside three sessions: >= 3 needs the room
    assert res.errors == [] and res.leaks == []
    assert res.disconnect == {"healthz": {"status": "ok"}, "new_session": True, "all_closed": True,
                              "ok": True}
    assert res.spoken >= 3 and res.typed >= 3 and len(res.latency_ms) == res.spoken
    assert all(0 < ms < 30_000 for ms in res.latency_ms)
    # every spoken answer is heard: its first sound comes at or after its first delta (the transcript may lead)
    assert len(res.audio_ms) == res.spoken and all(a >= t for a, t in zip(res.audio_ms, res.latency_ms, strict=True))
    assert "first audio delta" in bench.report(res)
    stalls = res.summary()["stalls"]  # every completed reply with audio is played through a `Player`
    assert stalls["replies"] >= res.spoken and 0 <= stalls["stalled"] <= stalls["replies"]
    assert (stalls["dry_after_s_p50"] is None) == (stalls["stalled"] == 0)
    assert "playback stalls" in bench.report(res)
    assert res.chat_status == {"200": len(res.chat_ms)} and len(res.chat_ms) >= 3  # chat interleaved: all 200
    assert res.ok and "leakage: none" in bench.report(res)


def test_the_leakage_check_catches_a_crossed_history():
    """A forcing shared by all connections answers from the first session's mark: the other session notices."""
    from vita.duplex.roles import Script

    seen: list[str] = []

    def leaky():
        honest = bench.make_forcing()

        def forcing(turns):
            script = honest(turns)
            if script.text.startswith("<1> Mark "):
                seen.append(script.text[len("<1> Mark "):].split(" cycle ")[0])
                return script
            if seen and script.text.startswith("<1> Here is answer "):
                return Script(f"<1> Here is answer 1 for {seen[0]}.")
            return script
        return forcing

    res = bench.run(sessions=2, seconds=2, forcing=leaky)
    assert res.leaks and all("expected" in leak for leak in res.leaks)
    assert not res.ok
