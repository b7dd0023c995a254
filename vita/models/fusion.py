"""Splice media features into the text embedding sequence.

Shapes: B batch, L sequence (placeholders already expanded to exact counts), D LLM width, N feature rows.
"""

from __future__ import annotations

import torch

from vita.errors import PromptError


def splice(text_embeds: torch.Tensor, token_ids: torch.Tensor, features: dict[int, torch.Tensor]) -> torch.Tensor:
    """Replace the rows of `text_embeds` [B, L, D] where `token_ids` [B, L] equals a placeholder id.

    `features[placeholder_id]` is [N, D] with N equal to the number of such positions (row-major over the
    batch); rows are written in order with one vectorized `masked_scatter` per modality.
    """
    if text_embeds.shape[:2] != token_ids.shape:
        raise ValueError(f"embeds {tuple(text_embeds.shape)} and ids {tuple(token_ids.shape)} disagree")
    out = text_embeds
    for placeholder, feats in features.items():
        mask = token_ids == placeholder  # [B, L]
        n = int(mask.sum())
        if feats.ndim != 2 or feats.shape[0] != n or feats.shape[1] != text_embeds.shape[-1]:
            raise PromptError(
                f"placeholder {placeholder}: {n} positions in the prompt but features of shape {tuple(feats.shape)}"
                f" (expected [{n}, {text_embeds.shape[-1]}])"
            )
        out = out.masked_scatter(mask.unsqueeze(-1), feats.to(out.dtype))  # [B, L, D]
    leftover = token_ids < 0
    for placeholder in features:
        leftover &= token_ids != placeholder
    if bool(leftover.any()):
        bad = sorted(set(token_ids[leftover].tolist()))
        raise PromptError(f"placeholder ids {bad} in the prompt have no features")
    return out
