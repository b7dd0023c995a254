"""Shared test fixtures: offline mode, deterministic seeds, and the golden reference fixtures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from vita.nn import native as native_kernels

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VITA_DEVICE", "cpu")  # CLI commands default to auto (CUDA if present): the suite stays on CPU

REPO = Path(__file__).resolve().parents[1]


def reference_root() -> Path:
    """Fixture set recorded from the official code; `VITA_REFERENCE_FIXTURES` overrides the default."""
    raw = os.environ.get("VITA_REFERENCE_FIXTURES", "../shared/fixtures/vita1_tiny")
    path = Path(raw)
    return path if path.is_absolute() else (REPO / path).resolve()


@pytest.fixture(scope="session")
def ref_root() -> Path:
    root = reference_root()
    if not (root / "cases" / "index.json").is_file():
        pytest.skip(f"reference fixtures not found at {root} (set VITA_REFERENCE_FIXTURES)")
    return root


@pytest.fixture(scope="session")
def ref_index(ref_root: Path) -> dict:
    return json.loads((ref_root / "cases" / "index.json").read_text())


# Folder names and sizes of a fixture set come from its own files, never from the set we happen to ship: the
# reference tests must pass unchanged on any set recorded the same way (other names, sizes, seeds).


@pytest.fixture(scope="session")
def ref_config(ref_root: Path) -> dict:
    """The official `checkpoint/config.json` of the fixture set."""
    return json.loads((ref_root / "checkpoint" / "config.json").read_text())


@pytest.fixture(scope="session")
def ref_vision_dir(ref_root: Path, ref_config: dict) -> Path:
    """The InternViT folder `mm_vision_tower` names (relative to the checkpoint, as the capture ran)."""
    return ref_root / "checkpoint" / ref_config["mm_vision_tower"]


@pytest.fixture(scope="session")
def ref_audio_dir(ref_root: Path, ref_config: dict) -> Path:
    """The audio-encoder folder `mm_audio_encoder` names (train.yaml, global_cmvn, maybe final.pt)."""
    return ref_root / "checkpoint" / ref_config["mm_audio_encoder"]


# -- the VITA-1.5 set (VITA15_REFERENCE_FIXTURES), same conventions --------------------------------------------------


def reference15_root() -> Path:
    """Fixture set recorded from the official VITA-1.5 code; `VITA15_REFERENCE_FIXTURES` overrides the default."""
    raw = os.environ.get("VITA15_REFERENCE_FIXTURES", "../shared/fixtures/vita15_tiny")
    path = Path(raw)
    return path if path.is_absolute() else (REPO / path).resolve()


@pytest.fixture(scope="session")
def ref15_root() -> Path:
    root = reference15_root()
    if not (root / "cases" / "index.json").is_file():
        pytest.skip(f"VITA-1.5 reference fixtures not found at {root} (set VITA15_REFERENCE_FIXTURES)")
    return root


@pytest.fixture(scope="session")
def ref15_index(ref15_root: Path) -> dict:
    return json.loads((ref15_root / "cases" / "index.json").read_text())


@pytest.fixture(scope="session")
def ref15_config(ref15_root: Path) -> dict:
    return json.loads((ref15_root / "checkpoint" / "config.json").read_text())


@pytest.fixture(scope="session")
def ref15_vision_dir(ref15_root: Path, ref15_config: dict) -> Path:
    return ref15_root / "checkpoint" / ref15_config["mm_vision_tower"]


@pytest.fixture(scope="session")
def ref15_audio_dir(ref15_root: Path, ref15_config: dict) -> Path:
    return ref15_root / "checkpoint" / ref15_config["mm_audio_encoder"]


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """One intra-op thread for the whole suite: the tests run tiny models, whose ops are far slower with two
    threads spinning on a 2-core (often shared) machine. Tests that need another count set it themselves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    yield
    torch.set_default_dtype(default)


@pytest.fixture(params=[False, True], ids=["module-step", "native-step"])
def native(request) -> bool:
    """`native=` for generate() / TokenLoop, both ways and explicitly: left out, it means "the native whole-step
    kernel where this machine has one", and a test would run another path on another machine. True is skipped
    where the native kernels cannot load here (`vita.nn.native.available`)."""
    if request.param and not native_kernels.available():
        pytest.skip("the native kernels are unavailable on this machine (vita.nn.native)")
    return request.param


@pytest.fixture
def requires_native() -> None:
    """For tests of the native kernels themselves (`pytest.mark.usefixtures("requires_native")`): skipped where
    they cannot load here, whatever the reason (CPU, compiler, VITA_NATIVE_KERNELS=0, a failed build)."""
    if not native_kernels.available():
        pytest.skip("the native kernels are unavailable on this machine (vita.nn.native)")
