"""Audio adapter: whale encoder states (25 Hz) -> LLM embeddings (12.5 Hz).

    x [B, T', H] (padded frames zeroed) -> right zero-pad k-1 frames -> Conv1d(H -> 2H, k, stride 2)
    -> LayerNorm(2H, eps 1e-3) over channels -> exact GELU -> Linear(2H -> D)

Output length T'' = ceil(T' / 2); the output mask keeps every second input mask entry.

Shapes: B = batch, T' = encoder frames, T'' = adapter frames, H = encoder width, C = conv width (2H), D = LLM width.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vita.config import AudioAdapterConfig

__all__ = ["AudioAdapter"]


class AudioAdapter(nn.Module):
    """Single strided convolution + LayerNorm + GELU + projection into the LLM embedding space."""

    def __init__(self, config: AudioAdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.conv = nn.Conv1d(config.input_size, config.conv_size, config.kernel_size, stride=config.stride)
        self.norm = nn.LayerNorm(config.conv_size, eps=config.norm_eps)
        self.proj = nn.Linear(config.conv_size, config.output_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T', H], mask [B, T'] (True = valid) -> (embeds [B, T'', D], mask [B, T''])."""
        # Padded encoder frames hold arbitrary values; zero them so they cannot leak into valid outputs.
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)  # [B, T', H]
        x = F.pad(x.transpose(1, 2), (0, self.config.kernel_size - 1))  # [B, H, T' + k - 1]
        x = self.conv(x).transpose(1, 2)  # [B, T'', C]
        x = F.gelu(self.norm(x))  # [B, T'', C]
        return self.proj(x), mask[:, :: self.config.stride]  # [B, T'', D], [B, T'']
