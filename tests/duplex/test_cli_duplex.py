"""`vita chat` (offline driver over a mic file) and the scenario simulator behind `vita bench duplex`."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import soundfile as sf

from vita.cli.chat import add_parser


def test_chat_over_a_mic_file(tiny, voices, tmp_path, capsys):
    mic = np.concatenate([np.zeros(8000, np.float32), voices["question"], np.zeros(8000, np.float32)])
    sf.write(tmp_path / "mic.wav", mic, 16000)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["chat", "--mic", str(tmp_path / "mic.wav"), "--out", str(tmp_path / "out.wav"),
                              "--script", "<1> Sunny, and warm.", "--json", "--headphones", "--tail", "3"])
    assert args.func(args) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    names = [e["event"] for e in events]
    assert names[:4] == ["UserSpeechStarted", "UserSpeechEnded", "StateDecided", "ReplyStarted"]
    assert names[-1] == "ReplyFinished" and events[-1]["text"] == "Sunny, and warm."
    out, rate = sf.read(tmp_path / "out.wav")
    assert rate == 16000 and np.abs(out).max() > 0.1


@pytest.mark.slow
def test_simulated_barge_in_through_echo(tiny, piper):
    """The barge-in scenario, speaker setup (echo at -6 dB, AEC3 + gate), on the virtual clock only."""

    from vita.duplex import simulate
    from vita.duplex.roles import Engine
    from vita.duplex.session import Session, SessionConfig
    from vita.speech.echo import GateConfig, aec_available
    from vita.speech.tts import StreamingTTS

    if not aec_available():
        pytest.skip("pywebrtc-audio not installed")

    def make(scenario, clock):
        engine = Engine(tiny, max_new_tokens=256, forcing=simulate.ScenarioForcing(scenario, clock))
        return Session(engine, StreamingTTS(piper), clock=clock, config=SessionConfig(gate=GateConfig()))

    scenarios = {s.name: s for s in simulate.standard_scenarios(piper)}
    result = simulate.run(make, scenarios["barge-in"], echo_gain=0.5, compute_time=False, ticks_per_chunk=4)
    report = simulate.summary([result])
    assert report["false_triggers"] == 0 and report["misses"] == 0
    assert report["response_latency_s"]["n"] == 2  # the first answer and the barge-in's answer
    assert report["stop_latency_s"]["n"] == 1 and report["stop_latency_s"]["p90"] < 0.3
