"""torchrun on CPU (gloo): 2 ranks give the loss curve of 1 process with the same global batch; FSDP equals DDP."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from vita.checkpoint.load import load_model
from vita.training.launch import train_command, train_env
from vita.training.train import train

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "tiny" / "stage4_continual_task.yaml"  # LLM + vision projector trained
# 4 samples per step: one process accumulates 4 micro-batches of 1; two ranks accumulate 2 each (DDP no_sync)
COMMON = ["schedule.total_steps=4", "batch.micro_batch_size=1", "batch.grad_accum=null", "batch.global_batch_size=4",
          "checkpoint.every=2"]


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _torchrun(out: Path, overrides: list[str]) -> None:
    proc = subprocess.run(train_command(RECIPE, out, overrides, nproc=2), env=train_env(threads=1),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + "\n--- stderr ---\n" + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(RECIPE, out, COMMON, quiet=True)
    finally:
        torch.set_num_threads(n)
    return out


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    _torchrun(out, [*COMMON, "distributed=ddp"])
    return out


def _assert_same_run(a: Path, b: Path) -> None:
    la, lb = _losses(a), _losses(b)
    assert len(la) == len(lb) == 4
    assert max(abs(x - y) for x, y in zip(la, lb, strict=True)) < 1e-5, (la, lb)
    assert la[-1] < la[0]
    wa, wb = dict(load_model(a / "final")[0].state_dict()), dict(load_model(b / "final")[0].state_dict())
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-5, rtol=0), name


def test_ddp_two_ranks_equal_one_process(single: Path, ddp: Path):
    _assert_same_run(single, ddp)
    state = json.loads((ddp / "checkpoints" / "step_000004" / "state.json").read_text())
    assert state["world_size"] == 2 and state["positions"] == [8, 8] and state["samples_seen"] == 16


def test_fsdp_equals_ddp_and_resumes_exactly(ddp: Path, tmp_path: Path):
    out = tmp_path / "fsdp"
    _torchrun(out, [*COMMON, "distributed=fsdp"])
    _assert_same_run(ddp, out)
    # resume under FSDP from the mid-run checkpoint (sharded again from the full state): the same final weights
    before, curve = dict(load_model(out / "final")[0].state_dict()), _losses(out)
    shutil.rmtree(out / "final")
    shutil.rmtree(out / "checkpoints" / "step_000004")
    _torchrun(out, [*COMMON, "distributed=fsdp"])
    after = dict(load_model(out / "final")[0].state_dict())
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert _losses(out) == curve  # steps 1-2 kept from the log, 3-4 re-run with the same losses
