"""Per-channel statistics of a frozen vision tower's features, for the projector's `input_norm`.

A projector trained over a frozen pretrained tower starts from features that share a large mean: on vita-mini's
DINOv2-S at 112 px, 45 % of the energy of the 1536-wide (pixel-shuffled) features is a mean common to every image.
A projector fed those features sees every image alike at first and learns several times slower than one fed
(x - mean) / std per channel (`vita.eval.probes --standardize`: held-out digits 53 % -> 80 % after the same 1,200
samples). So the recipe measures the statistics once, before stage 1, and the projector standardises with them
(`ProjectorConfig.input_norm`); `vita mini pack` folds them into fc1, so the shipped model is the plain official MLP.

    python -m vita.cli.tools feature_stats --model SKELETON --data train/vision_align.json --out DIR [--images 512]

reads up to `--images` images spread evenly over the data file (deterministic), one tile each as the processor
makes them, and writes DIR: the same model with `input_norm` on and the two buffers set.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from vita.errors import VitaError

PREFIX = "vision_projector."
STD_FLOOR = 1e-3  # a channel that never varies is left unscaled rather than blown up


def image_paths(data: Path, limit: int) -> list[Path]:
    """`limit` distinct image files of a VITA-format JSON list (relative to the file's folder), evenly spaced over
    the file so that every task family in it is represented."""
    try:
        records = json.loads(data.read_text())
    except (OSError, ValueError) as exc:
        raise VitaError(f"{data}: cannot read the training data ({exc})") from exc
    seen: dict[Path, None] = {}
    for rec in records:
        images = rec.get("image") if isinstance(rec, dict) else None
        for name in [images] if isinstance(images, str) else images or []:
            seen.setdefault(data.parent / name)
    if not seen:
        raise VitaError(f"{data}: no images found (records need an 'image' field)")
    every = list(seen)
    step = max(len(every) / max(limit, 1), 1.0)
    return [every[int(i * step)] for i in range(min(limit, len(every)))]


def feature_stats(model, config, paths: list[Path], batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [C], std [C]) over every token of every tile of `paths`, through `model.vision` (float64 sums)."""
    from vita.media.image import preprocess_image

    total = square = None
    count = 0
    with torch.no_grad():
        for i in range(0, len(paths), batch):
            pixels = torch.cat([preprocess_image(p, config.vision) for p in paths[i:i + batch]])
            feats = model.vision(pixels.to(next(model.vision.parameters()).dtype)).flatten(0, -2).double()
            total = feats.sum(0) if total is None else total + feats.sum(0)
            square = feats.square().sum(0) if square is None else square + feats.square().sum(0)
            count += feats.shape[0]
    mean = total / count
    std = (square / count - mean.square()).clamp_min(0).sqrt().clamp_min(STD_FLOOR)
    return mean.float(), std.float()


def standardize(model_dir: Path, data: Path, out_dir: Path, images: int = 512) -> dict:
    """Write `model_dir` with the projector's input_norm on and measured to `out_dir`; returns a summary."""
    import vita
    from vita.checkpoint.convert import save_canonical
    from vita.checkpoint.io import TensorReader

    vm = vita.load(str(model_dir), dtype="fp32")
    config = vm.model.config
    if config.vision is None or config.vision_projector is None:
        raise VitaError(f"{model_dir}: the model has no vision projector")
    paths = image_paths(data, images)
    mean, std = feature_stats(vm.model, config, paths)
    new = dataclasses.replace(config, vision_projector=dataclasses.replace(config.vision_projector, input_norm=True))
    reader = TensorReader.from_dir(model_dir)
    tensors = {name: reader[name] for name in reader}
    tensors[PREFIX + "input_mean"], tensors[PREFIX + "input_std"] = mean, std  # set, or replaced if already there
    save_canonical(new, tensors, vm.tokenizer, out_dir)
    shared = float(mean.square().sum() / (std.square().sum() + mean.square().sum()))
    return {"images": len(paths), "channels": int(mean.numel()), "shared_mean_energy": round(shared, 3),
            "median_std": round(float(std.median()), 3)}
