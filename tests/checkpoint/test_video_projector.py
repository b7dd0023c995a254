"""`python -m vita.cli.tools video_projector`: frames' own projector, a copy that answers as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import vita
from vita.checkpoint.convert import save_canonical
from vita.checkpoint.io import TensorReader
from vita.cli.tools import video_projector as main
from vita.config import VitaConfig
from vita.processor import Image, Turn, Video

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("vp")
    vm = vita.load("tiny-random")
    save_canonical(vm.model.config, vm.model.state_dict(), vm.tokenizer, root / "base")
    (root / "base" / "NOTES.txt").write_text("kept beside the tensors\n")
    assert main(["--model", str(root / "base"), "--out", str(root / "out")]) == 0
    return root / "base", root / "out"


def test_the_copy_has_the_vision_projector_twice_and_answers_bit_for_bit(built) -> None:
    base, out = built
    config = VitaConfig.load(out / "config.json")
    assert config.video_projector == config.vision_projector
    assert "video_projector" not in json.loads((base / "config.json").read_text())
    src, dst = TensorReader.from_dir(base), TensorReader.from_dir(out)
    vision = sorted(n for n in src if n.startswith("vision_projector."))
    assert vision and sorted(set(dst) - set(src)) == sorted("video_projector." + n.split(".", 1)[1] for n in vision)
    for name in vision:
        assert torch.equal(dst["video_projector." + name.split(".", 1)[1]], src[name])
    assert all(torch.equal(dst[n], src[n]) for n in src)
    assert (out / "NOTES.txt").read_text() == "kept beside the tensors\n"
    a, b = vita.load(str(base)), vita.load(str(out))
    assert b.model.video_projector is not None and a.model.video_projector is None
    turn = Turn("user", [Image(EXAMPLES / "emoji.png"), Video(EXAMPLES / "moving_dot.mp4"), "What happens?"])
    ia, ib = a.processor([turn]), b.processor([turn])
    assert ib.video_rows.any()
    with torch.no_grad():
        assert torch.equal(a.embed(ia), b.embed(ib))


def test_a_non_empty_out_or_a_second_copy_is_refused(built, tmp_path, capsys) -> None:
    base, out = built
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert main(["--model", str(base), "--out", str(taken)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in taken.iterdir()] == ["keep.txt"] and (taken / "keep.txt").read_text() == "mine"
    assert main(["--model", str(out), "--out", str(tmp_path / "again")]) == 2
    assert "has a video projector already" in capsys.readouterr().err


def test_parts_carry_a_video_projector(built, tmp_path) -> None:
    from vita.checkpoint.io import write_tensors
    from vita.checkpoint.mini import TRAINED_PREFIXES
    from vita.training.mini_parts import frozen_parts

    assert "video_projector." in TRAINED_PREFIXES
    _, out = built
    reader = TensorReader.from_dir(out)
    final = {n: reader[n] for n in reader}
    final["video_projector.input_mean"] = torch.zeros(3)  # an input_norm's statistics: folded in, never kept
    write_tensors(tmp_path / "final", final)
    kept = {"video_projector.fc2.bias": torch.ones(1)}  # trained: the checkpoint's, not final's
    got = frozen_parts(tmp_path / "final", kept, None)
    assert {n for n in got if n.startswith("video_projector.")} == {
        n for n in reader if n.startswith("video_projector.") and n != "video_projector.fc2.bias"}
    assert "video_projector.input_mean" not in got
