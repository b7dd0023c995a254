"""Generated-dataset source paths (`tiny:NAME`): written once under the run folder, resolved to files everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from vita.datasets.generated import resolve_generated, write_generated
from vita.errors import TrainingError


def test_plain_paths_pass_through_and_touch_nothing(tmp_path: Path):
    write_generated(["a.json", "/data/b.jsonl"], tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert resolve_generated(["a.json", "/data/b.jsonl"], tmp_path) == ["a.json", "/data/b.jsonl"]


def test_tiny_parts_resolve_to_the_files_written_once(tmp_path: Path):
    write_generated(["tiny:instruct", "plain.json", "tiny:vision_align"], tmp_path)
    root = tmp_path / "tiny_data"
    listed = (root / ".parts").read_text()
    paths = resolve_generated(["tiny:instruct", "plain.json", "tiny:vision_align"], tmp_path)
    assert paths[1] == "plain.json"
    assert all(Path(p).is_file() and Path(p).parent == root for p in (paths[0], paths[2]))
    stamp = (root / ".parts").stat().st_mtime_ns
    write_generated(["tiny:audio_align"], tmp_path)  # a finished dataset is not rewritten
    assert (root / ".parts").read_text() == listed and (root / ".parts").stat().st_mtime_ns == stamp

    with pytest.raises(TrainingError, match="the tiny dataset has no part 'nope'"):
        resolve_generated(["tiny:nope"], tmp_path)
