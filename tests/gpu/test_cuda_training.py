"""Training on CUDA: one step of every tiny recipe stage (its loss equal to the CPU's), bf16 autocast, and a torchrun
launch with NCCL in one process (`vita.training.distributed`: a CUDA device under torchrun means NCCL)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vita.training.launch import free_port, train_env
from vita.training.train import train

pytestmark = pytest.mark.gpu  # skipped without CUDA: tests/gpu/conftest.py

REPO = Path(__file__).resolve().parents[2]
STAGES = sorted((REPO / "recipes" / "tiny").glob("stage*.yaml"))
ONE_STEP = ["schedule.total_steps=1", "checkpoint.every=0"]


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_there_are_stages():
    assert len(STAGES) >= 5, STAGES


@pytest.mark.parametrize("recipe", STAGES, ids=lambda p: p.stem)
def test_one_step_per_stage_matches_the_cpu(recipe, cuda, tmp_path, report):
    train(recipe, tmp_path / "cpu", ONE_STEP, quiet=True, device=torch.device("cpu"))
    train(recipe, tmp_path / "cuda", ONE_STEP, quiet=True, device=cuda)
    (want,), (got,) = _losses(tmp_path / "cpu"), _losses(tmp_path / "cuda")
    report(stage=recipe.stem, loss_cpu=want, loss_cuda=got)
    assert got == pytest.approx(want, rel=1e-3), (got, want)
    assert (tmp_path / "cuda" / "final" / "config.json").is_file()


def test_bf16_autocast_step(cuda, tmp_path, report):
    recipe = REPO / "recipes" / "tiny" / "stage4_continual_task.yaml"
    train(recipe, tmp_path / "fp32", ONE_STEP, quiet=True, device=cuda)
    train(recipe, tmp_path / "bf16", [*ONE_STEP, "precision=bf16"], quiet=True, device=cuda)
    (want,), (got,) = _losses(tmp_path / "fp32"), _losses(tmp_path / "bf16")
    report(loss_fp32=want, loss_bf16_autocast=got)
    assert got == pytest.approx(want, rel=0.05), (got, want)


def test_torchrun_one_process(cuda, tmp_path, report):
    recipe = REPO / "recipes" / "tiny" / "stage4_continual_task.yaml"
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "vita.cli.train", "--recipe", str(recipe), "--output",
           str(out), "--device", cuda.type, "--threads", "1", "schedule.total_steps=2", "checkpoint.every=2"]
    proc = subprocess.run(cmd, env=train_env(threads=1), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    backend = "NCCL" if cuda.type == "cuda" else "gloo"  # init_world: a CUDA device under torchrun means NCCL
    assert f"1 ranks, ddp, device {cuda}," in proc.stderr, proc.stderr[-2000:]  # cuda:0 = cuda:LOCAL_RANK
    state = json.loads((out / "checkpoints" / "step_000002" / "state.json").read_text())
    losses = _losses(out)
    report(backend=backend, losses=losses, world_size=state["world_size"])
    assert state["world_size"] == 1 and len(losses) == 2 and all(map(math.isfinite, losses))
