"""The reference tests run unchanged on any fixture set recorded the same way (other folder names, sizes, seeds).

Both sets: VITA-1.0 (VITA_REFERENCE_FIXTURES) and VITA-1.5 (VITA15_REFERENCE_FIXTURES). Full proof: `python
tests/rename_fixture.py SRC DST`, then the reference tests with the set's variable pointing at DST (README, "Measured
against the official code"). These checks run on every suite run.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vita

pytestmark = pytest.mark.reference

TESTS = Path(__file__).resolve().parent


def _rename_fixture():
    spec = importlib.util.spec_from_file_location("rename_fixture", TESTS / "rename_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rename_fixture


def _recorded_names(config: dict, index: dict) -> set[str]:
    names = {config["mm_vision_tower"], config["mm_audio_encoder"]}
    names |= {Path(item["file"]).name for item in (*index["images"], *index["audios"])}
    names |= {Path(f).name for f in index["video"]["frame_files"]}
    return names


@pytest.fixture(params=["ref", "ref15"])
def fixture_set(request) -> tuple[Path, dict, dict]:
    """(root, checkpoint config.json, cases/index.json) of the VITA-1.0 set, then of the VITA-1.5 set."""
    prefix = request.param
    return tuple(request.getfixturevalue(f"{prefix}_{name}") for name in ("root", "config", "index"))


def test_no_test_names_the_shipped_sets_files(fixture_set):
    """Folder and input file names are read from the set's config.json / index.json, never written in a test."""
    _, config, index = fixture_set
    names = _recorded_names(config, index)
    offenders = [
        f"{path.relative_to(TESTS)}: {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for name in names
        if name in path.read_text()
    ]
    assert not offenders, offenders


def test_a_renamed_copy_loads_and_answers_the_same(fixture_set, tmp_path):
    """A copy with every folder and input renamed loads through its own config.json and gives the same logits."""
    root = fixture_set[0]
    copy = tmp_path / "renamed"
    _rename_fixture()(root, copy)
    index = json.loads((copy / "cases" / "index.json").read_text())  # paths of the copy
    case = next((c for c in index["full_cases"] if c["kind"] == "image" and c["audio_index"] is None),
                min(index["full_cases"], key=lambda c: c["spliced_length"]))
    gold = load_file(str(copy / case["file"]))
    model = vita.load(str(copy / "checkpoint"))
    images = [copy / index["images"][case["image_index"]]["file"]] if case["kind"] == "image" else ()
    audio = copy / index["audios"][case["audio_index"]]["file"] if case["audio_index"] is not None else None
    inputs = model.inputs(case["question"] or None, images=images, audio=audio)
    assert inputs.token_ids.shape[1] == case["spliced_length"]
    with torch.no_grad():
        logits = model.model(inputs.token_ids, inputs.pixel_values, inputs.fbanks)[0]
    last = gold["logits"][-1] if "logits" in gold else gold["logits_tail"][-1]
    torch.testing.assert_close(logits[-1], last, atol=1e-4, rtol=0)
