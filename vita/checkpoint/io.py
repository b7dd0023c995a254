"""Reading and writing tensors: safetensors files, sharded with an index, memory-mapped.

Tensors are read one at a time (`TensorReader.get`) so a loader can cast and place each tensor before the next
is touched: peak memory stays close to one copy of the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vita.errors import CheckpointError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


class TensorReader(Mapping[str, torch.Tensor]):
    """A read-only mapping name -> tensor over one safetensors file or a sharded set with an index (a
    `vita.checkpoint.lazy.LazyTensors`: shapes come from the headers)."""

    def __init__(self, files: dict[str, Path]) -> None:
        self._where = files  # tensor name -> file holding it
        self._handles: dict[Path, object] = {}

    @classmethod
    def from_dir(cls, path: str | Path) -> TensorReader:
        path = Path(path)
        if (path / INDEX_NAME).is_file():
            try:
                index = json.loads((path / INDEX_NAME).read_text())
                weight_map = index["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{path / INDEX_NAME}: not a valid safetensors index ({exc})") from None
            missing = sorted({f for f in weight_map.values() if not (path / f).is_file()})
            if missing:
                raise CheckpointError(f"{path}: shard(s) listed in {INDEX_NAME} are missing: {', '.join(missing)}")
            reader = cls({name: path / f for name, f in weight_map.items()})
            for file in sorted(set(reader._where.values())):  # the index must describe the shards truthfully
                listed = {n for n, f in reader._where.items() if f == file}
                actual = set(reader._open(file).keys())
                if listed != actual:
                    extra = sorted(actual - listed)[:3] or sorted(listed - actual)[:3]
                    raise CheckpointError(f"{file}: shard contents disagree with {INDEX_NAME} (e.g. {extra})")
            return reader
        if (path / SINGLE_NAME).is_file():
            return cls.from_file(path / SINGLE_NAME)
        raise CheckpointError(f"{path}: no {SINGLE_NAME} or {INDEX_NAME}")

    @classmethod
    def from_file(cls, file: str | Path) -> TensorReader:
        file = Path(file)
        reader = cls({})
        reader._where = dict.fromkeys(reader._open(file).keys(), file)
        return reader

    def _open(self, file: Path):
        if file not in self._handles:
            try:
                self._handles[file] = safe_open(str(file), framework="pt")
            except Exception as exc:  # safetensors raises its own error types for truncated/corrupt headers
                raise CheckpointError(f"{file}: cannot read safetensors file ({exc})") from None
        return self._handles[file]

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            file = self._where[name]
        except KeyError:
            raise KeyError(name) from None
        try:
            return self._open(file).get_tensor(name)
        except Exception as exc:
            raise CheckpointError(f"{file}: cannot read tensor '{name}' ({exc})") from None

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._open(self._where[name]).get_slice(name).get_shape())

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def write_tensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], *, max_shard_bytes: int = 5 * 2**30,
    metadata: dict[str, str] | None = None,
) -> list[Path]:
    """Write `model.safetensors`, or shards + `model.safetensors.index.json` when larger than `max_shard_bytes`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t.cpu()
        size += nbytes
    meta = {"format": "pt", **(metadata or {})}
    if len(shards) == 1:
        save_file(shards[0], str(path / SINGLE_NAME), metadata=meta)
        return [path / SINGLE_NAME]
    files, weight_map, total = [], {}, 0
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path / name), metadata=meta)
        files.append(path / name)
        for key, t in shard.items():
            weight_map[key] = name
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return files
