"""vita-mini data builder: the small preset builds, the pipeline and `vita eval` read everything, state tokens are
right, builds are deterministic, eval media, sentences and voices are held out, and audio says what its transcript
says."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vita.cli.data import add_mini_data_parser as add_parser
from vita.datasets.augment import Plan
from vita.datasets.mini.build import DEFAULT_SIZES, SCENE_TEXT_TASKS, build_mini_data
from vita.datasets.mini.regions import REGION_GRID
from vita.datasets.mini.speech import Speaker, voice_from_name
from vita.datasets.mini.text import missing_packages
from vita.eval.manifest import load_manifest
from vita.presets import byte_tokenizer, preset
from vita.processor import Processor
from vita.tokens import STATE_NOT_QUERY, STATE_QUERY_AUDIO, STATE_QUERY_TEXT
from vita.training.data import DataConfig, DataStats, SourceConfig, iter_samples
from vita.training.sample import parse_record

TINY = dict.fromkeys(DEFAULT_SIZES, 1) | {"negatives": 3, "eval_negatives": 3}
pytestmark = pytest.mark.skipif(bool(missing_packages()), reason=f"needs Debian {missing_packages()} (make setup)")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("mini")
    return root, build_mini_data(root, seed=0, sizes="small")


def _records(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_small_preset_builds(built) -> None:
    root, info = built
    train = sum(len(_records(root / p)) for p in info["train"].values())
    cases = sum(len((root / p).read_text().splitlines()) for k, p in info["eval"].items() if k != "all")
    assert 50 <= train <= 100 and 20 <= cases <= 55
    assert set(info["train"]) == {"vision_align", "audio_align", "audio_short", "audio_fragments", "addressed",
                                  "dialogue", "followup", "instruct", "scene_text", "vision_regions"}
    assert info["wall_seconds"] > 0
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["counts"]["train/instruct"] == len(_records(root / info["train"]["instruct"]))
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest
    listing = "".join(f"{h}  {p}\n" for p, h in manifest["files"].items())
    assert hashlib.sha256(listing.encode()).hexdigest() == manifest["files_sha256"]


@pytest.mark.parametrize("name", ["vision_align", "audio_align", "audio_short", "audio_fragments", "addressed",
                                  "dialogue", "followup", "instruct", "scene_text"])
def test_train_files_read_without_skips(built, name: str) -> None:
    root, info = built
    path = root / info["train"][name]
    proc = Processor(byte_tokenizer(), preset("tiny-random"))
    stats = DataStats()
    cfg = DataConfig([SourceConfig(str(path))], max_length=100_000, shuffle=False, on_error="skip")
    samples = list(iter_samples(cfg, proc, stats=stats))
    assert stats.skipped == 0, stats.messages
    assert len(samples) == len(_records(path)) == stats.samples


def test_scene_text_describes_a_scene_and_asks_about_it(built) -> None:
    """Text only: a caption naming what is where, then a question; the answer is a word of the family's options."""
    root, info = built
    rows = _records(root / info["train"]["scene_text"])
    assert len(rows) == 10 and not any(k in r for r in rows for k in ("image", "video", "audio"))
    assert {r["set"] for r in rows} == {f"mini_scene_text_{t}" for t in SCENE_TEXT_TASKS}
    for r in rows:
        (human, gpt) = r["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt" and human["value"].endswith("?")
        assert 1 <= len(gpt["value"].split()) <= 3
        if r["set"] == "mini_scene_text_colour":  # the answer is a colour the description names
            assert gpt["value"] in human["value"].split("?")[0].replace(",", " ").split()


def test_region_pictures_have_a_label_per_row(built) -> None:
    root, info = built
    rows = _records(root / info["train"]["vision_regions"])
    assert len(rows) == 8
    for r in rows:
        assert (root / "train" / r["image"]).is_file() and r["image"].startswith("media/regions/")
        assert len(r["rows"]) == REGION_GRID ** 2 and any(r["rows"])
        assert all(isinstance(label, str) for label in r["rows"])


def test_eval_manifests_load(built) -> None:
    root, info = built
    assert set(info["eval"]) == {"image", "naming", "video", "chat", "asr", "negatives", "dialogue", "followup",
                                 "chat_typed", "all"}
    sizes = {}
    for name, rel in info["eval"].items():
        manifest = load_manifest(root / rel, skip_bad=True)
        assert manifest.bad == [] and manifest.cases
        sizes[name] = len(manifest.cases)
    assert sizes.pop("all") == sum(sizes.values()) - sizes["dialogue"] - sizes["followup"] - sizes["chat_typed"]
    asr = load_manifest(root / info["eval"]["asr"]).cases
    assert all(c.transcript and c.audio is not None for c in asr)


def test_state_tokens_per_kind(built) -> None:
    root, info = built
    seen = set()
    for name, rel in info["train"].items():
        if name == "vision_regions":  # pictures with row labels, not conversations (region_align reads them)
            continue
        for i, record in enumerate(_records(root / rel)):
            reply = parse_record(record, f"{rel}:{i}", root / "train").turns[-1][1]
            prompt = record["conversations"][-2]["value"]
            if record.get("kind") in ("chatter", "noise", "negative") or record["set"] == "mini_addressed":
                expected = STATE_NOT_QUERY
            elif prompt.startswith("Transcribe") or "<audio>" not in prompt:
                expected = STATE_QUERY_TEXT  # typed questions, captions and the typed ASR instruction
            else:
                expected = STATE_QUERY_AUDIO
            assert reply.startswith(expected), (rel, record)
            seen.add((record["set"], expected))
    assert {s for _, s in seen} == {STATE_NOT_QUERY, STATE_QUERY_AUDIO, STATE_QUERY_TEXT}
    assert ("mini_negatives", STATE_NOT_QUERY) in seen and ("mini_negatives", STATE_QUERY_AUDIO) in seen
    for rel in info["eval"].values():
        for case in load_manifest(root / rel).cases:
            if case.group.split("/")[-1] in ("chatter", "noise", "addressed"):
                assert case.expect_state == STATE_NOT_QUERY
            elif case.text:
                assert case.expect_state == STATE_QUERY_TEXT
            else:
                assert case.audio is not None and case.expect_state == STATE_QUERY_AUDIO


def test_same_seed_same_files_other_seed_differs(tmp_path) -> None:
    a = build_mini_data(tmp_path / "a", seed=3, sizes=TINY)
    b = build_mini_data(tmp_path / "b", seed=3, sizes=TINY)
    c = build_mini_data(tmp_path / "c", seed=4, sizes=TINY)
    assert a["files"] == b["files"] and a["files_sha256"] == b["files_sha256"]
    assert c["files_sha256"] != a["files_sha256"]
    assert a["voices"] == c["voices"] and a["text"] == c["text"]
    media = [k for k in a["files"] if "/media/images/" in k or "/media/videos/" in k]
    assert all(a["files"][k] != c["files"].get(k) for k in media)


def test_train_and_eval_media_disjoint(built) -> None:
    root, _ = built

    def hashes(split: str) -> set[str]:
        files = [*(root / split / "media" / "images").glob("*.png"), *(root / split / "media" / "videos").glob("*.mp4")]
        assert files
        return {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    assert not hashes("train") & hashes("eval")


def test_eval_voices_held_out_or_said_not(built) -> None:
    _, info = built
    voices = info["voices"]
    assert voices["train"] and voices["eval"]
    if voices["eval_held_out"]:
        assert not set(voices["train"]) & set(voices["eval"])
        assert all(v.startswith("espeak-ng:") for v in voices["eval"])
        train, held = voices["train_pool"], voices["eval_pool"]
        assert not set(train["bases"]) & set(held["bases"]) and not set(train["variants"]) & set(held["variants"])
        assert len(voices["train"]) >= 100 and len(voices["eval"]) >= 20
    else:
        assert "NOT held out" in voices["note"]


def _index(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / split / "speech.jsonl").read_text().splitlines()]


def _identity(voice: str) -> str:
    return voice.split(" s")[0] if voice.startswith("espeak-ng:") else voice.split(" ls")[0]


def test_clips_use_their_split_voices(built) -> None:
    root, info = built
    for split in ("train", "eval"):
        rows = _index(root, split)
        assert rows and all((root / split / r["audio"]).is_file() for r in rows)
        assert {_identity(r["voice"]) for r in rows} <= set(info["voices"][split]), split
    # one voice per sample, drawn from the sample's own generator: not one rendering per template
    train = _index(root, "train")
    assert len({r["voice"] for r in train}) >= 0.8 * len(train)
    assert any(r["augment"] for r in train) and any(not r["augment"] for r in train)


def test_short_clips_say_one_to_three_words_of_training_sentences(built) -> None:
    root, info = built
    short = _records(root / info["train"]["audio_short"])
    assert len(short) == info["sizes"]["asr_short"] > 0
    said = {r["text"] for r in _index(root, "train")}
    for r in short:
        words = r["conversations"][1]["value"].removeprefix(STATE_QUERY_TEXT)
        assert r["conversations"][0]["value"] == "Transcribe the speech.<audio>"
        assert (root / "train" / r["audio"]).is_file()
        assert words.endswith(".") and words[0].isupper() and 1 <= len(words.split()) <= 3 and words in said, words


def test_fragments_say_the_first_words_of_training_sentences(built) -> None:
    """A broken-off sentence is transcribed as said: two or more of its first words, not all, no final mark."""
    from vita.datasets.mini.spoken_text import fragment
    from vita.datasets.mini.text import load_corpus

    corpus = load_corpus()
    whole = corpus.train_statements + corpus.train_questions
    root, info = built
    records = _records(root / info["train"]["audio_fragments"])
    assert len(records) == info["sizes"]["asr_fragment"] > 0
    said = {r["audio"]: r for r in _index(root, "train")}
    texts = [r["conversations"][1]["value"].removeprefix(STATE_QUERY_TEXT) for r in records]
    texts += [fragment(np.random.default_rng(k), corpus.train_statements, corpus.train_questions) for k in range(200)]
    for k, text in enumerate(texts):
        if k < len(records):
            assert said[records[k]["audio"]]["text"] == text and not said[records[k]["audio"]]["augment"].count("@")
        assert text[-1] not in ".?!,;:" and len(text.split()) >= 2, text
        assert any(s.startswith(text) and s[len(text):len(text) + 1] in (" ", ",", ";", ":", "-") for s in whole), text
    assert len({t.split()[0] for t in texts}) > 20  # many openings, not one template


def test_fragments_only_adds_the_fragments_as_a_fresh_build_does(built, tmp_path, capsys) -> None:
    import shutil

    from vita.cli import main

    root, info = built
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    own = {r["audio"] for r in _records(copy / "train" / "audio_fragments.json")}
    for rel in own:  # a folder built before the fragments: none of their files, rows or manifest entries
        (copy / "train" / rel).unlink()
    (copy / "train" / "audio_fragments.json").unlink()
    index = copy / "train" / "speech.jsonl"
    index.write_text("".join(f"{line}\n" for line in index.read_text().splitlines()
                             if json.loads(line)["audio"] not in own))
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["sizes"]["asr_fragment"], manifest["counts"]["train/audio_fragments"]
    del manifest["train"]["audio_fragments"]
    manifest["files"] = {k: v for k, v in manifest["files"].items()
                         if k != "train/audio_fragments.json" and k.removeprefix("train/") not in own}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["data", "mini", "--out", str(copy), "--fragments-only"]) == 0
    assert "train/audio_fragments: 3" in capsys.readouterr().out
    manifest = json.loads((copy / "manifest.json").read_text())
    for key in ("files", "files_sha256", "counts", "sizes", "train"):
        assert manifest[key] == info[key], key
    assert list(manifest["train"]) == list(info["train"])
    assert index.read_bytes() == (root / "train" / "speech.jsonl").read_bytes()


def test_addressed_speech_names_someone_else_and_asks_for_silence(built) -> None:
    from vita.bench.duplex_sentences import TO_OTHERS
    from vita.datasets.mini.spoken_text import ADDRESSEES

    root, info = built
    records = _records(root / info["train"]["addressed"])
    assert len(records) == info["sizes"]["addressed"] > 0
    for r in records:
        assert r["conversations"] == [{"from": "human", "value": "<audio>"}, {"from": "gpt", "value": ""}]
        assert r["inserted_id"] == 1 and (root / "train" / r["audio"]).is_file()
        assert any(name in r["text"] for name in ADDRESSEES), r["text"]
    bench_names = {w.strip(",.?") for s in TO_OTHERS for w in s.split() if w[:1].isupper()}
    assert not bench_names & {w for a in ADDRESSEES for w in a.split()}  # the benchmark's people stay its own


def test_dialogues_follow_an_exchange(built) -> None:
    """train/dialogue.json: a question and its (maybe cut) answer as unsupervised context, then "<2>" for
    non-queries or the next answer; eval/dialogue.jsonl: the same with held-out names, as cases with a history."""
    from vita.datasets.mini.spoken_text import ADDRESSEES, EVAL_ADDRESSEES

    root, info = built
    records = _records(root / info["train"]["dialogue"])
    assert len(records) == info["sizes"]["dialogue"] > 0
    assert {r["kind"] for r in records} == {"negative", "query"}
    for r in records:
        conv = parse_record(r, r["id"], root / "train")
        assert len(conv.turns) == 4 and conv.context == {1} and conv.turns[1][1][:3] in ("<1>", "<3>")
        assert (conv.turns[3][1] == STATE_NOT_QUERY) == (r["kind"] == "negative")
    cases = load_manifest(root / info["eval"]["dialogue"]).cases
    assert len(cases) == info["sizes"]["eval_dialogue"] and all(len(c.history) == 2 for c in cases)
    addressed = [c for c in cases if c.group == "dialogue/addressed"]
    assert addressed and all(c.expect_state == STATE_NOT_QUERY and c.audio is not None for c in addressed)
    assert not {w for a in EVAL_ADDRESSEES for w in a.split()} & {w for a in ADDRESSEES for w in a.split()}


def test_followups_are_answered_after_an_exchange(built) -> None:
    """train/followup.json: after an exchange, a spoken question with a lead -> its answer, or a repeat request -> the
    first answer again ("<1>"); eval/followup.jsonl the same with held-out phrasings."""
    from vita.bench.duplex_sentences import INTERRUPTIONS
    from vita.datasets.mini.dialogue import EVAL_LEADS, EVAL_REPEATS, LEADS, REPEATS

    root, info = built
    records = _records(root / info["train"]["followup"])
    assert len(records) == info["sizes"]["followup"] > 0 and {r["kind"] for r in records} == {"question", "repeat"}
    for r in records:
        conv = parse_record(r, r["id"], root / "train")
        assert conv.context == {1} and conv.turns[3][1].startswith(STATE_QUERY_AUDIO)
        if r["kind"] == "repeat":
            # the first answer again, whole (the context holds it as heard: whole or its first words)
            assert r["text"] in REPEATS and r["conversations"][3]["value"].startswith(r["conversations"][1]["value"])
        else:
            assert any(r["text"].startswith(lead) for lead in LEADS)
    cases = load_manifest(root / info["eval"]["followup"]).cases
    assert len(cases) == info["sizes"]["eval_followup"] and all(c.history and c.answer for c in cases)
    assert not set(EVAL_LEADS) & set(LEADS) and not set(EVAL_REPEATS) & set(REPEATS)
    assert not {t for t, _ in INTERRUPTIONS} & set(REPEATS + EVAL_REPEATS)  # the benchmark's sentences stay its own


def test_train_and_eval_sentences_disjoint(built) -> None:
    root, info = built
    asr = [r["conversations"][1]["value"].removeprefix(STATE_QUERY_TEXT)
           for r in _records(root / info["train"]["audio_align"])]
    eval_asr = [c.transcript for c in load_manifest(root / info["eval"]["asr"]).cases]
    assert asr and eval_asr and not set(asr) & set(eval_asr)
    train_text = {r["text"] for r in _index(root, "train")}
    assert not train_text & set(eval_asr)
    assert info["text"]["train_statements"] > 5000 and info["text"]["eval_statements"] > 500


def test_eval_asr_conditions(built) -> None:
    root, info = built
    cases = load_manifest(root / info["eval"]["asr"]).cases
    assert {c.group for c in cases} == {"asr/clean", "asr/noisy", "asr/telephone"}
    tags = {r["audio"]: r["augment"] for r in _index(root, "eval")}
    for case in cases:
        tag = tags[str(case.audio.relative_to(root / "eval"))]
        condition = case.group.split("/")[1]
        assert (tag == "") == (condition == "clean")
        assert ("tel" in tag) == (condition == "telephone") and ("dB" in tag) == (condition == "noisy")
    asr_audio = {str(c.audio.relative_to(root / "eval")) for c in cases}
    assert all(r["audio"] in asr_audio for r in _index(root, "eval") if r["augment"])  # other eval speech: clean


def test_audio_16k_mono_and_transcripts_match(built) -> None:
    root, info = built
    wavs = [*root.glob("train/media/**/*.wav"), *root.glob("eval/media/**/*.wav")]
    assert wavs
    for path in wavs:
        meta = sf.info(str(path))
        assert (meta.samplerate, meta.channels) == (16000, 1), path
    # the clip's name is a hash of (voice, text, augmentation): the transcript is the text the synthesiser was given
    rows = {r["audio"]: r for r in _index(root, "train")}
    asr = _records(root / info["train"]["audio_align"])
    for record in asr:
        text = record["conversations"][1]["value"].removeprefix(STATE_QUERY_TEXT)
        row = rows[record["audio"]]
        assert row["text"] == text
        key = f"{row['voice']}\n{text}" + (f"\n{row['augment']}" if row["augment"] else "")
        assert Path(record["audio"]).stem == hashlib.sha256(key.encode()).hexdigest()[:16]
    for case in load_manifest(root / info["eval"]["asr"]).cases:
        assert case.audio is not None
        row = {r["audio"]: r for r in _index(root, "eval")}[str(case.audio.relative_to(root / "eval"))]
        assert row["text"] == case.transcript
    # and the audio is that synthesis: re-synthesise clean clips from their recorded voice names (one per engine)
    clean = [r for r in rows.values() if not r["augment"]]
    for engine in ("espeak-ng:", "piper:"):
        row = next((r for r in clean if r["voice"].startswith(engine)), None)
        if row is None:
            continue
        written, _ = sf.read(str(root / "train" / row["audio"]), dtype="float32")
        fresh = np.clip(voice_from_name(row["voice"])(row["text"]), -1, 1)
        assert written.shape == fresh.shape and np.abs(written - fresh).max() < 2e-4, row


def test_speaker_records_the_text_it_passed(tmp_path) -> None:
    said: list[str] = []

    class Fake:
        name = "fake"

        def __call__(self, text: str) -> np.ndarray:
            said.append(text)
            return np.full(4000, 0.1, np.float32)

    speaker = Speaker(tmp_path, "speech")
    clip = speaker.say(Fake(), "Hello there.")
    assert speaker.say(Fake(), "Hello there.") is clip and said == ["Hello there."] and clip.text == said[0]
    noisy = speaker.say(Fake(), "Hello there.", Plan(noise="white", snr_db=10.0, seed=1))
    assert noisy.rel != clip.rel and noisy.augment and noisy.text == clip.text
    assert {(r["audio"], r["augment"]) for r in speaker.index()} == {(clip.rel, ""), (noisy.rel, noisy.augment)}


def test_cli_parser() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["mini", "--out", "x", "--seed", "2", "--small", "--no-augment"])
    assert (args.out, args.seed, args.small, args.no_augment) == (Path("x"), 2, True, True) and callable(args.func)


def test_without_espeak_falls_back_to_piper_and_says_so(tmp_path, monkeypatch) -> None:
    import vita.datasets.mini.speech as mini_speech

    monkeypatch.setattr(mini_speech, "espeak_available", lambda: False)
    sizes = dict.fromkeys(DEFAULT_SIZES, 0) | {"asr": 1, "eval_asr": 2, "vision_image": 1, "eval_image_typed": 1}
    info = build_mini_data(tmp_path, seed=0, sizes=sizes)
    voices = info["voices"]
    assert voices["eval_held_out"] is False and "NOT held out" in voices["note"]
    assert all(v.startswith("piper:") and v not in voices["train"] for v in voices["eval"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["voices"] == voices
    for case in load_manifest(tmp_path / info["eval"]["asr"]).cases:
        assert case.audio is not None and sf.info(str(case.audio)).samplerate == 16000


def test_regions_only_rewrites_the_regions_as_a_fresh_build_does(built, tmp_path, capsys) -> None:
    import shutil

    from vita.cli import main

    root, info = built
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    regions = sorted((copy / "train" / "media" / "regions").iterdir())
    regions[0].unlink()  # a lost picture and a stale record come back as a fresh build writes them
    (copy / "train" / "vision_regions.json").write_text("[]")
    assert main(["data", "mini", "--out", str(copy), "--regions-only"]) == 0
    assert "train/vision_regions: 8" in capsys.readouterr().out
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["files"] == info["files"] and manifest["files_sha256"] == info["files_sha256"]
    regions = ("train", "vision_regions.json")
    assert copy.joinpath(*regions).read_bytes() == root.joinpath(*regions).read_bytes()
    assert main(["data", "mini", "--out", str(tmp_path / "nothing"), "--regions-only"]) != 0
    assert "not a `vita data mini` folder" in capsys.readouterr().err


def test_eval_dialogues_grow_by_appending() -> None:
    """More eval dialogue cases keep the first ones byte-identical (per-case seeds), so a larger eval set still
    compares case by case with reports on the smaller one."""
    from vita.datasets.mini.dialogue import eval_dialogues

    chat = [{"id": f"chat-{i}", "text": f"What is {i} plus 1?", "answer": str(i + 1), "match": "contains",
             "expect_state": "<3>", "group": "chat/arithmetic/typed"} for i in range(5)]
    negatives = [{"id": f"neg-{i}", "audio": f"media/n{i}.wav", "expect_state": "<2>", "group": f"negatives/{k}"}
                 for i, k in enumerate(("chatter", "noise", "chatter", "noise"))]
    said: list[tuple[int, str]] = []

    def say(i: int, text: str) -> str:
        said.append((i, text))
        return f"media/addr{i}.wav"

    small = eval_dialogues(chat, negatives, say, 6, 0, ("It is late.",), ("Where is the bus?", "Is it cold?"))
    large = eval_dialogues(chat, negatives, say, 24, 0, ("It is late.",), ("Where is the bus?", "Is it cold?"))
    assert large[:6] == small and len(large) == 24
    assert sum(c["group"] == "dialogue/addressed" for c in large) == 8
    n_small = sum(c["group"] == "dialogue/addressed" for c in small)
    assert n_small == 2 and said[:n_small] == said[n_small:2 * n_small]  # the same sentences, said by the same case


def test_chat_typed_is_a_larger_typed_set_disjoint_from_the_chat_cases(built) -> None:
    root, info = built
    chat = load_manifest(root / info["eval"]["chat"]).cases
    typed = load_manifest(root / info["eval"]["chat_typed"]).cases
    assert len(typed) == info["sizes"]["eval_chat_typed"] == 4
    assert all(c.audio is None and c.expect_state == "<3>" and str(c.answer).startswith("is ") for c in typed)
    assert all(c.group.startswith("chat_typed/") for c in typed)
    assert not {c.text for c in typed} & {c.text for c in chat if c.text}
    from vita.datasets.mini.chat import chat_prompts, typed_chat_cases

    train = {p.prompt for p in chat_prompts("train", 400, 0)}
    big = typed_chat_cases(200, 40)
    assert len(big) == 200 and not {c["text"] for c in big} & train
    assert typed_chat_cases(50, 40) == big[:50]  # a larger set keeps the first cases


def test_chat_typed_only_adds_it_as_a_fresh_build_does(built, tmp_path, capsys) -> None:
    import shutil

    from vita.cli import main

    root, info = built
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    (copy / "eval" / "chat_typed.jsonl").unlink()
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["sizes"]["eval_chat_typed"], manifest["eval"]["chat_typed"], manifest["files"]["eval/chat_typed.jsonl"]
    manifest["counts"] = {k: v for k, v in manifest["counts"].items() if "chat_typed" not in k}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["data", "mini", "--out", str(copy), "--chat-typed-only"]) == 0
    assert "eval/chat_typed: 4" in capsys.readouterr().out
    manifest = json.loads((copy / "manifest.json").read_text())
    for key in ("files", "files_sha256", "counts", "sizes", "eval"):
        assert manifest[key] == info[key], key
    assert list(manifest["eval"]) == list(info["eval"])
    assert (copy / "eval" / "chat_typed.jsonl").read_bytes() == (root / "eval" / "chat_typed.jsonl").read_bytes()

