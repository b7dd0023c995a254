"""Low-rank adapters (LoRA, Hu et al. 2021) on `nn.Linear` weights, our own small implementation.

    W' = W + (alpha / r) * B A        A [r, in] (Kaiming-uniform), B [out, r] (zeros: W' = W at the start)

The adapter is a weight parametrization (`torch.nn.utils.parametrize`), not a module swap: the model's code reads
some weights directly (`linear(y, self.wo.weight)`), and a parametrized `.weight` is W' on every path. The state dict
of an adapted layer holds `<module>.parametrizations.weight.original` (W, frozen) and
`<module>.parametrizations.weight.0.lora_a` / `.lora_b`; `merged_state_dict` folds B A into W and returns the plain
layout, which is what the final checkpoint stores (loadable by `vita.load` with no LoRA code). Being weight-space,
the adapter has no input dropout (`dropout` must be 0). We do not use `peft`: it would bring `transformers` and
`accelerate` into the training path and rename every wrapped weight.
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase

import torch
from torch import nn
from torch.nn.utils import parametrize

from vita.errors import TrainingError

LORA_GLOBS = ("*.lora_a", "*.lora_b")
_ORIGINAL = ".parametrizations.weight.original"
_FACTOR = ".parametrizations.weight.0.lora_"


class LoRA(nn.Module):
    """The parametrization: weight [out, in] -> weight + scale * B A."""

    def __init__(self, weight: torch.Tensor, r: int, alpha: float) -> None:
        super().__init__()
        out_features, in_features = weight.shape
        self.scale = alpha / r
        self.lora_a = nn.Parameter(torch.empty(r, in_features, dtype=weight.dtype, device=weight.device))  # [r, in]
        self.lora_b = nn.Parameter(torch.zeros(out_features, r, dtype=weight.dtype, device=weight.device))  # [out, r]
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.lora_b @ self.lora_a)  # [out, in]


def add_lora(model: nn.Module, targets: list[str], *, r: int, alpha: float, dropout: float = 0.0,
             source: str = "lora") -> list[str]:
    """Parametrize the weight of every `nn.Linear` whose module name matches a glob; returns their names."""
    if dropout:
        raise TrainingError(f"{source}.dropout: not supported (the adapter is weight-space); use 0")
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    unused = [g for g in targets if not any(fnmatchcase(n, g) for n in names)]
    if unused:
        raise TrainingError(f"{source}.targets: glob(s) match no nn.Linear of the model: {', '.join(unused)}")
    wrapped = [n for n in names if any(fnmatchcase(n, g) for g in targets)]
    for name in wrapped:
        module = model.get_submodule(name)
        parametrize.register_parametrization(module, "weight", LoRA(module.weight, r, alpha))
    return wrapped


def merged_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold the LoRA factors of `state` (names as in `model`) into the base weights: the plain layout."""
    scales = {name: m.parametrizations.weight[0].scale for name, m in model.named_modules()
              if parametrize.is_parametrized(m, "weight") and isinstance(m.parametrizations.weight[0], LoRA)}
    out = {k: v for k, v in state.items() if _FACTOR not in k and not k.endswith(_ORIGINAL)}
    for name, scale in scales.items():
        w = state[f"{name}{_ORIGINAL}"]
        a, b = state[f"{name}{_FACTOR}a"], state[f"{name}{_FACTOR}b"]
        out[f"{name}.weight"] = (w.float() + scale * (b.float() @ a.float())).to(w.dtype)
    return out
