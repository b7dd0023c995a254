"""VITA-1.5's speech decoder files: `vita_tts_ckpt/decoder` and `vita_tts_ckpt/codec` -> our modules.

    vita_tts_ckpt/
      decoder/model.json   [idim, odim, args]: `LLM2TTSCodecAR` sizes (transformer_attention_dim, _heads,
                           _linear_units, _num_blocks; odim = the codec codebook size)
      decoder/final.pt     its state dict (plain, or under "model")
      codec/model.json     the codec config (upsample_rates, ..., n_codes, global_tokens, sampling_rate)
      codec/final.pt       {"generator": ..., "quantizer": ..., "encoder": ...}; weight-normed convs (weight_g /
                           weight_v); the encoder is only needed by the official loader and is dropped here

Every `.pt` is read with `weights_only=True` (tensors only, no pickled code). Loading is strict: an unknown,
missing or mis-shaped tensor is an error naming it in the file's own names. The weight norm is removed at load
time exactly as the official loader does (weight = g * v / ||v||, computed in float32).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vita.checkpoint.keymap import check_state_dict, map_keys
from vita.errors import CheckpointError
from vita.models.tts_codec import CodecConfig, CodecDecoder
from vita.models.tts_decoder import TTSDecoder, TTSDecoderConfig

TTS_FOLDER = "vita_tts_ckpt"

_LAYER = {
    "self_attn.q_proj.weight": "attention.wq.weight",
    "self_attn.k_proj.weight": "attention.wk.weight",
    "self_attn.v_proj.weight": "attention.wv.weight",
    "self_attn.o_proj.weight": "attention.wo.weight",
    "mlp.gate_proj.weight": "feed_forward.w1.weight",
    "mlp.up_proj.weight": "feed_forward.w3.weight",
    "mlp.down_proj.weight": "feed_forward.w2.weight",
    "input_layernorm.weight": "attention_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.rotary_emb.inv_freq": None,  # recomputed
}
DECODER_KEYMAP: dict[str, str | None] = {
    "embedding.weight": "lm.tok_embeddings.weight",
    "norm.weight": "lm.norm.weight",
    "out_fnn.weight": "lm.output.weight",
    "out_fnn.bias": "lm.output.bias",
    "rotary_emb.inv_freq": None,
    **{f"layers.{{}}.{k}": (None if v is None else f"lm.layers.{{}}.{v}") for k, v in _LAYER.items()},
    **{f"layers_pre_nn.{{}}.{k}": (None if v is None else f"pre_nn.{{}}.{v}") for k, v in _LAYER.items()},
}


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: not found")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from None


def _load_pt(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad pickle / zip
        raise CheckpointError(f"{path}: cannot read as a torch checkpoint ({exc})") from None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a dict, got {type(state).__name__}")
    return state


def decoder_config(model_json: Any, source: str) -> TTSDecoderConfig:
    """`[idim, odim, args]` -> TTSDecoderConfig; refuses settings the decoder does not implement."""
    try:
        idim, odim, args = model_json
        cfg = TTSDecoderConfig(
            hidden_size=int(args["transformer_attention_dim"]), num_heads=int(args["transformer_attention_heads"]),
            intermediate_size=int(args["transformer_linear_units"]), num_layers=int(args["transformer_num_blocks"]),
            num_codes=int(odim),
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{source}: not an LLM2TTSCodecAR model.json ([idim, odim, args]): {exc}") from None
    if int(idim) != cfg.hidden_size:
        raise CheckpointError(f"{source}: idim {idim} != transformer_attention_dim {cfg.hidden_size}")
    if int(args.get("kv_cache_prefix_finetune", 0)):
        raise CheckpointError(f"{source}: kv_cache_prefix_finetune (a learned prefix) is not supported")
    return cfg


def codec_config(raw: Mapping[str, Any], source: str) -> CodecConfig:
    for key, want in (("n_code_groups", 1), ("residul_layer", 1)):  # sic: the official key is 'residul_layer'
        if int(raw.get(key, want)) != want:
            raise CheckpointError(f"{source}: {key} {raw[key]} is not supported (only {want})")
    if int(raw.get("global_code_num", len(raw.get("global_tokens", ())))) != len(raw.get("global_tokens", ())):
        raise CheckpointError(f"{source}: global_code_num {raw['global_code_num']} != len(global_tokens)")
    try:
        return CodecConfig(
            upsample_rates=tuple(int(u) for u in raw["upsample_rates"]),
            upsample_kernel_sizes=tuple(int(k) for k in raw["upsample_kernel_sizes"]),
            upsample_initial_channel=int(raw["upsample_initial_channel"]),
            resblock_kernel_sizes=tuple(int(k) for k in raw["resblock_kernel_sizes"]),
            resblock_dilation_sizes=tuple(tuple(int(d) for d in ds) for ds in raw["resblock_dilation_sizes"]),
            n_codes=int(raw["n_codes"]), global_tokens=tuple(int(t) for t in raw["global_tokens"]),
            resblock=str(raw.get("resblock", "1")), sampling_rate=int(raw.get("sampling_rate", 24000)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: missing or bad codec key ({exc})") from None


def load_tts_decoder(folder: str | Path) -> TTSDecoder:
    folder = Path(folder)
    config = decoder_config(_read_json(folder / "model.json"), str(folder / "model.json"))
    state = _load_pt(folder / "final.pt")
    if isinstance(state.get("model"), Mapping):
        state = state["model"]
    state = map_keys(state, DECODER_KEYMAP, source=str(folder / "final.pt"))
    decoder = TTSDecoder(config)
    check_state_dict(state, {k: v.shape for k, v in decoder.state_dict().items()}, source=str(folder / "final.pt"))
    decoder.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return decoder.eval()


def _remove_weight_norm(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """{name.weight_g, name.weight_v} -> name.weight = g * v / ||v|| (float32, the norm over all dims but 0)."""
    out: dict[str, torch.Tensor] = {}
    for key, t in state.items():
        if key.endswith(".weight_g"):
            continue
        if key.endswith(".weight_v"):
            base = key[: -len("_v")]
            if base + "_g" not in state:
                raise CheckpointError(f"{source}: '{key}' without '{base}_g'")
            out[base] = torch._weight_norm(t.float(), state[base + "_g"].float(), 0)
        else:
            out[key] = t.float()
    return out


def load_codec(folder: str | Path) -> CodecDecoder:
    folder = Path(folder)
    config = codec_config(_read_json(folder / "model.json"), str(folder / "model.json"))
    source = str(folder / "final.pt")
    parts = _load_pt(folder / "final.pt")
    for part in ("generator", "quantizer"):
        if not isinstance(parts.get(part), Mapping):
            raise CheckpointError(f"{source}: no '{part}' state dict")
    state = _remove_weight_norm(parts["generator"], source)
    quantizer = dict(parts["quantizer"])
    code = quantizer.pop("quantizer_modules.0.embedding.weight", None)
    if code is None:
        raise CheckpointError(f"{source}: quantizer has no 'quantizer_modules.0.embedding.weight'")
    state["codebook"] = code.float()
    for j in range(len(config.global_tokens)):
        key = f"quantizer_modules_globaltokens.{j}.embedding.weight"
        if key not in quantizer:
            raise CheckpointError(f"{source}: quantizer has no '{key}'")
        state[f"global_codebooks.{j}"] = quantizer.pop(key).float()
    if quantizer:
        raise CheckpointError(f"{source}: unknown quantizer tensor(s): {sorted(quantizer)[:5]}")
    codec = CodecDecoder(config)
    check_state_dict(state, {k: v.shape for k, v in codec.state_dict().items()}, source=source)
    codec.load_state_dict(state, strict=True)
    return codec.eval()
