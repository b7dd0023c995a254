"""vita.training.region_align: a fresh projector learns to write, at each image row, the words for its place."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import vita
from vita.checkpoint.convert import save_canonical
from vita.checkpoint.load import load_model
from vita.cli.tools import region_align as main
from vita.datasets.mini.regions import shape_scene


def _data(root: Path, n: int, grid: int, side: int) -> Path:
    recs = []
    for i in range(n):
        item = shape_scene(np.random.default_rng(i), grid)
        item.image.resize((side, side)).save(root / f"r{i}.png")  # one tile; the labels follow the stretch
        recs.append({"image": f"r{i}.png", "rows": list(item.rows)})
    (root / "regions.json").write_text(json.dumps(recs))
    return root / "regions.json"


@pytest.fixture(scope="module")
def aligned(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ra")
    vm = vita.load("tiny-random")
    cfg = vm.model.config.vision
    grid = cfg.image_size // cfg.patch_size // cfg.shuffle_factor
    data = _data(root, 60, grid, cfg.image_size)
    save_canonical(vm.model.config, vm.model.state_dict(), vm.tokenizer, root / "base")
    assert main(["--model", str(root / "base"), "--data", str(data), "--out", str(root / "out"),
                 "--epochs", "30", "--lr", "3e-3"]) == 0
    return root, data


def test_rows_learn_their_words_and_only_the_projector_changes(aligned) -> None:
    root, _ = aligned
    summary = json.loads((root / "out" / "region_align.json").read_text())
    epochs = summary["epochs"]
    assert summary["pictures"] == 60 and summary["held_out"] == 3
    # (the tiny model's byte tokenizer spells " red circle" in 11 byte tokens, so rows rarely hit one exactly:
    # the held-out loss is what must fall; on SmolLM2's one-token words the row accuracy reaches ~0.9)
    assert epochs[-1]["train_loss"] < 0.7 * epochs[0]["train_loss"], epochs
    assert epochs[-1]["held_out_loss"] < 0.8 * epochs[0]["held_out_loss"], epochs
    assert 0.0 <= epochs[-1]["held_out_row_accuracy"] <= 1.0
    before, after = load_model(root / "base")[0].state_dict(), load_model(root / "out")[0].state_dict()
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("vision_projector.") for k in changed)


def test_a_grid_that_does_not_fit_the_model_is_refused(aligned, tmp_path, capsys) -> None:
    root, _ = aligned
    bad = tmp_path / "bad.json"
    (tmp_path / "r0.png").write_bytes((root / "r0.png").read_bytes())
    bad.write_text(json.dumps([{"image": "r0.png", "rows": ["red circle"] * 9}]))
    assert main(["--model", str(root / "base"), "--data", str(bad), "--out", str(tmp_path / "o1")]) == 2
    assert "9 row labels, the model gives 16 rows" in capsys.readouterr().err
    bad.write_text(json.dumps([{"image": "r0.png"}]))
    assert main(["--model", str(root / "base"), "--data", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "expected" in capsys.readouterr().err
    assert main(["--model", str(root / "base"), "--data", str(tmp_path / "none.json"),
                 "--out", str(tmp_path / "o3")]) == 2
    assert "cannot read the region data" in capsys.readouterr().err
    assert main(["--model", str(root / "base"), "--data", str(bad), "--out", str(root / "out")]) == 2  # not empty
