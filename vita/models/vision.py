"""InternViT vision tower + VITA's x0.5 pixel shuffle (2x2 space-to-depth).

Shapes:
    N   tiles (images) in the batch
    S   tile side in pixels (any multiple of the patch size; the position table is resampled to the actual grid)
    g   patch grid side = S / patch_size (G = the native grid, image_size / patch_size)
    C   ViT width (hidden_size); 4C = width after the 2x2 shuffle
    P   patches = g*g; tokens per layer = 1 + P (CLS first)
    T   output tokens per tile = (g/2)^2

pixel_values [N, 3, S, S] -> embeddings [N, 1+P, C] -> L pre-norm layers (x + ls1*attn(norm1 x), x + ls2*mlp(norm2 x))
-> final LayerNorm `post_norm` only if cfg.post_norm (DINOv2; VITA-1.0's InternViT has none) -> drop CLS
-> x feature_scale -> space-to-depth -> [N, T, 4C].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vita.config import VisionConfig
from vita.errors import ConfigError


class VisionEmbeddings(nn.Module):
    """Conv patch embedding + CLS token + learned position embedding (patch part resampled bicubically)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.grid_size = cfg.grid_size
        self.class_embedding = nn.Parameter(torch.zeros(1, 1, cfg.hidden_size))
        self.patch_embedding = nn.Conv2d(
            cfg.num_channels, cfg.hidden_size, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=True
        )
        self.position_embedding = nn.Parameter(torch.zeros(1, 1 + cfg.grid_size**2, cfg.hidden_size))

    def patch_positions(self, height: int, width: int) -> torch.Tensor:
        """Patch position table for a height x width grid -> [1, height*width, C].

        Always resampled like InternViT does (bicubic, align_corners=False, in float32); at the native grid the
        bicubic weights are exactly (0, 1, 0, 0), so this is the identity there.
        """
        table = self.position_embedding[:, 1:, :]  # [1, G*G, C]
        g = self.grid_size
        grid = table.float().reshape(1, g, g, -1).permute(0, 3, 1, 2)  # [1, G*G, C] -> [1, C, G, G]
        grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)  # [1, C, h, w]
        return grid.reshape(1, -1, height * width).permute(0, 2, 1).to(table.dtype)  # [1, h*w, C]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))  # [N, C, h, w]
        n, _, height, width = patches.shape
        patches = patches.flatten(2).transpose(1, 2)  # [N, C, h, w] -> [N, h*w, C], row-major patches
        cls = self.class_embedding.expand(n, 1, -1)  # [N, 1, C]
        x = torch.cat([cls, patches], dim=1)  # [N, 1+P, C]
        pos = torch.cat([self.position_embedding[:, :1, :], self.patch_positions(height, width)], dim=1)
        return x + pos.to(x.dtype)  # [N, 1+P, C]


class VisionAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (no q/k normalisation)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        if cfg.hidden_size % cfg.num_heads:
            raise ConfigError(f"vision hidden_size {cfg.hidden_size} not divisible by num_heads {cfg.num_heads}")
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, c // self.num_heads)  # [N, T, 3, H, c/H]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [N, H, T, c/H]
        out = F.scaled_dot_product_attention(q, k, v)  # [N, H, T, c/H], scale 1/sqrt(c/H)
        return self.proj(out.transpose(1, 2).reshape(n, t, c))  # [N, H, T, c/H] -> [N, T, C]


class VisionMLP(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class VisionLayer(nn.Module):
    """Pre-norm block with layer scale: x + ls1*attn(norm1(x)), then x + ls2*mlp(norm2(x))."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attn = VisionAttention(cfg)
        self.ls1 = nn.Parameter(torch.ones(cfg.hidden_size))
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = VisionMLP(cfg)
        self.ls2 = nn.Parameter(torch.ones(cfg.hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x)) * self.ls1
        return x + self.mlp(self.norm2(x)) * self.ls2


def pixel_shuffle(features: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Space-to-depth on the row-major patch grid: [N, g*g, C] -> [N, (g/f)^2, f*f*C].

    Output token (i, j) concatenates input tokens (f*i + a, f*j + b) for a, b in row-major order, i.e. for f=2:
    (2i,2j), (2i,2j+1), (2i+1,2j), (2i+1,2j+1); output tokens are row-major over the (g/f) x (g/f) grid.
    """
    n, p, c = features.shape
    g = int(round(p**0.5))
    if g * g != p or g % factor:
        raise ValueError(f"pixel_shuffle: {p} tokens are not a square grid divisible by {factor}")
    h = g // factor
    x = features.reshape(n, h, factor, h, factor, c)  # [N, g*g, C] -> [N, i, a, j, b, C]
    x = x.permute(0, 1, 3, 2, 4, 5)  # [N, i, j, a, b, C]
    return x.reshape(n, h * h, factor * factor * c)  # [N, T, f*f*C]


class InternViT(nn.Module):
    """InternViT encoder (final norm only if cfg.post_norm) followed by VITA's feature scaling and pixel shuffle."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = VisionEmbeddings(cfg)
        self.layers = nn.ModuleList(VisionLayer(cfg) for _ in range(cfg.num_layers))
        # no module at all without it, so the VITA-1.0 state dict keeps exactly its tensors
        self.post_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps) if cfg.post_norm else None

    @property
    def dtype(self) -> torch.dtype:
        return self.embeddings.patch_embedding.weight.dtype

    def forward_hidden_states(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """[N, 3, S, S] -> L+1 tensors [N, 1+P, C]: the embeddings, then the output of each layer."""
        x = self.embeddings(pixel_values)  # [N, 1+P, C]
        states = [x]
        for layer in self.layers:
            x = layer(x)
            states.append(x)
        return states

    def features(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """Last-layer states [N, 1+P, C] -> tower output [N, T, 4C] (post_norm, CLS dropped, x feature_scale,
        shuffled)."""
        patches = last_hidden[:, 1:, :]  # [N, P, C]
        if self.post_norm is not None:
            patches = self.post_norm(patches)  # per token, so the same as normalising before dropping CLS
        # VITA scales by 0.5 *before* the shuffle; the projector was trained on these values
        return pixel_shuffle(patches * self.cfg.feature_scale, self.cfg.shuffle_factor)  # [N, T, 4C]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [N, 3, S, S] -> features [N, T, 4C] in the tower's dtype."""
        x = self.embeddings(pixel_values)  # [N, 1+P, C]
        for layer in self.layers:
            x = layer(x)
        return self.features(x)
