"""Official whale audio encoder files -> our modules: key map, `train.yaml` config, `global_cmvn`, `final.pt`.

The official audio encoder folder holds `train.yaml` (architecture and feature settings), `global_cmvn` (JSON
statistics) and `final.pt` (encoder + adapter weights). In the MLLM checkpoint the same tensors sit under the
prefix `model.audio_encoder.`; `final.pt` uses the names without it.

Key map targets are relative to the model that owns both modules as attributes: `audio_encoder.<name>`
(`WhaleEncoder`) and `audio_adapter.<name>` (`AudioAdapter`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from vita.checkpoint.keymap import check_state_dict, invert, map_key, map_keys
from vita.config import SAMPLE_RATE, AudioAdapterConfig, AudioConfig, FbankConfig
from vita.errors import CheckpointError

__all__ = [
    "AUDIO_KEYMAP",
    "OFFICIAL_AUDIO_PREFIX",
    "audio_config_from_train_yaml",
    "audio_keymap",
    "audio_state_shapes",
    "load_final_pt",
    "load_global_cmvn",
]

OFFICIAL_AUDIO_PREFIX = "model.audio_encoder."

_BLOCK = "encoder.enc.1.encoders.{}."
_OURS = "audio_encoder.blocks.{}."

AUDIO_KEYMAP: dict[str, str | None] = {
    "encoder.global_cmvn.mean": "audio_encoder.cmvn.mean",
    "encoder.global_cmvn.istd": "audio_encoder.cmvn.istd",
    "encoder.enc.0.core.conv.0.weight": "audio_encoder.subsampling.conv1.weight",
    "encoder.enc.0.core.conv.0.bias": "audio_encoder.subsampling.conv1.bias",
    "encoder.enc.0.core.conv.2.weight": "audio_encoder.subsampling.conv2.weight",
    "encoder.enc.0.core.conv.2.bias": "audio_encoder.subsampling.conv2.bias",
    "encoder.enc.0.core.out.0.weight": "audio_encoder.subsampling.proj.weight",
    "encoder.enc.0.core.out.0.bias": "audio_encoder.subsampling.proj.bias",
    "encoder.enc.1.embed.0.weight": "audio_encoder.input_layer.linear.weight",
    "encoder.enc.1.embed.0.bias": "audio_encoder.input_layer.linear.bias",
    "encoder.enc.1.embed.1.weight": "audio_encoder.input_layer.norm.weight",
    "encoder.enc.1.embed.1.bias": "audio_encoder.input_layer.norm.bias",
    **{
        _BLOCK + src + suffix: _OURS + dst + suffix
        for src, dst in [
            ("self_attn.linear_q", "attn.q_proj"),
            ("self_attn.linear_k", "attn.k_proj"),
            ("self_attn.linear_v", "attn.v_proj"),
            ("self_attn.linear_out", "attn.o_proj"),
            ("feed_forward.w_1", "ffn.up"),
            ("feed_forward.w_2", "ffn.down"),
            ("norm1", "attn_norm"),
            ("norm2", "ffn_norm"),
        ]
        for suffix in (".weight", ".bias")
    },
    _BLOCK + "self_attn.linear_pos.weight": _OURS + "attn.pos_proj.weight",
    _BLOCK + "self_attn.pos_bias_u": _OURS + "attn.pos_bias_u",
    _BLOCK + "self_attn.pos_bias_v": _OURS + "attn.pos_bias_v",
    "encoder.enc.1.after_norm.weight": "audio_encoder.final_norm.weight",
    "encoder.enc.1.after_norm.bias": "audio_encoder.final_norm.bias",
    "adpter.conv1d2.weight": "audio_adapter.conv.weight",  # sic: the official attribute is spelled 'adpter'
    "adpter.conv1d2.bias": "audio_adapter.conv.bias",
    "adpter.bn2.weight": "audio_adapter.norm.weight",
    "adpter.bn2.bias": "audio_adapter.norm.bias",
    "adpter.project.weight": "audio_adapter.proj.weight",
    "adpter.project.bias": "audio_adapter.proj.bias",
}


def audio_keymap(prefix: str = "") -> dict[str, str | None]:
    """`AUDIO_KEYMAP` with `prefix` on every source name (`OFFICIAL_AUDIO_PREFIX` for the MLLM checkpoint)."""
    return {prefix + src: dst for src, dst in AUDIO_KEYMAP.items()}


def audio_state_shapes(config: AudioConfig, adapter: AudioAdapterConfig) -> dict[str, torch.Size]:
    """Names (`audio_encoder.*`, `audio_adapter.*`) and shapes of every tensor the two modules load."""
    from vita.models.audio_adapter import AudioAdapter
    from vita.models.whale import WhaleEncoder

    with torch.device("meta"):  # shapes only, no memory
        modules = {"audio_encoder": WhaleEncoder(config), "audio_adapter": AudioAdapter(adapter)}
    return {f"{owner}.{name}": t.shape for owner, m in modules.items() for name, t in m.state_dict().items()}


# ---------------------------------------------------------------------------------------------------- train.yaml


def _get(tree: Mapping[str, Any], path: str, source: str, default: Any = ...) -> Any:
    node: Any = tree
    for part in path.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            if default is not ...:
                return default
            raise CheckpointError(f"{source}: missing key '{path}'")
        node = node[part]
    return node


class ChunkedAttentionError(CheckpointError):
    """A train.yaml asks for chunked attention (dynamic chunks or a chunk size): refused unless the caller accepts
    full attention instead (`force_full_attention`), as the official releases' vLLM port runs it."""


def _require(ok: bool, source: str, message: str) -> None:
    if not ok:
        raise CheckpointError(f"{source}: unsupported whale configuration: {message}")


def audio_config_from_train_yaml(
    path: str | Path,
    llm_hidden_size: int | None = None,
    *,
    force_full_attention: bool = False,
    always_single_conv: bool = False,
) -> tuple[AudioConfig, AudioAdapterConfig]:
    """Read the official `train.yaml` into (`AudioConfig`, `AudioAdapterConfig`).

    llm_hidden_size: the LLM embedding width from the main config; must equal `model_conf.llm_embed_dim` when the
        YAML has it (the adapter's projection is built from that value). None: take the YAML value.
    force_full_attention: accept chunked-attention settings and run full attention anyway (what the vLLM port of
        VITA does). Without it such a YAML is refused: the official code then draws a random chunk mask on every
        call, which we do not reproduce.
    always_single_conv: the VITA-1.5 adapter, which takes the single-conv branch whatever the widths (1.0 adds a
        second conv when the LLM is wider than 4 x the encoder, which we do not implement).

    Raises `ChunkedAttentionError` for chunked attention without `force_full_attention`, `CheckpointError` for a
    missing file or key and for every other architecture we do not implement.
    """
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise CheckpointError(f"{src}: audio encoder config not found")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{src}: not valid YAML ({exc})") from exc
    if not isinstance(tree, Mapping):
        raise CheckpointError(f"{src}: expected a mapping at the top level")

    layers = _get(tree, "encoder_conf/overview_conf/encoder-layer-config", src)
    _require(
        layers == "subsampling-transformer", src, f"encoder-layer-config '{layers}' (only subsampling-transformer)"
    )
    sub = _get(tree, "encoder_conf/para_conf/subsampling", src)
    tfm = _get(tree, "encoder_conf/para_conf/transformer", src)

    def t(key: str, default: Any = ...) -> Any:
        return _get(tfm, "transformer-" + key, src + " encoder_conf/para_conf/transformer", default)

    input_dim = int(_get(tree, "input_dim", src))
    _require(int(_get(sub, "subsampling-rate", src)) == 4, src, "subsampling-rate other than 4")
    hidden = int(t("attention-dim"))
    widths = {
        "encoder-output-dim": _get(tree, "encoder_conf/overview_conf/encoder-output-dim", src, hidden),
        "subsampling-output-dim": _get(sub, "subsampling-output-dim", src),
        "transformer-input-dim": t("input-dim", hidden),
        "transformer-output-dim": t("output-dim", hidden),
        "model_conf/enc_out_dim": _get(tree, "model_conf/enc_out_dim", src, hidden),
    }
    odd = {k: v for k, v in widths.items() if int(v) != hidden}
    _require(not odd, src, f"widths {odd} differ from transformer-attention-dim {hidden} (we need one width)")
    for key, dim in (("subsampling-input-dim", _get(sub, "subsampling-input-dim", src, input_dim)),):
        _require(int(dim) == input_dim, src, f"{key} {dim} != input_dim {input_dim}")
    _require(t("input-layer") == "linear", src, f"transformer-input-layer '{t('input-layer')}' (only linear)")
    _require(t("pos-enc-class") == "rel-enc", src, f"transformer-pos-enc-class '{t('pos-enc-class')}' (only rel-enc)")
    _require(t("normalize-before", True) is True, src, "transformer-normalize-before false (only pre-norm)")
    _require(t("concat-after", False) is False, src, "transformer-concat-after true")
    ffn = t("positionwise-layer-type", "linear")
    _require(ffn == "linear", src, f"transformer-positionwise-layer-type '{ffn}' (only linear)")
    # The official default for dynamic chunks is true (a random chunk mask on every forward call, even in eval).
    dynamic, chunk = t("dynamic-chunks", True), int(t("chunk_size", -1))
    if not force_full_attention and not (dynamic is False and chunk == -1):
        raise ChunkedAttentionError(
            f"{src}: unsupported whale configuration: transformer-dynamic-chunks {dynamic}, transformer-chunk_size "
            f"{chunk}: only full attention is implemented (dynamic-chunks false, chunk_size -1); pass "
            "force_full_attention=True to run full attention anyway, as the vLLM port does"
        )
    _require(_get(tree, "is_json_cmvn", src, True) is True, src, "is_json_cmvn false (only JSON global_cmvn)")

    model = _get(tree, "model_conf", src)
    adapter_type = _get(model, "adpter_type", src + " model_conf", "cnn")
    _require(adapter_type == "subsampling", src, f"adpter_type '{adapter_type}' (only subsampling)")
    _require(_get(model, "activation_func", src, "relu") == "gelu", src, "adapter activation_func other than gelu")
    _require(_get(model, "norm", src, "batch") == "layer", src, "adapter norm other than layer")
    _require(_get(model, "add_audio_bos_eos", src, False) is False, src, "add_audio_bos_eos true")
    yaml_llm = _get(model, "llm_embed_dim", src, None)
    if llm_hidden_size is None:
        if yaml_llm is None:
            raise CheckpointError(f"{src}: model_conf/llm_embed_dim missing and no llm_hidden_size given")
        llm_hidden_size = int(yaml_llm)
    elif yaml_llm is not None and int(yaml_llm) != llm_hidden_size:
        raise CheckpointError(f"{src}: model_conf/llm_embed_dim {yaml_llm} != LLM hidden size {llm_hidden_size}")
    # The official adapter has a single conv only when 4 * encoder width >= LLM width; otherwise a second one.
    _require(always_single_conv or 4 * hidden >= llm_hidden_size, src,
             f"LLM width {llm_hidden_size} > 4 x encoder width (two-conv adapter)")

    fb = _get(tree, "dataset_conf/fbank_conf", src)
    fbank = FbankConfig(
        sample_rate=int(_get(tree, "dataset_conf/resample_conf/resample_rate", src, SAMPLE_RATE)),
        num_mel_bins=int(_get(fb, "num_mel_bins", src)),
        frame_length_ms=float(_get(fb, "frame_length", src, 25)),
        frame_shift_ms=float(_get(fb, "frame_shift", src, 10)),
        dither=float(_get(fb, "dither", src, 0.0)),
    )
    _require(fbank.num_mel_bins == input_dim, src, f"num_mel_bins {fbank.num_mel_bins} != input_dim {input_dim}")
    audio = AudioConfig(
        input_dim=input_dim,
        hidden_size=hidden,
        num_heads=int(t("attention-heads")),
        intermediate_size=int(t("linear-units")),
        num_layers=int(t("num-blocks")),
        fbank=fbank,
    )
    adapter = AudioAdapterConfig(
        input_size=hidden, output_size=llm_hidden_size, kernel_size=int(_get(model, "kernel_size", src, 5))
    )
    return audio, adapter


# ---------------------------------------------------------------------------------------------------- global_cmvn


def load_global_cmvn(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [F], istd [F]) float32 from the JSON statistics `{mean_stat, var_stat, frame_num}`.

    Computed in float64 and cast once, as the official loader does: mean = mean_stat / n,
    istd = 1 / sqrt(max(var_stat / n - mean^2, 1e-20)).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: global_cmvn file not found")
    try:
        stats = json.loads(path.read_text())
        mean_stat = np.asarray(stats["mean_stat"], dtype=np.float64)
        var_stat = np.asarray(stats["var_stat"], dtype=np.float64)
        count = float(stats["frame_num"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a JSON global_cmvn file with mean_stat/var_stat/frame_num ({exc})") from exc
    if mean_stat.shape != var_stat.shape or mean_stat.ndim != 1 or count <= 0:
        raise CheckpointError(f"{path}: inconsistent statistics (shapes {mean_stat.shape}/{var_stat.shape}, n={count})")
    mean = mean_stat / count
    var = np.maximum(var_stat / count - mean * mean, 1e-20)
    istd = 1.0 / np.sqrt(var)
    return torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(istd.astype(np.float32))


# ------------------------------------------------------------------------------------------------------- final.pt


def load_final_pt(
    path: str | Path,
    expected: Mapping[str, torch.Size | tuple[int, ...]] | None = None,
) -> dict[str, torch.Tensor]:
    """Load the official `final.pt` (encoder + adapter, names without `model.audio_encoder.`) -> our names.

    expected: target names and shapes (e.g. `audio_state_shapes(...)`); when given the check is strict and each
        missing, unexpected or mis-shaped tensor is reported under its name in the file.
    Returns a state dict keyed `audio_encoder.*` / `audio_adapter.*`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: final.pt not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad pickle / zip
        raise CheckpointError(f"{path}: cannot read as a torch checkpoint ({exc})") from exc
    for key in ("state_dict", "model"):  # some trainers nest the weights one level down
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    bad = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise CheckpointError(f"{path}: non-tensor entries {bad[:10]}")
    if expected is not None:
        # Compare in the file's own names, so that every message names what the user sees in final.pt.
        reverse = invert(AUDIO_KEYMAP)
        try:
            official = {map_key(name, reverse): shape for name, shape in expected.items()}
        except KeyError as exc:
            raise CheckpointError(f"expected tensor {exc} has no official audio name") from exc
        check_state_dict(state, official, source=str(path))
    return map_keys(state, AUDIO_KEYMAP, source=str(path))
