"""vita.eval.state_prob: P(<2>) at the state decision, and the bias that moves its mean to a target."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import vita
from vita.errors import EvalError
from vita.eval.manifest import load_manifest
from vita.eval.state_prob import bias_for, biased_mean, calibrate, not_query_probs


def test_the_bias_moves_the_mean_to_the_target() -> None:
    probs = [0.01, 0.2, 0.5, 0.9, 0.999]
    assert biased_mean(probs, 0.0) == pytest.approx(sum(probs) / len(probs))
    assert biased_mean(probs, -1.0) < biased_mean(probs, 0.0) < biased_mean(probs, 1.0)
    for target in (0.05, 0.3, 0.5, 0.8):
        b = bias_for(probs, target)
        assert biased_mean(probs, b) == pytest.approx(target, abs=1e-9)
    p = 0.25  # one case: the bias is the change of its log-odds
    assert bias_for([p], 0.5) == pytest.approx(math.log((1 - p) / p), abs=1e-9)
    with pytest.raises(EvalError, match="strictly between"):
        bias_for(probs, 1.0)
    with pytest.raises(EvalError, match="no cases"):
        bias_for([], 0.5)


def test_the_probability_is_the_models_next_id_after_the_shared_state_ids(tmp_path: Path) -> None:
    vm = vita.load("tiny-random")
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "text": "Hello there", "expect_state": "<3>"}) + "\n"
                                      + json.dumps({"id": "b", "text": "What is this?", "expect_state": "<3>"}) + "\n")
    cases = load_manifest(tmp_path / "m.jsonl").cases
    got = not_query_probs(vm, cases)
    before, decides = vm.state_decision
    for case, p in zip(cases, got, strict=True):
        embeds = vm.embed(vm.inputs(case.text))  # [1, L, D]
        rows = torch.cat([embeds, vm.model.llm.tok_embeddings.weight[list(before)][None]], 1)
        with torch.no_grad():
            logits = vm.model.llm(input_embeds=rows)[0, -1]  # uncached forward, the whole prompt
        assert p == pytest.approx(float(torch.softmax(logits.float(), -1)[decides]), rel=1e-4, abs=1e-7)
        assert 0.0 < p < 1.0


def test_a_model_calibrated_to_itself_needs_no_bias(tmp_path: Path) -> None:
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "text": "Hello there", "expect_state": "<3>"}) + "\n")
    report = calibrate("tiny-random", ["tiny-random", "tiny-random"], load_manifest(tmp_path / "m.jsonl").cases)
    assert report["target"] == pytest.approx(report["model"]) and abs(report["bias"]) < 1e-6
