"""Training data: VITA-format sources -> a deterministic, sharded, resumable stream of `TrainSample`s.

    DataConfig (YAML `data:`) -- DataFile per source (JSON list or JSONL, records tagged "file:line")
      -- epoch_order(seed, epoch): the mixture's (source, record) pairs, shuffled -- [rank::world_size]
      -- build_sample (state tokens, prompt, labels; media decoded lazily, one sample at a time)
      -- packing: none | concat (merged dialogues, official estimate) | true (segment_ids)
      -- skip `start` samples -> Iterator[TrainSample] -- collate -> Batch

Mixture: each source's `weight` scales how many of its records one epoch draws (the official `data_ratio`):
round(weight x size) records, without repetition while weight <= 1 and in several reshuffled passes above 1.
The epoch is their union in one seeded shuffle, so it depends only on (seed, epoch); rank r takes positions
r, r + world_size, ... of it (a partition), and `start` resumes exactly: the stream is rebuilt and the first
`start` samples this (rank, epoch) yielded are dropped (their media are decoded again; nothing is yielded twice).

Malformed data never stops an epoch: every problem is a `DataError` whose message starts with "file:line"; with
`on_error="skip"` (default) the sample is skipped, logged and counted in `DataStats`, with "raise" it is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vita.errors import DataError
from vita.processor import Processor
from vita.training.collate import Batch, collate
from vita.training.packing import concat_groups, estimate_tokens, merge_records, system_overhead, true_pack
from vita.training.sample import TrainSample, build_sample
from vita.training.sources import Record, open_data_file

__all__ = [
    "Batch", "DataConfig", "DataStats", "SourceConfig", "TrainSample", "collate", "epoch_order", "iter_samples",
]

log = logging.getLogger(__name__)
Packing = Literal["none", "concat", "true"]


@dataclass
class SourceConfig:
    path: str  # a JSON list or JSONL file in the VITA format
    weight: float = 1.0  # records drawn per epoch = round(weight x size)
    media_root: str | None = None  # media paths are relative to this (default: the data file's folder)

    def __post_init__(self) -> None:
        if not isinstance(self.weight, (int, float)) or self.weight < 0:
            raise DataError(f"data source {self.path}: weight must be a number >= 0, got {self.weight!r}", "config")


@dataclass
class DataConfig:
    sources: list[SourceConfig]
    max_length: int = 2048
    packing: Packing = "none"
    on_error: Literal["skip", "raise"] = "skip"
    seed: int = 0
    shuffle: bool = True  # False: file order (sources one after another), still sharded by rank

    def __post_init__(self) -> None:
        if isinstance(self.sources, (str, dict, SourceConfig)):
            self.sources = [self.sources]  # type: ignore[list-item]
        self.sources = [_source(s) for s in self.sources]
        if not self.sources:
            raise DataError("data: at least one source is needed", "config")
        if not isinstance(self.max_length, int) or self.max_length <= 0:
            raise DataError(f"data: max_length must be a positive integer, got {self.max_length!r}", "config")
        if self.packing not in ("none", "concat", "true"):
            raise DataError(f"data: packing must be 'none', 'concat' or 'true', got {self.packing!r}", "config")
        if self.on_error not in ("skip", "raise"):
            raise DataError(f"data: on_error must be 'skip' or 'raise', got {self.on_error!r}", "config")


def _source(value: Any) -> SourceConfig:
    if isinstance(value, SourceConfig):
        return value
    if isinstance(value, str):
        return SourceConfig(value)
    if isinstance(value, dict):
        unknown = set(value) - {"path", "weight", "media_root"}
        if unknown or "path" not in value:
            raise DataError(f"data source {value!r}: needs 'path' (optional: weight, media_root)", "config")
        return SourceConfig(**value)
    raise DataError(f"data source {value!r}: expected a path or a mapping", "config")


@dataclass
class DataStats:
    """What one iterator did: records read, samples yielded, problems by kind (with the first messages)."""

    records: int = 0
    samples: int = 0
    skipped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    max_messages: int = 100

    def add(self, err: DataError) -> None:
        self.skipped += 1
        self.errors[err.kind] = self.errors.get(err.kind, 0) + 1
        if len(self.messages) < self.max_messages:
            self.messages.append(str(err))


def epoch_order(
    sizes: list[int], weights: list[float], *, seed: int, epoch: int, shuffle: bool = True
) -> np.ndarray:
    """The epoch's (source, record) pairs [M, 2] int64, a function of (seed, epoch) only."""
    parts = []
    for s, (n, w) in enumerate(zip(sizes, weights, strict=True)):
        m = round(w * n)
        if n == 0 or m == 0:
            continue
        rng = np.random.default_rng([seed, epoch, s])
        passes = -(-m // n)
        idx = np.concatenate([rng.permutation(n) if shuffle else np.arange(n) for _ in range(passes)])[:m]  # [m]
        parts.append(np.stack([np.full(m, s), idx], axis=1))  # [m, 2]
    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    order = np.concatenate(parts).astype(np.int64)  # [M, 2]
    if shuffle:
        order = order[np.random.default_rng([seed, epoch]).permutation(len(order))]
    return order


class _Stream:
    """The per-(rank, epoch) pipeline; errors go through `report` (skip and count, or raise)."""

    def __init__(self, cfg: DataConfig, processor: Processor, stats: DataStats) -> None:
        self.cfg, self.processor, self.stats = cfg, processor, stats
        self.files = [open_data_file(s.path, s.media_root) for s in cfg.sources]

    def report(self, err: DataError) -> None:
        if self.cfg.on_error == "raise":
            raise err
        self.stats.add(err)
        log.warning("skipping sample: %s", err)

    def records(self, order: np.ndarray) -> Iterator[Record]:
        for s, i in order.tolist():
            try:
                record = self.files[s].record(i)
            except OSError as exc:  # the file changed or vanished mid-epoch
                self.report(DataError(f"{self.files[s].path}: record #{i} cannot be read ({exc})", "io"))
                continue
            self.stats.records += 1
            if record.error is not None:
                self.report(DataError(record.error, "broken_json"))
                continue
            yield record

    def build(self, data: dict[str, Any], where: str, root: Path) -> TrainSample | None:
        try:
            return build_sample(self.processor, data, where, root, max_length=self.cfg.max_length)
        except DataError as err:
            self.report(err)
        except Exception as exc:  # an unexpected failure in one sample must not end the epoch
            self.report(DataError(f"{where}: cannot build sample ({type(exc).__name__}: {exc})", "internal"))
        return None

    def singles(self, order: np.ndarray) -> Iterator[TrainSample]:
        for r in self.records(order):
            sample = self.build(r.data, r.where, r.media_root)  # type: ignore[arg-type]
            if sample is not None:
                yield sample

    def concat(self, order: np.ndarray) -> Iterator[TrainSample]:
        def estimated() -> Iterator[tuple[Record, int]]:
            for r in self.records(order):
                try:
                    estimate = estimate_tokens(self.processor, r.data, r.where, r.media_root)  # type: ignore[arg-type]
                except DataError as err:
                    self.report(err)
                    continue
                except Exception as exc:  # e.g. an audio file no decoder can read
                    self.report(DataError(f"{r.where}: cannot measure media ({type(exc).__name__}: {exc})", "media"))
                    continue
                yield r, estimate

        for group in concat_groups(estimated(), self.cfg.max_length, system_overhead(self.processor)):
            yield from self.build_group(group)

    def build_group(self, group: list[Record]) -> Iterator[TrainSample]:
        if len(group) == 1:
            sample = self.build(group[0].data, group[0].where, group[0].media_root)  # type: ignore[arg-type]
            if sample is not None:
                yield sample
            return
        merged, where = merge_records([(r.data, r.where, r.media_root) for r in group])  # type: ignore[misc]
        try:
            yield build_sample(self.processor, merged, where, Path("/"), max_length=self.cfg.max_length)
            return
        except DataError as err:
            too_long = err.kind == "too_long"
        except Exception:
            too_long = False
        if too_long:  # the estimate was short: close the group one record earlier
            yield from self.build_group(group[:-1])
            yield from self.build_group(group[-1:])
        else:  # some record is broken at decode time: build one by one so only that one is reported
            for r in group:
                yield from self.build_group([r])


def iter_samples(
    cfg: DataConfig,
    processor: Processor,
    *,
    rank: int = 0,
    world_size: int = 1,
    epoch: int = 0,
    start: int = 0,
    stats: DataStats | None = None,
) -> Iterator[TrainSample]:
    """This rank's samples of one epoch, from its `start`-th sample on (see the module docstring)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise DataError(f"data: need 0 <= rank < world_size, got rank {rank}, world_size {world_size}", "config")
    if start < 0:
        raise DataError(f"data: start must be >= 0, got {start}", "config")
    stats = stats if stats is not None else DataStats()
    stream = _Stream(cfg, processor, stats)
    sizes = [len(f) for f in stream.files]
    order = epoch_order(sizes, [s.weight for s in cfg.sources], seed=cfg.seed, epoch=epoch, shuffle=cfg.shuffle)
    order = order[rank::world_size]  # [M / world_size, 2]
    if cfg.packing == "concat":
        samples = stream.concat(order)
    elif cfg.packing == "true":
        samples = true_pack(stream.singles(order), cfg.max_length)
    else:
        samples = stream.singles(order)
    for n, sample in enumerate(samples):
        if n < start:
            continue
        stats.samples += 1
        yield sample
