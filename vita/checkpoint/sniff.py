"""Which layout a path holds: the one decision `vita.load` (`load.load_model`) and `vita convert`
(`convert.read_any`) share.

| format | recognised by | read by `vita.checkpoint.` |
|---|---|---|
| `gguf` | a `.gguf` file, or a directory without config.json holding exactly one | `gguf` |
| `vita` | config.json `{"format": "vita", ...}` (ours) | `materialize` |
| `vita1` | config.json `model_type` "vita-mixtral" (the official VITA-1.0 release) | `vita1` |
| `vita15` | config.json `model_type` "vita-Qwen2", any case (the official VITA-1.5 release) | `vita15` |
| `hf` | any other config.json: a plain Hugging Face LLM directory (its reader refuses what it cannot map) | `hf_dir` |
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vita.checkpoint.gguf import gguf_file
from vita.checkpoint.vita1 import MODEL_TYPE as VITA1_MODEL_TYPE
from vita.checkpoint.vita15 import is_vita15
from vita.errors import CheckpointError

Format = Literal["gguf", "vita", "vita1", "vita15", "hf"]


@dataclass(frozen=True)
class Layout:
    """What `sniff` found: the format, where its reader starts, and the config.json it was told by."""

    format: Format
    path: Path  # the model directory, or the .gguf file itself
    config: Mapping[str, Any] = field(default_factory=dict)  # config.json as read ({} for GGUF)


def sniff(path: str | Path) -> Layout:
    """The layout at `path`; `CheckpointError` when it is none of them (missing, no config.json, invalid JSON)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such model directory or file")
    gguf = gguf_file(path)
    if gguf is not None:
        return Layout("gguf", gguf)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: no config.json, so this is not a model directory")
    try:
        raw = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_file}: invalid JSON ({exc})") from None
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{config_file}: not a JSON object")
    if raw.get("format") == "vita":
        return Layout("vita", path, raw)
    if raw.get("model_type") == VITA1_MODEL_TYPE:
        return Layout("vita1", path, raw)
    if is_vita15(raw):
        return Layout("vita15", path, raw)
    return Layout("hf", path, raw)
