"""EfficientNet-Lite0 as a vision tower: the ImageNet CNN's last feature map read as patch tokens, then VITA's pixel
shuffle, so the projector and everything after it see the same [N, T, 4C] shape as from InternViT.

Shapes (S tile side, a multiple of 64; C = 1280 head width; g = S / 32):
    pixel_values [N, 3, S, S] -> stem (3x3 s2) -> 16 MBConv blocks -> 1x1 head conv [N, C, g, g]
    -> row-major tokens [N, g*g, C] -> x feature_scale -> 2x2 space-to-depth -> [N, (g/2)^2, 4C]
At 256 px: an 8 x 8 map -> 16 tokens of 5120.

The network is EfficientNet-Lite (no squeeze-excitation, ReLU6, fixed stem and head widths), stages
(expand, kernel, stride, out, repeats) in `STAGES`. TensorFlow "SAME" padding (asymmetric for stride 2: the extra
row/column goes after). Every BatchNorm is folded into the conv before it when the checkpoint is read
(`vita.checkpoint.efficientnet`): the module has no BatchNorm, so `train()` cannot change what the frozen tower
computes. The ImageNet classifier is not part of the tower.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vita.config import VisionConfig
from vita.models.vision import pixel_shuffle

STEM, HEAD = 32, 1280
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow SAME padding of x [N, C, H, W] for a conv of `kernel` / `stride` (output = ceil(H / stride))."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (unless expand is 1) -> kxk depthwise -> 1x1 project (+ input when shapes
    match). Convs carry the folded BatchNorm as their bias."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.kernel, self.stride, self.residual = kernel, stride, stride == 1 and cin == cout
        self.expand = nn.Conv2d(cin, mid, 1) if expand != 1 else None
        self.depthwise = nn.Conv2d(mid, mid, kernel, stride, groups=mid)
        self.project = nn.Conv2d(mid, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.expand(x)) if self.expand is not None else x
        h = F.relu6(self.depthwise(same_pad(h, self.kernel, self.stride)))
        h = self.project(h)
        return h + x if self.residual else h


def blocks() -> list[tuple[int, int, int, int, int]]:
    """(cin, cout, expand, kernel, stride) of every block, in order."""
    out, cin = [], STEM
    for expand, kernel, stride, cout, repeats in STAGES:
        for i in range(repeats):
            out.append((cin, cout, expand, kernel, stride if i == 0 else 1))
            cin = cout
    return out


class EfficientNetLite(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        if cfg.hidden_size != HEAD or cfg.patch_size != 32:
            raise ValueError(f"EfficientNet-Lite0: hidden_size {HEAD} and patch_size (stride) 32, got "
                             f"{cfg.hidden_size} and {cfg.patch_size}")
        self.cfg = cfg
        self.stem = nn.Conv2d(cfg.num_channels, STEM, 3, 2)
        self.blocks = nn.ModuleList(MBConv(*b) for b in blocks())
        self.head = nn.Conv2d(STAGES[-1][3], HEAD, 1)

    def feature_map(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] -> [N, C, S/32, S/32] (after the head conv and its ReLU6)."""
        x = pixel_values.to(self.stem.weight.dtype)
        h = F.relu6(self.stem(same_pad(x, 3, 2)))
        for block in self.blocks:
            h = block(h)
        return F.relu6(self.head(h))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [N, 3, S, S] -> features [N, T, 4C] in the tower's dtype."""
        fmap = self.feature_map(pixel_values)  # [N, C, g, g]
        tokens = fmap.flatten(2).transpose(1, 2)  # [N, g*g, C], row-major
        return pixel_shuffle(tokens * self.cfg.feature_scale, self.cfg.shuffle_factor)  # [N, T, 4C]
