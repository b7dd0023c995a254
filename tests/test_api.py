"""vita.api.Vita: a typed turn's reply starts with `<3>` where the model answers typed turns as typed
(`VitaConfig.typed_state`, vita-mini), and nothing else changes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import vita
from vita.errors import ConfigError
from vita.processor import Audio, Turn


def _typed_model():
    vm = vita.load("tiny-random")
    vm.model.config = dataclasses.replace(vm.model.config, typed_state=True)
    return vm


def test_a_typed_turn_is_answered_as_typed_and_a_spoken_one_is_left_to_the_model() -> None:
    plain, typed = vita.load("tiny-random"), _typed_model()
    assert not plain.config.typed_state
    free = plain.generate("What is the capital of France?", max_new_tokens=8)
    forced = typed.generate("What is the capital of France?", max_new_tokens=8)
    assert free.state != "<3>"  # the random model does not say it itself: the test can tell forcing from luck
    assert forced.state == "<3>" and forced.token_ids[: len(typed.typed_state_ids)] == list(typed.typed_state_ids)
    clip = Audio(np.sin(np.linspace(0, 900, 16000)).astype(np.float32), sample_rate=16000)
    spoken = typed.generate(audio=clip, max_new_tokens=8)
    assert spoken.token_ids == plain.generate(audio=clip, max_new_tokens=8).token_ids
    # typed text beside the clip ("Transcribe the speech." + audio) is a typed turn
    assert typed.generate("Transcribe the speech.", audio=clip, max_new_tokens=8).state == "<3>"


def test_the_chat_engines_loop_forces_it_too() -> None:
    typed = _typed_model()
    inputs = typed.inputs("Hi")
    cache = typed.new_cache(1024)
    loop = typed.token_loop(cache, typed.embed(inputs), max_new_tokens=5, typed=inputs.typed)
    assert list(loop)[: len(typed.typed_state_ids)] == list(typed.typed_state_ids)
    other = typed.token_loop(cache, typed.embed(inputs), max_new_tokens=5, typed=inputs.typed, forced=[7, 7])
    assert list(other)[:2] == [7, 7]  # ids the caller forces win


def test_the_models_loop_window_ends_a_reply_that_repeats_itself() -> None:
    vm = vita.load("tiny-random")
    assert vm.config.loop_window == 0  # the official layouts: greedy decoding runs on (parity)
    guarded = vita.load("tiny-random")
    guarded.model.config = dataclasses.replace(guarded.model.config, loop_window=6)
    ids = [7, 8] * 10
    for model, expected in ((vm, ids), (guarded, ids[:6])):
        loop = model.token_loop(model.new_cache(1024), model.embed(model.inputs("Hi")), max_new_tokens=20,
                                forced=ids, forced_complete=False)
        assert list(loop) == expected
    with pytest.raises(ConfigError, match="loop_window"):
        dataclasses.replace(vm.model.config, loop_window=2)


def test_the_models_state_bias_moves_the_not_query_decision() -> None:
    vm = vita.load("tiny-random")
    assert vm.config.state_bias == 0.0  # the official layouts: the model's own choice (parity)
    before, decides = vm.state_decision  # "<" then "2"

    def second_id(bias: float) -> int:
        vm.model.config = dataclasses.replace(vm.model.config, state_bias=bias)
        loop = vm.token_loop(vm.new_cache(1024), vm.embed(vm.inputs(audio=Audio(np.zeros(8000, np.float32), 16000))),
                             max_new_tokens=len(before) + 1, forced=list(before), forced_complete=False)
        return list(loop)[len(before)]

    plain = second_id(0.0)
    assert plain != decides  # the random model does not pick it itself: the test can tell the bias from luck
    assert second_id(1e4) == decides and second_id(-1e4) == plain

    def after_id(bias: float, after: float | None, *, history: bool) -> int:  # a follow-up turn, or a first one
        vm.model.config = dataclasses.replace(vm.model.config, state_bias=bias, state_bias_after=after)
        turns = [Turn("user", "Hi"), Turn("assistant", "<3>Hello.")] if history else []
        inputs = vm.inputs(audio=Audio(np.zeros(8000, np.float32), 16000), history=turns)
        assert inputs.after_exchange == history
        loop = vm.token_loop(vm.new_cache(1024), vm.embed(inputs), max_new_tokens=len(before) + 1,
                             forced=list(before), forced_complete=False, after_exchange=inputs.after_exchange)
        return list(loop)[len(before)]

    assert after_id(0.0, 1e4, history=True) == decides  # after an exchange: state_bias_after decides
    assert after_id(0.0, 1e4, history=False) != decides  # a first turn: state_bias (0)
    assert after_id(1e4, -1e4, history=True) != decides and after_id(1e4, None, history=True) == decides
    vm.model.config = dataclasses.replace(vm.model.config, state_bias=0.0, state_bias_after=None)
    with pytest.raises(ConfigError, match="state_bias"):
        dataclasses.replace(vm.model.config, state_bias=float("inf"))
    with pytest.raises(ConfigError, match="state_bias_after"):
        dataclasses.replace(vm.model.config, state_bias_after=float("nan"))
