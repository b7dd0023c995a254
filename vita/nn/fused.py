"""Inference-time weight fusion that keeps checkpoint names: fused rows in one buffer, the originals as views.

A fused GEMV reads the same bytes as the separate ones but costs one kernel launch instead of several, which is
what matters for batch-1 decoding on CPU. The separate parameters stay registered (as views of the fused buffer),
so `state_dict()` names, shapes and values are unchanged, and an in-place `load_state_dict` updates both.
Inference only: the forward reads the fused buffer, so no gradient reaches the views.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fuse_rows(module: nn.Module, buffer_name: str, linears: list[nn.Linear], attr: str = "weight") -> torch.Tensor:
    """Concatenate `attr` ([N_i, ...]) of `linears` along dim 0 into a non-persistent buffer of `module`."""
    adapted = [type(lin).__name__ for lin in linears if type(lin) is not nn.Linear]
    if adapted:  # the fused product reads the weights alone: an adapter's extra path would be dropped
        raise ValueError(f"cannot fuse {', '.join(adapted)} layers; merge the adapters first")
    fused = torch.cat([getattr(lin, attr) for lin in linears])  # [sum N_i, ...]
    module.register_buffer(buffer_name, fused, persistent=False)
    start = 0
    for lin in linears:
        n = getattr(lin, attr).shape[0]
        setattr(lin, attr, nn.Parameter(fused[start : start + n], requires_grad=False))
        start += n
    return fused
