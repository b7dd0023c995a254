"""HF Llama / Mistral / Mixtral / Qwen2 <-> our `LLM`: key maps and config translation, both directions.

Source names are the official on-disk HF safetensors names (what transformers 4.x and 5.x `save_pretrained` both
write, and the VITA-1.0/1.5 checkpoints use):

    model.embed_tokens.weight                                  -> llm.tok_embeddings.weight
    model.layers.{i}.input_layernorm.weight                    -> llm.layers.{i}.attention_norm.weight
    model.layers.{i}.self_attn.{q,k,v}_proj.weight (+ .bias)   -> llm.layers.{i}.attention.w{q,k,v}.weight (+ .bias)
    model.layers.{i}.self_attn.o_proj.weight                   -> llm.layers.{i}.attention.wo.weight
    model.layers.{i}.post_attention_layernorm.weight           -> llm.layers.{i}.ffn_norm.weight
    model.layers.{i}.mlp.{gate,up,down}_proj.weight            -> llm.layers.{i}.feed_forward.w{1,3,2}.weight
    model.layers.{i}.block_sparse_moe.gate.weight              -> llm.layers.{i}.feed_forward.gate.weight
    model.layers.{i}.block_sparse_moe.experts.{e}.w{1,2,3}.weight
                                                 -> llm.layers.{i}.feed_forward.experts.{e}.w{1,2,3}.weight
    model.norm.weight                                          -> llm.norm.weight
    lm_head.weight                                             -> llm.output.weight (dropped when tied)

Transformers 5.x keeps Mixtral experts fused in memory (`mlp.experts.gate_up_proj` [E, 2I, D], `down_proj`) but
converts them back to the per-expert names above in `save_pretrained` (checked with 5.24), so only this layout is
accepted on disk.

Config: `llm_config_from_hf` accepts model_type llama, mistral, mixtral, qwen2, vita-mixtral, vita-Qwen2 and
rejects what our LLM does not implement (rope scaling, sliding-window attention shorter than the context, other
activations, Llama attention/MLP biases). HF `eos_token_id` may be a list: LLMConfig keeps the first one and
`hf_eos_token_ids` returns all of them (use them as stop ids).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vita.checkpoint.keymap import invert
from vita.config import LLMConfig
from vita.errors import ConfigError

FAMILIES = {
    "llama": "llama",
    "mistral": "mistral",
    "mixtral": "mixtral",
    "qwen2": "qwen2",
    "vita-mixtral": "mixtral",
    "vita-qwen2": "qwen2",
}
ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "mixtral": "MixtralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
}
# HF defaults for keys a config.json may leave out (values of the transformers config classes)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 2048},
    "mistral": {"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 4096 * 32},
    "mixtral": {"rms_norm_eps": 1e-5, "rope_theta": 1e6, "max_position_embeddings": 4096 * 32},
    "qwen2": {"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 32768},
}


def llm_keymap(cfg: LLMConfig, prefix: str = "llm.") -> dict[str, str | None]:
    """HF name pattern -> our name pattern (`{}` = layer / expert index), targets prefixed with `prefix`."""
    L = "model.layers.{}."
    T = prefix + "layers.{}."
    km: dict[str, str | None] = {
        "model.embed_tokens.weight": prefix + "tok_embeddings.weight",
        "model.norm.weight": prefix + "norm.weight",
        "lm_head.weight": None if cfg.tie_word_embeddings else prefix + "output.weight",
        L + "input_layernorm.weight": T + "attention_norm.weight",
        L + "post_attention_layernorm.weight": T + "ffn_norm.weight",
        L + "self_attn.o_proj.weight": T + "attention.wo.weight",
        L + "self_attn.rotary_emb.inv_freq": None,  # a buffer some old checkpoints carry; we recompute it
    }
    for hf, ours in (("q_proj", "wq"), ("k_proj", "wk"), ("v_proj", "wv")):
        km[L + f"self_attn.{hf}.weight"] = T + f"attention.{ours}.weight"
        if cfg.qkv_bias:
            km[L + f"self_attn.{hf}.bias"] = T + f"attention.{ours}.bias"
    if cfg.num_experts:
        km[L + "block_sparse_moe.gate.weight"] = T + "feed_forward.gate.weight"
        for w in ("w1", "w2", "w3"):
            km[L + f"block_sparse_moe.experts.{{}}.{w}.weight"] = T + f"feed_forward.experts.{{}}.{w}.weight"
    else:
        for hf, ours in (("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2")):
            km[L + f"mlp.{hf}.weight"] = T + f"feed_forward.{ours}.weight"
    return km


def llm_export_keymap(cfg: LLMConfig, prefix: str = "llm.") -> dict[str, str]:
    """Our name pattern -> HF name pattern (the inverse of `llm_keymap`, dropped keys left out)."""
    return invert(llm_keymap(cfg, prefix))


def _get(config: Mapping[str, Any], key: str, default: Any = None, *, required: bool = False) -> Any:
    if key in config and config[key] is not None:
        return config[key]
    if required:
        raise ConfigError(f"HF config: missing required key '{key}'")
    return default


def _first_id(value: Any) -> int | None:
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return None if value is None else int(value)


def hf_eos_token_ids(config: Mapping[str, Any]) -> tuple[int, ...]:
    """All end-of-sequence ids of an HF config (`eos_token_id` may be an int, a list, or null)."""
    value = config.get("eos_token_id")
    if value is None:
        return ()
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),)


def _rope_theta(config: Mapping[str, Any], family: str) -> float:
    scaling = config.get("rope_scaling")
    if scaling:  # transformers 4.x
        raise ConfigError(f"HF config: rope_scaling {scaling!r} is not supported (only plain RoPE)")
    params = config.get("rope_parameters")  # transformers 5.x: {"rope_type": ..., "rope_theta": ...}
    if params:
        if params.get("rope_type", "default") != "default" or set(params) - {"rope_type", "rope_theta"}:
            raise ConfigError(f"HF config: rope_parameters {params!r} are not supported (only plain RoPE)")
        if "rope_theta" in params:
            return float(params["rope_theta"])
    return float(_get(config, "rope_theta", _DEFAULTS[family]["rope_theta"]))


def llm_config_from_hf(config: Mapping[str, Any]) -> LLMConfig:
    """Translate an HF `config.json` dict (LLM part) into `LLMConfig`; unsupported features raise ConfigError."""
    model_type = str(config.get("model_type", ""))
    family = FAMILIES.get(model_type.lower())
    if family is None:
        raise ConfigError(f"HF config: unsupported model_type {model_type!r} (expected one of {sorted(FAMILIES)})")
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise ConfigError(f"HF config: hidden_act {act!r} is not supported (only silu)")
    if family == "llama" and (config.get("attention_bias") or config.get("mlp_bias")):
        raise ConfigError("HF config: Llama attention_bias / mlp_bias are not supported")
    defaults = _DEFAULTS[family]
    max_pos = int(_get(config, "max_position_embeddings", defaults["max_position_embeddings"]))
    window = config.get("sliding_window")
    windowed = family in ("mistral", "mixtral") or (family == "qwen2" and config.get("use_sliding_window"))
    if windowed and window is not None and int(window) < max_pos:
        raise ConfigError(
            f"HF config: sliding_window {window} < max_position_embeddings {max_pos}: "
            "sliding-window attention is not supported"
        )
    if "sliding_attention" in (config.get("layer_types") or ()) and window is not None and int(window) < max_pos:
        raise ConfigError("HF config: layer_types use sliding_attention, which is not supported")
    num_heads = int(_get(config, "num_attention_heads", required=True))
    num_experts = int(_get(config, "num_local_experts", 8)) if family == "mixtral" else 0
    return LLMConfig(
        vocab_size=int(_get(config, "vocab_size", required=True)),
        hidden_size=int(_get(config, "hidden_size", required=True)),
        intermediate_size=int(_get(config, "intermediate_size", required=True)),
        num_layers=int(_get(config, "num_hidden_layers", required=True)),
        num_heads=num_heads,
        num_kv_heads=int(_get(config, "num_key_value_heads", num_heads)),
        head_dim=int(_get(config, "head_dim", 0)),
        rms_norm_eps=float(_get(config, "rms_norm_eps", defaults["rms_norm_eps"])),
        rope_theta=_rope_theta(config, family),
        max_position_embeddings=max_pos,
        num_experts=num_experts,
        num_experts_per_tok=int(_get(config, "num_experts_per_tok", 2)),
        qkv_bias=family == "qwen2",  # Qwen2 always has q/k/v biases; the others never
        tie_word_embeddings=bool(_get(config, "tie_word_embeddings", False)),
        bos_token_id=_first_id(config.get("bos_token_id")),
        eos_token_id=_first_id(config.get("eos_token_id")),
        family=family,  # type: ignore[arg-type]
    )


def llm_config_to_hf(cfg: LLMConfig) -> dict[str, Any]:
    """An HF `config.json` dict for `cfg` (transformers 4.x style keys, which 5.x also reads)."""
    if (cfg.family == "mixtral") != (cfg.num_experts > 0):
        raise ConfigError(f"cannot export family {cfg.family!r} with num_experts={cfg.num_experts}")
    if cfg.qkv_bias != (cfg.family == "qwen2"):
        raise ConfigError(f"cannot export family {cfg.family!r} with qkv_bias={cfg.qkv_bias}")
    out: dict[str, Any] = {
        "architectures": [ARCHITECTURES[cfg.family]],
        "model_type": cfg.family,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "attention_dropout": 0.0,
    }
    if cfg.family in ("mistral", "mixtral", "qwen2"):
        out["sliding_window"] = None
    if cfg.family == "qwen2":
        out["use_sliding_window"] = False
    if cfg.family == "llama":
        out.update(attention_bias=False, mlp_bias=False)
    if cfg.num_experts:
        out.update(num_local_experts=cfg.num_experts, num_experts_per_tok=cfg.num_experts_per_tok)
        out["router_jitter_noise"] = 0.0
    return out
