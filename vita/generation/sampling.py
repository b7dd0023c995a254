"""Next-token selection: greedy, temperature, top-k, top-p. Pure tensor functions, no host sync.

Shapes: logits [B, V] -> token ids [B] (int64). The order of the filters is HF's: temperature, top-k, top-p.
Sampling draws with the exponential-race trick (argmax of p / Exp(1)), which is a categorical draw from p without
`torch.multinomial`'s host synchronisation, and takes an optional `torch.Generator` for reproducibility.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vita.errors import ConfigError


@dataclass(frozen=True)
class SamplingConfig:
    """temperature 0 means greedy (argmax); top_k 0 and top_p 1.0 switch those filters off."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


GREEDY = SamplingConfig()


def filter_logits(logits: torch.Tensor, config: SamplingConfig) -> torch.Tensor:
    """Temperature-scaled float32 logits [B, V] with the entries outside top-k / top-p set to -inf."""
    logits = logits.float() / max(config.temperature, 1e-5)  # [B, V]
    if config.top_k:
        kth = torch.topk(logits, min(config.top_k, logits.shape[-1]), dim=-1).values[..., -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # [B, V]
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the mass of the tokens strictly before it already reaches top_p (the first is kept)
        drop_sorted = probs.cumsum(dim=-1) - probs >= config.top_p  # [B, V]
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(
    logits: torch.Tensor, config: SamplingConfig = GREEDY, generator: torch.Generator | None = None
) -> torch.Tensor:
    """logits [B, V] -> next token ids [B] (int64)."""
    if config.greedy:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits, config).softmax(dim=-1)  # [B, V]
    if generator is not None and generator.device != probs.device:  # a seeded CPU generator, CUDA logits: the
        # same noise as on the CPU (so a seed gives the same draws on every device), then moved
        race = torch.empty(probs.shape, dtype=probs.dtype, device=generator.device).exponential_(
            1.0, generator=generator).to(probs.device)  # [B, V] ~ Exp(1)
    else:
        race = torch.empty_like(probs).exponential_(1.0, generator=generator)  # [B, V] ~ Exp(1)
    return (probs / race).argmax(dim=-1)
