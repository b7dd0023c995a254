"""vita.training.feature_stats: the tower statistics behind the projector's input_norm, and `vita mini pack`
folding them back into fc1."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vita
from vita.checkpoint.convert import save_canonical
from vita.checkpoint.load import load_model
from vita.checkpoint.mini import read_parts
from vita.cli.tools import feature_stats as main
from vita.errors import VitaError
from vita.media.image import preprocess_image
from vita.training.feature_stats import image_paths, standardize
from vita.training.mini_parts import pack_parts
from vita.training.train import train

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny"


def _images(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        arr = (rng.random((40 + i, 56, 3)) * 255).astype(np.uint8)
        arr[:, : 8 + i] = (i * 37 % 255, 20, 200)  # images differ in a mean colour as well
        Image.fromarray(arr).save(root / f"im{i}.png")
        records.append({"image": f"im{i}.png", "conversations": [{"from": "human", "value": "<image>\n"},
                                                                   {"from": "gpt", "value": f"picture {i}"}]})
    data = root / "data.json"
    data.write_text(json.dumps(records))
    return data


@pytest.fixture(scope="module")
def standardized(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fs")
    data = _images(root, 6)
    vm = vita.load("tiny-random")
    save_canonical(vm.model.config, vm.model.state_dict(), vm.tokenizer, root / "base")
    assert main(["--model", str(root / "base"), "--data", str(data), "--out", str(root / "std"), "--images", "4"]) == 0
    return root, data


def test_statistics_are_those_of_the_tower_features(standardized) -> None:
    root, data = standardized
    paths = image_paths(data, 4)
    assert [p.name for p in paths] == ["im0.png", "im1.png", "im3.png", "im4.png"]  # evenly spaced over the file
    model, _ = load_model(root / "std")
    assert model.config.vision_projector.input_norm
    with torch.no_grad():
        feats = torch.cat([model.vision(preprocess_image(p, model.config.vision)) for p in paths]).flatten(0, -2)
        proj = model.vision_projector
        torch.testing.assert_close(proj.input_mean, feats.mean(0), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(proj.input_std, feats.std(0, correction=0).clamp_min(1e-3), atol=1e-5, rtol=1e-4)
        z = (feats - proj.input_mean) / proj.input_std
    assert z.mean(0).abs().max() < 1e-4 and (z.std(0, correction=0) - 1).abs().max() < 1e-3
    base, _ = load_model(root / "base")  # everything else is the same model
    for name, t in base.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], t, atol=0, rtol=0, msg=name)


def test_pack_folds_the_statistics_into_fc1(standardized, tmp_path: Path) -> None:
    root, _ = standardized
    run = tmp_path / "run"
    train(TINY / "stage0_llm_bilingual.yaml", run, [
        f"model.init={root / 'std'}", "lora={targets: ['llm.layers.*.attention.w[qv]'], r: 4, alpha: 8}",
        "trainable={'*': false, 'vision_projector.*': true}", "schedule.total_steps=2", "checkpoint.every=2"],
        quiet=True)
    config, tensors, _ = read_parts(pack_parts(run, tmp_path / "parts", dtype="fp32"), check_base=False)
    assert not config.vision_projector.input_norm
    assert not any("input_" in n for n in tensors)
    final, _ = load_model(run / "final")
    plain = type(final.vision_projector)(config.vision_projector)
    plain.load_state_dict({k.removeprefix("vision_projector."): v for k, v in tensors.items()
                           if k.startswith("vision_projector.")})
    x = torch.randn(2, 16, config.vision_projector.input_size)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), final.vision_projector(x), atol=1e-4, rtol=1e-4)


def test_bad_inputs_are_named(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(VitaError, match="no images found"):
        image_paths(tmp_path / "empty.json", 4)
    with pytest.raises(VitaError, match="cannot read the training data"):
        image_paths(tmp_path / "missing.json", 4)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("keep me")
    assert main(["--model", "m", "--data", "d", "--out", str(tmp_path / "out")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err and (tmp_path / "out" / "x").read_text() == "keep me"
    vm = vita.load("tiny-random")
    cfg = dataclasses.replace(vm.model.config, vision=None, vision_projector=None)
    save_canonical(cfg, {k: v for k, v in vm.model.state_dict().items() if k.startswith(("llm.", "audio"))},
                   vm.tokenizer, tmp_path / "novision")
    with pytest.raises(VitaError, match="no vision projector"):
        standardize(tmp_path / "novision", tmp_path / "empty.json", tmp_path / "o2")
