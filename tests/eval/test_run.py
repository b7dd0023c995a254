"""`vita eval` end to end: the tiny-random model on real media, a scripted model for exact aggregates, bad manifests."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import vita
from vita.api import Reply
from vita.cli.eval import add_parser, main
from vita.errors import EvalError
from vita.eval.manifest import load_manifest
from vita.eval.report import render_markdown
from vita.eval.run import evaluate
from vita.processor import Audio, Turn

TOP_KEYS = {"state_accuracy", "rejection_rate", "miss_rate", "answer_accuracy", "wer", "confusion", "cases",
            "groups", "n"}


@pytest.fixture(scope="module")
def tiny() -> vita.Vita:
    return vita.load("tiny-random")


@pytest.fixture
def media(tmp_path: Path) -> Path:
    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "red.png")
    t = np.arange(16000) / 16000
    sf.write(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "noise.wav", np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32), 16000)
    return tmp_path


def _write(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


TINY_CASES = [
    {"id": "img", "image": "red.png", "text": "What color?", "expect_state": "<3>", "answer": "red"},
    {"id": "spoken", "image": ["red.png"], "audio": "tone.wav", "expect_state": "<1>", "choices": ["red", "blue"],
     "answer": "A", "group": "g1"},
    {"id": "noise", "audio": "sub/noise.wav", "expect_state": "<2>", "group": "g1"},
    {"id": "typed", "text": "Say hello world.", "expect_state": "<3>", "transcript": "hello world"},
]


def test_tiny_random_end_to_end(media, tiny):
    manifest = _write(media / "m.jsonl", TINY_CASES)
    report = evaluate(tiny, manifest, max_new_tokens=6, model_name="tiny-random")
    assert TOP_KEYS <= set(report)
    json.dumps(report)  # serializable as is
    assert report["n"] == 4 and [c["id"] for c in report["cases"]] == ["img", "spoken", "noise", "typed"]
    assert set(report["groups"]) == {"modality", "group"}
    assert set(report["groups"]["modality"]) == {"image", "audio", "text"}  # no video case: no video group
    assert set(report["groups"]["group"]) == {"g1"} and report["groups"]["group"]["g1"]["n"] == 2
    for key in ("state_accuracy", "rejection_rate", "miss_rate", "answer_accuracy", "wer"):
        assert isinstance(report[key], float), key
    assert report["cer"] is None
    # every predicted state / text is what the model itself produces on the same inputs
    kwargs = [
        dict(text="What color?", images=[media / "red.png"]),
        dict(images=[media / "red.png"], audio=media / "tone.wav"),
        dict(audio=media / "sub" / "noise.wav"),
        dict(text="Say hello world."),
    ]
    for row, kw in zip(report["cases"], kwargs, strict=True):
        direct = tiny.generate(kw.pop("text", None), **kw, max_new_tokens=6)
        assert (row["predicted_state"], row["text"], row["n_tokens"]) == (direct.state, direct.text,
                                                                        len(direct.token_ids))
        assert row["state_correct"] == (direct.state == row["expected_state"])
        assert row["latency_ms"] > 0
    assert report["no_state"] == [c["id"] for c in report["cases"] if c["predicted_state"] is None]


def test_cli_json_markdown_and_out(media, capsys):
    manifest = _write(media / "m.jsonl", TINY_CASES[2:])
    rc = main(["--manifest", str(manifest), "--model", "tiny-random", "--json", "--max-new-tokens", "3",
               "--out", str(media / "report.md")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    report = json.loads(out)
    assert report["n"] == 2 and report["max_new_tokens"] == 3 and report["decoding"]["mode"] == "greedy"
    assert "[1/2] noise: state" in err and "[2/2] typed: state" in err  # progress lines
    md = (media / "report.md").read_text()
    assert md.startswith("# vita eval") and "| state accuracy |" in md and "| typed |" in md
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--manifest", "x.jsonl"])
    assert args.model == "vita-mini" and args.max_new_tokens == 256 and callable(args.func)


class ScriptedModel:
    """Same `generate` interface as `vita.api.Vita`; replies are taken from a script in call order."""

    def __init__(self, script: list[tuple[str | None, str]]) -> None:
        self.script = list(script)
        self.calls: list[dict] = []

    def generate(self, text=None, *, images=(), video=None, audio=None, history=(), max_new_tokens=256,
                 sampling=None, seed=None) -> Reply:
        self.calls.append(dict(text=text, images=list(images), video=video, audio=audio,
                               max_new_tokens=max_new_tokens))
        state, reply = self.script.pop(0)
        return Reply(state, reply, token_ids=list(range(len(reply))), finish_reason="stop")


SCRIPTED = [  # (case, scripted reply)
    ({"id": "t1", "text": "two plus one?", "expect_state": "<3>", "answer": "3"}, ("<3>", "Three.")),
    ({"id": "t2", "image": "red.png", "text": "shape?", "expect_state": "<3>", "choices": ["circle", "square"],
      "answer": "A", "group": "shapes"}, ("<1>", "B. square")),
    ({"id": "t3", "audio": "tone.wav", "expect_state": "<1>", "choices": ["red", "dark red", "blue"],
      "answer": "dark red"}, ("<1>", "It is dark red.")),
    ({"id": "n1", "audio": "tone.wav", "expect_state": "<2>"}, ("<2>", "")),
    ({"id": "n2", "audio": "sub/noise.wav", "expect_state": "<2>"}, ("<1>", "Hello there")),
    ({"id": "n3", "image": "red.png", "expect_state": "<2>", "group": "shapes"}, (None, "garbage")),
    ({"id": "a1", "audio": "tone.wav", "text": "transcribe", "expect_state": "<1>",
      "transcript": "the cat sat on the mat"}, ("<2>", "")),
    ({"id": "a2", "audio": "tone.wav", "expect_state": "<1>", "transcript": "I have three cats"},
     ("<1>", "I have 3 dogs.")),
    ({"id": "z1", "text": "say it", "expect_state": "<3>", "transcript": "你好世界"}, ("<3>", "你好时间")),
    ({"id": "t4", "text": "capital of France?", "expect_state": "<3>", "answer": "Paris", "group": "geo"},
     (None, "Paris")),
]


def test_scripted_model_aggregates_exactly(media):
    manifest = _write(media / "m.jsonl", [c for c, _ in SCRIPTED])
    model = ScriptedModel([r for _, r in SCRIPTED])
    r = evaluate(model, manifest, max_new_tokens=7)
    # inputs reached the model in manifest order, media resolved next to the manifest
    assert [c["text"] for c in model.calls][:3] == ["two plus one?", "shape?", None]
    assert model.calls[1]["images"] == [str(media / "red.png")]
    assert model.calls[4]["audio"] == str(media / "sub" / "noise.wav")
    assert {c["max_new_tokens"] for c in model.calls} == {7}
    assert r["n"] == 10
    assert r["state_accuracy"] == pytest.approx(5 / 10)  # t1 t3 n1 a2 z1
    assert r["confusion"] == {"query": {"query": 5, "not_query": 1, "none": 1},
                              "not_query": {"query": 1, "not_query": 1, "none": 1}}
    assert r["rejection_rate"] == pytest.approx(1 / 3) and r["miss_rate"] == pytest.approx(1 / 7)
    assert r["answer_accuracy"] == pytest.approx(3 / 4)  # t1, t3, t4 right; t2 picked "square"
    assert r["exact_match"] == 1.0 and r["choice_accuracy"] == 0.5
    assert r["wer"] == pytest.approx(7 / 10)  # a1: 6 deletions of 6 words; a2: cats -> dogs, 1 of 4
    assert r["cer"] == pytest.approx(2 / 4)
    assert r["no_state"] == ["n3", "t4"]
    t2 = r["cases"][1]
    assert (t2["predicted_choice"], t2["answer_correct"], t2["state_correct"]) == ("square", False, False)
    m = r["groups"]["modality"]
    assert set(m) == {"image", "audio", "text"}
    assert (m["image"]["n"], m["image"]["state_accuracy"], m["image"]["rejection_rate"]) == (2, 0.0, 0.0)
    assert m["audio"]["n"] == 5 and m["audio"]["state_accuracy"] == pytest.approx(3 / 5)
    assert m["audio"]["rejection_rate"] == 0.5 and m["audio"]["miss_rate"] == pytest.approx(1 / 3)
    assert m["audio"]["wer"] == pytest.approx(7 / 10) and m["audio"]["answer_accuracy"] == 1.0
    assert m["text"]["n"] == 5 and m["text"]["state_accuracy"] == pytest.approx(2 / 5)
    assert m["text"]["miss_rate"] == pytest.approx(1 / 5) and m["text"]["rejection_rate"] is None
    assert m["text"]["answer_accuracy"] == pytest.approx(2 / 3) and m["text"]["wer"] == 1.0
    g = r["groups"]["group"]
    assert set(g) == {"geo", "shapes"}
    assert (g["geo"]["n"], g["geo"]["state_accuracy"], g["geo"]["answer_accuracy"]) == (1, 0.0, 1.0)
    assert (g["shapes"]["n"], g["shapes"]["miss_rate"], g["shapes"]["rejection_rate"]) == (2, 0.0, 0.0)
    md = render_markdown(r)
    assert "| state accuracy | 50.0% | 10 cases |" in md and "| WER | 70.0% |" in md
    assert "| text | 5 | 40.0% | n/a |" in md  # no not-query text case: rejection rate n/a, not 0


def test_history_reaches_the_model_as_earlier_turns(media, tiny):
    """A case with a history is answered after those turns: the same reply as `generate(history=...)`, whose prompt
    holds the earlier turns."""
    history = [{"role": "user", "text": "Say hello.", "audio": "tone.wav"}, {"role": "assistant", "text": "<1>Hello"}]
    case = {"id": "after", "audio": "sub/noise.wav", "expect_state": "<2>", "history": history}
    report = evaluate(tiny, _write(media / "h.jsonl", [case]), max_new_tokens=6)
    turns = [Turn("user", ["Say hello.", Audio(str(media / "tone.wav"))]), Turn("assistant", "<1>Hello")]
    direct = tiny.generate(audio=media / "sub" / "noise.wav", history=turns, max_new_tokens=6)
    row = report["cases"][0]
    assert (row["predicted_state"], row["text"]) == (direct.state, direct.text)
    prompt = tiny.inputs(None, audio=media / "sub" / "noise.wav", history=turns).prompt
    assert "Say hello." in prompt and "<1>Hello" in prompt and prompt.index("<1>Hello") < prompt.rindex("<audio>")
    assert load_manifest(media / "h.jsonl").cases[0].history[0].audio == media / "tone.wav"


# ---- bad manifests ----------------------------------------------------------------------------------------------
GOOD = {"id": "ok", "text": "hi", "expect_state": "<3>"}


@pytest.mark.parametrize("bad, message", [
    ('{"id": "x", "text": "hi", "expect_state": "<3>"', "broken JSON"),
    ({"id": "x", "text": "hi", "expect_state": "<3>", "answr": "1"}, "unknown key(s) 'answr'"),
    ({"id": "x", "image": "nope.png", "expect_state": "<1>"}, "image file not found"),
    ({"id": "x", "audio": "missing.wav", "expect_state": "<1>"}, "audio file not found"),
    ({"id": "x", "text": "hi", "expect_state": "<4>"}, "unknown expect_state '<4>'"),
    ({"id": "x", "text": "hi"}, "missing 'expect_state'"),
    ({"text": "hi", "expect_state": "<3>"}, "missing or empty 'id'"),
    ({"id": "ok", "text": "again", "expect_state": "<3>"}, "duplicate id 'ok' (first on line 1)"),
    ({"id": "x", "expect_state": "<3>"}, "no input"),
    ({"id": "x", "text": "hi", "expect_state": "<3>", "choices": ["a1", "b1"], "answer": "c1"}, "neither one"),
    ({"id": "x", "text": "hi", "expect_state": "<3>", "choices": ["3", "three"], "answer": "3"}, "same after"),
    ({"id": "x", "text": "hi", "expect_state": "<2>", "answer": "3"}, "cannot have answer"),
    ({"id": "x", "text": "hi", "expect_state": "<3>", "transcript": "?!"}, "no words"),
    ("[1, 2]", "expected a JSON object"),
    ({**GOOD, "id": "h", "history": []}, "non-empty list"),
    ({**GOOD, "id": "h", "history": [{"role": "assistant", "text": "<3>Hi."}]}, "turn 0 must be an object with role"),
    ({**GOOD, "id": "h", "history": [{"role": "user", "text": "hi"}]}, "must end with an assistant turn"),
    ({**GOOD, "id": "h", "history": [{"role": "user", "audio": "gone.wav"}, {"role": "assistant", "text": "<1>Hi."}]},
     "history turn 0: audio file not found"),
    ({**GOOD, "id": "h", "history": [{"role": "user"}, {"role": "assistant", "text": "<1>Hi."}]},
     "history turn 0 is empty"),
    ({**GOOD, "id": "h", "history": [{"role": "user", "text": "hi"}, {"role": "assistant", "audio": "tone.wav"}]},
     "history turn 1: unknown key(s) 'audio'"),
])
def test_bad_manifest_lines_name_file_and_line(media, bad, message):
    path = _write(media / "bad.jsonl", [GOOD, bad])
    with pytest.raises(EvalError) as info:
        load_manifest(path)
    assert str(info.value).startswith(f"{path}:2: ") and message in str(info.value)


def test_skip_bad_counts_and_skips(media, capsys):
    path = _write(media / "bad.jsonl", [GOOD, "{oops", "", {"id": "y", "text": "hi", "expect_state": "<9>"},
                                        {"id": "z", "text": "yo", "expect_state": "<3>"}])
    manifest = load_manifest(path, skip_bad=True)
    assert [c.id for c in manifest.cases] == ["ok", "z"] and [c.line for c in manifest.cases] == [1, 5]
    assert [b.line for b in manifest.bad] == [2, 4]
    report = evaluate(ScriptedModel([("<3>", "a"), ("<3>", "b")]), manifest)
    assert report["n"] == 2 and report["n_skipped"] == 2 and report["state_accuracy"] == 1.0
    assert main(["--manifest", str(path)]) == 2
    assert f"error: {path}:2: broken JSON" in capsys.readouterr().err
    with pytest.raises(EvalError, match="no cases"):
        load_manifest(_write(media / "empty.jsonl", ["", "{oops"]), skip_bad=True)
    with pytest.raises(EvalError, match="manifest not found"):
        load_manifest(media / "absent.jsonl")


def test_unusable_media_names_the_case(media, tiny):
    (media / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    path = _write(media / "m.jsonl", [GOOD, {"id": "bad-img", "image": "corrupt.png", "expect_state": "<1>"}])
    with pytest.raises(EvalError, match=rf"{path}:2: case 'bad-img': "):
        evaluate(tiny, path, max_new_tokens=2)
    report = evaluate(tiny, path, max_new_tokens=2, skip_bad=True)
    assert report["n"] == 1 and report["n_skipped"] == 1 and "bad-img" in report["skipped"][0]["error"]
