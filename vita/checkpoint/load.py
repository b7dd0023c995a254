"""Build a `VitaModel` from a checkpoint directory or a preset, strictly and with little memory.

Layouts, recognised by `vita.checkpoint.sniff` (mostly from `config.json`):
- ours: `{"format": "vita", ...}` + `model.safetensors` (or shards) with our tensor names + `tokenizer.json`;
- the official VITA-1.0 release (`model_type: vita-mixtral`), see `vita.checkpoint.vita1`;
- the official VITA-1.5 release (`model_type: vita-Qwen2`), see `vita.checkpoint.vita15`;
- a plain Hugging Face LLM directory (llama / mistral / mixtral / qwen2), loaded as a text-only model;
- a GGUF file (or a directory holding exactly one, without config.json), text-only, see `vita.checkpoint.gguf`;
  `vita.presets.PACKAGED` names (e.g. `smollm2-135m`) resolve to such a file inside an installed package.

Each reader maps the file's names to ours and hands the tensors to `vita.checkpoint.materialize`: the model is
built on the meta device and every tensor is assigned from the (memory-mapped) file after a strict name and shape
check, so peak memory is about one copy of the weights in the target dtype.

`quantize_checkpoint` (`vita quantize`) loads any of these layouts, quantizes the LLM and writes ours
(`vita.checkpoint.quantized`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vita.checkpoint.materialize import load_canonical, resolve_dtype
from vita.checkpoint.quantized import QUANT_FILE, VERSION, quantize_model_
from vita.checkpoint.sniff import sniff
from vita.config import VitaConfig
from vita.errors import CheckpointError, ConfigError
from vita.models.vita import VitaModel
from vita.nn.quant import GROUP, quantization_of
from vita.tokenizer import Tokenizer


def random_model(config: VitaConfig, *, seed: int = 0, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu") -> VitaModel:
    """A model with seeded random weights (tests, benchmarks and the demo before trained weights exist); the global
    random state is left as it was (a training run's own seed still decides what it draws next, e.g. LoRA factors)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VitaModel(config)
    return model.to(device=device, dtype=dtype).eval()


def load_model(
    path: str | Path,
    *,
    dtype: str | torch.dtype = "fp32",
    device: str | torch.device = "cpu",
    vision_tower: str | Path | None = None,
    audio_encoder: str | Path | None = None,
) -> tuple[VitaModel, Tokenizer]:
    """Load any supported layout, or a preset name from `vita.presets`."""
    from vita import presets

    dtype = resolve_dtype(dtype)
    if str(path) in presets.PRESETS:
        config = presets.preset(str(path))
        return random_model(config, dtype=dtype, device=device), presets.byte_tokenizer()
    from vita.checkpoint.gguf import load_gguf

    if str(path) in presets.PACKAGED:
        return load_gguf(presets.packaged_file(str(path)), dtype=dtype, device=device)
    if str(path) in presets.ASSEMBLED:
        from vita.checkpoint.mini import PARTS_DIR, load_mini

        return load_mini(PARTS_DIR if str(path) == "vita-mini" else None, dtype=dtype, device=device)
    path = Path(path)
    if not path.exists():
        known = ", ".join([*presets.PRESETS, *presets.PACKAGED, *presets.ASSEMBLED])
        raise CheckpointError(f"{path}: no such model directory (and not a preset name: {known})")
    layout = sniff(path)
    if layout.format == "gguf":
        return load_gguf(layout.path, dtype=dtype, device=device)
    if layout.format == "vita":
        return load_canonical(path, dtype=dtype, device=device)
    if layout.format == "vita1":
        from vita.checkpoint.vita1 import load_vita1

        return load_vita1(path, dtype=dtype, device=device, vision_tower=vision_tower, audio_encoder=audio_encoder)
    if layout.format == "vita15":
        from vita.checkpoint.vita15 import load_vita15

        return load_vita15(path, dtype=dtype, device=device, vision_tower=vision_tower, audio_encoder=audio_encoder)
    from vita.checkpoint.hf_dir import load_hf_llm_dir

    return load_hf_llm_dir(path, layout.config, dtype=dtype, device=device)


def quantize_checkpoint(src: str | Path, dst: str | Path, *, bits: int, dtype: str = "bf16", head: bool = True,
                        group: int = GROUP) -> Path:
    """Load `src` (any layout `vita.load` reads) in `dtype`, quantize its LLM to `bits`, write our layout to `dst`."""
    from vita.checkpoint.convert import save_canonical

    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise CheckpointError(f"{dst}: destination exists and is not empty (refusing to overwrite)")
    if bits not in (4, 8):
        raise ConfigError(f"--bits must be 8 or 4, got {bits}")
    model, tokenizer = load_model(src, dtype=dtype)
    if quantization_of(model.llm) is not None:
        raise CheckpointError(f"{src}: already quantized")
    quantize_model_(model, bits, head=head, group=group)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    out = save_canonical(model.config, state, tokenizer, dst)
    (out / QUANT_FILE).write_text(json.dumps({"version": VERSION, "bits": bits, "group": group, "head": head}) + "\n")
    return out
