"""Templates and chunk-wise tokenization against the official ids recorded in the fixtures."""

from __future__ import annotations

import pytest

from vita.errors import PromptError
from vita.media.prompt import (
    SYSTEM_PROMPTS,
    Message,
    expand_placeholders,
    render,
    tokenize_with_placeholders,
)
from vita.tokenizer import Tokenizer
from vita.tokens import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID, split_state


@pytest.fixture(scope="module")
def tokenizer(ref_root):
    return Tokenizer.from_dir(ref_root / "checkpoint")


@pytest.mark.reference
def test_system_prompts_match_official(ref_index):
    image, video, lang = ref_index["tokenizer"]["system_prompts"]
    assert SYSTEM_PROMPTS == {"image": image, "video": video, "lang": lang}


@pytest.mark.reference
def test_prompts_and_ids_match_official(ref_index, tokenizer):
    cases = ref_index["tokenizer"]["cases"]
    assert cases
    for case in cases:
        prompt = render([Message("user", case["qs"])], modality=case["modality"])
        assert prompt == case["prompt"], case["name"]
        ids = tokenize_with_placeholders(tokenizer, prompt)
        assert ids == case["tokenizer_image_audio_token"], case["name"]
        if "tokenizer_image_token" in case:
            assert ids == case["tokenizer_image_token"], case["name"]


@pytest.mark.reference
def test_probe_strings_and_stop_ids(ref_index, tokenizer):
    for text, ids in ref_index["tokenizer"]["probe_strings"].items():
        assert tokenizer.encode(text) == ids, repr(text)
    assert tokenizer.bos_id == ref_index["tokenizer"]["bos_token_id"]
    assert tokenizer.eos_id == ref_index["tokenizer"]["eos_token_id"]
    assert [[i] for i in tokenizer.stop_ids] == ref_index["tokenizer"]["stop_keyword_ids"]


@pytest.mark.reference
def test_full_case_ids_match(ref_index, tokenizer):
    for case in ref_index["full_cases"]:
        ids = tokenize_with_placeholders(tokenizer, case["prompt"])
        assert ids == case["input_ids"], case["name"]
        assert ids.count(IMAGE_TOKEN_ID) == case["num_image_placeholders"]
        assert ids.count(AUDIO_TOKEN_ID) == case["num_audio_placeholders"]


def test_multi_turn_mixtral_two_layout():
    msgs = [Message("user", "hi"), Message("assistant", "<3>hello"), Message("user", "<audio>")]
    text = render(msgs, modality="lang")
    assert text == "system:" + SYSTEM_PROMPTS["lang"] + "</s>\nuser:hi</s>\nbot:<3>hello</s>\nuser:<audio></s>\nbot:"


def test_chatml_layout():
    text = render([Message("system", "S"), Message("user", "q")], template="chatml")
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"


def test_expand_placeholders_exact_counts():
    ids = [5, IMAGE_TOKEN_ID, IMAGE_TOKEN_ID, 6, AUDIO_TOKEN_ID, 7]
    out = expand_placeholders(ids, {IMAGE_TOKEN_ID: [3, 3], AUDIO_TOKEN_ID: [4]})
    assert out == [5] + [IMAGE_TOKEN_ID] * 6 + [6] + [AUDIO_TOKEN_ID] * 4 + [7]


def test_more_placeholders_than_media_is_a_clear_error():
    with pytest.raises(PromptError, match="more placeholders than media"):
        expand_placeholders([IMAGE_TOKEN_ID, IMAGE_TOKEN_ID], {IMAGE_TOKEN_ID: [16]})
    with pytest.raises(PromptError, match="2 given but the prompt has 1"):
        expand_placeholders([AUDIO_TOKEN_ID], {AUDIO_TOKEN_ID: [3, 4]})
    with pytest.raises(PromptError, match="no media"):
        expand_placeholders([AUDIO_TOKEN_ID], {})


def test_split_state():
    assert split_state("<1>Paris.") == ("<1>", "Paris.")
    assert split_state(" <2>") == ("<2>", "")
    assert split_state("☜ hi") == ("<3>", "hi")
    assert split_state("no state") == (None, "no state")
