"""A training recipe: one YAML file per stage, parsed into typed dataclasses, strictly.

Stages differ only in data: the init checkpoint, the `trainable:` glob spec, the data mixture and the optimizer /
schedule. Sections (every key is checked; an unknown or mistyped key is an error naming the key and the file):

    name: stage1_vision_align          # free text, shown in logs
    model:     {init: DIR | PRESET, dtype: fp32 | bf16}
    trainable: {"*": false, "vision_projector.*": true}   # fnmatch globs over parameter names, last match wins
    lora:      {targets: ["llm.layers.*.attention.w[qv]"], r: 8, alpha: 16, dropout: 0.0}   # optional
    data:      vita.training.data.DataConfig (sources, max_length, packing, on_error, seed)
    optim:     {lr: 2.0e-5, betas: [0.9, 0.999], eps: 1.0e-8, weight_decay: 0.0, grad_clip: 1.0,
                lr_scale: {"vision_projector.*": 0.1}}   # lr multipliers by parameter glob, last match wins
    schedule:  {kind: cosine, warmup_ratio: 0.03, total_steps: N | epochs: E, min_lr_ratio: 0.0}
    batch:     {micro_batch_size: 8, grad_accum: 2 | global_batch_size: 128}
    precision: fp32 | bf16             # bf16 = autocast; master weights and optimizer state stay in model.dtype
    gradient_checkpointing: true       # torch.utils.checkpoint around every LLM block
    encoder_cache_gb: 4                # memo of FROZEN encoders' outputs (vita.models.encoder_cache); 0: off
    encoder_cache_dir: DIR             # with it: audio encodings and Whisper's transcripts also kept in DIR for later
                                       # runs on the same data and frozen weights (bit-identical either way)
    checkpoint: {every: 500, keep_last: 2}
    seed: 42
    distributed: ddp | fsdp

Strings may use `${VAR}` (environment variables; unset is an error). A data source path `tiny:NAME` names a part
of the synthetic tiny dataset (`vita.datasets.generated`), written under the output directory on first use, so
`recipes/tiny/*.yaml` run anywhere with no set-up.

Overrides are `dotted.key=value` strings; the value is parsed as YAML (`optim.lr=1e-4`, `lora=null`,
`data.sources.0.weight=2`) and then type-checked like the file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from vita.errors import TrainingError, VitaError
from vita.training.data import DataConfig


@dataclass
class ModelSpec:
    init: str  # checkpoint directory (any layout `vita.load` reads) or preset name
    dtype: Literal["fp32", "bf16"] = "fp32"  # dtype of the trained (master) weights


@dataclass
class LoraSpec:
    targets: list[str]  # fnmatch globs over nn.Linear module names, e.g. "llm.layers.*.attention.wq"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0  # on the adapter's input only (see vita.training.lora)


@dataclass
class OptimSpec:
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global L2 norm of the gradients; 0 = off
    # fnmatch globs over parameter names -> multiplier of lr (the schedule scales every group alike); the last
    # matching glob wins, an unmatched parameter keeps 1.0, a glob matching no trainable parameter is an error
    lr_scale: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.lr_scale.items() if not v >= 0}
        if bad:
            raise ValueError(f"lr_scale: multipliers must be >= 0, got {bad}")


@dataclass
class ScheduleSpec:
    kind: Literal["cosine", "constant"] = "cosine"
    warmup_ratio: float = 0.03  # linear warm-up over ceil(ratio * total) steps, from 0 (as HF Trainer)
    total_steps: int | None = None  # optimizer steps; exactly one of total_steps / epochs
    epochs: float | None = None  # passes over the (smallest) rank shard of the data
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of optim.lr


@dataclass
class BatchSpec:
    micro_batch_size: int = 1  # samples per rank per forward
    grad_accum: int | None = None  # micro-batches per optimizer step; or derived from global_batch_size
    global_batch_size: int | None = None  # samples per optimizer step over all ranks

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per step on each rank, so that micro * accum * world = global."""
        per_step = self.micro_batch_size * world_size
        if self.global_batch_size is None:
            return self.grad_accum or 1
        accum, rest = divmod(self.global_batch_size, per_step)
        if rest or accum == 0:
            raise TrainingError(
                f"batch.global_batch_size {self.global_batch_size} is not a multiple of micro_batch_size "
                f"{self.micro_batch_size} x world size {world_size}"
            )
        if self.grad_accum is not None and self.grad_accum != accum:
            raise TrainingError(
                f"batch.grad_accum {self.grad_accum} contradicts global_batch_size {self.global_batch_size} "
                f"(= {self.micro_batch_size} x {world_size} ranks x {accum})"
            )
        return accum


@dataclass
class CheckpointSpec:
    every: int = 0  # write a resumable checkpoint every N optimizer steps (0: none but the final weights)
    keep_last: int = 2  # resumable checkpoints kept (older ones are deleted)


@dataclass
class Recipe:
    model: ModelSpec
    trainable: dict[str, bool]
    data: DataConfig
    optim: OptimSpec
    name: str = ""
    lora: LoraSpec | None = None
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    batch: BatchSpec = field(default_factory=BatchSpec)
    precision: Literal["fp32", "bf16"] = "fp32"
    gradient_checkpointing: bool = False
    encoder_cache_gb: float = 0.0
    encoder_cache_dir: str | None = None
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    seed: int = 42
    distributed: Literal["ddp", "fsdp"] = "ddp"

    def __post_init__(self) -> None:
        s = self.schedule
        if (s.total_steps is None) == (s.epochs is None):
            raise TrainingError("schedule: give exactly one of total_steps and epochs")
        if s.total_steps is not None and s.total_steps <= 0:
            raise TrainingError(f"schedule.total_steps must be positive, got {s.total_steps}")
        if not 0.0 <= s.warmup_ratio < 1.0:
            raise TrainingError(f"schedule.warmup_ratio must be in [0, 1), got {s.warmup_ratio}")
        if self.batch.micro_batch_size <= 0:
            raise TrainingError(f"batch.micro_batch_size must be positive, got {self.batch.micro_batch_size}")
        if self.optim.lr <= 0:
            raise TrainingError(f"optim.lr must be positive, got {self.optim.lr}")
        if not self.trainable:
            raise TrainingError("trainable: empty spec (nothing would be trained)")
        if self.encoder_cache_gb < 0:
            raise TrainingError(f"encoder_cache_gb must be >= 0, got {self.encoder_cache_gb}")
        if self.encoder_cache_dir is not None and self.encoder_cache_gb <= 0:
            raise TrainingError("encoder_cache_dir needs encoder_cache_gb > 0 (the memo it extends)")
        if self.lora is not None and (self.lora.r <= 0 or not self.lora.targets):
            raise TrainingError("lora: needs r > 0 and at least one target glob")

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


# ---- loading ----------------------------------------------------------------------------------------------------


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe YAML, apply `key.sub=value` overrides, expand `${VAR}`, and build it strictly."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: no such recipe file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TrainingError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise TrainingError(f"{path}: a recipe is a mapping of sections, got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item, source=str(path))
    return recipe_from_dict(_expand_env(raw, str(path), ""), source=str(path))


def recipe_from_dict(raw: dict[str, Any], *, source: str = "recipe") -> Recipe:
    try:
        return build(Recipe, raw, source, "")
    except TrainingError as exc:
        msg = str(exc)
        raise TrainingError(msg if msg.startswith(source) else f"{source}: {msg}") from None


def apply_override(raw: dict[str, Any], item: str, *, source: str = "recipe") -> None:
    """Set `a.b.c=value` in the raw (not yet built) recipe; list items are addressed by index."""
    key, sep, text = item.partition("=")
    if not sep or not key or not re.fullmatch(r"[A-Za-z0-9_.*\-]+", key):
        raise TrainingError(f"bad override {item!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        raise TrainingError(f"bad override {item!r}: value is not valid YAML") from None
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = node[_index(part, node, item)]
            continue
        if not isinstance(node, dict):
            raise TrainingError(f"bad override {item!r}: {where} is not a section")
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[_index(last, node, item)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise TrainingError(f"bad override {item!r}: {'.'.join(parts[:-1])} is not a section")


def _index(part: str, node: list, item: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise TrainingError(f"bad override {item!r}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any, source: str, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, source, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, source, f"{where}.{i}") for i, v in enumerate(value)]
    if isinstance(value, str):

        def repl(m: re.Match) -> str:
            if m.group(1) not in os.environ:
                raise TrainingError(f"{source}: {where}: environment variable ${{{m.group(1)}}} is not set")
            return os.environ[m.group(1)]

        return _VAR.sub(repl, value)
    return value


# ---- a small strict builder: raw YAML values -> typed dataclasses ----------------------------------------------


def build(cls: type, raw: Any, source: str, where: str) -> Any:
    """Build dataclass `cls` from a mapping, checking every key and value type against the annotations."""
    if not isinstance(raw, dict):
        raise TrainingError(f"{source}: {where or 'recipe'}: expected a mapping, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in raw:
        if key not in fields:
            known = ", ".join(fields)
            raise TrainingError(f"{source}: unknown key '{_join(where, key)}' (known here: {known})")
    kwargs = {}
    for name, f in fields.items():
        if name in raw:
            kwargs[name] = coerce(hints[name], raw[name], source, _join(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TrainingError(f"{source}: missing key '{_join(where, name)}'")
    try:
        return cls(**kwargs)
    except TrainingError:
        raise
    except (VitaError, ValueError, TypeError) as exc:  # a section's own validation
        raise TrainingError(f"{source}: {where or 'recipe'}: {exc}") from None


def coerce(tp: Any, value: Any, source: str, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, source, where)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise TrainingError(f"{source}: {where}: must not be null")
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(arg, value, source, where)
            except TrainingError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise TrainingError(f"{source}: {where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise TrainingError(f"{source}: {where}: expected a list, got {_show(value)}")
        return [coerce(args[0], v, source, f"{where}.{i}") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TrainingError(f"{source}: {where}: expected a list, got {_show(value)}")
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            raise TrainingError(f"{source}: {where}: expected {len(items)} items, got {len(value)}")
        return tuple(coerce(a, v, source, f"{where}.{i}") for i, (a, v) in enumerate(zip(items, value, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise TrainingError(f"{source}: {where}: expected a mapping, got {_show(value)}")
        return {coerce(args[0], k, source, where): coerce(args[1], v, source, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise TrainingError(f"{source}: {where}: expected true/false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TrainingError(f"{source}: {where}: expected an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 5e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TrainingError(f"{source}: {where}: expected a number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TrainingError(f"{source}: {where}: expected a string, got {_show(value)}")
        return value
    raise TrainingError(f"{source}: {where}: unsupported field type {tp!r}")  # a schema bug, not a user error


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "null"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
