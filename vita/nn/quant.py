"""Weight-only int8 and int4 quantization of linear layers, for memory-bound batch-1 decoding.

Batch-1 decoding reads every weight once per token, so its speed is bytes per token: int8 weights halve bf16's,
int4 nearly quarter them. Activations, norms, embeddings looked up, the KV cache and every sum stay in the model's
float dtype; only the matrices of the linear layers (and optionally the output head) are quantized.

Formats:
  * int8, symmetric, one float32 scale per output row: `q [N, K] int8`, `scale [N] float32`, w = q * scale with
    scale = max |w[n, :]| / 127. A row of 576 to 1536 weights shares one scale at negligible cost (4 bytes a row),
    and per-row int8 keeps the relative error of a row's dot product near 0.2 % (the rounding step is 1/254 of the
    row's range); finer groups would add bytes and buy nothing measurable at 8 bits.
  * int4, asymmetric, a float16 scale and a float16 offset per group of `group` (default 32) weights along K:
    `q [N, K/2] uint8`, `scale`, `offset [N, K/group] float16`, w = nibble * scale + offset with offset = min w and
    scale = (max w - min w) / 15 over the group: GGUF's Q4_1 grid (0.625 bytes a weight). Four bits are too coarse
    for one scale per row, so both follow each block of 32; the offset uses all 16 levels over the group's actual
    range (a symmetric grid wastes one level and half the range of a skewed group: measured on SmolLM2-135M, logit
    KL vs bf16 0.57 nats symmetric). A model loaded from a Q4_1 GGUF (the packaged SmolLM2) is reproduced up to the
    bf16 rounding of its loaded weights: each group's min and max are its Q4_1 offset and offset + 15 * scale.
    Each block of 32 weights is 16 bytes, byte j holding weight j in its low nibble and weight j + 16 in its high
    one, so a kernel unpacks a block with one mask and one shift.

The native kernels quantize each product's activation vector to int16 (one scale per vector) and multiply in
integers (`vita/nn/csrc/quant_gemv.h`); their results differ from the dequantized float product by that rounding,
~1e-5 of the largest activation per term.

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


def quantize_int4(weight: torch.Tensor, group: int = GROUP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """weight [N, K] -> (q [N, K/2] uint8 packed, scale [N, K/group] float16, offset [N, K/group] float16): each
    group's range in 16 levels from its minimum (module docstring)."""
    w = _matrix(weight).float()
    N, K = w.shape
    if group <= 0 or group % 32:
        raise ValueError(f"int4 group size {group} must be a positive multiple of 32")
    if K % group:
        raise ValueError(f"int4 quantization needs K divisible by the group size {group}; this weight has K = {K}")
    groups = w.view(N, K // group, group)  # [N, G, group]
    lo, hi = groups.amin(dim=2), groups.amax(dim=2)  # [N, G]
    if w.device.type != "meta" and max(float(lo.abs().max()), float(hi.abs().max())) > torch.finfo(torch.float16).max:
        raise ValueError("int4 quantization stores float16 scales and offsets; this weight has values beyond "
                         f"{torch.finfo(torch.float16).max:g}")
    offset = lo.to(torch.float16)
    span = hi - offset.float()  # [N, G] the range above the stored offset
    scale = torch.where(span > 0, span / 15, torch.ones_like(span)).to(torch.float16)
    q = torch.round((groups - offset.float()[..., None]) / scale.float()[..., None]).clamp_(0, 15).to(torch.int16)
    blocks = q.view(N, K // 32, 2, 16)  # [N, B, half, 16]: weights j and j + 16 of each block of 32
    packed = (blocks[:, :, 0] | (blocks[:, :, 1] << 4)).to(torch.uint8)  # [N, B, 16]
    return packed.view(N, K // 2), scale, offset


def dequantize(q: torch.Tensor, scale: torch.Tensor, bits: Bits, dtype: torch.dtype = torch.float32,
               offset: torch.Tensor | None = None) -> torch.Tensor:
    """The float weight [N, K] that (q, scale[, offset]) stands for (`bits` 8, or 4 with its offsets; the int4
    group follows from the shapes)."""
    if bits == 8:
        return (q.float() * scale.float()[:, None]).to(dtype)
    if offset is None:
        raise ValueError("dequantize: int4 weights need their offsets")
    N, half = q.shape
    K = 2 * half
    blocks = q.view(N, K // 32, 16).to(torch.int16)
    nibbles = torch.stack([blocks & 0x0F, blocks >> 4], dim=2).view(N, K)  # [N, K] in 0..15
    group = K // scale.shape[1]
    w = nibbles.float().view(N, -1, group) * scale.float()[..., None] + offset.float()[..., None]  # [N, G, group]
    return w.view(N, K).to(dtype)


class QuantLinear(nn.Module):
    """A linear layer with an int8 or int4 weight (formats in the module docstring) and an optional float bias.

    Buffers `qweight`, `scale`, for int4 `offset` (and `bias`, a parameter as in `nn.Linear`) are what
    `state_dict` holds."""

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
            s = torch.empty(out_features, in_features // group, dtype=torch.float16, device=device)
        self.register_buffer("qweight", q)
        self.register_buffer("scale", s)
        self.offset: torch.Tensor | None
        self.register_buffer("offset", torch.empty_like(s) if bits == 4 else None)
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
            if bits == 8:
                out.qweight, out.scale = quantize_int8(weight)
            else:
                out.qweight, out.scale, out.offset = quantize_int4(weight, group)
            if bias is not None:
                out.bias.copy_(bias)
        return out

    def weight_bytes(self) -> int:
        """Bytes one product reads: the packed weight and its scales (and the bias)."""
        n = sum(t.numel() * t.element_size() for t in (self.qweight, self.scale, self.offset) if t is not None)
        return n + (0 if self.bias is None else self.bias.numel() * self.bias.element_size())

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float weight [N, K] this layer multiplies by."""
        return dequantize(self.qweight, self.scale, self.bits, dtype, self.offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., K] -> [..., N] in x's dtype; the sum in float32 (one row: the native kernel where available)."""
        if x.numel() == x.shape[-1] and x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16):
            op = native.native_quant_gemv(self.bits) if not torch.compiler.is_compiling() or native.resolved() \
                else None
            if op is not None:
                args = (self.qweight, self.scale, x.reshape(-1)) if self.bits == 8 else \
                    (self.qweight, self.scale, self.offset, x.reshape(-1), self.group)
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
    output head too, in int8 whatever `bits` (for tied embeddings the head becomes a quantized copy of the
    embedding matrix, which stays in float for the lookup). The head is int8 because it is the matrix most
    sensitive to rounding (every logit is one of its rows): on SmolLM2-135M an int4 head alone costs 0.06 nats of
    logit KL vs bf16 against 0.002 for all the int4 layers, as llama.cpp also keeps its Q4 models' head at 6-8
    bits. Raises ValueError naming the reason when the model is not supported."""
    reason = unsupported(llm, bits, group)
    if reason is not None:
        raise ValueError(f"cannot quantize this model to int{bits}: {reason}")
    for layer in llm.layers:
        for name in PROJECTIONS:
            parent, attr = name.split(".")
            owner = getattr(layer, parent)
            setattr(owner, attr, QuantLinear.from_linear(getattr(owner, attr), bits, group=group))
    if head:
        source = llm.tok_embeddings.weight if llm.output is None else llm.output
        llm.output = QuantLinear.from_linear(source, 8)
    return llm


def quantization_of(llm: nn.Module) -> dict | None:
    """{"bits", "group", "head"} when `llm`'s projections are quantized (all alike; "head": the head is, in int8),
    else None."""
    first = llm.layers[0].attention.wq
    if type(first) is not QuantLinear:
        return None
    return {"bits": first.bits, "group": first.group, "head": type(llm.output) is QuantLinear}


def _matrix(weight: torch.Tensor) -> torch.Tensor:
    if weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"expected a float weight matrix [N, K], got {weight.dtype} of shape {tuple(weight.shape)}")
    return weight.detach()
