"""The data side of the loop: a resumable stream of micro-batches over `vita.training.data.iter_samples`.

Each rank reads its own shard; its position is (epoch, samples consumed in that epoch), stored in every checkpoint
and handed back to `iter_samples(start=...)` on resume, so a resumed run sees exactly the samples the uninterrupted
run would have seen. At the end of a shard the stream moves on to the next epoch, so ranks never run dry mid-step.

Source paths that name a generated dataset (`tiny:NAME`) become files once per run folder: `write_data` on one
process, then `concrete_data` on every one (the schemes and their writers are `vita.datasets.generated`'s).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from vita.datasets.generated import resolve_generated, write_generated
from vita.errors import TrainingError
from vita.processor import Processor
from vita.training.data import Batch, DataConfig, TrainSample, collate, iter_samples


def write_data(cfg: DataConfig, out: Path) -> None:
    """Write the generated datasets `cfg`'s sources name (`vita.datasets.generated`) under the run folder `out`.

    One process, before the others call `concrete_data`.
    """
    write_generated([s.path for s in cfg.sources], out)


def concrete_data(cfg: DataConfig, out: Path) -> DataConfig:
    """`cfg` with each generated-dataset source (`tiny:NAME`) replaced by the file `write_data` wrote for it."""
    paths = resolve_generated([s.path for s in cfg.sources], out)
    if paths == [s.path for s in cfg.sources]:
        return cfg
    sources = [dataclasses.replace(s, path=p) for s, p in zip(cfg.sources, paths, strict=True)]
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
