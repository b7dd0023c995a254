"""Quantized checkpoints: what `vita quantize SRC DST --bits 8|4` writes (`vita.checkpoint.load.quantize_checkpoint`)
and what loading them back reads (`vita.load`, `load_model`).

A quantized checkpoint is our canonical layout (`config.json` with `"format": "vita"`, `model.safetensors`,
`tokenizer.json`) plus `quantization.json` = {"version": 2, "bits": 8|4, "group": G, "head": true|false}. The LLM's
projections are stored as `<name>.qweight` (int8, or packed int4 as uint8) and `<name>.scale` (float32 per row, or
float16 per group with a float16 `<name>.offset` per group) in the formats of `vita.nn.quant`, and the head, when
"head", in int8 whatever the bits; every other tensor (embeddings, norms, the
media towers and projectors) stays float in the dtype the checkpoint was written in. For a tied model with a
quantized head, `output.qweight` / `output.scale` are a quantized copy of the embedding matrix (the embedding itself
stays float for the lookup). The config is the source's, unchanged: the quantization is a property of the stored
tensors, which is why it lives in its own file.

Load-time quantization (`vita.load(..., quantize="int8")`, `--quantize` on the CLI) runs the same quantizer on a
float model after loading (`quantize_model_`).
"""

from __future__ import annotations

import json
from pathlib import Path

from vita.errors import CheckpointError, ConfigError
from vita.models.vita import VitaModel
from vita.nn.quant import GROUP, quantize_llm_

QUANT_FILE = "quantization.json"
VERSION = 2  # 1 (no "version" key): symmetric int4 with bf16 scales and an int4 head, no longer read
MODES = {"int8": 8, "int4": 4}


def bits_of(mode: str | int | None) -> int | None:
    """"int8" / "int4" / 8 / 4 -> bits; None or "none" -> None; anything else is a ConfigError naming it."""
    if mode is None or mode == "none":
        return None
    if isinstance(mode, int) and mode in (4, 8):
        return mode
    if isinstance(mode, str) and mode in MODES:
        return MODES[mode]
    raise ConfigError(f"unknown quantization {mode!r}; use int8 or int4")


def quantize_model_(model: VitaModel, mode: str | int, *, head: bool = True, group: int = GROUP) -> VitaModel:
    """Quantize `model`'s LLM in place (see `vita.nn.quant.quantize_llm_`); a ConfigError names why it cannot."""
    bits = bits_of(mode)
    if bits is None:
        return model
    try:
        quantize_llm_(model.llm, bits, head=head, group=group)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return model


def read_quantization(path: Path) -> dict | None:
    """The checkpoint's quantization.json, checked (None when the checkpoint is not quantized)."""
    file = Path(path) / QUANT_FILE
    if not file.is_file():
        return None
    try:
        spec = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file}: invalid JSON ({exc})") from None
    if isinstance(spec, dict) and spec.get("version", 1) != VERSION:
        raise CheckpointError(f"{file}: quantization format version {spec.get('version', 1)}, this vita reads "
                              f"version {VERSION}; quantize the float checkpoint again with `vita quantize`")
    if not isinstance(spec, dict) or set(spec) != {"version", "bits", "group", "head"} or spec["bits"] not in (4, 8) \
            or not isinstance(spec["group"], int) or not isinstance(spec["head"], bool):
        raise CheckpointError(f"{file}: expected {{\"version\": {VERSION}, \"bits\": 8|4, \"group\": int, "
                              f"\"head\": bool}}, got {spec!r}")
    return spec
