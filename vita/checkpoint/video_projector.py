"""A second projector for video frames: a model folder with `video_projector` = a copy of its `vision_projector`.

`VitaConfig.video_projector` sends the rows of video frames through their own projector while image tiles keep
`vision_projector` (`VitaModel.encode_images`). Started as an exact copy (same config, same tensors under
`video_projector.*`), the new model answers bit for bit as the source until the copy is trained on video questions;
pictures then stay exactly as they were, however far the frames' projector moves.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from vita.checkpoint.io import INDEX_NAME, SINGLE_NAME, TensorReader
from vita.config import VitaConfig
from vita.errors import CheckpointError

SOURCE, TARGET = "vision_projector.", "video_projector."


def add_video_projector(model_dir: str | Path, out_dir: str | Path) -> dict:
    """Write `out_dir` (new or empty): the model of `model_dir` (our canonical layout) with a video projector copied
    from its vision projector; every other file is copied as it is. Returns a summary (the tensors copied)."""
    from vita.checkpoint.convert import save_canonical
    from vita.tokenizer import Tokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise CheckpointError(f"{out_dir}: destination exists and is not an empty directory (refusing to overwrite)")
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"{model_dir}: no config.json (not a model folder in our layout)")
    config = VitaConfig.load(model_dir / "config.json")
    if config.vision_projector is None:
        raise CheckpointError(f"{model_dir}: the model has no vision projector to copy")
    if config.video_projector is not None:
        raise CheckpointError(f"{model_dir}: the model has a video projector already")
    reader = TensorReader.from_dir(model_dir)
    tensors = {n: reader[n] for n in reader}
    copied = {TARGET + n.removeprefix(SOURCE): t.clone() for n, t in tensors.items() if n.startswith(SOURCE)}
    if not copied:
        raise CheckpointError(f"{model_dir}: no {SOURCE}* tensor to copy")
    config = dataclasses.replace(config, video_projector=dataclasses.replace(config.vision_projector))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"config.json", SINGLE_NAME, INDEX_NAME}
    # the tokenizer and any other file beside the tensors and the config (save_canonical writes those anew)
    for item in model_dir.iterdir():
        if item.name in written or (item.name.startswith("model-") and item.suffix == ".safetensors"):
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, out_dir / item.name)
    save_canonical(config, {**tensors, **copied}, Tokenizer.from_dir(model_dir), out_dir)
    return {"model": str(out_dir), "copied": sorted(copied)}
