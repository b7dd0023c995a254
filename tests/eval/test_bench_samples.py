"""The offline format samples load with their adapters, and the vita-mini table renders from any model."""

from __future__ import annotations

from pathlib import Path

from vita.eval.bench import get
from vita.eval.bench.core import Options
from vita.eval.bench.samples import write_samples
from vita.eval.bench.table import build, markdown


def test_samples_load_in_their_formats(tmp_path):
    paths = write_samples(tmp_path, speech=False)
    counts = {name: len(get(name).load(path, Options())) for name, path in paths.items()}
    assert counts == {"mmlu": 12, "gsm8k": 8, "mme": 24, "mmbench": 23, "video-mme": 4}
    again = write_samples(tmp_path / "again", speech=False)
    for name in paths:  # deterministic bytes
        a, b = Path(paths[name]), Path(again[name])
        files_a = sorted(p for p in ([a] if a.is_file() else a.rglob("*")) if p.is_file())
        files_b = sorted(p for p in ([b] if b.is_file() else b.rglob("*")) if p.is_file())
        assert [p.read_bytes() for p in files_a] == [p.read_bytes() for p in files_b], name


def test_table_rows_and_markdown(tmp_path, fake):
    rows = build(tmp_path, "fake", model=fake(lambda **_: "Yes A"), speech=False)
    by = {r["benchmark"]: r for r in rows}
    assert list(by) == ["mmlu", "gsm8k", "mme", "mmbench", "video-mme"]
    # every MME answer "Yes": half the questions right, no image with both -> 50 per subtask, 4 subtasks
    assert by["mme"]["value"] == 200.0 and by["mme"]["paper"][0]["value"] == 2097.0
    assert by["mmlu"]["value"] == 100 * 3 / 12  # the questions whose answer is A: Mars, Seven, Piano
    md = markdown(rows, "fake")
    assert "| benchmark (sample) | metric | fake on the sample |" in md and "THAT model's figure" in md
    assert "| 59.2 % (with-subs) |" in md
