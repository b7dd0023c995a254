"""CTranslate2 `model.bin` reader (no ctranslate2 at run time) and the Whisper encoder key map onto ours.

File layout (binary version 6, as `ctranslate2/specs/model_spec.py` writes it; little-endian):

    u32 version | str spec_name | u32 spec_revision | u32 n_vars
    n_vars x { str name | u8 rank | rank x u32 dims | u8 dtype | u32 nbytes | nbytes raw }
    u32 n_aliases | n_aliases x { str alias | str target }                    str = u16 (len + 1) | utf-8 | NUL

dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16. Quantized weights come with a float32
`<name>_scale`: int8 scales are per output row (q = rint(w * scale[:, None]), conv weights flattened to rows),
int16 a single scale; `dequantize` divides them back out. float16 / bfloat16 weights are cast to float32.

Whisper encoder (WhisperSpec revision 3) -> `vita.models.whisper.WhisperEncoder` names, `ENCODER_KEYMAP`:
the fused self-attention `linear_0` [3D, D] is split into q / k / v rows; its k bias slice is dropped (CT2 stores
zeros; any key bias adds the same q.b to every score of a query, so softmax ignores it). `decoder/...` tensors
are deliberately dropped; anything else unknown, missing or mis-shaped is an error naming it.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vita.checkpoint.keymap import check_shapes, compile_pattern
from vita.config import WhisperConfig
from vita.errors import CheckpointError

__all__ = [
    "DROPPED_PREFIXES",
    "ENCODER_KEYMAP",
    "Ct2Model",
    "dequantize",
    "load_ct2_whisper_encoder",
    "map_ct2",
    "map_whisper_encoder",
    "read_ct2",
    "whisper_encoder_config",
]

BINARY_VERSION = 6
WHISPER_SPEC, WHISPER_REVISIONS = "WhisperSpec", (3,)
# id -> (name, numpy dtype used to read the bytes, torch dtype); bfloat16 is read as int16 and reinterpreted.
_DTYPES: dict[int, tuple[str, np.dtype, torch.dtype]] = {
    0: ("float32", np.dtype("<f4"), torch.float32),
    1: ("int8", np.dtype("i1"), torch.int8),
    2: ("int16", np.dtype("<i2"), torch.int16),
    3: ("int32", np.dtype("<i4"), torch.int32),
    4: ("float16", np.dtype("<f2"), torch.float16),
    5: ("bfloat16", np.dtype("<i2"), torch.bfloat16),
}
_MAX_RANK = 8

# CT2 encoder name -> ours; a tuple splits the tensor into equal row blocks (None: that block is dropped).
ENCODER_KEYMAP: dict[str, str | tuple[str | None, ...] | None] = {
    "encoder/num_heads": None,  # metadata: read into the config
    "encoder/conv1/weight": "conv1.weight",
    "encoder/conv1/bias": "conv1.bias",
    "encoder/conv2/weight": "conv2.weight",
    "encoder/conv2/bias": "conv2.bias",
    "encoder/position_encodings/encodings": "positions",
    "encoder/layer_{}/self_attention/layer_norm/gamma": "blocks.{}.attn_norm.weight",
    "encoder/layer_{}/self_attention/layer_norm/beta": "blocks.{}.attn_norm.bias",
    "encoder/layer_{}/self_attention/linear_0/weight": (
        "blocks.{}.attn.q_proj.weight", "blocks.{}.attn.k_proj.weight", "blocks.{}.attn.v_proj.weight"),
    "encoder/layer_{}/self_attention/linear_0/bias": ("blocks.{}.attn.q_proj.bias", None, "blocks.{}.attn.v_proj.bias"),
    "encoder/layer_{}/self_attention/linear_1/weight": "blocks.{}.attn.o_proj.weight",
    "encoder/layer_{}/self_attention/linear_1/bias": "blocks.{}.attn.o_proj.bias",
    "encoder/layer_{}/ffn/layer_norm/gamma": "blocks.{}.ffn_norm.weight",
    "encoder/layer_{}/ffn/layer_norm/beta": "blocks.{}.ffn_norm.bias",
    "encoder/layer_{}/ffn/linear_0/weight": "blocks.{}.ffn.up.weight",
    "encoder/layer_{}/ffn/linear_0/bias": "blocks.{}.ffn.up.bias",
    "encoder/layer_{}/ffn/linear_1/weight": "blocks.{}.ffn.down.weight",
    "encoder/layer_{}/ffn/linear_1/bias": "blocks.{}.ffn.down.bias",
    "encoder/layer_norm/gamma": "final_norm.weight",
    "encoder/layer_norm/beta": "final_norm.bias",
}
DROPPED_PREFIXES = ("decoder/",)  # the text decoder: not part of an audio encoder


@dataclass
class Ct2Model:
    """A parsed `model.bin`: variables keep their stored dtypes (see `dequantize`)."""

    path: str
    version: int
    spec: str
    revision: int
    variables: dict[str, torch.Tensor]
    aliases: dict[str, str]


class _Cursor:
    """Bounds-checked little-endian reads over the file's bytes."""

    def __init__(self, data: mmap.mmap | bytes, source: str) -> None:
        self.data, self.source, self.offset = data, source, 0

    def take(self, size: int, what: str) -> int:
        start = self.offset
        if start + size > len(self.data):
            raise CheckpointError(
                f"{self.source}: truncated file: {what} needs {size} bytes at offset {start}, "
                f"the file has {len(self.data)}"
            )
        self.offset += size
        return start

    def unpack(self, fmt: str, what: str) -> int:
        start = self.take(struct.calcsize(fmt), what)
        return struct.unpack_from("<" + fmt, self.data, start)[0]

    def string(self, what: str) -> str:
        size = self.unpack("H", what)
        start = self.take(size, what)
        raw = bytes(self.data[start : start + size])
        if size == 0 or raw[-1] != 0:
            raise CheckpointError(f"{self.source}: corrupt {what} at offset {start} (no NUL terminator)")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{self.source}: corrupt {what} at offset {start} (not UTF-8)") from None


def read_ct2(path: str | Path) -> Ct2Model:
    """Parse a CTranslate2 `model.bin` (a file, or a model folder holding one), strictly."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such CTranslate2 model file")
    source = str(path)
    with open(path, "rb") as f:
        size = path.stat().st_size
        data: mmap.mmap | bytes = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    try:
        cur = _Cursor(data, source)
        version = cur.unpack("I", "the binary version")
        if version != BINARY_VERSION:
            raise CheckpointError(
                f"{source}: CTranslate2 binary version {version} is not supported (this reader knows version "
                f"{BINARY_VERSION}); is it a CTranslate2 model.bin at all?"
            )
        spec = cur.string("the spec name")
        revision = cur.unpack("I", "the spec revision")
        variables: dict[str, torch.Tensor] = {}
        for index in range(cur.unpack("I", "the variable count")):
            name = cur.string(f"the name of variable #{index}")
            rank = cur.unpack("B", f"the rank of '{name}'")
            if rank > _MAX_RANK:
                raise CheckpointError(f"{source}: variable '{name}' has rank {rank} (corrupt file?)")
            shape = tuple(cur.unpack("I", f"the shape of '{name}'") for _ in range(rank))
            type_id = cur.unpack("B", f"the dtype of '{name}'")
            if type_id not in _DTYPES:
                raise CheckpointError(f"{source}: variable '{name}' has unknown dtype id {type_id} "
                                      f"(known: {', '.join(f'{k} {v[0]}' for k, v in _DTYPES.items())})")
            dname, np_dtype, torch_dtype = _DTYPES[type_id]
            nbytes = cur.unpack("I", f"the size of '{name}'")
            count = int(np.prod(shape, dtype=np.int64))
            if nbytes != count * np_dtype.itemsize:
                raise CheckpointError(f"{source}: variable '{name}' {dname}{list(shape)} should take "
                                      f"{count * np_dtype.itemsize} bytes, the file says {nbytes}")
            start = cur.take(nbytes, f"the data of '{name}'")
            array = np.frombuffer(data, dtype=np_dtype, count=count, offset=start).copy().reshape(shape)
            tensor = torch.from_numpy(array)
            variables[name] = tensor.view(torch.bfloat16) if torch_dtype == torch.bfloat16 else tensor
        aliases = {}
        for index in range(cur.unpack("I", "the alias count")):
            alias = cur.string(f"alias #{index}")
            aliases[alias] = cur.string(f"the target of alias '{alias}'")
        if cur.offset != len(data):
            raise CheckpointError(f"{source}: {len(data) - cur.offset} unexpected trailing bytes after the aliases")
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    return Ct2Model(source, version, spec, revision, variables, aliases)


def dequantize(variables: Mapping[str, torch.Tensor], *, source: str = "model.bin") -> dict[str, torch.Tensor]:
    """Float variables as float32, quantized ones divided by their `_scale` (consumed); other ints unchanged."""
    out: dict[str, torch.Tensor] = {}
    for name, value in variables.items():
        if name.endswith("_zero"):
            raise CheckpointError(f"{source}: '{name}': zero-point (AWQ-style) quantization is not supported")
        if name.endswith("_scale"):
            if name[: -len("_scale")] not in variables:
                raise CheckpointError(f"{source}: scale '{name}' has no quantized variable")
            continue
        scale = variables.get(name + "_scale")
        if scale is None:
            out[name] = value.float() if value.is_floating_point() else value
        elif value.dtype == torch.int8:  # one scale per output row
            if scale.numel() != value.shape[0]:
                raise CheckpointError(f"{source}: '{name}_scale' has {scale.numel()} values for {value.shape[0]} rows")
            out[name] = value.float() / scale.float().reshape(-1, *([1] * (value.dim() - 1)))
        elif value.dtype == torch.int16:  # one scale for the tensor
            if scale.numel() != 1:
                raise CheckpointError(f"{source}: int16 '{name}' needs one scale, got {scale.numel()}")
            out[name] = value.float() / scale.float().reshape(())
        else:
            raise CheckpointError(f"{source}: '{name}' has a scale but dtype {value.dtype} (expected int8 or int16)")
    return out


def _layer_count(variables: Mapping[str, torch.Tensor]) -> int:
    layers = {int(name.split("/")[1][len("layer_"):]) for name in variables
              if name.startswith("encoder/layer_") and name.split("/")[1][len("layer_"):].isdigit()}
    if layers != set(range(len(layers))):
        raise CheckpointError(f"encoder layers are not numbered 0..n-1: {sorted(layers)}")
    return len(layers)


def whisper_encoder_config(variables: Mapping[str, torch.Tensor], *, source: str = "model.bin") -> WhisperConfig:
    """Encoder sizes read off the tensors (the file has no config for them)."""
    need = ("encoder/num_heads", "encoder/conv1/weight", "encoder/position_encodings/encodings",
            "encoder/layer_0/ffn/linear_0/weight")
    missing = [n for n in need if n not in variables]
    if missing:
        raise CheckpointError(f"{source}: not a Whisper encoder: missing {', '.join(missing)}")
    hidden, mels, _ = variables["encoder/conv1/weight"].shape
    return WhisperConfig(
        input_dim=mels,
        hidden_size=hidden,
        num_heads=int(variables["encoder/num_heads"]),
        intermediate_size=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        num_layers=_layer_count(variables),
        max_positions=variables["encoder/position_encodings/encodings"].shape[0],
        logmel={"num_mel_bins": mels},
    )


def map_ct2(
    tensors: Mapping[str, torch.Tensor],
    keymap: Mapping[str, str | tuple[str | None, ...] | None],
    expected: Mapping[str, torch.Size],
    *,
    source: str,
    what: str,
    skip: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """Dequantized CT2 tensors -> a state dict through `keymap` (`{}` = a layer index; a tuple splits the tensor into
    equal row blocks, None drops one), strictly: names under `skip` are ignored, any other unknown, missing or
    mis-shaped tensor is an error naming it."""
    compiled = [(src, compile_pattern(src)) for src in keymap]
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for name, value in tensors.items():
        if skip and name.startswith(skip):
            continue
        match = next(((src, m) for src, regex in compiled if (m := regex.match(name))), None)
        if match is None:
            unknown.append(name)
            continue
        src, m = match
        target = keymap[src]
        if target is None:
            continue
        if not value.is_floating_point():
            raise CheckpointError(f"{source}: '{name}' is {value.dtype}, expected a float tensor")
        targets = target if isinstance(target, tuple) else (target,)
        if value.shape[0] % len(targets):
            raise CheckpointError(f"{source}: '{name}' {list(value.shape)} does not split into {len(targets)} parts")
        for dst, part in zip(targets, value.chunk(len(targets)) if len(targets) > 1 else (value,), strict=True):
            if dst is not None:
                out[dst.format(*m.groups())] = part.contiguous()
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} unknown {what} tensor(s): {', '.join(sorted(unknown)[:10])}")
    check_shapes({n: tuple(t.shape) for n, t in out.items()}, expected, source=source)
    return out


def map_whisper_encoder(
    tensors: Mapping[str, torch.Tensor], config: WhisperConfig, *, source: str = "model.bin"
) -> dict[str, torch.Tensor]:
    """Dequantized CT2 Whisper tensors -> our `WhisperEncoder` state dict, strictly (decoder dropped)."""
    from vita.models.whisper import WhisperEncoder

    with torch.device("meta"):
        expected = {n: t.shape for n, t in WhisperEncoder(config).state_dict().items()}
    return map_ct2(tensors, ENCODER_KEYMAP, expected, source=source, what="encoder", skip=DROPPED_PREFIXES)


def load_ct2_whisper_encoder(
    folder: str | Path, *, dtype: torch.dtype = torch.float32, prefix: str = ""
) -> tuple[WhisperConfig, dict[str, torch.Tensor]]:
    """A CT2 Whisper folder (or its model.bin) -> (encoder config, state dict in our names, `prefix` prepended).

    `prefix="audio_encoder."` gives the names inside a `VitaModel`. Weights are dequantized, then cast to `dtype`.
    """
    model = read_ct2(folder)
    if model.spec != WHISPER_SPEC or model.revision not in WHISPER_REVISIONS:
        raise CheckpointError(f"{model.path}: spec {model.spec} revision {model.revision} is not a supported "
                              f"Whisper model ({WHISPER_SPEC} revision {', '.join(map(str, WHISPER_REVISIONS))})")
    kept = {n: t for n, t in model.variables.items() if not n.startswith(DROPPED_PREFIXES)}  # decoder: dropped
    tensors = dequantize(kept, source=model.path)
    config = whisper_encoder_config(tensors, source=model.path)
    state = map_whisper_encoder(tensors, config, source=model.path)
    return config, {prefix + name: t.to(dtype) for name, t in state.items()}
