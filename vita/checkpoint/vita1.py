"""The official VITA-1.0 release layout, both directions.

    VITA_ckpt/
      config.json                       model_type "vita-mixtral", LLM keys + mm_* keys
      model.safetensors | model-000NN-of-000MM.safetensors + model.safetensors.index.json
      tokenizer.json, tokenizer_config.json, special_tokens_map.json, ...
    InternViT-300M-448px/               named by config key mm_vision_tower (relative: resolved as below)
      config.json, model.safetensors, preprocessor_config.json
    audio-encoder-.../                  named by config key mm_audio_encoder
      train.yaml, global_cmvn, final.pt

As in the official loader, the vision tower comes from its own folder (the checkpoint's copy under
`model.vision_tower.vision_tower.` is ignored) and the audio encoder + adapter come from the checkpoint
(`model.audio_encoder.`); `final.pt` is read (with `weights_only=True`) only when the checkpoint has no audio
tensors. Every other tensor must be known, present and of the right shape.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from vita.checkpoint.hf_llm import llm_config_from_hf, llm_config_to_hf, llm_keymap
from vita.checkpoint.internvit import (
    INTERNVIT_KEYMAP,
    PROJECTOR_KEYMAP,
    VITA_VISION_TOWER_KEYMAP,
    load_internvit_folder,
)
from vita.checkpoint.io import TensorReader, write_tensors
from vita.checkpoint.keymap import invert, map_key
from vita.checkpoint.lazy import RenamedView
from vita.checkpoint.materialize import keeps_fp32, materialize
from vita.checkpoint.whale import (
    AUDIO_KEYMAP,
    OFFICIAL_AUDIO_PREFIX,
    ChunkedAttentionError,
    audio_config_from_train_yaml,
    audio_keymap,
    audio_state_shapes,
    load_final_pt,
)
from vita.config import ProjectorConfig, VisionConfig, VitaConfig
from vita.errors import CheckpointError
from vita.models.vita import VitaModel
from vita.tokenizer import Tokenizer

MODEL_TYPE = "vita-mixtral"


def resolve_folder(checkpoint: Path, name: str | None, override: str | Path | None, what: str) -> Path:
    """Find the folder a config key names: the override, then the name as given, next to / inside the checkpoint."""
    if override is not None:
        candidates = [Path(override)]
    elif not name:
        raise CheckpointError(f"{checkpoint / 'config.json'}: no {what} folder named (key missing)")
    else:
        given = Path(name)
        candidates = [given] if given.is_absolute() else [checkpoint / given, checkpoint.parent / given, given]
    for path in candidates:
        if path.is_dir():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise CheckpointError(f"{what} folder not found (tried {tried}); pass its path explicitly")


def config_from_vita1(raw: Mapping[str, Any], vision: VisionConfig, audio_dir: Path, source: str) -> VitaConfig:
    """Our `VitaConfig` from the official config.json, the InternViT config and the audio-encoder folder."""
    if raw.get("model_type") != MODEL_TYPE:
        raise CheckpointError(f"{source}: model_type {raw.get('model_type')!r} is not {MODEL_TYPE!r}")
    if raw.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
        raise CheckpointError(f"{source}: mm_projector_type {raw.get('mm_projector_type')!r} is not supported")
    if raw.get("use_s2"):
        raise CheckpointError(f"{source}: use_s2 (multi-scale vision) is not supported")
    llm = llm_config_from_hf(raw)
    if int(raw.get("mm_hidden_size", vision.output_size)) != vision.output_size:
        raise CheckpointError(
            f"{source}: mm_hidden_size {raw['mm_hidden_size']} != 4 x InternViT hidden ({vision.output_size})"
        )
    train_yaml = audio_dir / "train.yaml"
    try:
        audio, adapter = audio_config_from_train_yaml(train_yaml, llm.hidden_size)
    except ChunkedAttentionError as exc:
        # The official HF code then draws a random chunk mask on every call (even in eval); its vLLM port, which
        # served the released demos, uses full attention. We follow the port, and say so.
        warnings.warn(f"{train_yaml}: chunked attention settings ignored, running full attention ({exc})",
                      stacklevel=2)
        audio, adapter = audio_config_from_train_yaml(train_yaml, llm.hidden_size, force_full_attention=True)
    if audio.fbank.dither:
        # Dither adds random noise to the features: right for training, wrong for reproducible inference.
        audio = dataclasses.replace(audio, fbank=dataclasses.replace(audio.fbank, dither=0.0))
    return VitaConfig(
        llm=llm, vision=vision, vision_projector=ProjectorConfig(vision.output_size, llm.hidden_size),
        audio=audio, audio_adapter=adapter, template="mixtral_two",
        max_length=int(raw.get("tokenizer_model_max_length") or 9100),
    )


def official_keymap(config: VitaConfig) -> dict[str, str | None]:
    """Official checkpoint name pattern -> ours (the vision-tower copy is known and dropped)."""
    return {
        **llm_keymap(config.llm),
        **PROJECTOR_KEYMAP,
        **audio_keymap(OFFICIAL_AUDIO_PREFIX),
        **dict.fromkeys(VITA_VISION_TOWER_KEYMAP),
    }


def read_vita1(
    path: Path, *, vision_tower: str | Path | None = None, audio_encoder: str | Path | None = None
) -> tuple[VitaConfig, RenamedView, Tokenizer]:
    """Config, a lazy renamed view of every tensor, and the tokenizer of an official VITA-1.0 directory."""
    source = str(path / "config.json")
    raw = json.loads((path / "config.json").read_text())
    vision_dir = resolve_folder(path, raw.get("mm_vision_tower"), vision_tower, "vision tower (InternViT)")
    audio_dir = resolve_folder(path, raw.get("mm_audio_encoder"), audio_encoder, "audio encoder")
    vision, vision_state = load_internvit_folder(vision_dir)
    config = config_from_vita1(raw, vision, audio_dir, source)
    tokenizer = Tokenizer.from_dir(path)
    reader = TensorReader.from_dir(path)
    view = RenamedView()
    view.add(reader, official_keymap(config), str(path))
    view.add(vision_state, {name: name for name in vision_state}, str(vision_dir))
    if not any(k.startswith(OFFICIAL_AUDIO_PREFIX) for k in reader):
        # A checkpoint saved without the audio modules (e.g. after a projector-only stage): use final.pt.
        audio_state = load_final_pt(audio_dir / "final.pt", audio_state_shapes(config.audio, config.audio_adapter))
        view.add(audio_state, {name: name for name in audio_state}, str(audio_dir / "final.pt"))
    # The official loader resizes the embeddings to len(tokenizer) (cutting rows when the tokenizer is smaller).
    n_tok = len(tokenizer)
    if n_tok < config.llm.vocab_size:
        config = dataclasses.replace(config, llm=dataclasses.replace(config.llm, vocab_size=n_tok))
        for name in ("llm.tok_embeddings.weight", "llm.output.weight"):
            if name in view:
                view.truncate_rows(name, n_tok)
    elif n_tok > config.llm.vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {n_tok} tokens but the model only {config.llm.vocab_size} embeddings"
        )
    return config, view, tokenizer


def load_vita1(
    path: Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    vision_tower: str | Path | None = None,
    audio_encoder: str | Path | None = None,
) -> tuple[VitaModel, Tokenizer]:
    config, view, tokenizer = read_vita1(Path(path), vision_tower=vision_tower, audio_encoder=audio_encoder)
    model = materialize(config, view, dtype=dtype, device=device, source=str(path), keep_fp32=keeps_fp32)
    return model, tokenizer


# --------------------------------------------------------------------------------------------------------- export

VISION_FOLDER = "InternViT"
AUDIO_FOLDER = "audio-encoder"


def export_vita1(
    config: VitaConfig, tensors: Mapping[str, torch.Tensor], tokenizer: Tokenizer, dst: str | Path
) -> Path:
    """Write our model (config + tensors in our names) in the official VITA-1.0 layout under `dst`."""
    dst = Path(dst)
    if config.vision is None or config.audio is None or config.audio.kind != "whale" or config.llm.family != "mixtral":
        raise CheckpointError(
            "only a full Mixtral-based VITA model (vision + whale audio encoder) exports to the VITA-1.0 layout"
        )
    if config.vision.post_norm:
        raise CheckpointError("a tower with a final LayerNorm (vision.post_norm) has no place in the VITA-1.0 layout")
    dst.mkdir(parents=True, exist_ok=True)
    back = invert(official_keymap(config))
    main = {map_key(name, back): tensors[name] for name in tensors if not name.startswith("vision.")}
    tower_back = invert(VITA_VISION_TOWER_KEYMAP)
    folder_back = invert(INTERNVIT_KEYMAP)
    vision = {n: tensors[n] for n in tensors if n.startswith("vision.")}
    main.update({map_key(n, tower_back): t for n, t in vision.items()})  # the release keeps a copy of the tower
    write_tensors(dst, main)
    hf = llm_config_to_hf(config.llm)
    hf.update(
        architectures=["VITAMixtralForCausalLM"], model_type=MODEL_TYPE, mm_vision_tower=VISION_FOLDER,
        mm_audio_encoder=AUDIO_FOLDER, mm_projector_type="mlp2x_gelu", mm_hidden_size=config.vision.output_size,
        use_mm_proj=True, image_aspect_ratio="square", tokenizer_model_max_length=config.max_length,
        tokenizer_padding_side="right", freeze_audio_encoder=True, freeze_audio_encoder_adapter=True,
        tune_mm_mlp_adapter=False, unfreeze_vision_tower=False, use_s2=False, mm_projector_lr=None,
        torch_dtype=str(next(iter(tensors.values())).dtype).removeprefix("torch."),
    )
    (dst / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    tokenizer.save(dst)
    write_internvit_folder(config, {map_key(n, folder_back): t for n, t in vision.items()}, dst / VISION_FOLDER)
    write_audio_folder(config, tensors, dst / AUDIO_FOLDER)
    return dst


def write_internvit_folder(config: VitaConfig, state: Mapping[str, torch.Tensor], folder: Path) -> None:
    """An InternViT folder (config.json, preprocessor_config.json, model.safetensors) of the tower in `state`."""
    v = config.vision
    folder.mkdir(parents=True, exist_ok=True)
    write_tensors(folder, state)
    cfg = {
        "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "hidden_size": v.hidden_size,
        "num_attention_heads": v.num_heads, "intermediate_size": v.intermediate_size,
        "num_hidden_layers": v.num_layers, "image_size": v.image_size, "patch_size": v.patch_size,
        "num_channels": v.num_channels, "layer_norm_eps": v.layer_norm_eps, "qkv_bias": v.qkv_bias,
        "qk_normalization": False, "norm_type": "layer_norm", "hidden_act": "gelu", "drop_path_rate": 0.0,
        "dropout": 0.0, "attention_dropout": 0.0, "use_flash_attn": False,
    }
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    pre = {
        "crop_size": v.image_size, "size": v.image_size, "do_center_crop": True, "do_normalize": True,
        "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": list(v.image_mean),
        "image_std": list(v.image_std), "resample": 3,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")


def write_audio_folder(config: VitaConfig, tensors: Mapping[str, torch.Tensor], folder: Path) -> None:
    """An official audio-encoder folder (train.yaml, global_cmvn, final.pt) from our `audio_*` tensors."""
    a, ad = config.audio, config.audio_adapter
    folder.mkdir(parents=True, exist_ok=True)
    back = invert(AUDIO_KEYMAP)
    state = {map_key(n, back): t.contiguous() for n, t in tensors.items() if n.startswith(("audio_encoder.",
                                                                                           "audio_adapter."))}
    torch.save(state, folder / "final.pt")
    mean = tensors["audio_encoder.cmvn.mean"].double()
    istd = tensors["audio_encoder.cmvn.istd"].double()
    stats = {"mean_stat": mean.tolist(), "var_stat": (1.0 / istd**2 + mean**2).tolist(), "frame_num": 1}
    (folder / "global_cmvn").write_text(json.dumps(stats) + "\n")
    t = {
        "input-dim": a.hidden_size, "output-dim": a.hidden_size, "attention-dim": a.hidden_size,
        "attention-heads": a.num_heads, "linear-units": a.intermediate_size, "num-blocks": a.num_layers,
        "dropout-rate": 0.1, "attention-dropout-rate": 0.0, "positional-dropout-rate": 0.1, "input-layer": "linear",
        "pos-enc-class": "rel-enc", "normalize-before": True, "concat-after": False,
        "positionwise-layer-type": "linear", "positionwise-conv-kernel_size": 1, "chunk_size": -1,
        "left_chunks": -1, "dynamic-chunks": False,
    }
    train = {
        "input_dim": a.input_dim, "is_json_cmvn": True,
        "encoder_conf": {
            "overview_conf": {"encoder-input-dim": a.input_dim, "encoder-output-dim": a.hidden_size,
                              "encoder-layer-config": "subsampling-transformer"},
            "para_conf": {
                "subsampling": {"subsampling-rate": 4, "subsampling-input-dim": a.input_dim,
                                "subsampling-output-dim": a.hidden_size, "subsampling-dropout-rate": 0.1},
                "transformer": {f"transformer-{k}": v for k, v in t.items()},
            },
        },
        "model_conf": {"enc_out_dim": a.hidden_size, "llm_embed_dim": ad.output_size, "kernel_size": ad.kernel_size,
                       "adpter_type": "subsampling", "add_audio_bos_eos": False, "activation_func": "gelu",
                       "norm": "layer", "freeze_encoder": True, "freeze_adpter": True},
        "dataset_conf": {
            "resample_conf": {"resample_rate": a.fbank.sample_rate},
            "fbank_conf": {"num_mel_bins": a.fbank.num_mel_bins, "frame_length": a.fbank.frame_length_ms,
                           "frame_shift": a.fbank.frame_shift_ms, "dither": a.fbank.dither},
        },
    }
    (folder / "train.yaml").write_text(yaml.safe_dump(train, sort_keys=False))
