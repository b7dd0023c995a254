"""InternViT folder loading, config conversion and the VITA vision key maps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vita.checkpoint.internvit import (
    INTERNVIT_KEYMAP,
    PROJECTOR_KEYMAP,
    VITA_VISION_TOWER_KEYMAP,
    expected_vision_shapes,
    load_internvit,
    load_internvit_folder,
    vision_config_from_internvit,
)
from vita.checkpoint.keymap import invert, map_keys
from vita.config import ProjectorConfig
from vita.errors import CheckpointError
from vita.models.projector import VisionProjector
from vita.models.vision import InternViT

TINY_JSON = {
    "architectures": ["InternVisionModel"],
    "hidden_act": "gelu",
    "hidden_size": 32,
    "image_size": 112,
    "intermediate_size": 128,
    "layer_norm_eps": 1e-6,
    "norm_type": "layer_norm",
    "num_attention_heads": 4,
    "num_channels": 3,
    "num_hidden_layers": 2,
    "patch_size": 14,
    "qk_normalization": False,
    "qkv_bias": True,
}


def write_folder(folder: Path, config: dict | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """A synthetic InternViT folder (official tensor names) from a random tower; returns its raw tensors."""
    folder.mkdir(parents=True, exist_ok=True)
    config = config or TINY_JSON
    (folder / "config.json").write_text(json.dumps(config))
    torch.manual_seed(seed)
    tower = InternViT(vision_config_from_internvit(config))
    for p in tower.parameters():
        torch.nn.init.normal_(p)
    back = invert(INTERNVIT_KEYMAP)
    raw = map_keys({"vision." + k: v.contiguous() for k, v in tower.state_dict().items()}, back)
    save_file(raw, str(folder / "model.safetensors"))
    return raw


# ---------------------------------------------------------------- key maps


def test_keymap_covers_every_tower_parameter_both_ways() -> None:
    cfg = vision_config_from_internvit(TINY_JSON)
    expected = expected_vision_shapes(cfg)
    names = {
        "embeddings.class_embedding",
        "embeddings.patch_embedding.weight",
        "embeddings.patch_embedding.bias",
        "embeddings.position_embedding",
    } | {
        f"encoder.layers.{i}.{n}"
        for i in range(2)
        for n in (
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
    }
    mapped = map_keys(dict.fromkeys(names, 0), INTERNVIT_KEYMAP)
    assert set(mapped) == set(expected)
    assert all(k.startswith("vision.") for k in mapped)
    one = map_keys({"encoder.layers.1.attn.qkv.weight": 7}, INTERNVIT_KEYMAP)
    assert one == {"vision.layers.1.attn.qkv.weight": 7}
    prefixed = map_keys({"model.vision_tower.vision_tower." + n: 0 for n in names}, VITA_VISION_TOWER_KEYMAP)
    assert set(prefixed) == set(expected)


def test_projector_keymap_targets_module_names() -> None:
    mapped = map_keys(dict.fromkeys(PROJECTOR_KEYMAP, 0), PROJECTOR_KEYMAP)
    names = {"vision_projector." + k for k in VisionProjector(ProjectorConfig(8, 4)).state_dict()}
    assert set(mapped) == names


# ---------------------------------------------------------------- config


def test_config_from_internvit_reads_fields_and_preprocessor() -> None:
    pre = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "size": 112, "crop_size": 112}
    cfg = vision_config_from_internvit({**TINY_JSON, "layer_norm_eps": 1e-5, "qkv_bias": False}, pre)
    assert (cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, cfg.num_layers) == (32, 4, 128, 2)
    assert (cfg.image_size, cfg.patch_size, cfg.layer_norm_eps, cfg.qkv_bias) == (112, 14, 1e-5, False)
    assert cfg.image_mean == (0.5, 0.5, 0.5) and cfg.image_std == (0.25, 0.25, 0.25)
    assert cfg.tokens_per_tile == 16 and cfg.output_size == 128
    nested = vision_config_from_internvit({"model_type": "internvl_chat", "vision_config": TINY_JSON})
    assert nested.hidden_size == 32
    # dict-valued sizes as newer processors write them
    vision_config_from_internvit(
        TINY_JSON, {"size": {"shortest_edge": 112}, "crop_size": {"height": 112, "width": 112}}
    )


@pytest.mark.parametrize(
    ("change", "pre", "message"),
    [
        ({"qk_normalization": True}, None, "qk_normalization"),
        ({"norm_type": "rms_norm"}, None, "norm_type"),
        ({"hidden_act": "relu"}, None, "hidden_act"),
        ({"image_size": 100}, None, "multiple of patch_size"),
        ({"hidden_size": None}, None, "hidden_size"),
        ({}, {"crop_size": 224}, "crop_size"),
        ({}, {"resample": 2}, "resample"),
        ({}, {"rescale_factor": 0.5}, "rescale_factor"),
    ],
)
def test_config_rejects_unsupported(change: dict, pre: dict | None, message: str) -> None:
    config = {k: v for k, v in {**TINY_JSON, **change}.items() if v is not None}
    with pytest.raises(CheckpointError, match=message):
        vision_config_from_internvit(config, pre)


# ---------------------------------------------------------------- folders


def test_load_synthetic_folder_roundtrip(tmp_path: Path) -> None:
    raw = write_folder(tmp_path / "vit")
    cfg, state = load_internvit_folder(tmp_path / "vit")
    assert cfg.hidden_size == 32 and set(state) == set(expected_vision_shapes(cfg))
    assert torch.equal(state["vision.layers.1.ls2"], raw["encoder.layers.1.ls2"])
    tower = load_internvit(tmp_path / "vit")
    assert torch.equal(tower.embeddings.position_embedding, raw["embeddings.position_embedding"])
    assert not tower.training


def test_pytorch_bin_fallback(tmp_path: Path) -> None:
    raw = write_folder(tmp_path / "vit")
    (tmp_path / "vit" / "model.safetensors").unlink()
    torch.save(raw, tmp_path / "vit" / "pytorch_model.bin")
    _, state = load_internvit_folder(tmp_path / "vit")
    assert torch.equal(state["vision.embeddings.class_embedding"], raw["embeddings.class_embedding"])


def _edit_weights(folder: Path, edit) -> None:
    raw = load_file(folder / "model.safetensors")
    edit(raw)
    save_file(raw, str(folder / "model.safetensors"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update({"encoder.layers.0.ls1": torch.zeros(31)}), "vision.layers.0.ls1"),
        (lambda s: s.pop("encoder.layers.1.mlp.fc2.bias"), "vision.layers.1.mlp.fc2.bias"),
        (lambda s: s.update({"encoder.layers.0.attn.q_norm.weight": torch.zeros(32)}), "attn.q_norm.weight"),
        (lambda s: s.update({"encoder.layers.2.ls1": torch.zeros(32)}), "vision.layers.2.ls1"),
    ],
    ids=["mis-shaped", "missing", "unknown", "extra-layer"],
)
def test_bad_tensors_are_named(tmp_path: Path, edit, message: str) -> None:
    folder = tmp_path / "vit"
    write_folder(folder)
    _edit_weights(folder, edit)
    with pytest.raises(CheckpointError, match=message.replace(".", r"\.")):
        load_internvit_folder(folder)


def test_folder_failures(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_internvit_folder(tmp_path / "nowhere")
    folder = tmp_path / "vit"
    write_folder(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_internvit_folder(folder)
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_internvit_folder(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        load_internvit_folder(folder)


# ---------------------------------------------------------------- the fixture checkpoint


@pytest.mark.reference
def test_reference_folder_loads_and_matches_main_checkpoint(ref_root: Path, ref_index: dict, tmp_path: Path) -> None:
    folder = ref_root / "checkpoint" / ref_index["configs"]["main"]["mm_vision_tower"]
    cfg, state = load_internvit_folder(folder)
    vision = ref_index["configs"]["vision"]
    assert (cfg.hidden_size, cfg.num_layers, cfg.image_size) == (
        vision["hidden_size"],
        vision["num_hidden_layers"],
        vision["image_size"],
    )
    assert list(cfg.image_mean) == ref_index["configs"]["preprocessor"]["image_mean"]
    main = load_file(ref_root / "checkpoint" / "model.safetensors")
    tower_keys = {k: v for k, v in main.items() if k.startswith("model.vision_tower.vision_tower.")}
    from_main = map_keys(tower_keys, VITA_VISION_TOWER_KEYMAP)
    assert set(from_main) == set(state)
    for name, tensor in state.items():
        assert torch.equal(from_main[name], tensor), name
    projector = map_keys({k: v for k, v in main.items() if k.startswith("model.mm_projector.")}, PROJECTOR_KEYMAP)
    assert projector["vision_projector.fc1.weight"].shape == (
        ref_index["configs"]["main"]["hidden_size"],
        ref_index["configs"]["main"]["mm_hidden_size"],
    )
    # a mis-shaped tensor in a copy of the real folder is named
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    _edit_weights(copy, lambda s: s.update({"embeddings.position_embedding": torch.zeros(1, 10, cfg.hidden_size)}))
    with pytest.raises(CheckpointError, match=r"vision\.embeddings\.position_embedding"):
        load_internvit_folder(copy)
