"""The 'whale' speech encoder of VITA: global CMVN -> 4x conv subsampling -> pre-norm transformer (relative bias).

Pipeline (inference; dropout layers of the original are identities in eval mode and are left out):

    fbank [B, T, 80] -> (x - mean) * istd
    -> Conv2d(1->C, 3, s2) ReLU -> Conv2d(C->C, 3, s2) ReLU -> Linear(C * F' -> H)   (T' = ((T-1)//2 - 1)//2)
    -> Linear(H->H) -> LayerNorm -> ReLU -> x * sqrt(H)         (the sinusoid table is NOT added to x ...)
    -> N x [x + MHA(LN(x), pos), x + FFN(LN(x))] -> LayerNorm   (... it only feeds the attention's key bias)

Attention scores per head: ((q + u) k^T + (q + v) (W_pos pos)^T) / sqrt(d_k), with no relative shift, so the second
term is a per-key bias computed from absolute sinusoids. Attention is full (every frame sees every valid frame);
only padded keys are masked.

Shapes: B = batch, T = fbank frames, T' = encoder frames, F = fbank bins (80), F' = bins after subsampling (19),
C = conv channels, H = hidden size, h = heads, d = head dim (H / h), I = FFN size.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vita.config import AudioConfig

__all__ = [
    "ConvSubsampling4",
    "GlobalCMVN",
    "InputLayer",
    "RelBiasSelfAttention",
    "ScaledSinusoid",
    "WhaleBlock",
    "WhaleEncoder",
    "sinusoid_table",
    "subsampled_length",
]

# The official code fills masked scores with the float16 minimum (whatever the compute dtype); we do the same so
# that a row without any valid key behaves identically (uniform weights instead of NaN).
MASK_FILL = -65504.0


def subsampled_length(num_frames: int) -> int:
    """Encoder frames for `num_frames` fbank frames: two 3x3 stride-2 convolutions without padding."""
    return max(((num_frames - 1) // 2 - 1) // 2, 0)


def sinusoid_table(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Standard sinusoid positions [length, dim] in float32: sin on even channels, cos on odd ones."""
    position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)  # [L, 1]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * -(math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)  # [L, dim]
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)
    return table


class GlobalCMVN(nn.Module):
    """(x - mean) * istd with per-bin statistics of the training set (buffers, saved with the weights)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("istd", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, F] -> [B, T, F]
        # Always float32: the statistics (mean ~ 12, istd ~ 0.3) lose digits in half precision.
        return (x.float() - self.mean.float()) * self.istd.float()


class ConvSubsampling4(nn.Module):
    """Two 3x3 stride-2 convolutions with ReLU over (time, frequency), then a Linear over channels x frequency."""

    def __init__(self, input_dim: int, channels: int, output_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, kernel_size=3, stride=2)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=2)
        freq = ((input_dim - 1) // 2 - 1) // 2
        self.proj = nn.Linear(channels * freq, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x.unsqueeze(1)))  # [B, C, (T-1)//2, (F-1)//2]
        x = F.relu(self.conv2(x))  # [B, C, T', F']
        b, c, t, f = x.shape
        # Channel-major flatten: feature index = channel * F' + bin.
        x = x.transpose(1, 2).reshape(b, t, c * f)  # [B, T', C * F']
        return self.proj(x)  # [B, T', H]


class InputLayer(nn.Module):
    """Transformer input layer 'linear': Linear -> LayerNorm -> ReLU."""

    def __init__(self, input_dim: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T', H] -> [B, T', H]
        return F.relu(self.norm(self.linear(x)))


class ScaledSinusoid(nn.Module):
    """'rel-enc' positional module: scales x by sqrt(H) and returns the sinusoid table separately (not added)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.scale = math.sqrt(hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = sinusoid_table(x.shape[1], self.hidden, device=x.device).to(x.dtype)  # [T', H]
        return x * self.scale, pos


class RelBiasSelfAttention(nn.Module):
    """Multi-head self-attention with learned content (u) and position (v) biases over absolute sinusoids."""

    def __init__(self, hidden: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden // num_heads
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.o_proj = nn.Linear(hidden, hidden)
        self.pos_proj = nn.Linear(hidden, hidden, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(num_heads, self.head_dim))
        self.pos_bias_v = nn.Parameter(torch.zeros(num_heads, self.head_dim))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(-3, -2)  # [..., T', H] -> [..., h, T', d]

    def forward(self, x: torch.Tensor, pos: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x [B, T', H], pos [T', H], key_mask [B, T'] (True = valid) -> [B, T', H]."""
        q = self._heads(self.q_proj(x))  # [B, h, T', d]
        k = self._heads(self.k_proj(x))  # [B, h, T', d]
        v = self._heads(self.v_proj(x))  # [B, h, T', d]
        p = self._heads(self.pos_proj(pos))  # [h, T', d]
        u = self.pos_bias_u.unsqueeze(1)  # [h, 1, d]
        w = self.pos_bias_v.unsqueeze(1)  # [h, 1, d]
        # The position term is a [T', T'] bias per head; it enters SDPA as an additive mask next to the key mask.
        bias = torch.matmul(q + w, p.transpose(-2, -1)) / math.sqrt(self.head_dim)  # [B, h, T', T']
        bias = bias.masked_fill(~key_mask[:, None, None, :], MASK_FILL)
        out = F.scaled_dot_product_attention(q + u, k, v, attn_mask=bias)  # [B, h, T', d]
        out = out.transpose(1, 2).flatten(2)  # [B, T', H]
        return self.o_proj(out)


class FeedForward(nn.Module):
    """Linear -> ReLU -> Linear."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.up = nn.Linear(hidden, intermediate)
        self.down = nn.Linear(intermediate, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T', H] -> [B, T', H]
        return self.down(F.relu(self.up(x)))  # [B, T', I] in between


class WhaleBlock(nn.Module):
    """Pre-norm transformer block: x + MHA(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, config: AudioConfig) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = RelBiasSelfAttention(config.hidden_size, config.num_heads)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config.hidden_size, config.intermediate_size)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), pos, key_mask)  # [B, T', H]
        return x + self.ffn(self.ffn_norm(x))  # [B, T', H]


class WhaleEncoder(nn.Module):
    """fbank [B, T, F] + lengths [B] -> encoder states [B, T', H] and their validity mask [B, T'].

    Submodules run in this order, so forward hooks on them expose every stage: `cmvn`, `subsampling`,
    `input_layer`, `pos_enc` (returns (scaled x, pos table)), `blocks[k]`, `final_norm`.
    """

    def __init__(self, config: AudioConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.cmvn = GlobalCMVN(config.input_dim)
        self.subsampling = ConvSubsampling4(config.input_dim, h, h)
        self.input_layer = InputLayer(h, h, config.layer_norm_eps)
        self.pos_enc = ScaledSinusoid(h)
        self.blocks = nn.ModuleList(WhaleBlock(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)

    def forward(self, fbank: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """fbank [B, T, F] (right-padded), lengths [B] (int or float frame counts) -> ([B, T', H], [B, T'] bool)."""
        if fbank.dim() != 3 or fbank.shape[-1] != self.config.input_dim:
            raise ValueError(f"whale encoder expects fbank [B, T, {self.config.input_dim}], got {tuple(fbank.shape)}")
        if fbank.shape[1] < 7:
            raise ValueError(f"whale encoder needs at least 7 fbank frames, got {fbank.shape[1]}")
        frames = torch.arange(fbank.shape[1], device=fbank.device)  # [T]
        mask = frames[None, :] < lengths.to(fbank.device)[:, None]  # [B, T]
        mask = mask[:, 2::2][:, 2::2]  # [B, T']: the frames each stride-2 conv keeps
        x = self.cmvn(fbank).to(self.subsampling.conv1.weight.dtype)  # [B, T, F] in the model's dtype
        x = self.subsampling(x)  # [B, T', H]
        x, pos = self.pos_enc(self.input_layer(x))  # [B, T', H], [T', H]
        for block in self.blocks:
            x = block(x, pos, mask)  # [B, T', H]
        return self.final_norm(x), mask
