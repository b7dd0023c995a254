"""vita.training.soup: the soup of two runs' parts merges to the mean of their merged weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from vita.checkpoint.load import load_model
from vita.checkpoint.mini import _Merged, read_parts
from vita.cli.tools import main as tools_main
from vita.errors import CheckpointError
from vita.training.mini_parts import pack_parts
from vita.training.soup import soup_parts
from vita.training.train import train

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny"


@pytest.fixture(scope="module")
def two_parts(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("soup")
    out = []
    for seed in (1, 2):
        run = root / f"run{seed}"
        train(TINY / "stage0_llm_bilingual.yaml", run,
              ["lora={targets: ['llm.layers.*.attention.w[qv]'], r: 4, alpha: 8}",
               "trainable={'*': false, 'vision_projector.*': true}", "schedule.total_steps=3", "optim.lr=1e-2",
               "checkpoint.every=3", f"seed={seed}"], quiet=True)
        out.append(pack_parts(run, root / f"parts{seed}", dtype="fp32"))
    return out


def _merged(parts: Path) -> dict[str, torch.Tensor]:
    _, tensors, scale = read_parts(parts, check_base=False)
    base = {n: t for n, t in load_model("tiny-random")[0].state_dict().items() if n not in tensors}
    merged = _Merged([base], tensors, scale, torch.float32)
    return {n: merged[n] for n in merged}


def test_the_soup_is_the_mean_of_the_runs_exactly_or_compressed(two_parts: list[Path], tmp_path: Path) -> None:
    one, two = (_merged(p) for p in two_parts)
    assert any(not torch.equal(one[n], two[n]) for n in one if ".attention.wq" in n)  # two different runs
    manifest = soup_parts(two_parts, tmp_path / "exact", check_base=False)
    soup = _merged(tmp_path / "exact")
    assert set(soup) == set(one)
    for name in soup:
        torch.testing.assert_close(soup[name], (one[name] + two[name]) / 2, atol=1e-6, rtol=0, msg=name)
    _, tensors, _ = read_parts(tmp_path / "exact", check_base=False)
    assert tensors["llm.layers.0.attention.wq.lora_a"].shape[0] == 8  # 2 runs x rank 4, kept whole
    assert [s["parts"] for s in manifest["run"]["soup"]] == [str(p) for p in two_parts]
    manifest = soup_parts(two_parts, tmp_path / "r4", rank=4, check_base=False)
    _, tensors, _ = read_parts(tmp_path / "r4", check_base=False)
    assert tensors["llm.layers.0.attention.wq.lora_a"].shape[0] == 4
    assert 0.5 < manifest["run"]["min_energy_kept"] <= 1.0
    soup4 = _merged(tmp_path / "r4")
    name = "llm.layers.0.attention.wq.weight"
    exact, base = soup[name], load_model("tiny-random")[0].state_dict()[name]
    err = (soup4[name] - exact).norm() / (exact - base).norm()  # what the rank-4 change misses of the rank-8 one
    assert err < (1 - manifest["run"]["min_energy_kept"]) ** 0.5 + 1e-4


def test_a_chain_is_the_sum_of_the_changes_and_the_last_folders_other_tensors(two_parts: list[Path],
                                                                             tmp_path: Path) -> None:
    one, two = (_merged(p) for p in two_parts)
    base = load_model("tiny-random")[0].state_dict()
    assert tools_main(["soup", "--chain", "--out", str(tmp_path / "chain"), *map(str, two_parts)]) == 0
    chain = _merged(tmp_path / "chain")
    adapted = [n for n in chain if ".attention.w" in n and n.endswith(".weight") and not torch.equal(one[n], base[n])]
    assert adapted
    for name in adapted:  # W + (change of one) + (change of two)
        torch.testing.assert_close(chain[name], one[name] + two[name] - base[name], atol=1e-6, rtol=0, msg=name)
    projector = [n for n in chain if n.startswith("vision_projector.")]
    assert any(not torch.equal(one[n], two[n]) for n in projector)
    for name in projector:  # the continuation's own values, not a mean
        assert torch.equal(chain[name], two[name]), name
    manifest = json.loads((tmp_path / "chain" / "parts.json").read_text())
    assert [s["parts"] for s in manifest["run"]["chain"]] == [str(p) for p in two_parts]


def test_parts_that_do_not_belong_together_are_refused(two_parts: list[Path], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="two or more"):
        soup_parts(two_parts[:1], tmp_path / "a", check_base=False)
    other = tmp_path / "other"
    shutil.copytree(two_parts[1], other)
    manifest = json.loads((other / "parts.json").read_text())
    manifest["lora_scale"] = 1.0
    (other / "parts.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="LoRA scale"):
        soup_parts([two_parts[0], other], tmp_path / "b", check_base=False)
    manifest["lora_scale"] = 2.0
    manifest["config"]["llm"]["rms_norm_eps"] = 1e-3
    (other / "parts.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="config differs"):
        soup_parts([two_parts[0], other], tmp_path / "c", check_base=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("kept")
    assert tools_main(["soup", "--out", str(tmp_path / "full"), *map(str, two_parts)]) == 2
    assert (tmp_path / "full" / "x").read_text() == "kept"  # nothing the user had is lost
