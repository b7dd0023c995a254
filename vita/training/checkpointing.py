"""Resumable training checkpoints, written atomically, and the final weights in our canonical layout.

    DIR/checkpoints/step_000010/
        model.safetensors   trainable tensors only (frozen ones equal the init checkpoint, which resume reloads)
        optimizer.pt        full (unsharded) AdamW state, keyed by parameter name
        state.pt            scheduler state + every rank's RNG states (torch, python, numpy)
        state.json          step, epoch and data position of every rank, tokens seen, world size, recipe
    DIR/final/              config.json + model.safetensors + tokenizer.json: `vita.load(DIR / "final")`

A checkpoint is built in `checkpoints/.tmp-step_N` and renamed into place when complete, so a kill at any moment
leaves either the previous checkpoint or the new one, never a half-written one. `torch.load` is only ever called
with `weights_only=True`.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vita.checkpoint.io import TensorReader, write_tensors
from vita.errors import TrainingError

_STEP_DIR = re.compile(r"step_(\d{6,})")


@dataclass
class Progress:
    """Where the run is: optimizer steps done and, per rank, the data stream position."""

    step: int = 0
    epochs: list[int] = field(default_factory=lambda: [0])  # per rank: current pass over its shard
    positions: list[int] = field(default_factory=lambda: [0])  # per rank: samples consumed in that pass
    tokens_seen: int = 0  # supervised tokens over all ranks
    samples_seen: int = 0


def rng_state() -> dict[str, Any]:
    """This process's RNG states, in types `torch.load(weights_only=True)` accepts."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def checkpoint_dirs(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under `root/checkpoints`, oldest first."""
    base = root / "checkpoints"
    if not base.is_dir():
        return []
    found = []
    for p in base.iterdir():
        m = _STEP_DIR.fullmatch(p.name)
        if m and p.is_dir() and (p / "state.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    dirs = checkpoint_dirs(root)
    return dirs[-1][1] if dirs else None


def clean_partial(root: Path) -> None:
    """Remove temp dirs a killed run left behind (rank 0, before anything else is written)."""
    base = root / "checkpoints"
    if base.is_dir():
        for p in base.iterdir():
            if p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(root: Path, progress: Progress, model_state: dict[str, torch.Tensor],
                    optim_state: dict[str, Any], scheduler_state: dict[str, Any], rng_states: list[dict[str, Any]],
                    meta: dict[str, Any], keep_last: int) -> Path:
    """Write one checkpoint atomically (main rank only); prune to the newest `keep_last`."""
    base = root / "checkpoints"
    base.mkdir(parents=True, exist_ok=True)
    name = f"step_{progress.step:06d}"
    tmp = base / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_tensors(tmp, model_state, metadata={"format_vita_train": "1"})
    torch.save(optim_state, tmp / "optimizer.pt")
    torch.save({"scheduler": scheduler_state, "rng": rng_states}, tmp / "state.pt")
    (tmp / "state.json").write_text(json.dumps({**asdict(progress), **meta}, indent=2) + "\n")
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    final = base / name
    if final.exists():  # the same step written by an earlier attempt
        shutil.rmtree(final)
    os.replace(tmp, final)
    for _, old in checkpoint_dirs(root)[: -max(keep_last, 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


@dataclass
class Restored:
    progress: Progress
    model_state: dict[str, torch.Tensor]
    optim_state: dict[str, Any]
    scheduler_state: dict[str, Any]
    rng_states: list[dict[str, Any]]
    meta: dict[str, Any]


def load_checkpoint(path: Path) -> Restored:
    try:
        info = json.loads((path / "state.json").read_text())
        fields = Progress.__dataclass_fields__
        progress = Progress(**{k: info[k] for k in fields})
        meta = {k: v for k, v in info.items() if k not in fields}
        reader = TensorReader.from_dir(path)
        model_state = {name: reader[name] for name in reader}
        optim_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except (OSError, KeyError, json.JSONDecodeError, RuntimeError) as exc:
        raise TrainingError(f"{path}: cannot read training checkpoint ({exc})") from None
    return Restored(progress, model_state, optim_state, state["scheduler"], state["rng"], meta)
