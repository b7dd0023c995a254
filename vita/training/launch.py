"""Launching the loop as a subprocess: one plain process, or `torchrun` with N ranks on this machine.

    cmd = train_command(recipe, output, overrides, nproc=2)   # torchrun ... -m vita.cli.train ...
    subprocess.run(cmd, env=train_env(threads=1), check=True)

Used by the benchmark (`vita.bench.train`) and the distributed tests. A free TCP port is picked for the rendezvous
so concurrent launches never collide.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_command(recipe: str | Path, output: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                  nproc: int = 1, threads: int | None = 1, quiet: bool = True, device: str | None = None) -> list[str]:
    """argv for one training run; nproc > 1 goes through torchrun (`torch.distributed.run`, standalone).
    `device`: the run's `--device` (None: its default, CUDA if present)."""
    args = ["--recipe", str(recipe), "--output", str(output)]
    if device:
        args += ["--device", device]
    if threads:
        args += ["--threads", str(threads)]
    if quiet:
        args.append("--quiet")
    args += list(overrides)
    if nproc == 1:
        return [sys.executable, "-m", "vita.cli.train", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "vita.cli.train", *args]


def train_env(*, threads: int | None = 1) -> dict[str, str]:
    """The environment for a launched run: `threads` intra-op threads per rank (offline as every vita process:
    `vita/__init__.py`)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env
