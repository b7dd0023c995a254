"""`vita bench duplex`: the JSON report on the built-in scenarios (no compute time: deterministic), the scenario-file
schema, and the RSS of two active roles over one (fresh subprocesses, tiny weights and the SmolLM2-135M shape)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import soundfile as sf

from vita.duplex.scenarios import ScenarioError, load_scenario_file
from vita.duplex.session import SessionConfig
from vita.duplex.stages import STAGES
from vita.speech.vad import SAMPLE_RATE, WINDOW, VADConfig

KEYS = {"response_ms_p50", "response_ms_p90", "stop_ms_p50", "stop_ms_p90", "false_trigger_rate", "miss_rate",
        "rss_two_roles_over_one", "scenarios", "stages", "stalled_rate", "stall_ms_p90"}
BUILTIN = ["question", "barge-in", "background", "noise", "pause", "echo"]


@pytest.fixture(scope="module")
def report() -> dict:
    """`vita bench duplex --json --no-compute-time --no-rss`, through the real command line."""
    from vita.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["bench", "duplex", "--model", "tiny-random", "--json", "--no-compute-time", "--no-rss"]) == 0
    return json.loads(out.getvalue())


def test_json_keys_and_value_ranges(report):
    assert set(report) == KEYS
    assert report["rss_two_roles_over_one"] is None  # --no-rss (measured in its own test below)
    for key in ("response_ms_p50", "response_ms_p90", "stop_ms_p50", "stop_ms_p90"):
        assert 0 <= report[key] < 5000
    assert report["response_ms_p50"] <= report["response_ms_p90"]
    assert report["stop_ms_p50"] <= report["stop_ms_p90"]
    rows = {r["name"]: r for r in report["scenarios"]}
    assert list(rows) == BUILTIN
    for r in rows.values():
        assert r["model"] == "tiny-random" and r["setup"] in ("headphones", "speaker")
        for k in ("false_trigger_rate", "miss_rate", "success_interrupt_rate", "success_reply_rate"):
            assert r[k] is None or 0.0 <= r[k] <= 1.0
        assert set(r["stages_ms_p50"]) == set(STAGES)
    assert rows["echo"]["setup"] == "speaker" and rows["question"]["setup"] == "headphones"
    assert list(report["stages"]) == list(STAGES)
    for stage, v in report["stages"].items():
        assert v["n"] == sum(r["queries"] for r in rows.values()), stage  # every answered query, every stage
        assert 0 <= v["p50_ms"] <= v["p90_ms"]
    # without compute time the response is the turn commit (the held-back reply said "answer": commit_silence_ms
    # of silence instead of the VAD's min_silence_ms) plus scheduling
    commit = SessionConfig().commit_silence_ms
    assert commit <= report["stages"]["vad_end"]["p50_ms"] < VADConfig().min_silence_ms
    assert report["response_ms_p50"] < commit + 300


def test_scripted_scenarios_have_no_false_triggers_and_no_misses(report):
    assert report["false_trigger_rate"] == 0.0 and report["miss_rate"] == 0.0
    rows = {r["name"]: r for r in report["scenarios"]}
    for r in rows.values():
        assert r["false_triggers"] == 0 and r["misses"] == 0 and r["echo_pauses"] == 0, r["name"]
    assert rows["background"]["non_queries"] == 2 and rows["noise"]["non_queries"] == 2
    assert rows["echo"]["non_queries"] == 1  # our own voice is the one thing that must not trigger
    assert rows["background"]["stop_ms_p50"] is not None  # the chatter paused us ...
    assert rows["background"]["resume_gap_ms_p50"] is not None  # ... and playback resumed


def test_inline_speech_never_stalls(report):
    # without compute time every phrase is rendered the moment it is cut: playback never runs dry inside a reply
    # (up to a sample or two where a release time rounds onto the speaker's sample grid)
    assert report["stalled_rate"] == 0.0 and 0.0 <= report["stall_ms_p90"] < 1.0
    assert all(r["stall_ms_max"] is None or 0.0 <= r["stall_ms_max"] < 1.0 for r in report["scenarios"])


def test_stalls_count_silence_inside_a_reply_up_to_its_pause():
    from vita.duplex.events import PlaybackPaused
    from vita.duplex.simulate import _stalls

    sr = SAMPLE_RATE
    placed = [(1, 0, 1600), (1, 1600, 1600), (1, 4800, 1600),  # 0.1 s dry between its 2nd and 3rd piece
              (2, 8000, 1600), (2, 11200, 1600), (2, 20000, 800)]  # 0.1 s dry, then paused on purpose
    events = [PlaybackPaused(12800 / sr, 2)]
    assert _stalls(placed, events) == pytest.approx([0.1, 0.1])
    assert _stalls([(3, 0, 1600)], []) == [0.0]


def test_barge_in_stops_within_the_vad_onset_window_and_a_tick(report):
    (row,) = [r for r in report["scenarios"] if r["name"] == "barge-in"]
    assert row["barge_ins"] == 1 and row["queries"] == 2
    assert row["success_interrupt_rate"] == 1.0 and row["success_reply_rate"] == 1.0
    # the VAD flags an onset once `onset_windows` windows score speech (+1 window: the true onset may fall
    # anywhere in the first one); one tick = one 20 ms mic chunk of the driver
    onset_window_ms = (VADConfig().onset_windows + 1) * WINDOW / SAMPLE_RATE * 1000
    assert 0 < row["stop_ms_p90"] < onset_window_ms + 20.0


# ---- scenario files ---------------------------------------------------------------------------------------------


@pytest.fixture()
def clips(voices, tmp_path):
    sf.write(tmp_path / "q.wav", voices["question"], 16000)
    sf.write(tmp_path / "chat.wav", voices["chatter"], 16000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav")
    return tmp_path


def _write(folder, data, name="s.json"):
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


GOOD = {"scenarios": [{"name": "file-question", "duration": 4.5, "clips": [
    {"audio": "q.wav", "start": 0.3, "query": True, "reply": "It is sunny."}]}]}


def test_a_good_scenario_file_runs(clips, tiny, piper):
    from vita.bench.duplex import bench

    (sc,) = load_scenario_file(_write(clips, GOOD))
    assert sc.segments[0].reply == "<1> It is sunny." and sc.segments[0].kind == "query"
    rep = bench("tiny-random", [sc], compute_time=False, rss=False, model=tiny, synth=piper)
    assert set(rep) == KEYS
    (row,) = rep["scenarios"]
    assert row["name"] == "file-question" and row["queries"] == 1 and row["misses"] == 0
    assert 0 < row["response_ms_p50"] < 1500


def _clip(**kw):
    return {"scenarios": [{"name": "x", "clips": [{"audio": "q.wav", "start": 0.5, "query": True, **kw}]}]}


BAD = {
    "not-json": ("{scenarios: [", "not valid JSON"),
    "top-level": ([], "scenarios: expected a non-empty list"),
    "unknown-top": ({"scenarios": [], "extra": 1}, "(top level): unknown key 'extra'"),
    "unknown-clip-key": (_clip(loud=True), "scenarios[0].clips[0]: unknown key 'loud'"),
    "missing-key": ({"scenarios": [{"name": "x", "clips": [{"audio": "q.wav", "query": True}]}]},
                    "scenarios[0].clips[0]: missing key 'start'"),
    "negative-start": (_clip(start=-1), "scenarios[0].clips[0].start: expected a number >= 0, got -1"),
    "string-start": (_clip(start="0.5"), "scenarios[0].clips[0].start: expected a number"),
    "query-not-bool": (_clip(query="yes"), "scenarios[0].clips[0].query: expected true or false"),
    "missing-audio": (_clip(audio="nope.wav"), "scenarios[0].clips[0].audio: no such file"),
    "broken-audio": (_clip(audio="broken.wav"), "scenarios[0].clips[0].audio:"),
    "reply-on-non-query": (_clip(query=False, reply="<1> hi"), "clips[0].reply: only a query"),
    "no-clips": ({"scenarios": [{"name": "x", "clips": []}]}, "scenarios[0].clips: expected a non-empty list"),
    "duplicate-name": ({"scenarios": [_clip()["scenarios"][0]] * 2}, "scenarios[1].name: duplicate"),
    "short-duration": ({"scenarios": [{**_clip()["scenarios"][0], "duration": 1.0}]},
                       "scenarios[0].duration: 1 s ends before the last clip"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_scenario_files_are_clear_errors(clips, case):
    data, expected = BAD[case]
    path = _write(clips, data, f"{case}.json")
    with pytest.raises(ScenarioError) as err:
        load_scenario_file(path)
    msg = str(err.value)
    assert msg.startswith(f"{case}.json: ") and expected in msg and "\n" not in msg


def test_bad_scenario_file_on_the_command_line_is_one_line(clips, capsys):
    from vita.cli import main

    path = _write(clips, _clip(start=-1), "bad.json")
    assert main(["bench", "duplex", "--scenarios", str(path), "--no-rss"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: bad.json: scenarios[0].clips[0].start: expected a number >= 0, got -1"]


# ---- memory -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "dtype", "seq"), [("tiny-random", "fp32", 512),
                                                     ("smollm2-135m-random", "bf16", 384)])
def test_rss_two_roles_over_one(model, dtype, seq):
    """A fresh process: one role through a reply, VmRSS; the second role's cache and a reply, VmRSS again."""
    from vita.bench.rss import measure_rss_ratio

    m = measure_rss_ratio(model, dtype=dtype, max_seq_len=seq, new_tokens=8)
    assert m["model"] == model and m["max_seq_len"] == seq and m["kv_cache_mb"] > 0
    assert m["rss_two_mb"] >= m["rss_one_mb"] * 0.98  # the same process grew (or stayed): nothing was swapped in
    assert 1.0 <= m["ratio"] + 0.02 and m["ratio"] <= 1.15, m
    if model == "smollm2-135m-random":  # weights dominate: 135M bf16 parameters are ~260 MB
        assert m["rss_one_mb"] > 300 and np.isclose(m["kv_cache_mb"], 30 * 2 * 3 * seq * 64 * 2 / 2**20, rtol=0.01)


@pytest.mark.parametrize("free", [False, True])
def test_forcing_leaves_the_piece_before_a_pause_to_the_model(free):
    """`ScenarioForcing(free=True)` forces the first whole query's answer only: the piece of a question the user goes
    on with after a pause (`Segment.continued`) is the model's to answer or not; scripted, both are forced."""
    from vita.duplex.events import FakeClock
    from vita.duplex.roles import Script
    from vita.duplex.scenarios import Scenario, Segment
    from vita.duplex.simulate import ScenarioForcing

    tone = 0.1 * np.ones(SAMPLE_RATE, np.float32)  # 1 s above the speech floor
    head = Segment(0.5, tone, "query", "<1> The answer.", continued=True)
    tail = Segment(2.5, tone, "query", "<1> The answer.")
    later = Segment(6.0, tone, "query", "<1> Another one.")
    clock = FakeClock()
    forcing = ScenarioForcing(Scenario("pause", [head, tail, later], 9.0), clock, free=free)
    clock.t = 1.6  # the head ended: the job for the pause
    assert forcing([]) == (Script("<1> The answer.") if not free else None)
    clock.t = 3.6  # the whole question ended
    assert forcing([]) == Script("<1> The answer.")
    clock.t = 7.1
    assert forcing([]) == (None if free else Script("<1> Another one."))
