"""vita.training.optim: AdamW groups by `optim.lr_scale`, one schedule over every group."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from vita.checkpoint.load import load_model
from vita.errors import TrainingError
from vita.training.optim import build_optimizer, build_scheduler
from vita.training.recipe import OptimSpec, ScheduleSpec, recipe_from_dict
from vita.training.train import train

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny"


def _named() -> tuple[list[nn.Parameter], dict[int, str]]:
    m = nn.ModuleDict({"llm": nn.Linear(2, 2), "vision_projector": nn.Linear(2, 2)})
    params = list(m.parameters())
    return params, {id(p): n for n, p in m.named_parameters()}


def test_groups_take_their_multiple_of_lr_through_the_schedule() -> None:
    params, names = _named()
    spec = OptimSpec(lr=1e-3, lr_scale={"*": 2.0, "vision_projector.*": 0.1})  # the last matching glob wins
    opt = build_optimizer(params, spec, names)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2e-3, 1e-4])
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    sched = build_scheduler(opt, ScheduleSpec(kind="cosine", warmup_ratio=0.0, total_steps=10), 10)
    for _ in range(5):
        opt.step()
        sched.step()
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs[0] == pytest.approx(2e-3 * 0.5) and lrs[1] == pytest.approx(1e-4 * 0.5)  # cosine at half way


def test_no_scale_is_one_group_and_a_glob_matching_nothing_is_an_error() -> None:
    params, names = _named()
    assert len(build_optimizer(params, OptimSpec(lr=1e-3)).param_groups) == 1
    with pytest.raises(TrainingError, match="match no trainable parameter: audio_adapter"):
        build_optimizer(params, OptimSpec(lr=1e-3, lr_scale={"audio_adapter.*": 0.5}), names)
    raw = {"model": {"init": "tiny-random"}, "trainable": {"*": True}, "data": {"sources": [{"path": "x.json"}]},
           "optim": {"lr": 1e-3, "lr_scale": {"llm.*": -1}}, "schedule": {"total_steps": 2}}
    with pytest.raises(TrainingError, match="multipliers must be >= 0"):
        recipe_from_dict(raw)
    raw["optim"]["lr_scale"] = {"llm.*": 0.5}
    assert recipe_from_dict(raw).optim.lr_scale == {"llm.*": 0.5}


def test_a_zero_scale_leaves_its_group_as_it_was(tmp_path: Path) -> None:
    """stage 4 trains the LLM and the projector; the projector at scale 0 keeps its initial weights exactly."""
    out = tmp_path / "run"
    final = train(TINY / "stage4_continual_task.yaml", out,
                  ["schedule.total_steps=2", "checkpoint.every=2", "optim.lr_scale={'vision_projector.*': 0.0}"],
                  quiet=True)
    before, after = load_model("tiny-random")[0].state_dict(), load_model(final)[0].state_dict()
    projector = [k for k in before if k.startswith("vision_projector.")]
    assert projector and all(torch.equal(before[k], after[k]) for k in projector)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("llm."))
