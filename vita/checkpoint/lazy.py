"""Tensors read on demand: the protocol every reader satisfies, and the one renaming view over them.

Readers (`io.TensorReader` for safetensors, `gguf.GGUFTensors`, the mini parts' `_Merged`) are `LazyTensors`: a
read-only name -> tensor mapping that knows a tensor's shape without reading its data. Eager sources (the dicts of
`ct2`, `internvit`, `dinov2`, a `final.pt`) are plain mappings; `tensor_shape` reads either kind. A format maps its
names to ours through a `RenamedView`, strictly, and hands the view to `vita.checkpoint.materialize`:

    reader (file names) -- RenamedView(keymap) --> lazy tensors (our names) -- materialize --> VitaModel
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

import torch

from vita.checkpoint.keymap import compile_pattern, map_key
from vita.errors import CheckpointError


@runtime_checkable
class LazyTensors(Protocol):
    """A read-only name -> tensor mapping whose shapes are known without reading the data."""

    def __getitem__(self, name: str, /) -> torch.Tensor: ...

    def __iter__(self) -> Iterator[str]: ...

    def __len__(self) -> int: ...

    def shape(self, name: str) -> tuple[int, ...]: ...


Tensors = LazyTensors | Mapping[str, torch.Tensor]  # what a loader accepts: lazy, or already in memory


def tensor_shape(tensors: Tensors, name: str) -> tuple[int, ...]:
    """The shape of `tensors[name]`, without reading it where `tensors` is lazy."""
    if isinstance(tensors, LazyTensors):
        return tuple(tensors.shape(name))
    return tuple(tensors[name].shape)


class RenamedView(Mapping[str, torch.Tensor]):
    """Our name -> the tensor of a source under its own name, read only when asked for (a `LazyTensors`).

    `add` maps every name of a source through a key map (`vita.checkpoint.keymap`): a name no pattern matches, or
    two names mapping to one of ours, is a `CheckpointError`; a pattern mapped to None drops the tensor on purpose.
    """

    def __init__(self) -> None:
        self._src: dict[str, tuple[Tensors, str]] = {}
        self._rows: dict[str, int] = {}  # vocabulary truncation (the official resize to len(tokenizer))

    def add(self, source: Tensors, keymap: Mapping[str, str | None], label: str) -> None:
        """Map every tensor of `source` (named `label` in errors) into this view."""
        compiled = [(s, compile_pattern(s)) for s in keymap]
        unknown = []
        for key in source:
            try:
                ours = map_key(key, keymap, compiled)
            except KeyError:
                unknown.append(key)
                continue
            if ours is not None:
                if ours in self._src:
                    raise CheckpointError(f"{label}: two tensors map to '{ours}'")
                self._src[ours] = (source, key)
        if unknown:
            raise CheckpointError(f"{label}: {len(unknown)} unknown tensor(s): {', '.join(sorted(unknown)[:10])}")

    def truncate_rows(self, name: str, rows: int) -> None:
        """Read only the first `rows` rows of `name` (an embedding cut to the tokenizer's size)."""
        self._rows[name] = rows

    def shape(self, name: str) -> tuple[int, ...]:
        source, key = self._src[name]
        shape = tensor_shape(source, key)
        return (min(shape[0], self._rows[name]), *shape[1:]) if name in self._rows else shape

    def __getitem__(self, name: str) -> torch.Tensor:
        source, key = self._src[name]
        t = source[key]
        return t[: self._rows[name]] if name in self._rows else t

    def __iter__(self) -> Iterator[str]:
        return iter(self._src)

    def __len__(self) -> int:
        return len(self._src)
