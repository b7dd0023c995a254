"""InternViT checkpoint folders (OpenGVLab layout) and the VITA vision key maps.

Shapes (C = ViT width, G = image_size / patch_size, p = patch_size, M = MLP width, Din = 4C, D = LLM width):
    embeddings.class_embedding [1, 1, C]; embeddings.patch_embedding.weight [C, 3, p, p] (+bias [C]);
    embeddings.position_embedding [1, 1 + G*G, C]; encoder.layers.{l}.attn.qkv.weight [3C, C] (+bias [3C]);
    attn.proj [C, C]; mlp.fc1 [M, C]; mlp.fc2 [C, M]; norm1/norm2 [C]; ls1/ls2 [C];
    model.mm_projector.0.weight [D, Din], model.mm_projector.2.weight [D, D] (+biases [D]).

Targets are names inside `VitaModel`: the tower is its attribute `vision` (an `InternViT`) and the projector its
attribute `vision_projector` (a `VisionProjector`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from vita.checkpoint.keymap import check_state_dict, map_keys
from vita.config import VisionConfig
from vita.errors import CheckpointError, ConfigError
from vita.models.vision import InternViT

VISION_PREFIX = "vision."
PROJECTOR_PREFIX = "vision_projector."
# Where the VITA-1.0 checkpoint keeps its (frozen) copy of the tower
VITA_TOWER_PREFIX = "model.vision_tower.vision_tower."

# Per-layer tensors keep their InternViT names under `layers.{l}.`
_LAYER_NAMES = (
    "attn.qkv.weight",
    "attn.qkv.bias",
    "attn.proj.weight",
    "attn.proj.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
    "norm1.weight",
    "norm1.bias",
    "norm2.weight",
    "norm2.bias",
    "ls1",
    "ls2",
)

# InternViT folder names -> VitaModel names
INTERNVIT_KEYMAP: dict[str, str | None] = {
    "embeddings.class_embedding": VISION_PREFIX + "embeddings.class_embedding",
    "embeddings.patch_embedding.weight": VISION_PREFIX + "embeddings.patch_embedding.weight",
    "embeddings.patch_embedding.bias": VISION_PREFIX + "embeddings.patch_embedding.bias",
    "embeddings.position_embedding": VISION_PREFIX + "embeddings.position_embedding",
    **{f"encoder.layers.{{}}.{name}": f"{VISION_PREFIX}layers.{{}}.{name}" for name in _LAYER_NAMES},
}

# The same tensors as stored inside the VITA-1.0 checkpoint
VITA_VISION_TOWER_KEYMAP: dict[str, str | None] = {VITA_TOWER_PREFIX + k: v for k, v in INTERNVIT_KEYMAP.items()}

# `mm_projector` is nn.Sequential(Linear, GELU, Linear): indices 0 and 2
PROJECTOR_KEYMAP: dict[str, str | None] = {
    "model.mm_projector.0.weight": PROJECTOR_PREFIX + "fc1.weight",
    "model.mm_projector.0.bias": PROJECTOR_PREFIX + "fc1.bias",
    "model.mm_projector.2.weight": PROJECTOR_PREFIX + "fc2.weight",
    "model.mm_projector.2.bias": PROJECTOR_PREFIX + "fc2.bias",
}

_REQUIRED = (
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "num_hidden_layers",
    "image_size",
    "patch_size",
)


def _size(value: Any, keys: tuple[str, ...]) -> int | None:
    """A processor size given as an int or a dict like {"shortest_edge": n} / {"height": n, "width": n}."""
    if value is None or isinstance(value, int):
        return value
    sizes = {value[k] for k in keys if k in value}
    return sizes.pop() if len(sizes) == 1 else -1


def _check_preprocessor(pre: dict, image_size: int, source: str) -> None:
    """Refuse processor settings our fixed pipeline (bicubic, 1/255, resize + centre crop to S) would ignore."""
    for key in ("do_resize", "do_center_crop", "do_rescale", "do_normalize"):
        if pre.get(key, True) is not True:
            raise CheckpointError(f"{source}: preprocessor {key}={pre[key]!r} is not supported")
    if pre.get("resample", 3) != 3:
        raise CheckpointError(f"{source}: preprocessor resample={pre['resample']!r}, only 3 (bicubic) is supported")
    if not math.isclose(pre.get("rescale_factor", 1 / 255), 1 / 255, rel_tol=0, abs_tol=1e-12):
        raise CheckpointError(f"{source}: preprocessor rescale_factor={pre['rescale_factor']!r}, expected 1/255")
    for key, subkeys in (("size", ("shortest_edge", "height", "width")), ("crop_size", ("height", "width"))):
        size = _size(pre.get(key), subkeys)
        if size is not None and size != image_size:
            raise CheckpointError(f"{source}: preprocessor {key}={pre[key]!r} differs from image_size {image_size}")


def vision_config_from_internvit(
    config_json: dict[str, Any], preprocessor: dict[str, Any] | None = None, *, source: str = "InternViT config"
) -> VisionConfig:
    """VisionConfig from an InternViT `config.json` (+ optional `preprocessor_config.json`).

    Rejects variants this tower does not implement (q/k normalisation, RMSNorm, a non-GELU MLP).
    """
    # an InternVL chat config nests the tower under "vision_config"
    cfg = config_json if "hidden_size" in config_json else config_json.get("vision_config", config_json)
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise CheckpointError(f"{source}: missing key(s) {missing}")
    if cfg.get("qk_normalization", False):
        raise CheckpointError(f"{source}: qk_normalization=true is not supported")
    if cfg.get("norm_type", "layer_norm") != "layer_norm":
        raise CheckpointError(f"{source}: norm_type={cfg['norm_type']!r} is not supported (only layer_norm)")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"{source}: hidden_act={cfg['hidden_act']!r} is not supported (only gelu)")
    kwargs: dict[str, Any] = {
        "image_size": int(cfg["image_size"]),
        "patch_size": int(cfg["patch_size"]),
        "hidden_size": int(cfg["hidden_size"]),
        "num_heads": int(cfg["num_attention_heads"]),
        "intermediate_size": int(cfg["intermediate_size"]),
        "num_layers": int(cfg["num_hidden_layers"]),
        "layer_norm_eps": float(cfg.get("layer_norm_eps", 1e-6)),
        "qkv_bias": bool(cfg.get("qkv_bias", True)),
        "num_channels": int(cfg.get("num_channels", 3)),
    }
    if preprocessor is not None:
        _check_preprocessor(preprocessor, kwargs["image_size"], source)
        if "image_mean" in preprocessor:
            kwargs["image_mean"] = tuple(float(v) for v in preprocessor["image_mean"])
        if "image_std" in preprocessor:
            kwargs["image_std"] = tuple(float(v) for v in preprocessor["image_std"])
    try:
        return VisionConfig(**kwargs)
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc


def expected_vision_shapes(cfg: VisionConfig, prefix: str = VISION_PREFIX) -> dict[str, torch.Size]:
    """Parameter names and shapes of an `InternViT(cfg)`, with `prefix`, without allocating memory."""
    with torch.device("meta"):
        tower = InternViT(cfg)
    return {prefix + name: p.shape for name, p in tower.state_dict().items()}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read JSON ({exc})") from exc


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read safetensors ({exc})") from exc


def read_folder_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """Raw tensors of a HF model folder: model.safetensors, a sharded index, or (fallback) pytorch_model.bin."""
    folder = Path(folder)
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return _load_safetensors(single)
    if index.is_file():
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(_read_json(index).get("weight_map", {}).values())):
            state.update(_load_safetensors(folder / shard))
        return state
    legacy = folder / "pytorch_model.bin"
    if legacy.is_file():
        try:
            state = torch.load(legacy, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch.load raises many types (pickle, zip, runtime) for a bad file
            raise CheckpointError(f"{legacy}: cannot read ({exc})") from exc
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{legacy}: not a flat state dict of tensors")
        return state
    raise CheckpointError(f"{folder}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def load_internvit_folder(folder: str | Path) -> tuple[VisionConfig, dict[str, torch.Tensor]]:
    """Read an InternViT folder -> (VisionConfig, state dict renamed to `vision.*`).

    Strict: an unknown, missing or mis-shaped tensor raises `CheckpointError` naming it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: InternViT folder not found")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: config.json not found")
    pre_path = folder / "preprocessor_config.json"
    preprocessor = _read_json(pre_path) if pre_path.is_file() else None
    cfg = vision_config_from_internvit(_read_json(config_path), preprocessor, source=str(config_path))
    state = map_keys(read_folder_tensors(folder), INTERNVIT_KEYMAP, source=str(folder))
    check_state_dict(state, expected_vision_shapes(cfg), source=str(folder))
    return cfg, state


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys starting with `prefix`, without it (to load a `vision.*` dict into a standalone module)."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def load_internvit(folder: str | Path, dtype: torch.dtype = torch.float32) -> InternViT:
    """A ready standalone `InternViT` (eval mode) from an InternViT folder."""
    cfg, state = load_internvit_folder(folder)
    tower = InternViT(cfg)
    tower.load_state_dict(strip_prefix(state, VISION_PREFIX), strict=True)
    return tower.to(dtype).eval()
