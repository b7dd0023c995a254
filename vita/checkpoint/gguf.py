"""GGUF (llama.cpp) LLM files -> our text-only `VitaModel`, strictly: explicit key map, every tensor dequantized.

The file is read with the `gguf` package (`gguf.GGUFReader`, memory-mapped); each tensor is dequantized to float32
by `gguf.quants.dequantize` when the loader asks for it (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, the K-quants,
...; anything gguf cannot dequantize is an error naming the tensor and its type). GGUF lists shapes fastest
dimension first; a tensor's numpy / torch shape is that list reversed, e.g. `attn_q` [D, H*Dh] -> [H*Dh, D].

Key map (llama.cpp name -> ours; `{}` = layer, then expert index):

    token_embd.weight                  -> llm.tok_embeddings.weight                      [V, D]
    blk.{}.attn_norm.weight            -> llm.layers.{}.attention_norm.weight            [D]
    blk.{}.attn_q.weight (+ .bias)     -> llm.layers.{}.attention.wq.weight (+ .bias)    [H*Dh, D]   (un-permuted)
    blk.{}.attn_k.weight (+ .bias)     -> llm.layers.{}.attention.wk.weight (+ .bias)    [Hkv*Dh, D] (un-permuted)
    blk.{}.attn_v.weight (+ .bias)     -> llm.layers.{}.attention.wv.weight (+ .bias)    [Hkv*Dh, D]
    blk.{}.attn_output.weight          -> llm.layers.{}.attention.wo.weight              [D, H*Dh]
    blk.{}.ffn_norm.weight             -> llm.layers.{}.ffn_norm.weight                  [D]
    blk.{}.ffn_gate / ffn_up / ffn_down.weight -> llm.layers.{}.feed_forward.w1 / w3 / w2.weight
    blk.{}.ffn_gate_inp.weight         -> llm.layers.{}.feed_forward.gate.weight         [E, D]       (MoE router)
    blk.{}.ffn_gate_exps / ffn_up_exps / ffn_down_exps.weight  [E, I, D] / [E, I, D] / [E, D, I]
                                       -> llm.layers.{}.feed_forward.experts.{e}.w1 / w3 / w2.weight (split)
    blk.{}.ffn_gate.{} / ffn_up.{} / ffn_down.{}.weight  (older per-expert files) -> the same expert weights
    output_norm.weight                 -> llm.norm.weight                                [D]
    output.weight                      -> llm.output.weight (absent: tied to token_embd) [V, D]

RoPE layout: for `llama` (Llama, Mistral, Mixtral) llama.cpp's converter permutes the rows of every head of
attn_q / attn_k from the half-split layout (rotate_half) to the interleaved one its kernel uses: rows
(head, half, j) are stored at (head, j, half). `unpermute` undoes that. `qwen2` files are not permuted.

Config (`{a}` = general.architecture, `llama` or `qwen2`): {a}.context_length, embedding_length, block_count,
feed_forward_length, attention.head_count, attention.head_count_kv, rope.freq_base,
attention.layer_norm_rms_epsilon, expert_count, expert_used_count; vocab = number of tokens; tied = no output.weight.
Any other `{a}.*` key (rope scaling, sliding windows, per-layer head counts, ...) is refused by name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vita.checkpoint.keymap import compile_pattern, map_key
from vita.checkpoint.materialize import materialize
from vita.config import LLMConfig, VitaConfig
from vita.errors import CheckpointError, ConfigError
from vita.models.vita import VitaModel
from vita.tokenizer import Tokenizer

ARCHITECTURES = ("llama", "qwen2")
_ARCH_KEYS = {  # metadata we read, or know to be harmless (derived values we check against the tensors)
    "context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
    "attention.head_count_kv", "rope.freq_base", "attention.layer_norm_rms_epsilon", "rope.dimension_count",
    "vocab_size", "attention.key_length", "attention.value_length", "expert_count", "expert_used_count",
    "rope.scaling.type", "rope.scaling.factor",
}
_HINTS = {"rope_freqs.weight": "per-dimension RoPE frequency factors (Llama-3 rope scaling) are not supported"}
L, T = "blk.{}.", "llm.layers.{}."


def gguf_keymap(cfg: LLMConfig) -> dict[str, str | None]:
    """llama.cpp name pattern -> our name pattern for one tensor each (merged experts: see `MERGED_EXPERTS`)."""
    km: dict[str, str | None] = {
        "token_embd.weight": "llm.tok_embeddings.weight",
        "output_norm.weight": "llm.norm.weight",
        "output.weight": None if cfg.tie_word_embeddings else "llm.output.weight",
        L + "attn_norm.weight": T + "attention_norm.weight",
        L + "attn_output.weight": T + "attention.wo.weight",
        L + "ffn_norm.weight": T + "ffn_norm.weight",
    }
    for g, ours in (("attn_q", "wq"), ("attn_k", "wk"), ("attn_v", "wv")):
        km[L + g + ".weight"] = T + f"attention.{ours}.weight"
        if cfg.qkv_bias:
            km[L + g + ".bias"] = T + f"attention.{ours}.bias"
    for g, ours in (("ffn_gate", "w1"), ("ffn_up", "w3"), ("ffn_down", "w2")):
        if cfg.num_experts:
            km[L + g + ".{}.weight"] = T + f"feed_forward.experts.{{}}.{ours}.weight"
        else:
            km[L + g + ".weight"] = T + f"feed_forward.{ours}.weight"
    if cfg.num_experts:
        km[L + "ffn_gate_inp.weight"] = T + "feed_forward.gate.weight"
    return km


MERGED_EXPERTS = {  # [E, ...] tensors split into one tensor per expert
    L + "ffn_gate_exps.weight": T + "feed_forward.experts.{}.w1.weight",
    L + "ffn_up_exps.weight": T + "feed_forward.experts.{}.w3.weight",
    L + "ffn_down_exps.weight": T + "feed_forward.experts.{}.w2.weight",
}


def permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF half-split rows [n_head*Dh, ...] -> llama.cpp's interleaved rows (what its converter writes)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def unpermute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """The inverse of `permute`: llama.cpp's interleaved q/k rows back to the rotate_half layout."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def field_value(field: Any) -> Any:
    """A `gguf.ReaderField` as a plain Python value (str, int, float, bool, or a list of them)."""
    from gguf import GGUFValueType

    if not field.types:
        return None
    kind = field.types[0]
    if kind == GGUFValueType.ARRAY:
        inner = field.types[1] if len(field.types) > 1 else None
        if inner == GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        if inner == GGUFValueType.ARRAY or not field.data:
            return [] if not field.data else None
        return np.concatenate([field.parts[i] for i in field.data]).tolist()
    part = field.parts[field.data[0]]
    if kind == GGUFValueType.STRING:
        return bytes(part).decode("utf-8")
    if kind == GGUFValueType.BOOL:
        return bool(part[0])
    if kind == GGUFValueType.FLOAT32:
        return float(str(part[0]))  # the shortest decimal that is this float32: 1e-05, not 9.999999747378752e-06
    return part[0].item()


def read_metadata(reader: Any) -> dict[str, Any]:
    return {k: field_value(f) for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def llm_config_from_gguf(meta: Mapping[str, Any], tensor_names: set[str], source: str) -> LLMConfig:
    """`LLMConfig` from GGUF metadata; anything our LLM does not implement raises CheckpointError naming it."""
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{source}: general.architecture {arch!r} is not supported "
                              f"(only {', '.join(ARCHITECTURES)})")
    for key, value in meta.items():
        if not key.startswith(arch + "."):
            continue
        sub = key[len(arch) + 1:]
        if sub not in _ARCH_KEYS:
            raise CheckpointError(f"{source}: metadata {key} = {value!r} is not supported")
    scaling = meta.get(f"{arch}.rope.scaling.type", "none")
    factor = meta.get(f"{arch}.rope.scaling.factor", 1.0)
    if scaling not in ("none", "") or factor not in (0.0, 1.0):
        raise CheckpointError(f"{source}: rope scaling ({arch}.rope.scaling.type = {scaling!r}, factor {factor}) "
                              "is not supported (only plain RoPE)")

    def get(sub: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{sub}", default)
        if value is None:
            raise CheckpointError(f"{source}: missing metadata {arch}.{sub}")
        if isinstance(value, list):
            raise CheckpointError(f"{source}: {arch}.{sub} is per-layer ({value[:4]}...), which is not supported")
        return value

    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        raise CheckpointError(f"{source}: missing metadata tokenizer.ggml.tokens (needed for the vocabulary size)")
    vocab = len(tokens)
    if meta.get(f"{arch}.vocab_size", vocab) != vocab:
        raise CheckpointError(f"{source}: {arch}.vocab_size {meta[f'{arch}.vocab_size']} != {vocab} tokens")
    hidden, heads = int(get("embedding_length")), int(get("attention.head_count"))
    head_dim = int(get("attention.key_length", hidden // heads))
    for sub in ("attention.value_length", "rope.dimension_count"):
        if int(get(sub, head_dim)) != head_dim:
            raise CheckpointError(f"{source}: {arch}.{sub} {meta[f'{arch}.{sub}']} != head dim {head_dim} "
                                  "(partial RoPE / different value heads are not supported)")
    experts = int(get("expert_count", 0))
    if experts and arch != "llama":
        raise CheckpointError(f"{source}: {arch} with experts is not supported")
    try:
        return LLMConfig(
            vocab_size=vocab, hidden_size=hidden, intermediate_size=int(get("feed_forward_length")),
            num_layers=int(get("block_count")), num_heads=heads,
            num_kv_heads=int(get("attention.head_count_kv", heads)),
            head_dim=head_dim, rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
            rope_theta=float(get("rope.freq_base", 10000.0)), max_position_embeddings=int(get("context_length")),
            num_experts=experts, num_experts_per_tok=int(get("expert_used_count", 2)) if experts else 2,
            qkv_bias=arch == "qwen2", tie_word_embeddings="output.weight" not in tensor_names,
            bos_token_id=meta.get("tokenizer.ggml.bos_token_id"), eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
            family="mixtral" if experts else arch,
        )
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


def dequantize(tensor: Any, source: str) -> torch.Tensor:
    """One `gguf.ReaderTensor` -> float32 torch tensor in numpy order (GGUF's shape reversed)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize as gguf_dequantize

    qtype = GGMLQuantizationType(int(tensor.tensor_type))
    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
    try:
        arr = gguf_dequantize(tensor.data, qtype)
    except (NotImplementedError, ValueError) as exc:
        raise CheckpointError(f"{source}: tensor '{tensor.name}' of type {qtype.name} cannot be dequantized "
                              f"({exc})") from None
    if arr.dtype != np.float32 or not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, dtype=np.float32, order="C")  # F32 tensors are read-only views of the memory map
    return torch.from_numpy(arr.reshape(shape))


class GGUFTensors(Mapping[str, torch.Tensor]):
    """A lazy view of a GGUF file in our names (a `vita.checkpoint.lazy.LazyTensors`): shapes without reading data,
    each tensor dequantized on demand."""

    def __init__(self, reader: Any, cfg: LLMConfig, arch: str, source: str) -> None:
        self.source, self.cfg = source, cfg
        self._src: dict[str, tuple[Any, str, int]] = {}  # ours -> (reader tensor, transform, expert index)
        self._cached: tuple[str, torch.Tensor] | None = None  # the last merged expert tensor read
        keymap = gguf_keymap(cfg)
        compiled = [(s, compile_pattern(s)) for s in keymap]
        merged = [(compile_pattern(s), d) for s, d in MERGED_EXPERTS.items()] if cfg.num_experts else []
        unknown: list[str] = []
        for t in reader.tensors:
            name = str(t.name)
            hit = next(((m, d) for r, d in merged if (m := r.match(name))), None)
            if hit is not None:
                m, dst = hit
                for e in range(int(t.shape[-1])):  # GGUF shape [.., .., E]: experts are the slowest dimension
                    self._add(dst.format(m.group(1), e), t, "expert", e)
                continue
            try:
                ours = map_key(name, keymap, compiled)
            except KeyError:
                unknown.append(name + (f" ({_HINTS[name]})" if name in _HINTS else ""))
                continue
            if ours is None:
                continue
            transform = "none"
            if arch == "llama" and name.endswith(("attn_q.weight", "attn_q.bias")):
                transform = "q"
            elif arch == "llama" and name.endswith(("attn_k.weight", "attn_k.bias")):
                transform = "k"
            self._add(ours, t, transform, -1)
        if unknown:
            shown = ", ".join(sorted(unknown)[:10]) + (" ..." if len(unknown) > 10 else "")
            raise CheckpointError(f"{source}: {len(unknown)} unknown tensor(s): {shown}")

    def _add(self, ours: str, tensor: Any, transform: str, expert: int) -> None:
        if ours in self._src:
            raise CheckpointError(f"{self.source}: two tensors map to '{ours}' (one of them is '{tensor.name}')")
        self._src[ours] = (tensor, transform, expert)

    def shape(self, name: str) -> tuple[int, ...]:
        tensor, transform, _ = self._src[name]
        shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
        return shape[1:] if transform == "expert" else shape

    def __getitem__(self, name: str) -> torch.Tensor:
        tensor, transform, expert = self._src[name]
        if transform == "expert":
            if self._cached is None or self._cached[0] != tensor.name:
                self._cached = (tensor.name, dequantize(tensor, self.source))
            return self._cached[1][expert].clone()
        w = dequantize(tensor, self.source)
        if transform in ("q", "k"):
            w = unpermute(w, self.cfg.num_heads if transform == "q" else self.cfg.num_kv_heads)
        return w

    def __iter__(self) -> Iterator[str]:
        return iter(self._src)

    def __len__(self) -> int:
        return len(self._src)


def open_reader(path: Path) -> Any:
    try:
        from gguf import GGUFReader
    except ImportError:
        raise CheckpointError(f"{path}: reading GGUF files needs the 'gguf' package (pip install gguf)") from None
    try:
        return GGUFReader(path, "r")
    except (ValueError, OSError, IndexError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable GGUF file ({exc})") from None


def read_gguf(path: str | Path) -> tuple[VitaConfig, GGUFTensors, Tokenizer]:
    """(config, lazy tensors in our names, tokenizer) of a GGUF LLM file; strict about names and features."""
    from vita.checkpoint.gguf_tokenizer import build_tokenizer

    path = Path(path)
    reader = open_reader(path)
    meta = read_metadata(reader)
    source = str(path)
    cfg = llm_config_from_gguf(meta, {str(t.name) for t in reader.tensors}, source)
    tensors = GGUFTensors(reader, cfg, str(meta["general.architecture"]), source)
    tokenizer = build_tokenizer(meta, source)
    template = "chatml" if tokenizer.token_to_id("<|im_start|>") is not None else "plain"
    return VitaConfig(llm=cfg, template=template, max_length=cfg.max_position_embeddings), tensors, tokenizer


def load_gguf(path: str | Path, *, dtype: torch.dtype = torch.float32,
              device: str | torch.device = "cpu") -> tuple[VitaModel, Tokenizer]:
    """A GGUF LLM file as a text-only model (weights dequantized, then cast to `dtype`)."""
    config, tensors, tokenizer = read_gguf(path)
    return materialize(config, tensors, dtype=dtype, device=device, source=str(path)), tokenizer


def gguf_file(path: str | Path) -> Path | None:
    """`path` itself if it is a .gguf file, the one .gguf inside a directory without config.json, else None."""
    path = Path(path)
    if path.is_file():
        return path if path.suffix == ".gguf" else None
    if path.is_dir() and not (path / "config.json").is_file():
        files = sorted(path.glob("*.gguf"))
        if len(files) > 1:
            raise CheckpointError(f"{path}: {len(files)} .gguf files ({', '.join(f.name for f in files[:4])}); "
                                  "pass the one to load")
        return files[0] if files else None
    return None
