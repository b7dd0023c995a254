"""SwiGLU feed-forward (Llama / Mistral / Qwen2): w2(silu(w1 x) * w3 x).

Shapes: x [..., D] -> hidden [..., I] -> [..., D].
Parameters (checkpoint names): `w1` (gate, [I, D]), `w3` (up, [I, D]), `w2` (down, [D, I]); no biases.
`fuse_()` (inference only) stacks w1 and w3 into one [2I, D] buffer, the two weights becoming views of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vita.nn.fused import fuse_rows
from vita.nn.linear import linear, project


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w13: torch.Tensor | None
        self.register_buffer("w13", None, persistent=False)  # fused gate/up weight, filled by fuse_()

    def fuse_(self) -> None:
        """Fuse the gate and up projections for inference (idempotent)."""
        if self.w13 is not None:
            return
        fuse_rows(self, "w13", [self.w1, self.w3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.w13 is not None:
            gate, up = linear(x, self.w13).split([self.hidden, self.hidden], dim=-1)  # [..., I] each
        else:
            gate, up = project(self.w1, x), project(self.w3, x)
        return project(self.w2, F.silu(gate) * up)
