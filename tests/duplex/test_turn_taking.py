"""The turn-taking policy (`vita.duplex.turn_taking`): when a listener's job is decided, and what an answer is.

Unit checks on a stand-in job, then the session on tiny random weights (`session_harness`): an answer state followed
by nothing (`<1>` then a stop, which vita-mini gives to much of the speech that overlaps its replies) must neither
cancel the reply that is playing nor start an empty one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from tests.duplex.session_harness import ANSWER_1, Run, audio_of, check_reply_invariants, make, silence
from vita.duplex.events import (
    PlaybackPaused,
    PlaybackResumed,
    ReplyCancelled,
    ReplyFinished,
    ReplyStarted,
    StateDecided,
)
from vita.duplex.turn_taking import SessionConfig, answered, decided, prompt, trimmed
from vita.processor import Turn
from vita.speech.echo import GateConfig


@dataclass
class _Job:
    state_resolved: bool = False
    state: str | None = None
    visible_text: str = ""
    done: bool = False


@pytest.mark.parametrize(("job", "is_decided", "is_answer"), [
    (_Job(), False, False),  # prefilling
    (_Job(True, "<1>"), False, False),  # an answer state alone: wait for its first word (or its end)
    (_Job(True, "<1>", " "), False, False),  # whitespace is not a word
    (_Job(True, "<1>", "The"), True, True),
    (_Job(True, "<3>", "Paris"), True, True),
    (_Job(True, "<1>", "", done=True), True, False),  # `<1>` then a stop: nothing to say
    (_Job(True, "<2>"), True, False),  # not for us: decided at once
    (_Job(True, None, "Hello"), True, True),  # no state token, but an answer
    (_Job(False, None, "", done=True), True, False),  # cancelled or empty
])
def test_decided_and_answered(job, is_decided, is_answer):
    assert decided(job) is is_decided
    assert answered(job) is is_answer


# speculative=False: the turn is decided in a tick, as soon as the job allows (the state token comes a step before
# the stop); True: prepared at the first short silence, committed at the end of speech
@pytest.mark.parametrize("speculative", [False, True])
def test_answer_state_with_nothing_after_it_resumes_the_playing_reply(tiny, voices, voice, speculative):
    """Speech over our reply whose job says `<1>` and stops: playback resumes, nothing is cancelled, no reply
    starts, and the old answer is played to its end."""
    session, clock = make(tiny, [ANSWER_1, "<1>", "<1>", "<1>"], synth=voice, gate=GateConfig(enabled=False),
                          speculative=speculative)
    run = Run(session, clock)
    run.play(np.concatenate([silence(0.3), voices["question"], silence(0.4)]))
    (r1,) = run.of(ReplyStarted)
    run.play(silence(1.5))  # the answer plays
    run.play(np.concatenate([voices["chatter"], silence(0.6)]), until_idle=True)
    check_reply_invariants(run)
    assert run.of(ReplyCancelled) == [] and run.of(ReplyStarted) == [r1]
    over = [d for d in run.of(StateDecided) if d.utterance_id != r1.utterance_id]
    assert over and all(d.state == "<1>" and not d.answered for d in over)
    kinds = [type(e) for e in run.of(PlaybackPaused, PlaybackResumed)]
    assert kinds[:1] == [PlaybackPaused] and kinds[-1:] == [PlaybackResumed]
    (fin,) = run.of(ReplyFinished)
    visible = ANSWER_1[len("<1> "):]
    assert fin.reply_id == r1.reply_id and fin.text == visible
    assert audio_of(run, r1.reply_id) == voice.samples(visible)  # nothing lost to the pause
    assert [t.role for t in session.history] == ["user", "assistant"]


@pytest.mark.parametrize("speculative", [False, True])
def test_answer_state_with_nothing_after_it_starts_no_reply(tiny, voices, voice, speculative):
    """In a quiet session too: `<1>` then a stop is no answer (no ReplyStarted, no empty ReplyFinished)."""
    session, clock = make(tiny, ["<1>"] * 4, synth=voice, gate=GateConfig(enabled=False), speculative=speculative)
    run = Run(session, clock)
    run.play(np.concatenate([silence(0.3), voices["question"], silence(0.8)]), until_idle=True)
    (d,) = run.of(StateDecided)
    assert d.state == "<1>" and not d.answered
    assert run.of(ReplyStarted, ReplyFinished, ReplyCancelled) == [] and session.history == []


def test_a_turn_is_deciding_until_its_answer_has_text(tiny, voices, voice):
    """`Session.deciding` (what the realtime server's urgent batch waits on) holds past the state token until the
    answer's first visible text."""
    session, clock = make(tiny, [ANSWER_1] * 2, synth=voice, gate=GateConfig(enabled=False), speculative=False)
    seen: list[tuple[bool, bool, bool]] = []  # (state read, text out, deciding) after each tick with a listener
    tick = session.tick

    def spy():
        out = tick()
        if session.listening is not None:
            job = session.listening.job
            seen.append((job.state_resolved, bool(job.visible_text.strip()), session.deciding))
        return out

    session.tick = spy
    Run(session, clock).play(np.concatenate([silence(0.3), voices["question"], silence(0.8)]), until_idle=True)
    assert (True, False, True) in seen  # state read, no text yet: still deciding
    assert all(deciding == (not state or not text) for state, text, deciding in seen)


def test_the_reply_does_not_decode_beside_its_first_phrase():
    """While the speech thread renders the first phrase (nothing of the reply queued yet), the reply's decode waits:
    the first audio gets the CPU; once audio is queued, or with the rule off, decoding goes on beside the rendering."""
    from types import SimpleNamespace as NS

    from vita.duplex.turn_taking import SessionConfig, pick

    reply = NS(job=NS(done=False))
    rendering = NS(ready=False, pending=True)
    first = NS(paused=False, buffered_s=0.0, queued=0)
    alone = SessionConfig(first_phrase_alone=True)  # (the default on machines of up to 4 cores)
    assert pick(reply, None, first, rendering, alone) is None
    assert pick(reply, None, first, rendering, SessionConfig(first_phrase_alone=False)) == "speak"
    assert pick(reply, None, NS(paused=False, buffered_s=0.2, queued=4800), rendering, alone) == "speak"
    assert pick(reply, None, first, NS(ready=False, pending=False), alone) == "speak"  # no phrase cut yet
    assert pick(reply, None, first, NS(ready=True, pending=True), alone) == "tts"


def test_history_is_cut_back_in_one_go_so_the_prompt_prefix_stays():
    """Past history_turns the history goes back to the latest history_keep turns (from a user turn on), and then
    grows again: successive prompts share their prefix (the KV cache is reused) instead of changing after the
    system prompt at every exchange."""
    cfg = SessionConfig(history_turns=6, history_keep=3)
    history: list[Turn] = []
    prompts = []
    for n in range(12):
        history.append(Turn("user", [f"q{n}"]))
        history[:] = trimmed(history, cfg)
        history.append(Turn("assistant", f"a{n}"))
        history[:] = trimmed(history, cfg)
        assert len(history) <= cfg.history_turns and history[0].role == "user"
        prompts.append([t.content for t in history])
    assert [len(p) for p in prompts] == [2, 4, 6, 4, 6, 4, 6, 4, 6, 4, 6, 4]
    # between two cuts each prompt extends the one before it
    assert prompts[4][:4] == prompts[3] and prompts[3][:2] == [["q2"], "a2"]
    # a history that starts with an assistant turn after the cut drops it: prompts start from a user turn
    odd = [Turn("assistant", "x"), *[Turn("user", [f"u{i}"]) if i % 2 == 0 else Turn("assistant", f"r{i}")
                                     for i in range(6)]]
    assert [t.content for t in trimmed(odd, SessionConfig(history_turns=6, history_keep=4))] == \
        [["u2"], "r3", ["u4"], "r5"]
    assert [t.content for t in trimmed(odd, SessionConfig(history_turns=6, history_keep=3))] == [["u4"], "r5"]
    assert trimmed(history[:3], cfg) == history[:3]  # under the cap: untouched
    utt_prompt = prompt(history, type("U", (), {"parts": ["now"]})(), cfg.history_turns, withdrawn=False, heard=None)
    assert utt_prompt[-1].content == ["now"] and utt_prompt[:-1] == history
