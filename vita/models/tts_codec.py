"""VITA-1.5's codec decoder (official TiCodec-style `VQVAE` generator): codec tokens -> 24 kHz waveform.

    codes [T] -- codebook [n_codes, 512] --> x [1, 512, T]
    global = concat_j global_codebooks[j][global_tokens[j]] -> [128]          (a fixed voice / style embedding)
    x -- conv_pre (Conv1d 512 -> C0, k 7) -->
    for each stage i: leaky_relu(0.1) -> ConvTranspose1d(C -> C/2, k_i, stride u_i, padding (k_i - u_i) / 2)
                      -> mean over the resblock kernels of ResBlock(x) -> + global (where the width is 128)
    -> leaky_relu(0.1) -> conv_post (Conv1d C -> 1, k 7) -> tanh -> wave [T * prod(u_i)]   (600 samples a code)

ResBlock "1": for each dilation d: x = x + c2(lrelu(c1_d(lrelu(x)))), c1_d dilated by d, c2 not, both 'same'.
ResBlock "2": for each dilation d: x = x + c_d(lrelu(x)).
The official weights are weight-normed (`weight_g`, `weight_v`); the official loader removes the norm before use
(weight = g * v / ||v||, the norm over every dim but 0), and so does our loader (`vita.checkpoint.vita15_tts`):
these modules hold plain weights. Shapes: T codes, C channels; everything is float32 unless cast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CodecConfig", "CodecDecoder"]

LRELU_SLOPE = 0.1
CODE_DIM = 512  # the codebook width (hard-coded in the official quantizer)
GLOBAL_DIM = 128  # the global feature width (hard-coded), added at the stage of that width


@dataclass(frozen=True)
class CodecConfig:
    """The generator's part of `codec/model.json`."""

    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    n_codes: int
    global_tokens: tuple[int, ...]
    resblock: str = "1"
    sampling_rate: int = 24000

    @property
    def samples_per_code(self) -> int:
        n = 1
        for u in self.upsample_rates:
            n *= u
        return n


class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...], kind: str) -> None:
        super().__init__()
        self.kind = kind
        pad = lambda d: (kernel * d - d) // 2  # noqa: E731 - 'same' padding
        if kind == "1":
            self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d, padding=pad(d))
                                        for d in dilations)
            self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=pad(1)) for _ in dilations)
        else:
            self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d, padding=pad(d))
                                       for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, N] -> [B, C, N]
        if self.kind == "1":
            for c1, c2 in zip(self.convs1, self.convs2, strict=True):
                x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        else:
            for c in self.convs:
                x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x


class CodecDecoder(nn.Module):
    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        if len(config.upsample_rates) != len(config.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes differ in length")
        if GLOBAL_DIM % len(config.global_tokens):
            raise ValueError(f"{len(config.global_tokens)} global tokens do not split {GLOBAL_DIM} channels")
        self.codebook = nn.Parameter(torch.zeros(config.n_codes, CODE_DIM))  # [n_codes, 512]
        per = GLOBAL_DIM // len(config.global_tokens)
        self.global_codebooks = nn.ParameterList(torch.zeros(config.n_codes, per) for _ in config.global_tokens)
        c = config.upsample_initial_channel
        self.conv_pre = nn.Conv1d(CODE_DIM, c, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for u, k in zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True):
            if (k - u) % 2:
                raise ValueError(f"upsample kernel {k} with stride {u}: (k - u) must be even")
            self.ups.append(nn.ConvTranspose1d(c, c // 2, k, stride=u, padding=(k - u) // 2))
            c //= 2
            for kr, ds in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=True):
                self.resblocks.append(ResBlock(c, kr, tuple(ds), config.resblock))
        self.conv_post = nn.Conv1d(c, 1, 7, padding=3)

    def global_features(self) -> torch.Tensor:
        """The fixed global embedding [128]: one row of each global codebook, concatenated."""
        return torch.cat([book[t] for book, t in zip(self.global_codebooks, self.config.global_tokens, strict=True)])

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [T] -> quantized embeddings [512, T]."""
        return self.codebook[codes].T

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [T] (int) -> waveform [T * samples_per_code] in [-1, 1]."""
        x = self.conv_pre(self.embed(codes)[None])  # [1, C0, T]
        g = self.global_features()[None, :, None]  # [1, 128, 1]
        nk = len(self.config.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))  # [1, C/2, N * u]
            x = sum(self.resblocks[i * nk + j](x) for j in range(nk)) / nk
            if x.shape[1] == GLOBAL_DIM:
                x = x + g
        x = torch.tanh(self.conv_post(F.leaky_relu(x, LRELU_SLOPE)))  # [1, 1, N]
        return x[0, 0]
