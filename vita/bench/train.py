"""Training throughput: samples/s of the real loop with 1 and N ranks (torchrun, gloo on CPU), and the scaling.

    vita bench train [--recipe recipes/tiny/stage4_continual_task.yaml] [--nproc 2] [--steps 12] [--json]

Weak scaling: every rank keeps the same micro-batch (`--micro`, no accumulation), so N ranks process N times the
samples per step; ideal scaling is a ratio of N. Each run is a full `vita.cli.train` launch; samples/s is
measured from `metrics.jsonl` after `--warmup` steps (start-up, first-step allocation and the checkpoint-free
steady state are kept apart): samples / (time of the last step - time of the last warm-up step).
On a machine with fewer free cores than ranks x threads the ratio measures contention, not the code.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny" / "stage4_continual_task.yaml"


@dataclass
class TrainBench:
    recipe: str
    nproc: int
    micro_batch_size: int
    threads_per_rank: int
    steps: int
    samples_per_s: float
    tokens_per_s: float  # non-padding tokens processed per second (from the per-step log)


def bench_samples_per_s(recipe: str | Path = DEFAULT_RECIPE, nproc: int = 1, *, steps: int = 12, warmup: int = 2,
                        micro: int = 2, threads: int = 1, device: str | None = None) -> TrainBench:
    """Run `recipe` for `steps` steps on `nproc` ranks (on `device`: cpu, cuda, auto; None: the run's default)
    and measure steady-state samples/s."""
    from vita.training.launch import train_command, train_env

    overrides = [f"schedule.total_steps={steps}", "checkpoint.every=0", f"batch.micro_batch_size={micro}",
                 "batch.grad_accum=1", "batch.global_batch_size=null"]
    with tempfile.TemporaryDirectory(prefix="vita-bench-train-") as tmp:
        out = Path(tmp) / "run"
        proc = subprocess.run(train_command(recipe, out, overrides, nproc=nproc, threads=threads, device=device),
                              env=train_env(threads=threads), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"training run failed ({nproc} ranks):\n{proc.stderr[-3000:]}")
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = rows[warmup:]
    elapsed = timed[-1]["time"] - rows[warmup - 1]["time"]
    samples = sum(r["samples"] for r in timed)
    tokens = sum(r["tokens_per_s"] * r["samples"] / r["samples_per_s"] for r in timed)  # = sum of step tokens
    return TrainBench(str(recipe), nproc, micro, threads, steps, samples / elapsed, tokens / elapsed)
