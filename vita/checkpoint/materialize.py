"""Turn tensors in our names into a `VitaModel`: every format's reader ends here (`materialize`), and so does our
canonical layout (`load_canonical`).

The model is built on the meta device and every tensor is assigned from the (memory-mapped, or lazily mapped)
source after a strict name and shape check, so peak memory is about one copy of the weights in the target dtype.
This module imports no format reader: the readers import it, and `vita.checkpoint.load` dispatches between them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from vita.checkpoint.io import TensorReader
from vita.checkpoint.keymap import check_shapes
from vita.checkpoint.lazy import Tensors, tensor_shape
from vita.checkpoint.quantized import quantize_model_, read_quantization
from vita.config import VitaConfig
from vita.errors import CheckpointError, ConfigError
from vita.models.vita import VitaModel
from vita.tokenizer import Tokenizer

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of fp32, bf16, fp16") from None


def materialize(
    config: VitaConfig,
    tensors: Tensors,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    source: str = "checkpoint",
    keep_fp32: Callable[[str], bool] | None = None,
    prepare: Callable[[VitaModel], object] | None = None,
) -> VitaModel:
    """Build the model on meta and assign every tensor of `tensors` (our names) after a strict check.

    `tensors` may be lazy (`vita.checkpoint.lazy.LazyTensors`): each tensor is read, cast and placed in turn.
    Tensors for which `keep_fp32(name)` is true stay in float32 (e.g. normalisation statistics). `prepare` reshapes
    the meta model before the check (e.g. swaps in quantized layers); the quantized weights and scales it adds
    keep the dtype stored in the file.
    """
    with torch.device("meta"):
        model = VitaModel(config)
        if prepare is not None:
            prepare(model)
    expected = {name: t.shape for name, t in model.state_dict().items()}
    quantized = (".qweight", ".scale", ".offset")
    stored = {name for name in expected if name.endswith(quantized)} if prepare is not None else set()
    check_shapes({name: tensor_shape(tensors, name) for name in tensors}, expected, source=source)
    state = {}
    for name in expected:
        t = tensors[name]
        target = torch.float32 if (keep_fp32 and keep_fp32(name)) or not t.is_floating_point() else dtype
        target = t.dtype if name in stored else target
        state[name] = t.to(device=device, dtype=target if t.is_floating_point() else t.dtype)
    model.load_state_dict(state, strict=True, assign=True)
    _finish(model, device)
    return model.eval()


def load_canonical(path: Path, *, dtype: torch.dtype, device: str | torch.device) -> tuple[VitaModel, Tokenizer]:
    try:
        config = VitaConfig.load(path / "config.json")
    except TypeError as exc:  # unknown or missing field in a nested config
        raise CheckpointError(f"{path / 'config.json'}: {exc}") from None
    spec = read_quantization(path)
    prepare = None if spec is None else (
        lambda m: quantize_model_(m, spec["bits"], head=spec["head"], group=spec["group"]))
    model = materialize(config, TensorReader.from_dir(path), dtype=dtype, device=device, source=str(path),
                        keep_fp32=keeps_fp32, prepare=prepare)
    return model, Tokenizer.from_dir(path)


def keeps_fp32(name: str) -> bool:
    """CMVN statistics stay float32 whatever the model dtype (fp16 cannot hold them precisely)."""
    return name.endswith(("cmvn.mean", "cmvn.istd"))


def _finish(model: VitaModel, device: str | torch.device) -> None:
    """Recreate derived buffers (not in checkpoints) on the real device and fail loudly if any stayed on meta."""
    for module in model.modules():
        hook = getattr(module, "init_derived_buffers", None)
        if callable(hook):
            hook(device)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"tensors left unset after loading: {', '.join(left[:5])}")
