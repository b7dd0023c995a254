"""`vita convert`: between our canonical layout and the official VITA-1.0 / VITA-1.5 layouts, tensor by tensor.

Sources may also be a plain HF LLM directory or a GGUF file (`vita.checkpoint.gguf`; dequantized to float32).

Conversion never builds the model: names are mapped lazily and each tensor is read, cast and written in turn,
after the same strict name/shape check a load does.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from vita.checkpoint.io import TensorReader, write_tensors
from vita.checkpoint.keymap import check_shapes
from vita.checkpoint.lazy import LazyTensors, RenamedView, Tensors, tensor_shape
from vita.checkpoint.materialize import keeps_fp32, resolve_dtype
from vita.checkpoint.sniff import sniff
from vita.config import VitaConfig
from vita.errors import CheckpointError
from vita.models.vita import VitaModel
from vita.tokenizer import Tokenizer


def expected_shapes(config: VitaConfig) -> dict[str, torch.Size]:
    with torch.device("meta"):
        return {n: t.shape for n, t in VitaModel(config).state_dict().items()}


def read_any(path: str | Path) -> tuple[VitaConfig, LazyTensors, Tokenizer]:
    """(config, lazy tensors in our names, tokenizer) of any layout `vita.checkpoint.sniff` recognises: ours, the
    official VITA-1.0 / 1.5 releases, a plain HF LLM directory, a GGUF file (or a directory holding one)."""
    path = Path(path)
    layout = sniff(path)
    if layout.format == "gguf":
        from vita.checkpoint.gguf import read_gguf

        return read_gguf(layout.path)
    if layout.format == "vita":
        return VitaConfig.from_dict(dict(layout.config)), TensorReader.from_dir(path), Tokenizer.from_dir(path)
    if layout.format == "vita1":
        from vita.checkpoint.vita1 import read_vita1

        return read_vita1(path)
    if layout.format == "vita15":
        from vita.checkpoint.vita15 import read_vita15

        return read_vita15(path)
    from vita.checkpoint.hf_dir import config_from_hf_dir
    from vita.checkpoint.hf_llm import llm_keymap

    tokenizer = Tokenizer.from_dir(path)
    config = config_from_hf_dir(layout.config, tokenizer, str(path / "config.json"))
    view = RenamedView()
    view.add(TensorReader.from_dir(path), llm_keymap(config.llm), str(path))
    return config, view, tokenizer


class _Cast(Mapping[str, torch.Tensor]):
    """`tensors` read in `dtype` (None: as stored; CMVN statistics stay float32): a `LazyTensors` itself."""

    def __init__(self, tensors: Tensors, dtype: torch.dtype | None) -> None:
        self.tensors, self.dtype = tensors, dtype

    def shape(self, name: str) -> tuple[int, ...]:
        return tensor_shape(self.tensors, name)

    def __getitem__(self, name: str) -> torch.Tensor:
        t = self.tensors[name]
        if self.dtype is None or not t.is_floating_point() or keeps_fp32(name):
            return t
        return t.to(self.dtype)

    def __iter__(self):
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)


def save_canonical(config: VitaConfig, tensors: Tensors, tokenizer: Tokenizer,
                   dst: str | Path) -> Path:
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    write_tensors(dst, tensors, metadata={"format_vita": "1"})
    config.save(dst / "config.json")
    tokenizer.save(dst)
    return dst


def convert(src: str | Path, dst: str | Path, *, to: str = "vita", dtype: str | None = None) -> Path:
    """Convert `src` (any supported layout) to `to` = "vita" (ours) or "vita1" (official) at `dst`."""
    if Path(dst).exists() and any(Path(dst).iterdir()):
        raise CheckpointError(f"{dst}: destination exists and is not empty (refusing to overwrite)")
    config, tensors, tokenizer = read_any(src)
    check_shapes({n: tensor_shape(tensors, n) for n in tensors}, expected_shapes(config), source=str(src))
    cast = _Cast(tensors, resolve_dtype(dtype) if dtype else None)
    if to == "vita":
        out = save_canonical(config, cast, tokenizer, dst)
    elif to == "vita1":
        from vita.checkpoint.vita1 import export_vita1

        out = export_vita1(config, cast, tokenizer, dst)
    elif to == "vita15":
        from vita.checkpoint.vita15 import export_vita15

        out = export_vita15(config, cast, tokenizer, dst)
    else:
        raise CheckpointError(f"unknown target layout {to!r} (use 'vita', 'vita1' or 'vita15')")
    _copy_speech_decoder(Path(src), out)
    return out


def _copy_speech_decoder(src: Path, dst: Path) -> None:
    """VITA-1.5's speech decoder (`vita_tts_ckpt/`, its own files) travels with the model, whatever the layout."""
    from vita.checkpoint.vita15_tts import TTS_FOLDER

    if src.is_dir() and (src / TTS_FOLDER).is_dir():
        shutil.copytree(src / TTS_FOLDER, dst / TTS_FOLDER)
