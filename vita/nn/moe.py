"""Mixtral sparse mixture of experts: softmax router (float32), top-k, weights renormalised to sum 1.

Shapes: x [B, L, D] -> T = B*L tokens [T, D]; router logits [T, E]; top-k experts per token [T, k];
each expert is a SwiGLU FeedForward [.., D] -> [.., D]; output [B, L, D].
Parameters (checkpoint names): `gate` ([E, D], no bias), `experts.{e}.w1/w2/w3`.

Only experts that received tokens run: tokens are sorted by expert once, so each chosen expert does one matmul over
a contiguous block of its tokens (prefill) and a decode step (T = 1) runs exactly the k chosen experts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vita.nn.mlp import FeedForward


class MoE(nn.Module):
    def __init__(self, dim: int, hidden: int, num_experts: int, top_k: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.gate = nn.Linear(dim, num_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(dim, hidden) for _ in range(num_experts))

    def fuse_(self) -> None:
        for expert in self.experts:
            expert.fuse_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # [T, D]
        logits = self.gate(x)  # [T, E]
        probs = F.softmax(logits, dim=-1, dtype=torch.float32)  # float32 routing like the reference
        weights, chosen = probs.topk(self.top_k, dim=-1)  # [T, k] each
        weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)  # renormalise the k weights to sum 1

        flat = chosen.flatten()  # [T*k] expert of each (token, slot)
        order = flat.argsort(stable=True)  # group (token, slot) pairs by expert, token order kept within an expert
        token_of = order // self.top_k  # [T*k] source token of each sorted pair
        counts = torch.bincount(flat, minlength=len(self.experts)).tolist()  # one host read per MoE call
        out = torch.zeros_like(x)  # [T, D]
        start = 0
        for e, n in enumerate(counts):
            if n == 0:
                continue
            rows = token_of[start : start + n]  # [n]
            y = self.experts[e](x[rows]) * weights.flatten()[order[start : start + n], None]  # [n, D]
            out.index_add_(0, rows, y)
            start += n
        return out.view(shape)  # [B, L, D]
