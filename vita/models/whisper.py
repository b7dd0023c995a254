"""Whisper's audio encoder, compact, as an audio-encoder option of VITA (weights: `vita.checkpoint.ct2`).

Network (`WhisperEncoder.encode`; inference, no dropout):

    log-mel [B, T, M] -> Conv1d(M -> D, 3, pad 1) GELU -> Conv1d(D -> D, 3, stride 2, pad 1) GELU   (T' = ceil(T/2))
    -> + positions[:T']        (a [P, D] table from the checkpoint; Whisper's sinusoids for random init)
    -> N x [x + MHA(LN(x)), x + FC2(GELU(FC1(LN(x))))]   (q/v/out projections with bias, k without)
    -> LayerNorm

Clip handling (`WhisperEncoder.forward`, the `WhaleEncoder` contract used by `VitaModel`): a clip's features are
the unclamped log-mel of its own frames (`vita.media.logmel.log_mel_unclamped`); per clip the dynamic-range clamp is
applied, then with `pad_to_window` the clip is padded to Whisper's 30 s window with the value the zero-padded
window has there (the silence floor, max(max - 2, -1.5)), encoded, and only its ceil(T / 2) frames are kept.
Clips over 30 s are cut into consecutive windows. The one or two frames right after a clip's end differ from
Whisper's (they hold the floor instead of the clip's last samples seen through the STFT window); on speech that
ends in silence the result equals Whisper's exactly (tests/models/test_whisper.py). Without `pad_to_window` only the
clip's frames are encoded (positions [:T']): ~20x faster on a 3 s clip, but Whisper never saw such input. Measured
on tiny.en (1-7 s of synthetic speech): cosine to the padded states 0.92-0.99 on average (per-frame minimum 0.36),
relative L2 difference 0.40 at 1 s falling to 0.11 at 7 s; Whisper's own decoder reads the same words from both.

Shapes: B batch, T log-mel frames, M mel bins (80), T' = ceil(T / 2) encoder frames, P positions (1500),
D width, h heads, d = D / h, I FFN width.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vita.config import WhisperConfig
from vita.media.logmel import LOG_FLOOR, dynamic_range_clamp

__all__ = ["WhisperAttention", "WhisperBlock", "WhisperEncoder", "prepare_clip", "whisper_sinusoids"]


def whisper_sinusoids(length: int, dim: int) -> torch.Tensor:
    """Whisper's position table [length, dim]: sin on the first dim/2 channels, cos on the rest."""
    increment = math.log(10000.0) / (dim // 2 - 1)
    inv = torch.exp(-increment * torch.arange(dim // 2, dtype=torch.float32, device="cpu"))  # [dim / 2]
    angle = torch.arange(length, dtype=torch.float32, device="cpu")[:, None] * inv[None, :]  # [length, dim / 2]
    return torch.cat([angle.sin(), angle.cos()], dim=1)  # [length, dim]


def prepare_clip(features: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Unclamped log-mel [T, M] of one clip -> (clamped features [T, M], the silence floor for padding)."""
    clamped = dynamic_range_clamp(features.float())  # [T, M]
    floor = max(float(features.max()) - 2.0, LOG_FLOOR) if features.numel() else LOG_FLOOR
    return clamped, floor


class WhisperAttention(nn.Module):
    """Full multi-head self-attention; the key projection has no bias (a key bias cannot change softmax)."""

    def __init__(self, hidden: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden, bias=False)
        self.v_proj = nn.Linear(hidden, hidden)
        self.o_proj = nn.Linear(hidden, hidden)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # [B, T', D] -> [B, h, T', d]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T', D] -> [B, T', D]; `mask` [B, T'] (True = valid): padded frames are never attended to (batched
        training of right-padded clips; inference encodes each clip alone, unmasked)."""
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        keys = None if mask is None else mask[:, None, None, :]  # [B, 1, 1, T']
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)  # [B, h, T', d], scale 1 / sqrt(d)
        return self.o_proj(out.transpose(1, 2).flatten(2))  # [B, T', D]


class FeedForward(nn.Module):
    """Linear -> exact GELU -> Linear."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.up = nn.Linear(hidden, intermediate)
        self.down = nn.Linear(intermediate, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T', D] -> [B, T', D]
        return self.down(F.gelu(self.up(x)))  # [B, T', I] in between


class WhisperBlock(nn.Module):
    """Pre-LN transformer block: x + MHA(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = WhisperAttention(config.hidden_size, config.num_heads)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config.hidden_size, config.intermediate_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), mask)  # [B, T', D]
        return x + self.ffn(self.ffn_norm(x))  # [B, T', D]


class WhisperEncoder(nn.Module):
    """Whisper audio encoder. `encode`: ready log-mel -> states; `forward`: clips + lengths -> states + mask."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.conv1 = nn.Conv1d(config.input_dim, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        # Whisper's positions are fixed sinusoids; checkpoints carry the table, so it is loaded, never trained.
        self.register_buffer("positions", torch.empty(config.max_positions, d))  # [P, D]
        if not self.positions.is_meta:  # (building on meta for a load: skip the table, it comes from the file)
            self.positions.copy_(whisper_sinusoids(config.max_positions, d))
        self.blocks = nn.ModuleList(WhisperBlock(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)

    @property
    def window_frames(self) -> int:
        """Log-mel frames of one encoder window (3000 = 30 s for Whisper)."""
        return min(self.config.logmel.window_frames, 2 * self.config.max_positions)

    def encode(self, mel: torch.Tensor, blocks: int | None = None) -> torch.Tensor:
        """Clamped log-mel [B, T, M] (T <= 2P) -> encoder states [B, ceil(T / 2), D]; Whisper itself for T = 3000.
        `blocks`: stop after that many blocks, without the final LayerNorm (the input of the blocks above, which
        `vita.training.embed_align` fine-tunes on these states kept frozen)."""
        if mel.dim() != 3 or mel.shape[-1] != self.config.input_dim:
            raise ValueError(f"whisper encoder expects log-mel [B, T, {self.config.input_dim}], got {tuple(mel.shape)}")
        if not 0 < mel.shape[1] <= 2 * self.config.max_positions:
            raise ValueError(f"whisper encoder takes 1..{2 * self.config.max_positions} frames, got {mel.shape[1]}")
        x = mel.to(self.conv1.weight.dtype).transpose(1, 2)  # [B, M, T]
        x = F.gelu(self.conv1(x))  # [B, D, T]
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # [B, T', D]
        x = x + self.positions[: x.shape[1]].to(x.dtype)  # [B, T', D]
        for block in self.blocks[:blocks]:
            x = block(x)  # [B, T', D]
        return x if blocks is not None and blocks < len(self.blocks) else self.final_norm(x)

    def encode_clip(self, features: torch.Tensor, blocks: int | None = None) -> torch.Tensor:
        """Unclamped log-mel [T, M] of one clip -> its encoder states [ceil(T / 2), D] (see the module doc);
        `blocks` as in `encode`."""
        mel, floor = prepare_clip(features)  # [T, M]
        window = self.window_frames
        pieces = []
        for start in range(0, mel.shape[0], window):
            piece = mel[start : start + window]  # [<= W, M]
            keep = -(-piece.shape[0] // 2)
            if self.config.pad_to_window:
                piece = F.pad(piece, (0, 0, 0, window - piece.shape[0]), value=floor)  # [W, M]
            pieces.append(self.encode(piece[None], blocks)[0, :keep])  # [keep, D]
        return torch.cat(pieces)  # [T', D]

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, blocks: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded clips [B, T, M] + lengths [B] -> (states [B, ceil(T / 2), D], mask [B, ceil(T / 2)]);
        `blocks` as in `encode`.

        Each clip is encoded on its own (no padded frame can reach a valid one); padded outputs are zeros.
        """
        if features.dim() != 3 or features.shape[-1] != self.config.input_dim:
            raise ValueError(
                f"whisper encoder expects log-mel [B, T, {self.config.input_dim}], got {tuple(features.shape)}"
            )
        steps = -(-features.shape[1] // 2)
        out = features.new_zeros(features.shape[0], steps, self.config.hidden_size, dtype=self.conv1.weight.dtype)
        lengths = lengths.to(features.device).long()
        for b, length in enumerate(lengths.tolist()):
            if length > 0:
                states = self.encode_clip(features[b, :length], blocks)  # [ceil(len / 2), D]
                out[b, : states.shape[0]] = states
        mask = torch.arange(steps, device=features.device)[None, :] < (lengths[:, None] + 1) // 2  # [B, T']
        return out, mask
