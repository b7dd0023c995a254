"""Weight-only int8 and int4 quantization of linear layers, for memory-bound batch-1 decoding.

Batch-1 decoding reads every weight once per token, so its speed is bytes per token: int8 weights halve bf16's,
int4 nearly quarter them. Activations, norms, embeddings looked up, the KV cache and every sum stay in the model's
float dtype; only the matrices of the linear layers (and optionally the output head) are quantized.

Formats (symmetric: zero maps to zero, no offsets to read):
  * int8, one float32 scale per output row: `q [N, K] int8`, `scale [N] float32`, w = q * scale with
    scale = max |w[n, :]| / 127. A row of 576 to 1536 weights shares one scale at negligible cost (4 bytes a row),
    and per-row int8 keeps the relative error of a row's dot product near 0.2 % (the rounding step is 1/254 of the
    row's range); finer groups would add bytes and buy nothing measurable at 8 bits.
  * int4, one bf16 scale per group of `group` (default 32) weights along K: `q [N, K/2] uint8`, `scale [N, K/group]
    bf16`, w = (nibble - 8) * scale with scale = max |w[n, group]| / 7 (the value -8 is never produced). Four bits
    are too coarse for one scale per row (a single outlier would flatten the whole row), so the scale follows each
    block of 32, as llama.cpp's Q4_0 does: 0.5625 bytes a weight. Each block of 32 weights is 16 bytes, byte j
    holding weight j in its low nibble and weight j + 16 in its high one, so a kernel unpacks a block with one mask
    and one shift. bf16 scales (not float16) widen with a shift on any CPU; their 0.4 % rounding is small next to
    the 4-bit step.

`QuantLinear` holds one quantized matrix. Its forward dequantizes to float32 and runs the float32 GEMM (prefill and
batched scoring; the dequantized copy lives for one call), except for one row on a CPU with the native library:
the `vita_native::gemv_q8` / `gemv_q4` kernels (`vita.nn.native`). The whole-step decode kernel reads the same
buffers (`vita.generation.native_step`). `quantize_llm_` swaps a model's projections (and head) in place;
`vita.checkpoint.quantized` saves and loads such models.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vita.nn import native

Bits = Literal[4, 8]
GROUP = 32  # int4 weights per scale along K
PROJECTIONS = ("attention.wq", "attention.wk", "attention.wv", "attention.wo",
               "feed_forward.w1", "feed_forward.w3", "feed_forward.w2")


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [N, K] (any float dtype) -> (q [N, K] int8, scale [N] float32), symmetric per row."""
    w = _matrix(weight).float()
    amax = w.abs().amax(dim=1)  # [N]
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def quantize_int4(weight: torch.Tensor, group: int = GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [N, K] -> (q [N, K/2] uint8 packed, scale [N, K/group] bf16), symmetric per group (module docstring)."""
    w = _matrix(weight).float()
    N, K = w.shape
    if group <= 0 or group % 32:
        raise ValueError(f"int4 group size {group} must be a positive multiple of 32")
    if K % group:
        raise ValueError(f"int4 quantization needs K divisible by the group size {group}; this weight has K = {K}")
    groups = w.view(N, K // group, group)  # [N, G, group]
    amax = groups.abs().amax(dim=2)  # [N, G]
    scale = torch.where(amax > 0, amax / 7, torch.ones_like(amax)).to(torch.bfloat16)
    q = torch.round(groups / scale.float()[..., None]).clamp_(-7, 7).to(torch.int16) + 8  # [N, G, group] in 1..15
    blocks = q.view(N, K // 32, 2, 16)  # [N, B, half, 16]: weights j and j + 16 of each block of 32
    packed = (blocks[:, :, 0] | (blocks[:, :, 1] << 4)).to(torch.uint8)  # [N, B, 16]
    return packed.view(N, K // 2), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor, bits: Bits, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The float weight [N, K] that (q, scale) stands for (`bits` 8 or 4; the int4 group follows from the shapes)."""
    if bits == 8:
        return (q.float() * scale.float()[:, None]).to(dtype)
    N, half = q.shape
    K = 2 * half
    blocks = q.view(N, K // 32, 16).to(torch.int16)
    nibbles = torch.stack([blocks & 0x0F, blocks >> 4], dim=2).view(N, K) - 8  # [N, K]
    group = K // scale.shape[1]
    return (nibbles.float().view(N, -1, group) * scale.float()[..., None]).view(N, K).to(dtype)


class QuantLinear(nn.Module):
    """A linear layer with an int8 or int4 weight (formats in the module docstring) and an optional float bias.

    Buffers `qweight`, `scale` (and `bias`, a parameter as in `nn.Linear`) are what `state_dict` holds."""

    def __init__(self, in_features: int, out_features: int, bits: Bits, *, group: int = GROUP, bias: bool = False,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        super().__init__()
        if bits not in (4, 8):
            raise ValueError(f"QuantLinear: bits must be 8 or 4, got {bits!r}")
        self.in_features, self.out_features, self.bits, self.group = in_features, out_features, bits, group
        if bits == 8:
            q = torch.empty(out_features, in_features, dtype=torch.int8, device=device)
            s = torch.empty(out_features, dtype=torch.float32, device=device)
        else:
            q = torch.empty(out_features, in_features // 2, dtype=torch.uint8, device=device)
            s = torch.empty(out_features, in_features // group, dtype=torch.bfloat16, device=device)
        self.register_buffer("qweight", q)
        self.register_buffer("scale", s)
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype, device=device), requires_grad=False) \
            if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear | torch.Tensor, bits: Bits, *, group: int = GROUP) -> QuantLinear:
        """Quantize an `nn.Linear` (or a bare weight [N, K], e.g. a tied embedding used as the head)."""
        weight = linear if isinstance(linear, torch.Tensor) else linear.weight
        bias = None if isinstance(linear, torch.Tensor) else linear.bias
        N, K = _matrix(weight).shape
        out = cls(K, N, bits, group=group, bias=bias is not None, dtype=weight.dtype, device=weight.device)
        with torch.no_grad():
            q, s = quantize_int8(weight) if bits == 8 else quantize_int4(weight, group)
            out.qweight, out.scale = q, s
            if bias is not None:
                out.bias.copy_(bias)
        return out

    def weight_bytes(self) -> int:
        """Bytes one product reads: the packed weight and its scales (and the bias)."""
        n = self.qweight.numel() * self.qweight.element_size() + self.scale.numel() * self.scale.element_size()
        return n + (0 if self.bias is None else self.bias.numel() * self.bias.element_size())

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float weight [N, K] this layer multiplies by."""
        return dequantize(self.qweight, self.scale, self.bits, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., K] -> [..., N] in x's dtype; the sum in float32 (one row: the native kernel where available)."""
        if x.numel() == x.shape[-1] and x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16):
            op = native.native_quant_gemv(self.bits) if not torch.compiler.is_compiling() or native.resolved() \
                else None
            if op is not None:
                args = (self.qweight, self.scale, x.reshape(-1)) + ((self.group,) if self.bits == 4 else ())
                out = op(*args)  # [N], x's dtype
                if self.bias is not None:
                    out = out + self.bias
                return out.view(*x.shape[:-1], self.out_features)
        bias = None if self.bias is None else self.bias.float()
        return F.linear(x.float(), self.dequantize(torch.float32), bias).to(x.dtype)  # [..., N]

    def extra_repr(self) -> str:
        group = f", group={self.group}" if self.bits == 4 else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}{group}"


def unsupported(llm: nn.Module, bits: int, group: int = GROUP) -> str | None:
    """Why `quantize_llm_` cannot quantize `llm` (None when it can)."""
    if bits not in (4, 8):
        return f"bits must be 8 or 4, got {bits!r}"
    cfg = llm.config
    if cfg.num_experts:
        return "MoE layers (Mixtral experts) are not supported by the quantizer"
    for i, layer in enumerate(llm.layers):
        for name in PROJECTIONS:
            module = layer.get_submodule(name)
            if type(module) is QuantLinear:
                return f"layers.{i}.{name} is already quantized"
            if type(module) is not nn.Linear:
                return f"layers.{i}.{name} is a {type(module).__name__} (merge adapters such as LoRA first)"
            if bits == 4 and module.in_features % group:
                return (f"layers.{i}.{name} has {module.in_features} inputs, not a multiple of the int4 group "
                        f"size {group}")
        if getattr(layer.attention, "wqkv", None) is not None or getattr(layer.feed_forward, "w13", None) is not None:
            return "the projections are fused (quantize before `fuse_()`)"
    return None


@torch.no_grad()
def quantize_llm_(llm: nn.Module, bits: Bits, *, head: bool = True, group: int = GROUP) -> nn.Module:
    """Replace every projection of a dense LLM (`vita.models.llm.LLM`) by a `QuantLinear` in place; with `head`, the
    output head too (for tied embeddings the head becomes a quantized copy of the embedding matrix, which stays in
    float for the lookup). Raises ValueError naming the reason when the model is not supported."""
    reason = unsupported(llm, bits, group)
    if reason is not None:
        raise ValueError(f"cannot quantize this model to int{bits}: {reason}")
    if head and llm.config.hidden_size % group and bits == 4:
        raise ValueError(f"cannot quantize the head to int4: hidden size {llm.config.hidden_size} is not a multiple "
                         f"of the group size {group}")
    for layer in llm.layers:
        for name in PROJECTIONS:
            parent, attr = name.split(".")
            owner = getattr(layer, parent)
            setattr(owner, attr, QuantLinear.from_linear(getattr(owner, attr), bits, group=group))
    if head:
        source = llm.tok_embeddings.weight if llm.output is None else llm.output
        llm.output = QuantLinear.from_linear(source, bits, group=group)
    return llm


def quantization_of(llm: nn.Module) -> dict | None:
    """{"bits", "group", "head"} when `llm`'s projections are quantized (all alike), else None."""
    first = llm.layers[0].attention.wq
    if type(first) is not QuantLinear:
        return None
    return {"bits": first.bits, "group": first.group, "head": type(llm.output) is QuantLinear}


def _matrix(weight: torch.Tensor) -> torch.Tensor:
    if weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"expected a float weight matrix [N, K], got {weight.dtype} of shape {tuple(weight.shape)}")
    return weight.detach()
