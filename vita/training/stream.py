"""The data side of the loop: a resumable stream of micro-batches over `vita.training.data.iter_samples`.

Each rank reads its own shard; its position is (epoch, samples consumed in that epoch), stored in every checkpoint
and handed back to `iter_samples(start=...)` on resume, so a resumed run sees exactly the samples the uninterrupted
run would have seen. At the end of a shard the stream moves on to the next epoch, so ranks never run dry mid-step.

`tiny:NAME` source paths resolve to the synthetic tiny dataset (`write_tiny_dataset`), written once per output dir.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from vita.errors import TrainingError
from vita.processor import Processor
from vita.training.data import Batch, DataConfig, TrainSample, collate, iter_samples

TINY_SCHEME = "tiny:"


def uses_tiny_data(cfg: DataConfig) -> bool:
    return any(s.path.startswith(TINY_SCHEME) for s in cfg.sources)


def write_tiny(root: Path) -> None:
    """Write the tiny dataset under `root` once (main rank, before the others call `resolve_tiny`)."""
    if (root / ".parts").is_file():
        return
    from vita.datasets.tiny import write_tiny_dataset

    parts = write_tiny_dataset(root, seed=0)
    (root / ".parts").write_text("\n".join(f"{k}\t{v}" for k, v in parts.items()) + "\n")


def resolve_tiny(cfg: DataConfig, root: Path) -> DataConfig:
    """Replace `tiny:NAME` paths by files of the tiny dataset written under `root` by `write_tiny`."""
    if not uses_tiny_data(cfg):
        return cfg
    parts = dict(line.split("\t", 1) for line in (root / ".parts").read_text().splitlines() if line)
    sources = []
    for s in cfg.sources:
        if s.path.startswith(TINY_SCHEME):
            name = s.path[len(TINY_SCHEME):]
            if name not in parts:
                raise TrainingError(f"data source {s.path!r}: the tiny dataset has no part {name!r} "
                                    f"(parts: {', '.join(parts)})")
            s = dataclasses.replace(s, path=str(parts[name]))
        sources.append(s)
    return dataclasses.replace(cfg, sources=sources)


class DataStream:
    def __init__(self, cfg: DataConfig, processor: Processor, *, rank: int, world_size: int, pad_id: int,
                 epoch: int = 0, position: int = 0) -> None:
        self.cfg, self.processor = cfg, processor
        self.rank, self.world_size, self.pad_id = rank, world_size, pad_id
        self.epoch, self.position = epoch, position
        self._it: Iterator[TrainSample] | None = None

    def _open(self) -> Iterator[TrainSample]:
        return iter_samples(self.cfg, self.processor, rank=self.rank, world_size=self.world_size,
                            epoch=self.epoch, start=self.position)

    def next_sample(self) -> TrainSample:
        for _ in range(2):
            if self._it is None:
                self._it = self._open()
            try:
                sample = next(self._it)
            except StopIteration:
                self._it = None
                if self.position == 0:
                    break
                self.epoch, self.position = self.epoch + 1, 0
                continue
            self.position += 1
            return sample
        raise TrainingError(f"rank {self.rank}: the data yields no usable sample "
                            f"(sources: {', '.join(s.path for s in self.cfg.sources)})")

    def next_batch(self, size: int) -> Batch:
        return collate([self.next_sample() for _ in range(size)], self.pad_id)


def count_samples(cfg: DataConfig, processor: Processor, *, rank: int, world_size: int) -> int:
    """Samples in this rank's shard of one epoch (a full pass: used only for `schedule.epochs`)."""
    return sum(1 for _ in iter_samples(cfg, processor, rank=rank, world_size=world_size, epoch=0, start=0))
