"""Explicit key maps between foreign checkpoint layouts and ours.

A key map is a dict `{source_pattern: target_pattern}` where `{}` stands for an integer index (layer, expert).
Mapping is strict: a source key that matches no pattern, or a target key the model expects but nobody produced,
is an error naming the key. A target of `None` means "known, deliberately dropped".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

import torch

from vita.errors import CheckpointError

T = TypeVar("T")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(pattern).replace(r"\{\}", r"(\d+)") + "$")


def map_key(key: str, keymap: Mapping[str, str | None], compiled: list | None = None) -> str | None:
    """Map one key; raises KeyError when no pattern matches."""
    for src, regex in compiled or [(s, compile_pattern(s)) for s in keymap]:
        m = regex.match(key)
        if m:
            dst = keymap[src]
            return None if dst is None else dst.format(*m.groups())
    raise KeyError(key)


def map_keys(state: Mapping[str, T], keymap: Mapping[str, str | None], *, source: str = "checkpoint") -> dict[str, T]:
    """Rename every key of `state` through `keymap`; unknown keys raise `CheckpointError` naming them."""
    compiled = [(s, compile_pattern(s)) for s in keymap]
    out: dict[str, T] = {}
    unknown: list[str] = []
    for key, value in state.items():
        try:
            new = map_key(key, keymap, compiled)
        except KeyError:
            unknown.append(key)
            continue
        if new is None:
            continue
        if new in out:
            raise CheckpointError(f"{source}: two tensors map to '{new}' (one of them is '{key}')")
        out[new] = value
    if unknown:
        shown = ", ".join(sorted(unknown)[:10]) + (" ..." if len(unknown) > 10 else "")
        raise CheckpointError(f"{source}: {len(unknown)} unknown tensor(s): {shown}")
    return out


def invert(keymap: Mapping[str, str | None]) -> dict[str, str]:
    """The reverse map (dropped keys are left out)."""
    return {dst: src for src, dst in keymap.items() if dst is not None}


def check_state_dict(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    *,
    source: str = "checkpoint",
    ignore_missing: Iterable[str] = (),
) -> None:
    """Strict comparison of names and shapes; raises `CheckpointError` listing each problem by name."""
    check_shapes({n: tuple(t.shape) for n, t in state.items()}, expected, source=source,
                 ignore_missing=ignore_missing)


def check_shapes(
    shapes: Mapping[str, tuple[int, ...]],
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    *,
    source: str = "checkpoint",
    ignore_missing: Iterable[str] = (),
) -> None:
    """`check_state_dict` on shapes alone (no tensor needs to be read)."""
    problems: list[str] = []
    ignore = set(ignore_missing)
    for name in sorted(set(expected) - set(shapes) - ignore):
        problems.append(f"missing tensor '{name}' (expected shape {tuple(expected[name])})")
    for name in sorted(set(shapes) - set(expected)):
        problems.append(f"unexpected tensor '{name}' (shape {tuple(shapes[name])})")
    for name in sorted(set(shapes) & set(expected)):
        if tuple(shapes[name]) != tuple(expected[name]):
            problems.append(f"tensor '{name}' has shape {tuple(shapes[name])}, expected {tuple(expected[name])}")
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... ({len(problems)} problems)" if len(problems) > 10 else "")
        raise CheckpointError(f"{source}: {shown}")
