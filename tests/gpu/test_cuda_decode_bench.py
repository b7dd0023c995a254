"""Batch-1 decode on the card beside transformers on the same card (`vita.bench.decode_cuda`); prints tok/s.

In a dry run on the CPU (`VITA_GPU_TESTS_ON=cpu`) the two CUDA-only calls (event timing, the device name) are
stubbed so that the rest of the bench, the transformers side included, still runs."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

from vita import cli
from vita.bench import decode_cuda

pytestmark = pytest.mark.gpu  # skipped without CUDA: tests/gpu/conftest.py


def test_decode_against_transformers(cuda, report, monkeypatch):
    pytest.importorskip("transformers")
    if cuda.type == "cpu":
        monkeypatch.setattr(decode_cuda, "cuda_copy_bandwidth", lambda device: 1e10)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "cpu")
    r = decode_cuda.run_bench("smollm2-135m-random", cuda, dtype="bf16", prompt_len=64, new_tokens=64, repeats=2)
    report(**asdict(r))
    assert r.decode_tok_s > 0 and r.prefill_tok_s > 0 and r.weight_bytes > 200e6  # 135M parameters in bf16
    assert r.transformers_decode_tok_s is not None and r.transformers_decode_tok_s > 0


def test_cli_bench_decode_on_cuda(cuda, capsys):
    if cuda.type != "cuda":
        pytest.skip("dry run: `vita bench decode --device cpu` is the CPU bench (tests/bench)")
    argv = ["bench", "decode", "--device", str(cuda), "--model", "tiny-random", "--no-compile", "--no-transformers",
            "--prompt-len", "16", "--new-tokens", "16", "--json"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decode_tok_s"] > 0 and out["model"].startswith("tiny-random on ")
