"""`vita bench duplex --public`: FDB's takeover rule, our words on the timeline, and the report on tiny weights
(no compute time: deterministic)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("piper")

from vita.bench.duplex_public import FAMILIES, build_cases, espeak_voice, takeover, words_said  # noqa: E402
from vita.duplex.events import ReplyFinished, TextDelta  # noqa: E402
from vita.duplex.simulate import Result  # noqa: E402


def test_takeover_rule_one_second_or_more_than_three_words():
    w = [(1.0, 1.2, "a"), (1.3, 1.5, "b"), (1.6, 1.8, "c")]
    assert takeover(w, 0.0) == (0, 1.0)  # 3 words in 0.8 s: not a takeover
    assert takeover([*w, (1.85, 1.9, "d")], 0.0)[0] == 1  # a fourth word
    assert takeover([(1.0, 1.1, "a"), (1.9, 2.05, "b")], 0.0)[0] == 1  # spans >= 1 s
    assert takeover(w, 1.25, 1.55) == (0, 1.3) and takeover(w, 5.0) == (0, None)


def test_words_are_placed_on_what_the_speaker_played():
    res = Result("x")
    res.events = [TextDelta(0.0, 1, "one two "), TextDelta(0.0, 1, "three four"),
                  ReplyFinished(1.0, 1, "one two three four")]
    res.placed = [(1, 16000, 8000), (1, 32000, 8000)]  # 0.5 s at 1.0 s, then 0.5 s at 2.0 s (a pause between)
    words = words_said(res)
    assert [w for _, _, w in words] == ["one", "two", "three", "four"]
    assert words[0][0] == pytest.approx(1.0) and words[-1][1] == pytest.approx(2.5)
    assert all(a < b for a, b, _ in words) and words[3][0] >= 2.0 - 1e-9  # "four" (chars 14-18 of 18) after it


@pytest.fixture(scope="module")
def report():
    from vita.bench.duplex import bench

    return bench("tiny-random", scenarios=[], compute_time=False, rss=False, public=True, public_n=2)["public"]


def test_public_report_shape_and_ranges(report):
    assert set(report) == {"model", "forced", "per_family", "seed", "sentences", "fdb_v1", "fdb_v1_5", "fd_bench",
                           "cases"}
    assert report["seed"] == 0 and report["sentences"] == "built-in"
    v1 = report["fdb_v1"]
    assert set(v1) == {"pause", "backchannel", "turn_taking", "interruption"}
    for task in v1.values():
        assert task["n"] == 2 and 0.0 <= task["tor"] <= 1.0
    assert v1["turn_taking"]["tor"] == 1.0 and v1["interruption"]["tor"] == 1.0  # scripted answers are given
    assert 0.0 < v1["turn_taking"]["latency_s"] < 1.0 and v1["interruption"]["relevance"] is None  # no judge
    assert v1["interruption"]["respond"] == 1.0  # scripted: every interruption gets its own reply
    for fam in report["fdb_v1_5"].values():
        assert fam["n"] == 2 and fam["judge"] is None
        assert fam["c_resume"] + fam["c_respond"] + fam["c_unknown"] == pytest.approx(1.0)
    assert report["fdb_v1_5"]["user_backchannel"]["c_resume"] == 1.0  # "yeah" never stops us
    fd = report["fd_bench"]
    assert fd["rounds"] == 6 and fd["interruptions"] >= 1 and 0.0 <= fd["srr"] <= 1.0
    assert fd["ird_ms_median"] is not None and fd["ird_ms_median"] < 1000


def test_each_case_has_its_own_row_that_adds_up_to_the_report(report):
    cases = report["cases"]
    assert len(cases) == 2 * len(FAMILIES) and len({c["name"] for c in cases}) == len(cases)
    assert [c["family"] for c in cases[: len(FAMILIES)]] == list(FAMILIES)
    for fam in ("pause", "interruption", "turn_taking"):
        rows = [c for c in cases if c["family"] == fam]
        assert all(r["n"] == 1 for r in rows)
        assert sum(r["tor"] for r in rows) / len(rows) == pytest.approx(report["fdb_v1"][fam]["tor"])
    rows = [c for c in cases if c["family"] == "talking_to_others"]
    assert sum(r["c_resume"] for r in rows) / 2 == pytest.approx(report["fdb_v1_5"]["talking_to_others"]["c_resume"])


def test_a_sentence_file_replaces_what_is_said(tmp_path, piper_16k):
    import json

    from vita.bench.duplex_sentences import BUILTIN, load_sentences
    from vita.duplex.scenarios import ScenarioError

    f = tmp_path / "fresh.json"
    f.write_text(json.dumps({"to_others": ["Ben, the bus is here."],
                             "interruptions": [["Wait, is it far?", "<1> About ten minutes on foot."]]}))
    own = load_sentences(f)
    assert own.to_others == ("Ben, the bus is here.",) and own.queries == BUILTIN.queries  # the rest: built-in
    assert own.interruptions == (("Wait, is it far?", "<1> About ten minutes on foot."),)
    other = espeak_voice()
    mine = {c.family: c for c in build_cases(piper_16k, other, n=1, sentences=own)}
    base = {c.family: c for c in build_cases(piper_16k, other, n=1)}
    assert mine["interruption"].scenario.segments[1].reply == "<1> About ten minutes on foot."
    said = mine["talking_to_others"].scenario.segments[1].audio
    assert not np.array_equal(said, base["talking_to_others"].scenario.segments[1].audio)
    np.testing.assert_array_equal(mine["turn_taking"].scenario.mic(), base["turn_taking"].scenario.mic())
    for text, where in ((json.dumps({"to_other": ["x"]}), "unknown key 'to_other'"),
                        (json.dumps({"background": []}), "background: expected a non-empty list"),
                        (json.dumps({"queries": [["only a question"]]}), "queries[0]: expected [sentence"),
                        (json.dumps(["x"]), "expected a JSON object"), ("{", "not valid JSON")):
        f.write_text(text)
        with pytest.raises(ScenarioError, match=f"fresh.json: .*{where.replace('[', '.').replace(']', '.')}"):
            load_sentences(f)
    with pytest.raises(ScenarioError, match="no such file"):
        load_sentences(tmp_path / "missing.json")


def test_scenario_sets_are_built_offline_and_deterministic(piper_16k):
    other = espeak_voice()
    a = build_cases(piper_16k, other, n=1)
    b = build_cases(piper_16k, other, n=1)
    assert [c.family for c in a] == ["turn_taking", "pause", "interruption", "backchannel", "user_backchannel",
                                     "talking_to_others", "background_speech", "fd_bench"] == list(FAMILIES)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.scenario.mic(), y.scenario.mic())


@pytest.fixture(scope="module")
def piper_16k():
    from vita.speech.tts import PiperSynth

    return PiperSynth(out_rate=16000)


def test_pause_cases_mark_the_piece_before_the_pause(piper_16k):
    """The pause family's question comes in two pieces; the first is `continued` (free runs leave it to the model),
    the second carries the whole question's answer."""
    cases = [c for c in build_cases(piper_16k, espeak_voice(), n=2) if c.family == "pause"]
    assert len(cases) == 2
    for c in cases:
        head, tail = c.scenario.segments
        assert head.continued and not tail.continued and tail.reply == head.reply
        assert head.speech_span()[1] == pytest.approx(c.marks["pause_start"])
    assert not any(s.continued for c in build_cases(piper_16k, espeak_voice(), n=1) if c.family != "pause"
                   for s in c.scenario.segments)


def test_families_pick_the_public_families_run(capsys):
    """`--families` runs only the named public families; an unknown name is a usage error before any model loads."""
    import contextlib
    import io
    import json

    from vita.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "duplex", "--model", "tiny-random", "--public", "--families", "pause,nope"])
    assert exc.value.code == 2 and "unknown family 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["bench", "duplex", "--model", "tiny-random", "--sentences", "x.json"])
    assert exc.value.code == 2 and "add --public" in capsys.readouterr().err
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["bench", "duplex", "--model", "tiny-random", "--public", "--per-family", "1", "--families",
                     "pause,interruption", "--json", "--no-compute-time", "--no-rss"]) == 0
    pub = json.loads(out.getvalue())["public"]
    assert pub["fdb_v1"]["pause"]["n"] == 1 and pub["fdb_v1"]["interruption"]["n"] == 1
    assert pub["fdb_v1"]["turn_taking"]["n"] == 0 and pub["fd_bench"]["rounds"] == 0
