"""Tiny synthetic datasets: fast, deterministic, readable by the data pipeline, content matching the labels."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from vita.datasets.tiny import COLOURS, write_tiny_dataset
from vita.presets import byte_tokenizer, preset
from vita.processor import Processor
from vita.tokens import IGNORE_INDEX
from vita.training.data import DataConfig, DataStats, collate, iter_samples


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[dict[str, Path], float]:
    root = tmp_path_factory.mktemp("tiny")
    t0 = time.perf_counter()
    parts = write_tiny_dataset(root, seed=0)
    return parts, time.perf_counter() - t0


def test_written_fast_with_all_parts(written) -> None:
    parts, seconds = written
    assert seconds < 2.0
    assert set(parts) >= {"vision_align", "audio_align", "instruct"}
    assert all(p.is_file() for p in parts.values())


@pytest.mark.parametrize("name", ["vision_align", "audio_align", "instruct"])
def test_every_sample_builds(written, name: str) -> None:
    parts, _ = written
    proc = Processor(byte_tokenizer(), preset("tiny-random"))
    stats = DataStats()
    cfg = DataConfig([str(parts[name])], max_length=1024, on_error="raise", shuffle=False)  # as the tiny recipes
    samples = list(iter_samples(cfg, proc, stats=stats))
    assert 24 <= len(samples) <= 64 and stats.skipped == 0
    states = Counter()
    for s in samples:
        reply = proc.tokenizer.decode([t for t in s.labels.tolist() if t != IGNORE_INDEX])
        states.update(x for x in ("<1>", "<2>", "<3>") if x in reply)
    if name == "vision_align":
        assert states == {"<3>": len(samples)} and all(s.pixel_values is not None for s in samples)
    elif name == "audio_align":
        assert states == {"<1>": len(samples)} and all(len(s.fbanks) == 1 for s in samples)
    else:
        assert states["<1>"] >= 8 and states["<2>"] >= 8 and states["<3>"] >= 16
    batch = collate(samples[:4], pad_id=proc.tokenizer.eos_id)
    assert batch.num_tokens > 0


def test_content_matches_labels(written) -> None:
    parts, _ = written
    root = parts["vision_align"].parent
    for line in parts["vision_align"].read_text().splitlines()[:8]:
        r = json.loads(line)
        img = Image.open(root / r["image"]).convert("RGB")
        colour = r["conversations"][1]["value"].split()[1]
        centre = img.getpixel((img.width // 2, img.height // 2 + 2))
        assert np.abs(np.subtract(centre, COLOURS[colour])).max() < 5
    for line in parts["audio_align"].read_text().splitlines():
        r = json.loads(line)
        wave, rate = sf.read(root / r["audio"])
        assert rate == 16000 and wave.ndim == 1 and len(wave) / rate >= 0.3
        assert len(r["conversations"][1]["value"].split()) == round((len(wave) / rate - 0.05) / 0.2)


def test_deterministic(tmp_path: Path) -> None:
    a = write_tiny_dataset(tmp_path / "a", seed=1)
    b = write_tiny_dataset(tmp_path / "b", seed=1)
    c = write_tiny_dataset(tmp_path / "c", seed=2)
    for name in ("vision_align", "audio_align", "instruct"):
        assert a[name].read_text() == b[name].read_text()
    assert a["instruct"].read_text() != c["instruct"].read_text()
    assert (tmp_path / "a/audio/asr000.wav").read_bytes() == (tmp_path / "b/audio/asr000.wav").read_bytes()
