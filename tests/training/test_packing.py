"""Packing: segment_ids in the LLM (packed logits == separate runs), the official estimate, concat and true rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image as PILImage

from vita.checkpoint.load import random_model
from vita.media.image import preprocess_image
from vita.presets import byte_tokenizer, preset
from vita.processor import Processor
from vita.tokens import IGNORE_INDEX
from vita.training.collate import collate
from vita.training.data import DataConfig, DataStats, SourceConfig, iter_samples
from vita.training.packing import (
    audio_token_estimate,
    concat_groups,
    estimate_tokens,
    image_tile_count,
    merge_records,
    system_overhead,
    true_pack,
)
from vita.training.sample import build_sample


@pytest.fixture(scope="module")
def proc() -> Processor:
    return Processor(byte_tokenizer(), preset("tiny-random"))


@pytest.fixture(scope="module")
def model():
    # one intra-op thread: tiny matmuls on a loaded 2-core runner are ~100x slower with two spinning threads
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield random_model(preset("tiny-random"))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    PILImage.new("RGB", (300, 100), (0, 200, 0)).save(root / "wide.png")
    PILImage.new("RGB", (50, 50), (200, 0, 0)).save(root / "small.png")
    rng = np.random.default_rng(0)
    sf.write(root / "a.wav", (0.1 * rng.standard_normal(5200)).astype(np.float32), 16000)  # 0.325 s
    sf.write(root / "b.wav", (0.1 * rng.standard_normal(51200)).astype(np.float32), 16000)  # 3.2 s
    return root


def qa(i: int, *, image: str | None = None, audio: str | None = None, answer: str = "") -> dict:
    value = ("<image>\n" if image else "") + f"q{i}" + ("<audio>" if audio else "")
    r: dict = {"conversations": [{"from": "human", "value": value}, {"from": "gpt", "value": answer or f"a{i}"}]}
    if image:
        r["image"] = image
    if audio:
        r["audio"] = audio
    return r


# -- segment_ids in the model ----------------------------------------------------------------------------------------


def test_llm_segment_ids_equal_separate_runs(model) -> None:
    llm = model.llm
    g = torch.Generator().manual_seed(0)
    parts = [torch.randint(3, 300, (n,), generator=g) for n in (7, 12, 5)]
    row = torch.cat(parts)[None]  # [1, 24]
    seg = torch.cat([torch.full((len(p),), i) for i, p in enumerate(parts)])[None]  # [1, 24]
    with torch.no_grad():
        packed = llm(row, segment_ids=seg)[0]  # [24, V]
        alone = torch.cat([llm(p[None])[0] for p in parts])  # [24, V]
        plain = llm(row)[0]
    assert (packed - alone).abs().max().item() < 1e-5
    assert (plain[7:] - alone[7:]).abs().max().item() > 1e-3  # without segments the samples do interact


def test_true_packed_row_equals_separate_runs_with_media(proc: Processor, model, media: Path) -> None:
    samples = [
        build_sample(proc, qa(0, image="wide.png"), "x:1", media),
        build_sample(proc, qa(1, audio="a.wav"), "x:2", media),
        build_sample(proc, qa(2, image="small.png", audio="b.wav"), "x:3", media),
    ]
    row = next(true_pack(samples, max_length=10_000))
    assert row.segment_ids is not None and len(row) == sum(len(s) for s in samples)
    batch = collate([row, samples[1]], pad_id=proc.tokenizer.eos_id)  # a packed row next to a padded plain one
    with torch.no_grad():
        packed = model(batch.token_ids, batch.pixel_values, batch.fbanks, segment_ids=batch.segment_ids)
        alone = [model(s.token_ids[None], s.pixel_values, s.fbanks)[0] for s in samples]
    assert (packed[0, : len(row)] - torch.cat(alone)).abs().max().item() < 1e-5
    assert (packed[1, : len(samples[1])] - alone[1]).abs().max().item() < 1e-5


def test_segment_ids_rejected_on_cached_path(model) -> None:
    llm = model.llm
    llm.setup_caches(1, 16)
    try:
        with pytest.raises(ValueError, match="uncached"):
            llm(torch.ones(1, 2, dtype=torch.long), input_pos=torch.arange(2), segment_ids=torch.zeros(1, 2))
    finally:
        llm.drop_caches()


# -- the official estimate -------------------------------------------------------------------------------------------


def test_audio_estimate_rounds_seconds_up_to_even() -> None:
    assert [audio_token_estimate(s) for s in (0.3, 1.0, 2.0, 2.01, 3.2, 4.0)] == [25, 25, 25, 50, 50, 50]


def test_image_tile_count_matches_tiling(proc: Processor, media: Path) -> None:
    for name in ("wide.png", "small.png"):
        real = preprocess_image(media / name, proc.config.vision).shape[0]
        assert image_tile_count(media / name, proc) == real


def test_estimate_bounds_the_real_length(proc: Processor, media: Path) -> None:
    per_tile = proc.config.vision.tokens_per_tile
    for r in (qa(0), qa(1, image="wide.png"), qa(2, audio="b.wav"), qa(3, image="small.png", audio="a.wav")):
        est = estimate_tokens(proc, r, "x:1", media)
        real = len(build_sample(proc, r, "x:1", media))
        assert real <= est + system_overhead(proc)
    text_only = estimate_tokens(proc, qa(5), "x:1", media)
    assert estimate_tokens(proc, qa(5, image="wide.png"), "x:1", media) - text_only == (
        image_tile_count(media / "wide.png", proc) * per_tile + len("<image>\n") - len("<image>")
    )  # the "\n" after the marker is text
    assert estimate_tokens(proc, qa(5, audio="b.wav"), "x:1", media) == text_only + 50  # 3.2 s -> 4 s -> 50


def test_concat_groups_are_greedy() -> None:
    groups = list(concat_groups([("a", 30), ("b", 40), ("c", 20), ("d", 90), ("e", 5)], 100, overhead=10))
    assert groups == [["a", "b", "c"], ["d"], ["e"]]


def test_concat_packing_respects_max_length_and_estimate(proc: Processor, media: Path, tmp_path: Path) -> None:
    rows = [qa(i, audio="a.wav" if i % 3 == 0 else None, answer="x" * (10 + 7 * i)) for i in range(12)]
    rows[4]["inserted_id"] = 1
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for r in rows:
        r["audio"] = str(media / r["audio"]) if "audio" in r else None
        if r["audio"] is None:
            del r["audio"]
    max_length = 900
    cfg = DataConfig([SourceConfig(str(path), media_root=str(media))], packing="concat", max_length=max_length,
                     shuffle=False)
    out = list(iter_samples(cfg, proc))
    overhead = system_overhead(proc)
    est = [estimate_tokens(proc, r, "x", media) for r in rows]
    assert len(out) > 1 and all(len(s) <= max_length for s in out)
    used = 0
    for s in out:
        n = len(s.source.split(", "))
        assert overhead + sum(est[used : used + n]) <= max_length  # each dialogue fits the estimate ...
        if used + n < len(rows):
            assert overhead + sum(est[used : used + n + 1]) > max_length  # ... and is closed greedily
        merged, _ = merge_records([(r, "x", media) for r in rows[used : used + n]])
        assert torch.equal(s.token_ids, build_sample(proc, merged, "x", Path("/")).token_ids)
        texts = [proc.tokenizer.decode([t for t in s.labels.tolist() if t != IGNORE_INDEX])]
        expected = "".join(("<2>" if i == 4 else ("<1>" if i % 3 == 0 else "<3>") + "x" * (10 + 7 * i)) + "</s>"
                           for i in range(used, used + n))
        assert texts == [expected]
        used += n
    assert used == len(rows)


def test_merge_shifts_inserted_and_context_turns() -> None:
    """A two-turn record with a context reply keeps it unsupervised, and its "<2>" turn, after merging."""
    turns = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    first = {"conversations": turns, "set": "s", "id": 0}
    second = {"conversations": turns + turns, "context_id": 1, "inserted_id": 3, "set": "s", "id": 1}
    merged, _ = merge_records([(first, "x:1", Path("/")), (second, "x:2", Path("/"))])
    assert merged["context_id"] == [3] and merged["inserted_id"] == [5] and len(merged["conversations"]) == 6


def test_true_packing_rows(proc: Processor, tmp_path: Path) -> None:
    rows = [qa(i, answer="y" * (5 * i)) for i in range(10)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    singles = list(iter_samples(DataConfig([str(path)], shuffle=False), proc))
    packed = list(iter_samples(DataConfig([str(path)], packing="true", max_length=1200, shuffle=False), proc))
    assert len(packed) < len(singles) and all(len(s) <= 1200 for s in packed)
    flat = [x for row in packed for x in row.source.split(", ")]
    assert flat == [s.source for s in singles]
    i = 0
    for row in packed:
        for seg in range(int(row.segment_ids.max()) + 1):
            part = row.segment_ids == seg
            assert torch.equal(row.token_ids[part], singles[i].token_ids)
            assert torch.equal(row.labels[part], singles[i].labels)
            i += 1


def test_concat_reports_unreadable_media_and_keeps_the_rest(proc: Processor, media: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    rows = [qa(0), qa(1, audio="bad.wav"), qa(2), qa(3, image="bad.png"), qa(4)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = DataStats()
    cfg = DataConfig([str(path)], packing="concat", max_length=4000, shuffle=False)
    out = list(iter_samples(cfg, proc, stats=stats))
    assert [src for s in out for src in s.source.split(", ")] == [f"{path}:{i}" for i in (1, 3, 5)]
    assert len(out) == 1 and stats.errors == {"media": 2}
    assert [m.split(": ")[0] for m in stats.messages] == [f"{path}:2", f"{path}:4"]


def test_concat_group_with_a_decode_failure_falls_back_to_singles(proc: Processor, tmp_path: Path) -> None:
    sf.write(tmp_path / "blip.wav", np.zeros(160, np.float32), 16000)  # readable header, too short to encode
    rows = [qa(0), qa(1, audio="blip.wav"), qa(2)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = DataStats()
    out = list(iter_samples(DataConfig([str(path)], packing="concat", max_length=4000, shuffle=False), proc,
                            stats=stats))
    assert [s.source for s in out] == [f"{path}:1", f"{path}:3"]  # the group is rebuilt one by one
    assert stats.errors == {"media": 1} and stats.messages[0].startswith(f"{path}:2: ")
    assert "too short" in stats.messages[0]
