"""AdamW over the trainable parameters and the learning-rate schedule (cosine with linear warm-up).

    lr(step) = lr * step / W                                   step < W = ceil(warmup_ratio * total)
    lr(step) = lr * (m + (1 - m) * 0.5 * (1 + cos(pi * (step - W) / (total - W))))    m = min_lr_ratio

the HF Trainer's `get_cosine_schedule_with_warmup` (which the official scripts use) when m = 0; `constant` keeps
the warm-up and then holds lr. `optim.lr_scale` gives parameter groups their own multiple of lr (e.g. a
pre-aligned projector trained on at a tenth of the LoRA's rate); the schedule scales every group alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fnmatch import fnmatchcase

import torch
from torch.optim.lr_scheduler import LambdaLR

from vita.errors import TrainingError
from vita.training.recipe import OptimSpec, ScheduleSpec


def build_optimizer(params: Iterable[torch.nn.Parameter], spec: OptimSpec,
                    names: dict[int, str] | None = None) -> torch.optim.AdamW:
    """AdamW over `params`; with `spec.lr_scale`, one parameter group per multiplier (`names`: id(param) -> name,
    needed then), in the order of first appearance, so the groups are the same on every rank and every resume."""
    params = list(params)
    if not spec.lr_scale:
        return torch.optim.AdamW(params, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)
    if names is None:
        raise TrainingError("optim.lr_scale needs the parameters' names")
    unused = [g for g in spec.lr_scale if not any(fnmatchcase(names[id(p)], g) for p in params)]
    if unused:
        raise TrainingError(f"optim.lr_scale: glob(s) match no trainable parameter: {', '.join(unused)}")
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for p in params:
        scale = next((v for g, v in reversed(spec.lr_scale.items()) if fnmatchcase(names[id(p)], g)), 1.0)
        groups.setdefault(scale, []).append(p)
    return torch.optim.AdamW([{"params": ps, "lr": spec.lr * scale} for scale, ps in groups.items()], lr=spec.lr,
                             betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)


def warmup_steps(spec: ScheduleSpec, total: int) -> int:
    return math.ceil(spec.warmup_ratio * total)


def lr_factor(step: int, *, total: int, warmup: int, kind: str, min_ratio: float) -> float:
    """Multiplier of the base lr for the update after `step` completed steps."""
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant":
        return 1.0
    progress = min((step - warmup) / max(1, total - warmup), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _Factor:
    """A picklable-free callable (LambdaLR stores no state for it, so checkpoints hold only numbers)."""

    def __init__(self, total: int, warmup: int, kind: str, min_ratio: float) -> None:
        self.total, self.warmup, self.kind, self.min_ratio = total, warmup, kind, min_ratio

    def __call__(self, step: int) -> float:
        return lr_factor(step, total=self.total, warmup=self.warmup, kind=self.kind, min_ratio=self.min_ratio)


def build_scheduler(optimizer: torch.optim.Optimizer, spec: ScheduleSpec, total: int) -> LambdaLR:
    factor = _Factor(total, warmup_steps(spec, total), spec.kind, spec.min_lr_ratio)
    return LambdaLR(optimizer, lambda step: factor(step))
