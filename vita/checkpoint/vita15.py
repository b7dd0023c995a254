"""The official VITA-1.5 release layout (`model_type "vita-Qwen2"`), both directions.

    VITA-1.5/
      config.json                  Qwen2 keys + mm_* keys; mm_vision_tower / mm_audio_encoder name the two folders
      model.safetensors | model-0000N-of-0000M.safetensors + model.safetensors.index.json
                                   LLM, projector, AND both towers: model.vision_tower.vision_tower.*,
                                   model.audio_encoder.*
      vocab.json, merges.txt, tokenizer.json, tokenizer_config.json, added_tokens.json, ...   Qwen2.5, ChatML
      audio-encoder-.../           train.yaml, global_cmvn, final.pt (encoder + adapter)
      vita_tts_ckpt/               decoder/ and codec/: the speech decoder (`vita.checkpoint.vita15_tts`)
    InternViT-300M-448px/          config.json + preprocessor_config.json (+ weights, unused: see below)

What the official 1.5 loader does, and we with it (`../shared/reference/vita1.md` §6.3, §11; the fixture README
of `vita15_tiny` §2):
- the LLM is Qwen2 (q/k/v biases, RMSNorm eps 1e-6, RoPE theta 1e6), the template ChatML (`qwen2p5_instruct`),
  the state tokens ☞ ☟ ☜ single vocabulary tokens; no BOS; generation stops at `<|im_end|>` (eos) or
  `<|im_start|>` (the demo's stop keyword);
- both towers are built while the model is constructed, so `from_pretrained` then overwrites them with the main
  checkpoint's tensors: the vision tower's and the audio encoder's weights come from `model.safetensors`, the
  InternViT folder gives only its config and preprocessor, `final.pt` is read (with `weights_only=True`) only when
  the checkpoint has no audio tensors (the official builder reads it unconditionally, then overwrites it);
- the audio adapter takes its single-conv branch whatever the widths and the splice keeps `lengths_for_llm` =
  ceil(T'/2) rows per clip (`VitaModel.encode_audio` encodes clips one by one, so that is every adapter frame);
- `resize_token_embeddings(len(tokenizer))` cuts the embedding and head rows to the tokenizer's length (152064 ->
  151665 for the release).
The folder names in config.json are Hugging Face hub ids in the release ("OpenGVLab/InternViT-300M-448px"); they
are looked for as given (inside / next to the checkpoint, or relative to the working directory), by their last
component, and in the local Hugging Face hub cache (never downloaded), or given with `vision_tower=` /
`audio_encoder=`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vita.checkpoint.hf_llm import llm_config_from_hf, llm_config_to_hf, llm_keymap
from vita.checkpoint.internvit import (
    INTERNVIT_KEYMAP,
    PROJECTOR_KEYMAP,
    VITA_TOWER_PREFIX,
    VITA_VISION_TOWER_KEYMAP,
    load_internvit_folder,
    vision_config_from_internvit,
)
from vita.checkpoint.io import TensorReader, write_tensors
from vita.checkpoint.keymap import invert, map_key
from vita.checkpoint.lazy import RenamedView
from vita.checkpoint.materialize import keeps_fp32, materialize
from vita.checkpoint.vita1 import write_audio_folder, write_internvit_folder
from vita.checkpoint.whale import (
    OFFICIAL_AUDIO_PREFIX,
    ChunkedAttentionError,
    audio_config_from_train_yaml,
    audio_keymap,
    audio_state_shapes,
    load_final_pt,
)
from vita.config import ProjectorConfig, VisionConfig, VitaConfig
from vita.errors import CheckpointError, ConfigError
from vita.models.vita import VitaModel
from vita.tokenizer import Tokenizer

MODEL_TYPE = "vita-Qwen2"
TEMPLATE = "qwen2p5_instruct"
EOS_TOKEN = "<|im_end|>"
STOP_KEYWORD = "<|im_start|>"  # `conv.sep` of the template: the demo's KeywordsStoppingCriteria
PAD_TOKEN = "<|endoftext|>"
TTS_FOLDER = "vita_tts_ckpt"


def is_vita15(raw: Mapping[str, Any]) -> bool:
    return str(raw.get("model_type", "")).lower() == MODEL_TYPE.lower()


def hub_cache_snapshots(repo_id: str) -> list[Path]:
    """Snapshot folders of `repo_id` in the local Hugging Face hub cache (`HF_HUB_CACHE`, `HF_HOME/hub` or
    ~/.cache/huggingface/hub), newest first. Nothing is downloaded."""
    if repo_id.count("/") != 1:
        return []
    roots = [os.environ.get("HF_HUB_CACHE"), os.environ.get("HUGGINGFACE_HUB_CACHE"),
             os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None,
             os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")]
    folder = "models--" + repo_id.replace("/", "--")
    found = [snap for root in dict.fromkeys(r for r in roots if r)
             for snap in (Path(root) / folder / "snapshots").glob("*") if snap.is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def resolve_folder(checkpoint: Path, name: str | None, override: str | Path | None, what: str) -> Path:
    """The folder a config key names: the override; else the name (a relative path or a hub id like
    "OpenGVLab/InternViT-300M-448px") inside / next to the checkpoint or under the working directory, then its
    last component inside / next to the checkpoint, then the hub id's snapshot in the local Hugging Face cache."""
    if override is not None:
        candidates = [Path(override)]
    elif not name:
        raise CheckpointError(f"{checkpoint / 'config.json'}: no {what} folder named (key missing)")
    else:
        given = Path(name)
        candidates = [given] if given.is_absolute() else [checkpoint / given, checkpoint.parent / given, given]
        if len(given.parts) > 1 and not given.is_absolute():
            candidates += [checkpoint / given.name, checkpoint.parent / given.name, *hub_cache_snapshots(name)]
    for path in candidates:
        if path.is_dir():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise CheckpointError(f"{what} folder not found (tried {tried}); pass its path explicitly")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read JSON ({exc})") from None


def vision_config_from_folder(folder: Path) -> VisionConfig:
    """The tower's config from an InternViT folder's config.json + preprocessor_config.json (weights not read)."""
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: config.json not found")
    pre = folder / "preprocessor_config.json"
    return vision_config_from_internvit(_read_json(folder / "config.json"), _read_json(pre) if pre.is_file() else None,
                                        source=str(folder / "config.json"))


def config_from_vita15(raw: Mapping[str, Any], vision: VisionConfig, audio_dir: Path, vocab_size: int,
                       source: str) -> VitaConfig:
    """Our `VitaConfig` from the official 1.5 config.json, the InternViT config and the audio folder.

    vocab_size: len(tokenizer), the row count after the official `resize_token_embeddings`.
    """
    if not is_vita15(raw):
        raise CheckpointError(f"{source}: model_type {raw.get('model_type')!r} is not {MODEL_TYPE!r}")
    if raw.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
        raise CheckpointError(f"{source}: mm_projector_type {raw.get('mm_projector_type')!r} is not supported")
    for key, what in (("use_s2", "multi-scale vision"), ("audio_prompt_finetune", "learnable audio prompt rows"),
                      ("audio_state_predictor_tuning", "the experimental state head")):
        if raw.get(key):
            raise CheckpointError(f"{source}: {key} ({what}) is not supported")
    try:
        llm = llm_config_from_hf(raw)
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    if vocab_size > llm.vocab_size:
        raise CheckpointError(f"{source}: tokenizer has {vocab_size} tokens but the model only {llm.vocab_size} rows")
    llm = dataclasses.replace(llm, vocab_size=vocab_size)  # the official resize to len(tokenizer)
    if int(raw.get("mm_hidden_size", vision.output_size)) != vision.output_size:
        raise CheckpointError(
            f"{source}: mm_hidden_size {raw['mm_hidden_size']} != 4 x InternViT hidden ({vision.output_size})"
        )
    train_yaml = audio_dir / "train.yaml"
    try:
        audio, adapter = audio_config_from_train_yaml(train_yaml, llm.hidden_size, always_single_conv=True)
    except ChunkedAttentionError:
        audio, adapter = audio_config_from_train_yaml(train_yaml, llm.hidden_size, force_full_attention=True,
                                                      always_single_conv=True)
        # The official HF code then draws a random chunk mask on every call (even in eval); the vLLM port, which
        # served the demos, runs full attention. We follow the port, and say so.
        warnings.warn(f"{train_yaml}: chunked attention settings ignored, running full attention", stacklevel=2)
    if audio.fbank.dither:  # random noise on the features: right for training, wrong for reproducible inference
        audio = dataclasses.replace(audio, fbank=dataclasses.replace(audio.fbank, dither=0.0))
    return VitaConfig(
        llm=llm, vision=vision, vision_projector=ProjectorConfig(vision.output_size, llm.hidden_size),
        audio=audio, audio_adapter=adapter, template=TEMPLATE,
        max_length=int(raw.get("tokenizer_model_max_length") or 6200),
    )


def official_keymap(config: VitaConfig) -> dict[str, str | None]:
    """Official 1.5 checkpoint name pattern -> ours (both towers included: 1.5 loads them from here)."""
    return {**llm_keymap(config.llm), **PROJECTOR_KEYMAP, **audio_keymap(OFFICIAL_AUDIO_PREFIX),
            **VITA_VISION_TOWER_KEYMAP}


def tokenizer_from_dir(path: Path) -> Tokenizer:
    """The Qwen2.5 tokenizer with the official stop set: eos `<|im_end|>` and the keyword `<|im_start|>`."""
    base = Tokenizer.from_dir(path)
    for token in (EOS_TOKEN, STOP_KEYWORD):
        if base.token_to_id(token) is None:
            raise CheckpointError(f"{path}: the tokenizer has no {token} token (not a Qwen2 ChatML tokenizer)")
    return Tokenizer(base.backend, bos_token=base.bos_token, eos_token=EOS_TOKEN, extra_stop_tokens=(STOP_KEYWORD,))


def read_vita15(
    path: Path, *, vision_tower: str | Path | None = None, audio_encoder: str | Path | None = None
) -> tuple[VitaConfig, RenamedView, Tokenizer]:
    """Config, a lazy renamed view of every tensor, and the tokenizer of an official VITA-1.5 directory."""
    path = Path(path)
    source = str(path / "config.json")
    raw = _read_json(path / "config.json")
    vision_dir = resolve_folder(path, raw.get("mm_vision_tower"), vision_tower, "vision tower (InternViT)")
    audio_dir = resolve_folder(path, raw.get("mm_audio_encoder"), audio_encoder, "audio encoder")
    tokenizer = tokenizer_from_dir(path)
    config = config_from_vita15(raw, vision_config_from_folder(vision_dir), audio_dir, len(tokenizer), source)
    reader = TensorReader.from_dir(path)
    view = RenamedView()
    view.add(reader, official_keymap(config), str(path))
    if not any(k.startswith(VITA_TOWER_PREFIX) for k in reader):  # then the folder's weights stay in place
        _, vision_state = load_internvit_folder(vision_dir)
        view.add(vision_state, {name: name for name in vision_state}, str(vision_dir))
    if not any(k.startswith(OFFICIAL_AUDIO_PREFIX) for k in reader):
        audio_state = load_final_pt(audio_dir / "final.pt", audio_state_shapes(config.audio, config.audio_adapter))
        view.add(audio_state, {name: name for name in audio_state}, str(audio_dir / "final.pt"))
    for name in ("llm.tok_embeddings.weight", "llm.output.weight"):
        if name in view:
            view.truncate_rows(name, config.llm.vocab_size)
    return config, view, tokenizer


def load_vita15(
    path: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    vision_tower: str | Path | None = None,
    audio_encoder: str | Path | None = None,
) -> tuple[VitaModel, Tokenizer]:
    config, view, tokenizer = read_vita15(Path(path), vision_tower=vision_tower, audio_encoder=audio_encoder)
    model = materialize(config, view, dtype=dtype, device=device, source=str(path), keep_fp32=keeps_fp32)
    return model, tokenizer


# --------------------------------------------------------------------------------------------------------- export

VISION_FOLDER = "InternViT"
AUDIO_FOLDER = "audio-encoder"


def export_vita15(
    config: VitaConfig, tensors: Mapping[str, torch.Tensor], tokenizer: Tokenizer, dst: str | Path
) -> Path:
    """Write our model (config + tensors in our names) in the official VITA-1.5 layout under `dst`.

    The tower weights go into the main checkpoint (where 1.5 loads them from) and into the InternViT folder and
    `final.pt` (which the official builder insists on reading).
    """
    dst = Path(dst)
    if (config.vision is None or config.audio is None or config.audio.kind != "whale" or config.llm.family != "qwen2"
            or config.vision.post_norm):
        raise CheckpointError(
            "only a full Qwen2-based VITA model (InternViT tower, whale audio encoder) exports to the VITA-1.5 layout"
        )
    dst.mkdir(parents=True, exist_ok=True)
    back = invert(official_keymap(config))
    write_tensors(dst, {map_key(name, back): tensors[name] for name in tensors})
    hf = llm_config_to_hf(config.llm)
    hf.pop("head_dim", None)  # transformers 4.44's Qwen2 derives it
    hf.update(
        architectures=["VITAQwen2ForCausalLM"], model_type=MODEL_TYPE, mm_vision_tower=VISION_FOLDER,
        mm_audio_encoder=AUDIO_FOLDER, mm_projector_type="mlp2x_gelu", mm_hidden_size=config.vision.output_size,
        use_mm_proj=True, image_aspect_ratio="square", tokenizer_model_max_length=config.max_length,
        tokenizer_padding_side="right", freeze_audio_encoder=True, freeze_audio_encoder_adapter=False,
        freeze_mm_mlp_adapter=False, tune_mm_mlp_adapter=False, tune_audio_mlp_adapter=False,
        unfreeze_vision_tower=False, use_s2=False, mm_projector_lr=None, audio_prompt_finetune=False,
        audio_prompt_num=None, audio_state_predictor_tuning=False, max_window_layers=config.llm.num_layers,
        use_cache=False, torch_dtype=str(next(iter(tensors.values())).dtype).removeprefix("torch."),
    )
    (dst / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    generation = {"bos_token_id": config.llm.bos_token_id, "eos_token_id": tokenizer.eos_id}
    (dst / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    tokenizer.save(dst)
    tok_config = {
        "tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN,
        "unk_token": None, "add_prefix_space": False, "errors": "replace", "clean_up_tokenization_spaces": False,
        "split_special_tokens": False, "model_max_length": 131072,
    }
    (dst / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    folder_back = invert(INTERNVIT_KEYMAP)
    vision = {map_key(n, folder_back): t for n, t in tensors.items() if n.startswith("vision.")}
    write_internvit_folder(config, vision, dst / VISION_FOLDER)
    write_audio_folder(config, tensors, dst / AUDIO_FOLDER)
    return dst
