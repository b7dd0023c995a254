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
    first = report["first"]
    assert first["cases"] == 1 and report["after"] is None  # no case after an exchange: no bias of that kind
    assert first["target"] == pytest.approx(first["model"]) and abs(first["bias"]) < 1e-6


def test_each_kind_of_turn_gets_the_bias_that_matches_it_alone(tmp_path: Path, monkeypatch) -> None:
    """Cases after an exchange and first turns are calibrated apart: each kind's mean reaches its own target."""
    from vita.eval import state_prob

    history = [{"role": "user", "text": "Hi"}, {"role": "assistant", "text": "<3>Hello."}]
    rows = [{"id": "a", "text": "Hello there"}, {"id": "b", "text": "And you?", "history": history},
            {"id": "c", "text": "What is this?"}, {"id": "d", "text": "Why?", "history": history}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({**r, "expect_state": "<3>"}) + "\n" for r in rows))
    cases = load_manifest(tmp_path / "m.jsonl").cases
    made = {"like": [0.5, 0.9, 0.5, 0.7], "soup": [0.2, 0.4, 0.4, 0.2]}  # P(<2>) per case, in manifest order
    monkeypatch.setattr(vita, "load", lambda name, dtype=None: name)
    monkeypatch.setattr(state_prob, "not_query_probs", lambda vm, cs: made[vm])
    report = calibrate("soup", ["like"], cases)
    first, after = report["first"], report["after"]
    assert first["cases"] == after["cases"] == 2
    assert first["target"] == pytest.approx(0.5) and after["target"] == pytest.approx(0.8)
    assert biased_mean([0.2, 0.4], first["bias"]) == pytest.approx(0.5)
    assert biased_mean([0.4, 0.2], after["bias"]) == pytest.approx(0.8)
    assert after["bias"] > first["bias"] > 0


def test_both_biases_are_written_into_the_parts(tmp_path: Path, monkeypatch) -> None:
    from vita.eval import state_prob

    parts = tmp_path / "parts"
    parts.mkdir()
    config = {"state_bias": 0.0}
    (parts / "parts.json").write_text(json.dumps({"config": config}))
    monkeypatch.setattr("vita.checkpoint.mini.read_parts", lambda path, check_base=False: None)
    monkeypatch.setattr("vita.config.VitaConfig.from_dict", lambda d: d)
    state_prob.write_bias(parts, 1.5, 0.25)
    assert json.loads((parts / "parts.json").read_text())["config"] == {"state_bias": 1.5, "state_bias_after": 0.25}
    state_prob.write_bias(parts, 1.0)
    assert json.loads((parts / "parts.json").read_text())["config"] == {"state_bias": 1.0, "state_bias_after": None}
