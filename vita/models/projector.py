"""Vision projector `mlp2x_gelu`: ViT features -> LLM embeddings.

Shapes: N tiles, T tokens per tile, Din = ProjectorConfig.input_size (4 x ViT width), D = LLM hidden size.
features [N, T, Din] -> fc1 [N, T, D] -> exact GELU -> fc2 [N, T, D].
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

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(features)))  # [N, T, Din] -> [N, T, D]
