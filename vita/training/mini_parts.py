"""Packing a finished `recipes/mini` run into vita-mini's parts folder (`vita mini pack`).

The parts format, and assembling vita-mini from it, are `vita.checkpoint.mini`'s: this module only writes them from
a training run's output (its last checkpoint, its `final/` config and its resolved recipe), which is why it lives
with training and the checkpoint package never imports training.
"""

from __future__ import annotations

import dataclasses
import json
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from vita.checkpoint.io import TensorReader, write_tensors
from vita.checkpoint.materialize import resolve_dtype
from vita.checkpoint.mini import (
    LORA_FACTOR,
    PARTS_FILE,
    PARTS_FORMAT,
    REPLACEABLE_PREFIXES,
    TRAINED_PREFIXES,
    base_files,
    sha256_file,
)
from vita.config import VisionConfig, VitaConfig, WhisperConfig
from vita.errors import CheckpointError
from vita.models.projector import fold_input_norm
from vita.training.checkpointing import latest_checkpoint, load_checkpoint

__all__ = ["frozen_parts", "pack_parts"]


def _base_manifest(vision: VisionConfig | None) -> dict[str, dict[str, str]]:
    out = {}
    for package, path in base_files(vision).items():
        try:
            ver = version(package)
        except PackageNotFoundError:
            ver = "unknown"
        out[package] = {"version": ver, "file": path.name, "sha256": sha256_file(path)}
    return out


def pack_parts(run_dir: str | Path, out_dir: str | Path, *, dtype: str = "fp16") -> Path:
    """Write the parts of a finished `recipes/mini` stage-3 run (`vita train --output run_dir`) to `out_dir`.

    The tensors are the run's trainable state at its last checkpoint (LoRA factors unmerged) plus the projector and
    adapter tensors it kept frozen (from `run_dir/final`), the config is the one of `run_dir/final`, and the LoRA
    scale comes from the run's resolved recipe.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    latest = latest_checkpoint(run_dir)
    if latest is None or not (run_dir / "final" / "config.json").is_file():
        raise CheckpointError(f"{run_dir}: not a finished training run (needs checkpoints/ and final/)")
    restored = load_checkpoint(latest)
    recipe = restored.meta.get("recipe", {})
    lora = recipe.get("lora")
    if not lora:
        raise CheckpointError(f"{run_dir}: the run has no LoRA adapters; the parts format stores LoRA factors")
    state = restored.model_state
    kept = {n: t for n, t in state.items() if n.startswith(TRAINED_PREFIXES) or LORA_FACTOR.match(n)}
    other = sorted(set(state) - set(kept))
    if other:
        raise CheckpointError(f"{run_dir}: trained tensors outside the parts format: {', '.join(other[:5])}")
    config = VitaConfig.load(run_dir / "final" / "config.json")
    kept.update(frozen_parts(run_dir / "final", kept, _packaged_whisper(config)))
    if isinstance(config.audio, WhisperConfig) and config.transcriber is None:  # Whisper's own decoder beside it
        from vita.checkpoint.assemble import whisper_folder
        from vita.checkpoint.ct2_decoder import with_transcriber

        tuned = {int(m[1]) for n in kept if (m := re.match(r"audio_encoder\.blocks\.(\d+)\.", n))}
        config = with_transcriber(config, tuned, whisper_folder())
    target = resolve_dtype(dtype)
    for name in ("vision_projector", "video_projector"):
        projector = getattr(config, name)
        if projector is not None and projector.input_norm:
            kept, config = _fold_projector_norm(run_dir / "final", kept, config, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tensors(out_dir, {n: t.to(target).contiguous() for n, t in sorted(kept.items())},
                  metadata={"format": PARTS_FORMAT})
    manifest: dict[str, Any] = {
        "format": PARTS_FORMAT, "version": 1,
        "config": config.to_dict(),
        "lora_scale": float(lora["alpha"]) / int(lora["r"]),
        "dtype": dtype,
        "base": _base_manifest(config.vision),
        "files": {PARTS_FILE: sha256_file(out_dir / PARTS_FILE)},
        "run": {"recipe": recipe.get("name", ""), "steps": restored.progress.step, "seed": recipe.get("seed")},
    }
    (out_dir / "parts.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out_dir


def _packaged_whisper(config: VitaConfig) -> dict[str, torch.Tensor] | None:
    """The packaged Whisper tiny.en tensors (our names) a parts file may replace when `config`'s audio encoder is a
    Whisper one: the encoder's, and the transcriber's decoder when `config` has a transcriber."""
    if not isinstance(config.audio, WhisperConfig):
        return None
    from vita.checkpoint.assemble import whisper_folder
    from vita.checkpoint.ct2 import load_ct2_whisper_encoder

    packaged = load_ct2_whisper_encoder(whisper_folder(), prefix="audio_encoder.")[1]
    if config.transcriber is not None:
        from vita.checkpoint.ct2_decoder import load_ct2_whisper_decoder

        packaged |= load_ct2_whisper_decoder(whisper_folder(), prefix="transcriber.decoder.")[1]
    return packaged


def frozen_parts(final: Path, kept: dict[str, torch.Tensor], packaged: dict[str, torch.Tensor] | None
                 ) -> dict[str, torch.Tensor]:
    """The tensors the run kept frozen but an earlier stage trained: not in the checkpoint's trainable state, so read
    from `final`, which holds them unchanged: the projectors and the adapter (e.g. region- or CTC-aligned ones), and
    with `packaged` (the packaged Whisper's tensors, `_packaged_whisper`) every encoder or transcriber-decoder tensor
    that differs from it (the fine-tuned top blocks of `vita.training.embed_align`, the decoder with the ears of
    `vita.training.ears` merged)."""
    reader = TensorReader.from_dir(final)
    out = {n: reader[n] for n in reader
           if n.startswith(("vision_projector.", "video_projector.", "audio_adapter.")) and n not in kept
           and not n.endswith((".input_mean", ".input_std"))}  # a projector's input_norm: folded in, never kept
    if packaged is not None:
        out.update({n: reader[n] for n in reader if n.startswith(REPLACEABLE_PREFIXES) and n not in kept
                    and (n not in packaged or not torch.equal(reader[n].float(), packaged[n].float()))})
    return out


def _fold_projector_norm(final: Path, kept: dict[str, torch.Tensor], config: VitaConfig,
                         projector: str = "vision_projector") -> tuple[dict[str, torch.Tensor], VitaConfig]:
    """Fold the `projector`'s fixed input statistics (in `final`, not trained, so not in the checkpoint) into fc1:
    the parts hold the plain official MLP."""
    reader = TensorReader.from_dir(final)
    names = (f"{projector}.input_mean", f"{projector}.input_std")
    missing = [n for n in names if n not in reader]
    if missing:
        raise CheckpointError(f"{final}: the config has input_norm but {', '.join(missing)} is missing")
    folded = fold_input_norm({**kept, **{n: reader[n].float() for n in names}}, prefix=f"{projector}.")
    plain = dataclasses.replace(getattr(config, projector), input_norm=False)
    return folded, dataclasses.replace(config, **{projector: plain})
