"""The lazy-tensors protocol, the strict `RenamedView`, and the one format sniffer."""

from __future__ import annotations

import json

import pytest
import torch

from vita.checkpoint.convert import save_canonical
from vita.checkpoint.io import TensorReader, write_tensors
from vita.checkpoint.lazy import LazyTensors, RenamedView, tensor_shape
from vita.checkpoint.load import random_model
from vita.checkpoint.sniff import sniff
from vita.errors import CheckpointError
from vita.presets import byte_tokenizer, preset


class _Counting(dict):
    """An in-memory source that counts tensor reads."""

    reads = 0

    def __getitem__(self, name):
        self.reads += 1
        return super().__getitem__(name)


def _reader(tmp_path) -> TensorReader:
    write_tensors(tmp_path, {"model.embed.weight": torch.arange(12.0).reshape(4, 3),
                             "model.norm.weight": torch.ones(3)})
    return TensorReader.from_dir(tmp_path)


def test_readers_and_views_are_lazy_tensors_and_dicts_are_not(tmp_path):
    reader = _reader(tmp_path)
    view = RenamedView()
    view.add(reader, {"model.embed.weight": "tok.weight", "model.norm.weight": "norm.weight"}, "src")
    for lazy in (reader, view):
        assert isinstance(lazy, LazyTensors)
        assert tensor_shape(lazy, next(iter(lazy))) == tuple(lazy[next(iter(lazy))].shape)
    assert not isinstance({"a": torch.ones(2)}, LazyTensors)
    assert tensor_shape({"a": torch.ones(2, 5)}, "a") == (2, 5)


def test_renamed_view_maps_strictly_and_reads_on_demand():
    src = _Counting({"layers.0.w": torch.ones(2, 2), "layers.1.w": torch.zeros(2, 2), "extra.bias": torch.ones(2),
                     "rows": torch.arange(10.0).reshape(5, 2)})
    view = RenamedView()
    view.add(src, {"layers.{}.w": "blocks.{}.weight", "extra.bias": None, "rows": "emb"}, "src")
    assert sorted(view) == ["blocks.0.weight", "blocks.1.weight", "emb"]  # None: dropped on purpose
    assert src.reads == 0  # mapping names reads nothing
    assert torch.equal(view["blocks.1.weight"], torch.zeros(2, 2)) and src.reads == 1  # each read goes to the source
    view.truncate_rows("emb", 3)
    assert view.shape("emb") == (3, 2) and torch.equal(view["emb"], torch.arange(6.0).reshape(3, 2))
    with pytest.raises(CheckpointError, match=r"other: 1 unknown tensor\(s\): stray"):
        RenamedView().add({"layers.0.w": torch.ones(1), "stray": torch.ones(1)}, {"layers.{}.w": "w.{}"}, "other")
    twice = RenamedView()
    twice.add({"a": torch.ones(1)}, {"a": "x"}, "first")
    with pytest.raises(CheckpointError, match="second: two tensors map to 'x'"):
        twice.add({"b": torch.ones(1)}, {"b": "x"}, "second")


def test_one_sniffer_names_every_layout(tmp_path):
    ours = tmp_path / "ours"
    model = random_model(preset("tiny-random"))
    save_canonical(model.config, model.state_dict(), byte_tokenizer(), ours)
    assert sniff(ours).format == "vita" and sniff(ours).path == ours
    for model_type, fmt in (("vita-mixtral", "vita1"), ("vita-qwen2", "vita15"), ("VITA-Qwen2", "vita15"),
                            ("qwen2", "hf")):
        folder = tmp_path / model_type
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
        layout = sniff(folder)
        assert (layout.format, layout.config) == (fmt, {"model_type": model_type})
    gguf_dir = tmp_path / "gguf"
    gguf_dir.mkdir()
    (gguf_dir / "m.gguf").write_bytes(b"")
    assert (sniff(gguf_dir).format, sniff(gguf_dir).path) == ("gguf", gguf_dir / "m.gguf")
    assert sniff(gguf_dir / "m.gguf").path == gguf_dir / "m.gguf"
    (tmp_path / "bad").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        sniff(tmp_path / "bad")
    (tmp_path / "bad" / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        sniff(tmp_path / "bad")
    with pytest.raises(CheckpointError, match="no such model directory"):
        sniff(tmp_path / "missing")
