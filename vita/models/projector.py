"""Vision projector `mlp2x_gelu`: ViT features -> LLM embeddings.

Shapes: N tiles, T tokens per tile, Din = ProjectorConfig.input_size (4 x ViT width), D = LLM hidden size.
features [N, T, Din] -> ((x - input_mean) / input_std, with `input_norm` only) -> fc1 [N, T, D] -> exact GELU
-> fc2 [N, T, D].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vita.config import ProjectorConfig
from vita.errors import ConfigError


class VisionProjector(nn.Module):
    """Linear -> exact (erf) GELU -> Linear; checkpoint indices 0 and 2 of the official nn.Sequential."""

    def __init__(self, cfg: ProjectorConfig) -> None:
        super().__init__()
        if cfg.kind != "mlp2x_gelu":
            raise ConfigError(f"unsupported vision projector kind {cfg.kind!r}")
        self.fc1 = nn.Linear(cfg.input_size, cfg.output_size)
        self.fc2 = nn.Linear(cfg.output_size, cfg.output_size)
        self.input_norm = cfg.input_norm
        if cfg.input_norm:  # fixed statistics of the frozen tower's features (ProjectorConfig.input_norm)
            self.register_buffer("input_mean", torch.zeros(cfg.input_size))
            self.register_buffer("input_std", torch.ones(cfg.input_size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.input_norm:
            features = (features - self.input_mean) / self.input_std
        return self.fc2(F.gelu(self.fc1(features)))  # [N, T, Din] -> [N, T, D]


def fold_input_norm(tensors: dict[str, torch.Tensor], prefix: str = "vision_projector.") -> dict[str, torch.Tensor]:
    """The same projector without `input_norm`: fc1(W, b) over (x - m) / s == fc1(W / s, b - W (m / s)) over x.

    Computed in float64 and returned in fc1's dtype; the input_mean / input_std tensors are dropped.
    """
    mean, std = tensors[prefix + "input_mean"].double(), tensors[prefix + "input_std"].double()
    weight, bias = tensors[prefix + "fc1.weight"], tensors[prefix + "fc1.bias"]
    w = weight.double() / std  # [D, Din] / [Din]
    b = bias.double() - w @ mean
    out = {k: v for k, v in tensors.items() if k not in (prefix + "input_mean", prefix + "input_std")}
    out[prefix + "fc1.weight"] = w.to(weight.dtype)
    out[prefix + "fc1.bias"] = b.to(bias.dtype)
    return out
