"""The GPU test set (`pytest -m gpu`): every test here is marked `gpu` and skipped where CUDA is absent.

`VITA_GPU_TESTS_ON=cpu` runs the set on the CPU instead (a dry run of the test code itself: the CUDA-vs-CPU
comparisons then compare the CPU with itself); the one-go script for a GPU machine is `run_on_device.sh`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
DRY_RUN = os.environ.get("VITA_GPU_TESTS_ON") == "cpu"


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"needs CUDA (torch {torch.__version__}: torch.cuda.is_available() is False); "
                                   "run on a GPU machine: bash tests/gpu/run_on_device.sh")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.gpu)
            if not torch.cuda.is_available() and not DRY_RUN:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def cuda() -> torch.device:
    """The device under test: cuda:0 (the CPU in a dry run). TF32 off, so float32 means float32 on both sides."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch.device("cpu") if DRY_RUN else torch.device("cuda", 0)


@pytest.fixture
def report(request):
    """`report(**figures)`: print one figure line (`pytest -s` shows it) and append it to $VITA_GPU_FIGURES (JSON
    lines) if set, named after the test."""

    def write(**figures) -> None:
        row = {"test": request.node.name, "device": "cpu (dry run)" if DRY_RUN else torch.cuda.get_device_name(0),
               **figures}
        print(f"\nFIGURE {json.dumps(row)}")
        path = os.environ.get("VITA_GPU_FIGURES")
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    return write
