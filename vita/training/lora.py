"""Low-rank adapters (LoRA, Hu et al. 2021) on `nn.Linear` layers, our own small implementation.

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T      A [r, in] (Kaiming-uniform), B [out, r] (zeros: y = x W^T
                                                           + b at the start)

The adapter runs in activation space (`LoRALinear` replaces the `nn.Linear`, keeping its `weight` and `bias`), so
the backward pass of a frozen W computes only the input gradient: no [out, in] weight-gradient product per layer
(a weight-space parametrization W + s B A costs one, which made a vita-mini LoRA step ~2x slower). Every call site
in the model goes through the module (`vita.nn.linear.project`), so the adapter is on every path. The state dict of
an adapted layer holds `<module>.weight` (W, frozen), `<module>.lora_a` and `<module>.lora_b`; `merged_state_dict`
folds s B A into W and returns the plain layout, which is what the final checkpoint stores (loadable by `vita.load`
with no LoRA code). We do not use `peft`: it would bring `transformers` and `accelerate` into the training path.
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase

import torch
import torch.nn.functional as F
from torch import nn

from vita.errors import TrainingError

LORA_GLOBS = ("*.lora_a", "*.lora_b")


class LoRALinear(nn.Linear):
    """An `nn.Linear` (same weight and bias tensors) plus the low-rank path scale * B A x."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias  # shared, not copied
        self.scale, self.dropout = alpha / r, dropout
        w = base.weight
        self.lora_a = nn.Parameter(torch.empty(r, self.in_features, dtype=w.dtype, device=w.device))  # [r, in]
        self.lora_b = nn.Parameter(torch.zeros(self.out_features, r, dtype=w.dtype, device=w.device))  # [out, r]
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(x, self.dropout, self.training) if self.dropout else x
        low = F.linear(F.linear(h, self.lora_a), self.lora_b)  # [..., r] -> [..., out]
        return F.linear(x, self.weight, self.bias) + self.scale * low  # [..., out]

    def merged_weight(self) -> torch.Tensor:
        return (self.weight.float() + self.scale * (self.lora_b.float() @ self.lora_a.float())).to(self.weight.dtype)


def add_lora(model: nn.Module, targets: list[str], *, r: int, alpha: float, dropout: float = 0.0,
             source: str = "lora") -> list[str]:
    """Replace every `nn.Linear` whose module name matches a glob by a `LoRALinear`; returns their names."""
    if not 0.0 <= dropout < 1.0:
        raise TrainingError(f"{source}.dropout: must be in [0, 1), got {dropout}")
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    unused = [g for g in targets if not any(fnmatchcase(n, g) for n in names)]
    if unused:
        raise TrainingError(f"{source}.targets: glob(s) match no nn.Linear of the model: {', '.join(unused)}")
    wrapped = [n for n in names if any(fnmatchcase(n, g) for g in targets)]
    for name in wrapped:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        base = getattr(parent, child)
        if isinstance(base, LoRALinear):
            raise TrainingError(f"{source}: {name} already has an adapter")
        setattr(parent, child, LoRALinear(base, r, alpha, dropout))
    return wrapped


def merged_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold the LoRA factors of `state` (names as in `model`) into the base weights: the plain layout."""
    scales = {name: m.scale for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    out = {k: v for k, v in state.items() if not k.endswith((".lora_a", ".lora_b"))}
    for name, scale in scales.items():
        w, a, b = state[f"{name}.weight"], state[f"{name}.lora_a"], state[f"{name}.lora_b"]
        out[f"{name}.weight"] = (w.float() + scale * (b.float() @ a.float())).to(w.dtype)
    return out
