"""VITA-format reader: ids/labels equal the inference processor's, state tokens, errors with file:line, order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image as PILImage

from vita.errors import DataError
from vita.media.prompt import expand_placeholders, tokenize_with_placeholders
from vita.presets import byte_tokenizer, preset
from vita.processor import Audio, Image, Processor, Turn
from vita.tokens import AUDIO_TOKEN_ID, IGNORE_INDEX, IMAGE_TOKEN_ID
from vita.training.data import DataConfig, DataStats, SourceConfig, collate, epoch_order, iter_samples
from vita.training.sample import build_sample, tokenize_with_offsets


@pytest.fixture(scope="module")
def proc() -> Processor:
    return Processor(byte_tokenizer(), preset("tiny-random"))


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    PILImage.new("RGB", (200, 120), (255, 0, 0)).save(root / "red.png")
    PILImage.new("RGB", (60, 60), (0, 0, 255)).save(root / "blue.png")
    t = np.arange(8000) / 16000
    sf.write(root / "q.wav", (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return root


def enc(proc: Processor, text: str) -> list[int]:
    return proc.tokenizer.encode(text, add_special_tokens=False)


def supervised(proc: Processor, sample) -> str:
    return proc.tokenizer.decode([t for t in sample.labels.tolist() if t != IGNORE_INDEX])


def text_sample(i: int, answer: str | None = None) -> dict:
    return {"id": i, "conversations": [{"from": "human", "value": f"question {i}"},
                                       {"from": "gpt", "value": answer or f"answer {i}"}]}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# -- ids and labels ------------------------------------------------------------------------------------------------


def test_ids_and_labels_equal_inference(proc: Processor, media: Path) -> None:
    record = {"conversations": [
        {"from": "human", "value": "<image>\nWhat is it?<audio>"},
        {"from": "gpt", "value": "A red box."},
        {"from": "human", "value": "More"},
        {"from": "gpt", "value": "No."},
    ], "image": "red.png", "audio": ["q.wav"]}
    s = build_sample(proc, record, "x.jsonl:1", media)
    first = proc([Turn("user", ["<image>\nWhat is it?<audio>", Image(media / "red.png"), Audio(media / "q.wav")])])
    inf = first.token_ids[0].tolist()
    reply1, mid, reply2 = enc(proc, "<1>A red box.</s>"), enc(proc, "\nuser:More</s>\nbot:"), enc(proc, "<3>No.</s>")
    assert s.token_ids.tolist() == inf + reply1 + mid + reply2
    ign = [IGNORE_INDEX]
    assert s.labels.tolist() == ign * len(inf) + reply1 + ign * len(mid) + reply2
    # the second turn's prompt equals inference with the first reply in the history
    second = proc([Turn("user", ["<image>\nWhat is it?<audio>", Image(media / "red.png"), Audio(media / "q.wav")]),
                   Turn("assistant", "<1>A red box."), Turn("user", "More")]).token_ids[0].tolist()
    assert s.token_ids.tolist()[: len(second)] == second
    assert torch.equal(s.pixel_values, first.pixel_values)
    assert len(s.fbanks) == 1 and torch.equal(s.fbanks[0], first.fbanks[0])
    n_img = (s.token_ids == IMAGE_TOKEN_ID).sum().item()
    assert n_img == first.pixel_values.shape[0] * proc.config.vision.tokens_per_tile
    assert (s.token_ids == AUDIO_TOKEN_ID).sum().item() == (first.token_ids == AUDIO_TOKEN_ID).sum().item()
    assert s.segment_ids is None and s.source == "x.jsonl:1"


def test_offsets_tokenizer_matches_placeholder_tokenizer(proc: Processor) -> None:
    prompt = "system:hi</s>\nuser:<image><image>\nq<audio>é</s>\nbot:<1>ok</s>"
    ids, spans = tokenize_with_offsets(proc, prompt)
    assert ids == tokenize_with_placeholders(proc.tokenizer, prompt)
    assert len(spans) == len(ids)
    assert expand_placeholders(ids, {IMAGE_TOKEN_ID: [2, 2], AUDIO_TOKEN_ID: [3]}).count(IMAGE_TOKEN_ID) == 4


def test_state_tokens(proc: Processor, media: Path) -> None:
    record = {"conversations": [
        {"from": "human", "value": "<audio>"}, {"from": "gpt", "value": "spoken"},
        {"from": "human", "value": "typed"}, {"from": "gpt", "value": "text"},
        {"from": "human", "value": "<audio>"}, {"from": "gpt", "value": "ignored"},
        {"from": "human", "value": "pre"}, {"from": "gpt", "value": "<1>tagged"},
    ], "audio": ["q.wav", "q.wav"], "inserted_id": 5}
    s = build_sample(proc, record, "x:1", media)
    assert supervised(proc, s) == "<1>spoken</s><3>text</s><2></s><1>tagged</s>"
    assert "ignored" not in proc.tokenizer.decode([t for t in s.token_ids.tolist() if t >= 0])


def test_context_turns_are_shown_not_supervised(proc: Processor, media: Path) -> None:
    """`context_id`: a reply the user heard (part of) stays in the prompt, with its state token, unsupervised."""
    record = {"conversations": [
        {"from": "human", "value": "<audio>"}, {"from": "gpt", "value": "heard part"},
        {"from": "human", "value": "<audio>"}, {"from": "gpt", "value": ""},
    ], "audio": ["q.wav", "q.wav"], "inserted_id": 3, "context_id": 1}
    s = build_sample(proc, record, "x:1", media)
    assert supervised(proc, s) == "<2></s>"
    assert "<1>heard part</s>" in proc.tokenizer.decode([t for t in s.token_ids.tolist() if t >= 0])
    whole = build_sample(proc, {k: v for k, v in record.items() if k != "context_id"}, "x:1", media)
    assert torch.equal(whole.token_ids, s.token_ids) and supervised(proc, whole) == "<1>heard part</s><2></s>"
    for bad, message in (({"context_id": 3}, "context_id 3 is the last turn"), ({"context_id": 0}, "not the index"),
                         ({"context_id": "1"}, "must be an integer")):
        with pytest.raises(DataError, match=message):
            build_sample(proc, {**record, **bad}, "x:1", media)


def test_end_tag_false_cuts_final_eos(proc: Processor, media: Path) -> None:
    record = dict(text_sample(0), end_tag=False)
    s = build_sample(proc, record, "x:1", media)
    assert supervised(proc, s) == "<3>answer 0"
    assert s.token_ids[-1].item() != proc.tokenizer.eos_id


def test_json_list_and_jsonl_agree(proc: Processor, tmp_path: Path) -> None:
    rows = [text_sample(i) for i in range(3)]
    (tmp_path / "d.json").write_text(json.dumps(rows, indent=1))
    write_jsonl(tmp_path / "d.jsonl", rows)
    a = list(iter_samples(DataConfig([SourceConfig(str(tmp_path / "d.json"))], shuffle=False), proc))
    b = list(iter_samples(DataConfig([SourceConfig(str(tmp_path / "d.jsonl"))], shuffle=False), proc))
    assert [x.token_ids.tolist() for x in a] == [x.token_ids.tolist() for x in b]
    assert [x.source for x in b] == [f"{tmp_path / 'd.jsonl'}:{i}" for i in (1, 2, 3)]
    assert a[1].source.startswith(f"{tmp_path / 'd.json'}:") and a[1].source.endswith("(#1)")
    line = int(a[1].source.rsplit(":", 1)[1].split()[0])
    assert '"id": 1' in (tmp_path / "d.json").read_text().splitlines()[line]  # the line after the record's "{"


# -- malformed data ------------------------------------------------------------------------------------------------

BAD = {
    "missing_media": {"conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}],
                      "image": "nope.png"},
    "broken_json": '{"conversations": [',
    "too_long": text_sample(9, "y" * 3000),
    "audio_marker_without_audio": {"conversations": [{"from": "human", "value": "<audio>"},
                                                     {"from": "gpt", "value": "x"}]},
    "audio_without_marker": {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "x"}],
                             "audio": "q.wav"},
    "unknown_role": {"conversations": [{"from": "robot", "value": "hi"}, {"from": "gpt", "value": "x"}]},
    "corrupt_media": {"conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}],
                      "image": "bad.png"},
}
KINDS = {"missing_media": "missing_media", "broken_json": "broken_json", "too_long": "too_long",
         "audio_marker_without_audio": "markers", "audio_without_marker": "markers", "unknown_role": "role",
         "corrupt_media": "media"}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_is_skipped_with_file_and_line(proc: Processor, media: Path, tmp_path: Path, case: str) -> None:
    (media / "bad.png").write_bytes(b"not a png at all")
    path = write_jsonl(tmp_path / "d.jsonl", [text_sample(0), BAD[case], text_sample(2)])
    cfg = DataConfig([SourceConfig(str(path), media_root=str(media))], max_length=1024, shuffle=False)
    stats = DataStats()
    out = list(iter_samples(cfg, proc, stats=stats))
    assert [s.source for s in out] == [f"{path}:1", f"{path}:3"]
    assert stats.skipped == 1 and stats.errors == {KINDS[case]: 1} and stats.samples == 2 and stats.records == 3
    assert stats.messages[0].startswith(f"{path}:2: ")
    with pytest.raises(DataError, match=f"^{path}:2: ") as info:
        list(iter_samples(DataConfig(cfg.sources, max_length=1024, shuffle=False, on_error="raise"), proc))
    assert info.value.kind == KINDS[case]


def test_broken_json_list_keeps_records_before(proc: Processor, tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text("[\n" + json.dumps(text_sample(0)) + ",\n" + json.dumps(text_sample(1)) + ",\n{\"conv\": ]\n")
    stats = DataStats()
    out = list(iter_samples(DataConfig([str(path)], shuffle=False), proc, stats=stats))
    assert len(out) == 2 and stats.errors == {"broken_json": 1}
    assert stats.messages[0].startswith(f"{path}:4: broken JSON")


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such data file"):
        list(iter_samples(DataConfig([str(tmp_path / "missing.jsonl")]), Processor(byte_tokenizer(),
                                                                                   preset("tiny-random"))))
    with pytest.raises(DataError, match="packing"):
        DataConfig([str(tmp_path)], packing="zip")  # type: ignore[arg-type]
    cfg = DataConfig([{"path": "a.jsonl", "weight": 2}])  # mappings (YAML) become SourceConfig
    assert cfg.sources == [SourceConfig("a.jsonl", 2)]


# -- order, sharding, resume, mixture ------------------------------------------------------------------------------


@pytest.fixture()
def twenty(tmp_path: Path) -> Path:
    rows: list = [text_sample(i) for i in range(20)]
    rows[7] = "{ broken"
    return write_jsonl(tmp_path / "d.jsonl", rows)


def ids_of(samples) -> list[str]:
    return [s.source for s in samples]


def test_order_is_deterministic_and_depends_on_epoch(proc: Processor, twenty: Path) -> None:
    cfg = DataConfig([str(twenty)], seed=3)
    a, b = ids_of(iter_samples(cfg, proc)), ids_of(iter_samples(cfg, proc))
    c = ids_of(iter_samples(cfg, proc, epoch=1))
    assert a == b and a != c and sorted(a) == sorted(c) and len(a) == 19


@pytest.mark.parametrize("packing", ["none", "true"])
def test_rank_sharding_partitions_the_data(proc: Processor, twenty: Path, packing: str) -> None:
    cfg = DataConfig([str(twenty)], packing=packing, max_length=1024)  # type: ignore[arg-type]
    everything = {src for s in iter_samples(cfg, proc) for src in s.source.split(", ")}
    shards = [[src for s in iter_samples(cfg, proc, rank=r, world_size=3) for src in s.source.split(", ")]
              for r in range(3)]
    flat = [x for shard in shards for x in shard]
    assert len(flat) == len(set(flat)) == 19 and set(flat) == everything
    order = epoch_order([20], [1.0], seed=0, epoch=0)
    assert sorted(np.concatenate([order[r::3] for r in range(3)])[:, 1].tolist()) == list(range(20))


@pytest.mark.parametrize("packing", ["none", "true", "concat"])
def test_resume_from_start_yields_the_rest(proc: Processor, twenty: Path, packing: str) -> None:
    cfg = DataConfig([str(twenty)], packing=packing, max_length=1024)  # type: ignore[arg-type]
    full = list(iter_samples(cfg, proc, rank=1, world_size=2, epoch=2))
    for start in (0, 1, len(full) - 1, len(full)):
        rest = list(iter_samples(cfg, proc, rank=1, world_size=2, epoch=2, start=start))
        assert ids_of(rest) == ids_of(full[start:])
        assert all(torch.equal(x.token_ids, y.token_ids) for x, y in zip(rest, full[start:], strict=True))


def test_mixture_weights(proc: Processor, tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [text_sample(i) for i in range(4)])
    b = write_jsonl(tmp_path / "b.jsonl", [text_sample(100 + i) for i in range(4)])
    cfg = DataConfig([SourceConfig(str(a), 2.0), SourceConfig(str(b), 0.5)], seed=1)
    out = ids_of(iter_samples(cfg, proc))
    from_a = [s for s in out if s.startswith(str(a))]
    assert len(from_a) == 8 and sorted(set(from_a)) == [f"{a}:{i}" for i in range(1, 5)]  # two passes over a
    assert len(out) - len(from_a) == 2 and len(set(out) - set(from_a)) == 2  # half of b, no repeat
    assert out[:8] != sorted(out[:8])  # sources are interleaved by the shuffle


# -- collate ---------------------------------------------------------------------------------------------------------


def test_collate_pads_and_concatenates_media(proc: Processor, media: Path) -> None:
    img = {"conversations": [{"from": "human", "value": "<image>x"}, {"from": "gpt", "value": "y"}]}
    s1 = build_sample(proc, dict(img, image="red.png"), "a:1", media)
    s2 = build_sample(proc, text_sample(1), "a:2", media)
    s3 = build_sample(proc, dict(img, image="blue.png"), "a:3", media)
    batch = collate([s1, s2, s3], pad_id=proc.tokenizer.eos_id)
    L = max(len(s1), len(s2), len(s3))
    assert batch.token_ids.shape == batch.labels.shape == batch.attention_mask.shape == (3, L)
    assert batch.attention_mask.sum(1).tolist() == [len(s1), len(s2), len(s3)]
    assert (batch.token_ids[1, len(s2):] == proc.tokenizer.eos_id).all()
    assert (batch.labels[1, len(s2):] == IGNORE_INDEX).all() and batch.segment_ids is None
    assert torch.equal(batch.pixel_values, torch.cat([s1.pixel_values, s3.pixel_values]))
    assert batch.num_tokens == sum(int((s.labels != IGNORE_INDEX).sum()) for s in (s1, s2, s3))
    assert batch.fbanks == []


def test_video_sample_uses_video_prompt_and_frames(proc: Processor, tmp_path: Path) -> None:
    import av

    from vita.processor import Video

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    record = {"conversations": [{"from": "human", "value": "<video>\nWhat happens?"},
                                {"from": "gpt", "value": "It gets brighter."}], "video": "clip.mp4"}
    s = build_sample(proc, record, "v:1", tmp_path)
    inf = proc([Turn("user", ["<video>\nWhat happens?", Video(path)])])
    assert inf.modality == "video"
    assert s.token_ids.tolist() == inf.token_ids[0].tolist() + enc(proc, "<3>It gets brighter.</s>")
    assert torch.equal(s.pixel_values, inf.pixel_values) and s.pixel_values.shape[0] == 4  # min 4 frames


def test_sentencepiece_tokenizer_of_the_official_fixture(media: Path, ref_root: Path) -> None:
    """The official tiny checkpoint's Llama-style tokenizer (dummy prefix, byte fallback): same rules hold."""
    from vita.tokenizer import Tokenizer

    proc = Processor(Tokenizer.from_dir(ref_root / "checkpoint"), preset("tiny-random"))
    record = {"conversations": [{"from": "human", "value": "<image>\nWhat?<audio>"},
                                {"from": "gpt", "value": "Yes, it is red."},
                                {"from": "human", "value": "你好"}, {"from": "gpt", "value": "好的。"}],
              "image": "red.png", "audio": "q.wav"}
    s = build_sample(proc, record, "x:1", media)
    assert supervised(proc, s) == "<1>Yes, it is red.</s><3>好的。</s>"
    inf = proc([Turn("user", ["<image>\nWhat?<audio>", Image(media / "red.png"), Audio(media / "q.wav")])])
    assert s.token_ids.tolist()[: inf.token_ids.shape[1]] == inf.token_ids[0].tolist()
