"""LibriSpeech (WER) and WenetSpeech-style JSONL (CER) adapters on hand-written samples, rates by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vita.errors import EvalError
from vita.eval.bench import get
from vita.eval.bench.core import Options
from vita.eval.bench.runner import run_benchmark


def _tone(path: Path, seconds: float = 0.2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (0.1 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000)


def test_librispeech_layout_and_wer(tmp_path, fake):
    split = tmp_path / "LibriSpeech" / "test-other"
    chapter = split / "1688" / "142285"
    chapter.mkdir(parents=True)
    (chapter / "1688-142285.trans.txt").write_text(
        "1688-142285-0000 THERE'S IRON THEY SAY IN ALL OUR BLOOD\n"
        "1688-142285-0001 AND A GRAIN OR TWO PERHAPS IS GOOD\n")
    for uid in ("1688-142285-0000", "1688-142285-0001"):
        _tone(chapter / f"{uid}.flac")
    items = get("librispeech").load(split, Options())
    assert [i.id for i in items] == ["1688-142285-0000", "1688-142285-0001"]
    assert items[0].prompt == "Transcribe the speech." and items[0].audio == chapter / "1688-142285-0000.flac"
    hyps = {"1688-142285-0000": "There's iron, they say, in all our blood.",  # 0 edits after normalisation
            "1688-142285-0001": "and grain or 2 perhaps his good"}  # -A, TWO==2, IS->HIS: 2 edits
    model = fake(lambda audio, **_: hyps[Path(audio).stem])
    r = run_benchmark(get("librispeech"), split, model, out_dir=tmp_path / "o", model_name="fake")
    h = r["headline"][0]
    assert h["key"] == "librispeech/test-other" and h["value"] == pytest.approx(100 * 2 / 16)  # 8 + 8 words
    assert h["higher_is_better"] is False and [p["value"] for p in h["paper"]] == [18.41, 7.5]
    assert [row["edits"] for row in r["items"]] == [0, 2]
    assert model.calls[0]["text"] == "Transcribe the speech." and model.calls[0]["audio"].endswith(".flac")
    (chapter / "1688-142285-0001.flac").unlink()
    with pytest.raises(EvalError, match="no audio 1688-142285-0001.flac"):
        get("librispeech").load(split, Options())


def test_wenetspeech_jsonl_cer(tmp_path, fake):
    d = tmp_path / "TEST_MEETING"
    _tone(d / "wav" / "a.wav")
    _tone(d / "wav" / "b.wav")
    lines = [{"key": "M_0001", "wav": "wav/a.wav", "txt": "我们开会吧"},
             {"key": "M_0002", "wav": str(d / "wav" / "b.wav"), "txt": "好的，没问题。"}]
    (d / "data.list").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    hyps = {"a.wav": "我们开会", "b.wav": "好的没有问题"}  # 1 deletion / 5; 1 insertion / 5 (punctuation ignored)
    r = run_benchmark(get("wenetspeech"), d, fake(lambda audio, **_: hyps[Path(audio).name]), out_dir=tmp_path / "o",
                      model_name="fake")
    h = r["headline"][0]
    assert h["name"] == "CER" and h["value"] == pytest.approx(100 * 2 / 10)
    assert h["key"] == "wenetspeech/test_meeting" and h["paper"][0]["value"] == 16.53
    (d / "data.list").write_text('{"key": "x", "wav": "nope.wav", "txt": "好"}\n')
    with pytest.raises(EvalError, match="audio file not found"):
        get("wenetspeech").load(d, Options())


def test_resume_after_the_data_folder_moved(tmp_path, fake):
    split = tmp_path / "a" / "dev-clean"
    chapter = split / "84" / "121123"
    chapter.mkdir(parents=True)
    (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS\n")
    for uid in ("84-121123-0000", "84-121123-0001"):
        _tone(chapter / f"{uid}.flac")
    first = fake(lambda audio, **_: "go do you hear")
    run_benchmark(get("librispeech"), split, first, out_dir=tmp_path / "o", model_name="m", options=Options(limit=1))
    moved = tmp_path / "b" / "dev-clean"
    (tmp_path / "b").mkdir()
    split.rename(moved)
    model = fake(lambda audio, **_: "but in less")
    r = run_benchmark(get("librispeech"), moved, model, out_dir=tmp_path / "o", model_name="m")
    assert len(model.calls) == 1 and r["headline"][0]["value"] == 0.0  # only the new item ran; both right
    assert r["headline"][0]["paper"][0]["value"] == 7.57
    (moved / "84" / "121123" / "84-121123-0000.flac").write_bytes(b"other audio")
    with pytest.raises(EvalError, match="different prompt or media"):
        run_benchmark(get("librispeech"), moved, fake(lambda **_: ""), out_dir=tmp_path / "o", model_name="m")
