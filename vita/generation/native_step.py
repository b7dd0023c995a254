"""The whole batch-1 decode step in one native call (`vita_native::decode_step`, `vita/nn/csrc/decode_step.cpp`).

For a dense Llama / Mistral / Qwen2 model in bf16 or float32 on an AVX2 CPU, with float weights or weight-only int8
/ int4 ones (`vita.nn.quant`: every projection quantized alike, the head int8; `vita_native::decode_step_quant`),
`generate` steps through this instead of the module (eager or inductor-compiled): one C++ call runs all layers and
the head, with the threads meeting at barriers rather than launching ~400 small ops (see the C++ file for why and
for its numerics). It reads the same parameters (without fusing or copying them: the model stays trainable) and
writes the same KV cache as the module path, so prefill (module path) and decode (here) mix freely.

`NativeStep.unsupported(llm)` says why a model cannot use it (None when it can): MoE layers, a dtype other than bf16
or float32, a device other than the CPU, adapters (LoRA) on a projection, quantized projections with a float head,
or no native library on this machine. The step is built over one batch-1 KV cache, the caller's `StaticCache`
(`llm.new_cache(S)`) or else the model's default one (`setup_caches(1, S)` first); it must be rebuilt when that
cache is replaced. Steps over two caches of one model (the two duplex roles) share the parameters: only the cache
pointers differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vita.models.llm import LLM
from vita.nn import native
from vita.nn.kv_cache import StaticCache
from vita.nn.quant import QuantLinear, quantization_of


class NativeStep:
    """Logits [1, V] (the model's dtype) for one token at one position over `llm`'s current KV cache (batch 1)."""

    @staticmethod
    def unsupported(llm: LLM) -> str | None:
        cfg = llm.config
        if cfg.num_experts:
            return "MoE layers"
        if llm.dtype not in (torch.bfloat16, torch.float32) or llm.device.type != "cpu":
            return f"{llm.dtype} on {llm.device} (only bf16 or float32 on the CPU)"
        quant = quantization_of(llm)
        kind = nn.Linear if quant is None else QuantLinear
        for layer in llm.layers:
            attn, ffn = layer.attention, layer.feed_forward
            projections = (attn.wq, attn.wk, attn.wv, attn.wo, ffn.w1, ffn.w2, ffn.w3)
            if any(type(m) is not kind for m in projections):
                return ("adapters on a projection (merge them first)" if quant is None
                        else "mixed float and quantized projections")
            if quant is not None and any((m.bits, m.group) != (quant["bits"], quant["group"]) for m in projections):
                return "projections quantized with different bit widths or groups"
        if quant is not None and not (quant["head"] and llm.output.bits == 8):
            return "quantized projections with a float head (quantize the head too: int8)"
        if native.native_decode_step() is None:
            return "no native library on this machine (see vita.nn.native)"
        return None

    def __init__(self, llm: LLM, cache: StaticCache | None = None) -> None:
        cache = cache if cache is not None else llm.cache
        reason = self.unsupported(llm) or (None if cache is not None and cache.batch_size == 1
                                           else "no batch-1 KV cache")
        if reason is not None:
            raise ValueError(f"the native decode step cannot run this model: {reason}")
        cfg = llm.config
        quant = quantization_of(llm)
        self.quantization = quant
        self._layers: list[torch.Tensor] = []
        self._scales: list[torch.Tensor] = []  # quantized: 7 per layer (wq, wk, wv, wo, w1, w3, w2)
        self._offsets: list[torch.Tensor] = []  # int4: likewise
        self._caches: list[torch.Tensor] = []
        no_bias = torch.empty(0, dtype=llm.dtype)
        assert cache is not None

        def weight(m: nn.Module) -> torch.Tensor:
            return m.weight if quant is None else m.qweight

        for layer, kv in zip(llm.layers, cache.layers, strict=True):  # the module's own parameters: nothing copied
            attn, ffn = layer.attention, layer.feed_forward
            biases = [no_bias] * 3 if attn.wq.bias is None else [attn.wq.bias, attn.wk.bias, attn.wv.bias]
            self._layers += [layer.attention_norm.weight, weight(attn.wq), weight(attn.wk), weight(attn.wv), *biases,
                             weight(attn.wo), layer.ffn_norm.weight, weight(ffn.w1), weight(ffn.w3), weight(ffn.w2)]
            if quant is not None:
                mats = (attn.wq, attn.wk, attn.wv, attn.wo, ffn.w1, ffn.w3, ffn.w2)
                self._scales += [m.scale for m in mats]
                self._offsets += [m.offset for m in mats if m.offset is not None]
            self._caches += [kv.k_cache, kv.v_cache]
        self._embed = llm.tok_embeddings.weight
        if quant is None:
            self._op = native.native_decode_step()
            self._head = llm.output.weight if llm.output is not None else llm.tok_embeddings.weight
        else:
            self._op = native.native_decode_step_quant()
            self._head, self._head_scale, self._group = llm.output.qweight, llm.output.scale, quant["group"]
        self._norm = llm.norm.weight
        cos, sin = llm.rope
        if cos.shape[0] < cache.max_seq_len:
            raise ValueError(f"RoPE tables of {cos.shape[0]} positions for a cache of {cache.max_seq_len}")
        self._cos, self._sin = cos.contiguous(), sin.contiguous()
        self._heads = (cfg.num_heads, cfg.num_kv_heads)
        self._eps = float(cfg.rms_norm_eps)
        self.vocab_size = self._head.shape[0]

    @torch.no_grad()
    def __call__(self, token: int, pos: int) -> torch.Tensor:
        if self.quantization is None:
            logits = self._op(token, pos, self._embed, self._layers, self._caches, self._cos, self._sin, self._norm,
                              self._head, *self._heads, self._eps)  # [V]
        else:
            logits = self._op(token, pos, self._embed, self._layers, self._scales, self._offsets, self._caches,
                              self._cos, self._sin, self._norm, self._head, self._head_scale, *self._heads,
                              self._eps, self._group)  # [V]
        return logits.view(1, self.vocab_size)  # [1, V]

    @staticmethod
    def batch_unsupported(steps: Sequence[NativeStep]) -> str | None:
        """Why `batch(steps, ...)` cannot run them (None when it can): another model's step among them, quantized
        weights (batch 1 only), a cache twice, or no native library."""
        if not steps:
            return "no steps"
        first = steps[0]
        if any(st._embed is not first._embed or st._layers[1] is not first._layers[1] for st in steps):
            return "steps of different models"
        if first.quantization is not None:
            return "quantized weights (the batched step is dense only)"
        if len({id(st._caches[0]) for st in steps}) < len(steps):
            return "one cache twice"
        if native.native_decode_batch() is None:
            return "no native library on this machine (see vita.nn.native)"
        return None

    @staticmethod
    @torch.no_grad()
    def batch(steps: Sequence[NativeStep], tokens: Sequence[int], positions: Sequence[int]) -> torch.Tensor:
        """Logits [B, V] of one decode step of each step's cache at once (`vita_native::decode_batch`): row b equals
        `steps[b](tokens[b], positions[b])` bit for bit and the caches are written alike, but every weight row is
        read from memory once for all of them. The steps must share one dense model (`batch_unsupported`)."""
        reason = NativeStep.batch_unsupported(steps)
        if reason is not None:
            raise ValueError(f"the batched native decode step cannot run these: {reason}")
        first = steps[0]
        caches = [c for st in steps for c in st._caches]
        return native.native_decode_batch()(list(tokens), list(positions), first._embed, first._layers, caches,
                                            first._cos, first._sin, first._norm, first._head, *first._heads,
                                            first._eps)  # [B, V]
