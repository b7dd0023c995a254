"""A plain Hugging Face LLM directory (Llama / Mistral / Mixtral / Qwen2): config.json + safetensors + tokenizer.

Loaded as a text-only `VitaModel` (no vision, no audio). The chat template is ChatML when the tokenizer knows
`<|im_start|>` (Qwen2, SmolLM2), else plain text.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vita.checkpoint.hf_llm import hf_eos_token_ids, llm_config_from_hf, llm_keymap
from vita.checkpoint.io import TensorReader
from vita.checkpoint.lazy import RenamedView
from vita.checkpoint.materialize import materialize
from vita.config import VitaConfig
from vita.errors import CheckpointError, ConfigError
from vita.models.vita import VitaModel
from vita.tokenizer import Tokenizer


def config_from_hf_dir(raw: Mapping[str, Any], tokenizer: Tokenizer, source: str) -> VitaConfig:
    try:
        llm = llm_config_from_hf(raw)
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    template = "chatml" if tokenizer.token_to_id("<|im_start|>") is not None else "plain"
    return VitaConfig(llm=llm, template=template, max_length=llm.max_position_embeddings)


def load_hf_llm_dir(
    path: Path, raw: Mapping[str, Any], *, dtype: torch.dtype, device: str | torch.device
) -> tuple[VitaModel, Tokenizer]:
    tokenizer = Tokenizer.from_dir(path)
    config = config_from_hf_dir(raw, tokenizer, str(path / "config.json"))
    extra = [i for i in hf_eos_token_ids(raw) if i not in tokenizer.stop_ids]
    tokenizer.stop_ids = (*tokenizer.stop_ids, *extra)
    view = RenamedView()
    view.add(TensorReader.from_dir(path), llm_keymap(config.llm), str(path))
    model = materialize(config, view, dtype=dtype, device=device, source=str(path))
    return model, tokenizer
