"""The duplex session on tiny random weights, a fake clock and scripted audio.

The model really runs (embed, chunked prefill, one decode step per tick on each role's own cache); only the ids it
emits are teacher-forced by `ScriptedReplies`, so states and answers are known in advance. Replies are spoken by a
Piper voice (memoized per clause), so that an echo is real speech the VAD would take for a user. The session, the
scripted run and the reply invariants are in `session_harness.py`.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.duplex.session_harness import (
    ANSWER_1,
    ANSWER_2,
    ANSWER_LONG,
    RATE,
    Run,
    audio_of,
    check_reply_invariants,
    make,
    silence,
)
from vita.duplex.events import (
    TERMINAL,
    Attach,
    AudioOut,
    Backchannel,
    PlaybackPaused,
    PlaybackResumed,
    ReplyCancelled,
    ReplyFinished,
    ReplyStarted,
    StateDecided,
    TextDelta,
    TextIn,
    UserSpeechEnded,
    UserSpeechStarted,
    VideoFrame,
)
from vita.duplex.roles import Engine, ReplyJob, Script
from vita.duplex.session import SessionConfig
from vita.processor import Audio, Image
from vita.speech.echo import GateConfig, aec_available


def test_query_is_answered_and_spoken(tiny, voices, voice):
    session, clock = make(tiny, [ANSWER_1], synth=voice)
    run = Run(session, clock)
    run.play(np.concatenate([silence(0.5), voices["question"], silence(0.6)]), until_idle=True)
    check_reply_invariants(run)
    assert [type(e) for e in run.of(UserSpeechStarted, UserSpeechEnded, StateDecided)] == [
        UserSpeechStarted, UserSpeechEnded, StateDecided]
    decided = run.of(StateDecided)[0]
    assert decided.state == "<1>" and decided.answered
    (started,), (finished,) = run.of(ReplyStarted), run.of(ReplyFinished)
    visible = ANSWER_1[len("<1> "):]
    assert "".join(e.text for e in run.of(TextDelta)) == visible == finished.text
    assert audio_of(run, started.reply_id) == voice.samples(visible)  # every clause spoken, all of it played
    # first audio after: embed, ~7 prefill chunks (byte tokenizer), ~40 decode steps to the first clause, one TTS
    # unit; at 3 ticks per 20 ms that is about 0.35 s of the fake clock
    first_audio = run.of(AudioOut)[0].t
    assert first_audio - run.of(UserSpeechEnded)[0].t < 0.5
    roles = [t.role for t in session.history]
    assert roles == ["user", "assistant"] and session.history[1].content == ANSWER_1
    assert session.state == "listening" and not session.busy


def test_non_query_speech_never_produces_output(tiny, voices, voice):
    # every reply prepared (speculative ones at each short pause too) says <2>, complete or going on
    session, clock = make(tiny, ["<2>", Script("<2>", complete=False)] * 8, synth=voice)
    run = Run(session, clock)
    run.play(np.concatenate([silence(0.3), voices["chatter"], silence(0.6), voices["question"], silence(0.6)]),
             until_idle=True)
    decided = run.of(StateDecided)
    assert [d.state for d in decided] == ["<2>", "<2>"] and not any(d.answered for d in decided)
    assert run.of(ReplyStarted, TextDelta, AudioOut, PlaybackPaused, ReplyFinished, ReplyCancelled) == []
    assert session.history == []


# headphones: no echo, no gate; speaker: our voice leaks back at -6 dB after 40 ms, default front end (AEC3 + gate)
SETUPS = {
    "headphones": (GateConfig(enabled=False), 0.0),
    "speaker": (GateConfig(), 0.5),
}


def _answer_then_barge(tiny, voices, voice, scripts, setup: str, *, gap=1.5):
    gate, echo = SETUPS[setup]
    if gate.use_aec and not aec_available():
        pytest.skip("pywebrtc-audio not installed: without AEC the gate is half-duplex in a speaker setup")
    session, clock = make(tiny, scripts, synth=voice, gate=gate)
    run = Run(session, clock, echo_gain=echo)
    start = session.engine.start
    session.engine.start = lambda cache, turns, donor=None, **kw: (
        run.jobs.append(start(cache, turns, donor, **kw)) or run.jobs[-1])
    run.play(np.concatenate([silence(0.3), voices["question"], silence(0.4)]))  # utterance ends: reply starts
    run.play(silence(gap))  # the reply plays for a while
    onset = run.clock.now()
    return session, run, onset


@pytest.mark.parametrize("setup", list(SETUPS))
def test_barge_in_cancels_within_one_decode_step(tiny, voices, voice, setup):
    session, run, onset = _answer_then_barge(tiny, voices, voice, [ANSWER_LONG, ANSWER_2], setup)
    (r1,) = run.of(ReplyStarted)
    assert audio_of(run, r1.reply_id) > 0 and not run.of(*TERMINAL)
    old_job = session.reply.job
    assert not old_job.done  # still generating when the user barges in
    run.play(np.concatenate([voices["barge"], silence(0.5)]), until_idle=True)
    check_reply_invariants(run)

    pause = [e for e in run.of(PlaybackPaused) if e.reply_id == r1.reply_id][0]
    # stop latency: a few VAD windows; AEC3 attenuates the first ~250 ms of double talk (echo-cancellation.md)
    assert pause.t - onset < {"headphones": 0.25, "speaker": 0.4}[setup]
    # no audio of the old reply between the pause and its cancel
    assert not [e for e in run.of(AudioOut) if e.reply_id == r1.reply_id and e.t > pause.t]

    decided = [e for e in run.of(StateDecided) if e.utterance_id == 2][0]
    tick = next(evs for evs in run.ticks_of if decided in evs)
    kinds = [type(e) for e in tick]
    # the decision, the cancel of the old reply and the start of the new one happen in the same call (a tick, or
    # the feed that committed a speculative reply)
    at = kinds.index(StateDecided)
    assert kinds[at : at + 3] == [StateDecided, ReplyCancelled, ReplyStarted]
    steps_at_cancel = old_job.decode_steps
    assert old_job.finish_reason == "cancelled"
    (cancel,) = run.of(ReplyCancelled)
    assert cancel.reply_id == r1.reply_id
    r2 = [e for e in run.of(ReplyStarted) if e.reply_id != r1.reply_id][0]
    assert r2.role != r1.role  # the listening role answered, on its own cache
    # ... after copying the speaker's prefix (system, question, the heard part of the answer) instead of prefilling
    new_job = run.jobs[1]
    assert new_job.copied > 0 and new_job.copied == new_job.reused
    assert run.jobs[0].state_bias and not new_job.state_bias  # a turn over our reply: no state bias
    assert old_job.decode_steps == steps_at_cancel  # nothing ran on the old reply afterwards

    # the history keeps only what was heard of the old reply: played samples -> text
    played = audio_of(run, r1.reply_id)
    visible = ANSWER_LONG[len("<1> "):]
    assert 0 < played < voice.samples(visible)
    assert cancel.heard and visible.startswith(cancel.heard) and len(cancel.heard) < len(visible)
    assert visible[len(cancel.heard)] == " "  # cut at a word boundary
    expected = voice.chars_heard(visible, played)
    assert expected - 16 < len(cancel.heard) <= expected + 1  # heard = played, up to the word being spoken
    roles = [t.role for t in session.history]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert session.history[1].content == "<1> " + cancel.heard
    assert session.history[3].content == ANSWER_2
    (fin,) = run.of(ReplyFinished)
    assert fin.reply_id == r2.reply_id and fin.text == ANSWER_2[len("<1> "):]


@pytest.mark.parametrize("setup", list(SETUPS))
def test_non_query_during_playback_resumes_with_nothing_lost(tiny, voices, voice, setup):
    session, run, onset = _answer_then_barge(tiny, voices, voice, [ANSWER_1, "<2>"], setup)
    (r1,) = run.of(ReplyStarted)
    run.play(np.concatenate([voices["chatter"], silence(0.5)]), until_idle=True)
    check_reply_invariants(run)
    kinds = [type(e) for e in run.of(PlaybackPaused, PlaybackResumed)]
    # paused at the onset, resumed after the decision (and, when the first word "Yes," is followed by a short
    # silence, briefly resumed there as for a backchannel, then paused again when the speech went on)
    assert kinds[:1] == [PlaybackPaused] and kinds[-1:] == [PlaybackResumed] and len(kinds) in (2, 4)
    assert all(a is not b for a, b in zip(kinds, kinds[1:], strict=False))
    assert [d.state for d in run.of(StateDecided)] == ["<1>", "<2>"]
    assert run.jobs[0].state_bias and not any(j.state_bias for j in run.jobs[1:])  # the chatter came over a reply
    (fin,) = run.of(ReplyFinished)
    visible = ANSWER_1[len("<1> "):]
    assert fin.reply_id == r1.reply_id and fin.text == visible
    assert audio_of(run, r1.reply_id) == voice.samples(visible)  # every sample played despite the pause
    paused, resumed = run.of(PlaybackPaused)[0].t, run.of(PlaybackResumed)[0].t
    assert not [e for e in run.of(AudioOut) if paused < e.t < resumed]
    assert [t.role for t in session.history] == ["user", "assistant"]  # the chatter is not part of the history


def test_two_roles_own_caches_over_one_set_of_weights(tiny, voices, voice):
    session, clock = make(tiny, [ANSWER_2, ANSWER_2], synth=voice)
    a, b = session.caches
    assert all(x is not y for x, y in zip(a.caches, b.caches, strict=True))
    assert a.llm is b.llm is tiny.model.llm  # shared weights
    jobs = []
    start = session.engine.start
    session.engine.start = lambda cache, turns, donor=None, **kw: (
        jobs.append(start(cache, turns, donor, **kw)) or jobs[-1])
    run = Run(session, clock)
    q = np.concatenate([silence(0.3), voices["question"], silence(0.6)])
    run.play(q, until_idle=True)
    run.play(q, until_idle=True)
    roles = [e.role for e in run.of(ReplyStarted)]
    assert roles[0] == roles[1]  # idle: the role that spoke last answers, its cache holds the history
    # the second prompt (system + first question + first answer + new question) reused the cached prefix
    assert jobs[0].reused == 0 and jobs[1].reused > jobs[0].cache.length // 2
    assert [t.role for t in session.history] == ["user", "assistant"] * 2
    check_reply_invariants(run)


def test_pieces_of_one_utterance_are_heard_together(tiny, voices, voice):
    """A second VAD segment that ends before the first was decided replaces it, with both pieces' audio."""
    seen: list = []
    session, clock = make(tiny, ["<2>"] * 8, synth=voice, capture=seen)
    run = Run(session, clock)
    run.play(np.concatenate([silence(0.3), voices["chatter"], silence(0.5), voices["question"], silence(0.5)]),
             ticks=0)
    run.play(silence(0.2), until_idle=True)
    (decided,) = run.of(StateDecided)
    ended = run.of(UserSpeechEnded)
    assert len(ended) == 2 and decided.utterance_id == ended[1].utterance_id
    audio = [p for p in seen[-1][-1].content if not isinstance(p, Image)][0]
    assert len(audio.source) / RATE == pytest.approx(ended[0].duration + ended[1].duration)


def test_prefix_reuse_is_exact(tiny, voices):
    """A job that reuses a cached prefix computes the same continuation as one on a cold cache."""
    from vita.processor import Audio, Turn

    engine = Engine(tiny, max_seq_len=1024, max_new_tokens=8)
    warm, cold = engine.new_cache(), engine.new_cache()
    first = [Turn("user", [Audio(voices["question"], RATE)])]
    job = engine.start(warm, first)
    while not job.done:
        job.step()
    turns = [*first, Turn("assistant", job.raw_text()), Turn("user", "and tomorrow?")]
    fresh = engine.new_cache()
    jobs = [engine.start(warm, turns), engine.start(cold, turns), engine.start(fresh, turns, donor=warm)]
    for j in jobs:
        while not j.done:
            j.step()
    assert jobs[0].reused > 0 and jobs[1].reused == 0
    assert jobs[2].copied == jobs[2].reused > 0  # the listener took the speaker's prefix instead of prefilling it
    assert jobs[0].stream.ids == jobs[1].stream.ids == jobs[2].stream.ids


def test_a_turn_over_our_reply_decides_its_state_without_the_models_bias(tiny, voices, monkeypatch):
    """`VitaConfig.state_bias` (calibrated on turns with nothing of ours playing) moves the state decision of a
    first turn; a job started for speech over our reply (`over_reply`) decides as the model itself does."""
    import dataclasses

    from vita.processor import Audio, Turn

    before, decides = tiny.state_decision  # "<" then "2"
    monkeypatch.setattr(tiny.model, "config", dataclasses.replace(tiny.model.config, state_bias=1e4))
    prefix = tiny.tokenizer.decode(list(before))
    turns = [Turn("user", [Audio(voices["question"], RATE)])]

    def state_id(over_reply: bool) -> int:
        engine = Engine(tiny, max_seq_len=1024, max_new_tokens=len(before) + 1,
                        forcing=lambda _: Script(prefix, complete=False))
        job = engine.start(engine.new_cache(), turns, over_reply=over_reply)
        while not job.done:
            job.step()
        return job.stream.ids[len(before)]

    assert state_id(False) == decides  # the bias decides
    assert state_id(True) != decides  # the random model's own choice is another id: the bias was not applied


def test_typed_query_and_camera_frame(tiny, voices, voice):
    seen: list = []
    session, clock = make(tiny, [Script("<3> Hi.", complete=True)] + [ANSWER_2] * 4, synth=voice, capture=seen)
    run = Run(session, clock)
    run._collect(session.feed(TextIn("hello?")))
    run.play(silence(0.5), until_idle=True)
    assert run.of(ReplyFinished)[0].text == "Hi."
    frame = np.full((64, 64, 3), 128, np.uint8)
    run.play(np.concatenate([silence(0.3), voices["question"]]))
    run._collect(session.feed(VideoFrame(frame)))  # the camera frame seen while the user speaks
    run.play(silence(0.6), until_idle=True)
    user = seen[-1][-1]
    assert user.role == "user" and any(isinstance(p, Image) for p in user.content)
    assert not any(isinstance(p, Image) for t in session.history for p in (t.content if not isinstance(
        t.content, str) else []))  # frames are not kept in the history
    check_reply_invariants(run)


@pytest.mark.parametrize("front", ["aec+gate", "gate", "off"])
def test_echo_of_our_playback_does_not_interrupt(tiny, voice, voices, front):
    """Our own (Piper) voice leaks into the mic at -6 dB after 40 ms. With AEC3 + gate, or the reference gate
    alone, it never pauses us; with the front end off (control) the same echo is taken for a user."""
    if front == "aec+gate" and not aec_available():
        pytest.skip("pywebrtc-audio not installed")
    gate = {"aec+gate": GateConfig(aec=True), "gate": GateConfig(aec=False), "off": GateConfig(enabled=False)}[front]
    session, clock = make(tiny, [ANSWER_1] + ["<2>"] * 10, synth=voice, gate=gate)
    run = Run(session, clock)
    run.play(np.concatenate([silence(0.3), voices["question"], silence(0.4)]))
    run.play(silence(0.2), echo_gain=0.5, until_idle=True, max_s=12.0)
    r1 = run.of(ReplyStarted)[0].reply_id
    if front == "off":
        assert run.of(PlaybackPaused)  # the echo would have paused us
        return
    assert run.of(PlaybackPaused, ReplyCancelled) == []
    assert len(run.of(UserSpeechStarted)) == 1  # only the real question
    assert run.of(ReplyFinished)[0].reply_id == r1
    assert session.frontend.gated_frames > 0
    check_reply_invariants(run)


# ---- turn-taking: speculation, the state token as turn signal, backchannels, pauses ---------------------------


def _speech_end(piece_end_s: float, pcm: np.ndarray) -> float:
    """True end of speech (s) of `pcm` placed to end at `piece_end_s`: its last sample above -45 dBFS."""
    loud = np.nonzero(np.abs(pcm) > 10 ** (-45 / 20))[0]
    return piece_end_s - (len(pcm) - loud[-1]) / RATE


def test_speculative_reply_is_discarded_without_a_trace(tiny, voices, voice):
    """A short silence starts a held-back reply; the user going on discards it: no event, nothing in the history,
    the committed reply is the second one prepared, on the whole utterance."""
    seen: list = []
    q = voices["question"]
    half = len(q) // 2
    cut = half + int(np.argmin(np.abs(q[half : half + 3000])))
    # commit_silence 400 ms: the 0.3 s gap is a pause (speculation starts at 160 ms), the end is the end
    session, clock = make(tiny, [ANSWER_2, ANSWER_1], synth=voice, capture=seen, min_silence_ms=600,
                          commit_silence_ms=400)
    run = Run(session, clock)
    run.play(np.concatenate([silence(0.3), q[:cut], silence(0.3)]), ticks=20)
    assert len(seen) == 1 and session.listening is not None and session.listening.speculative
    assert not run.of(UserSpeechEnded, StateDecided, ReplyStarted)  # held back: nothing is announced
    run.play(np.concatenate([q[cut:], silence(0.8)]), until_idle=True, ticks=20)
    check_reply_invariants(run)
    assert len(seen) >= 2
    (ended,), (decided,), (started,) = run.of(UserSpeechEnded), run.of(StateDecided), run.of(ReplyStarted)
    assert decided.utterance_id == ended.utterance_id == started.utterance_id
    (fin,) = run.of(ReplyFinished)
    assert fin.text == ANSWER_1[len("<1> "):]  # the discarded speculation's script (ANSWER_2) left nothing ...
    assert audio_of(run, started.reply_id) == voice.samples(fin.text)  # ... not even speech rendered ahead
    assert [t.role for t in session.history] == ["user", "assistant"]
    (audio,) = [p for p in session.history[0].content if isinstance(p, Audio)]
    assert len(audio.source) / RATE == pytest.approx(ended.duration)
    assert len(audio.source) > cut  # both pieces


@pytest.mark.parametrize(("script", "early"), [(ANSWER_2, True), ("<2>", False)])
def test_state_token_ends_the_turn_early(tiny, voices, voice, script, early):
    """An "answer" state commits after commit_silence_ms of silence, long before the VAD's min_silence_ms; `<2>`
    waits for the whole hangover (and is dropped)."""
    session, clock = make(tiny, [script, script], synth=voice, min_silence_ms=700, commit_silence_ms=250)
    run = Run(session, clock)
    q = voices["question"]
    run.play(np.concatenate([silence(0.3), q, silence(1.2)]), until_idle=True, ticks=20)
    (ended,) = run.of(UserSpeechEnded)
    wait = ended.t - _speech_end(0.3 + len(q) / RATE, q)
    if early:
        assert 0.25 <= wait < 0.45 and run.of(ReplyStarted)
    else:
        assert wait >= 0.7 and not run.of(ReplyStarted)


@pytest.mark.parametrize(("score", "wait"), [(0.0, (1.2, 1.4)), (0.9, (0.25, 0.45))])
def test_a_fragment_holds_the_turn_open(tiny, voices, voice, monkeypatch, score, wait):
    """A held-back "answer" whose end-of-turn score is below `fragment_score` (a fragment: "What is the ...") neither
    commits early nor ends at min_silence_ms: the segment waits `fragment_hold_ms` of silence, then is answered. A
    high score commits early as before (the tiny model has no score of its own: patched here)."""
    monkeypatch.setattr(ReplyJob, "end_of_turn", property(lambda job: score if job.reply is not None else None))
    session, clock = make(tiny, [ANSWER_2, ANSWER_2], synth=voice, min_silence_ms=700, commit_silence_ms=250,
                          fragment_hold_ms=1200)
    run = Run(session, clock)
    q = voices["question"]
    run.play(np.concatenate([silence(0.3), q, silence(1.8)]), until_idle=True, ticks=20)
    (ended,) = run.of(UserSpeechEnded)
    waited = ended.t - _speech_end(0.3 + len(q) / RATE, q)
    assert wait[0] <= waited < wait[1] and run.of(ReplyStarted)


def test_backchannel_never_stops_the_reply(tiny, voices, voice, piper):
    """Headphones (no echo gate, which in a speaker setup already keeps a quiet "yeah" from the VAD)."""
    seen: list = []
    session, clock = make(tiny, [ANSWER_1], synth=voice, capture=seen, gate=GateConfig(enabled=False))
    run = Run(session, clock)
    run.play(np.concatenate([silence(0.3), voices["question"], silence(0.4)]))
    run.play(silence(1.5))
    (r1,) = run.of(ReplyStarted)
    mm = (0.5 * piper("Yeah.")).astype(np.float32)
    calls = len(seen)
    run.play(np.concatenate([mm, silence(0.4)]))
    (bc,) = run.of(Backchannel)
    assert bc.reply_id == r1.reply_id and bc.speech_s < SessionConfig().backchannel_s
    run.play(silence(0.2), until_idle=True)
    check_reply_invariants(run)
    assert len(seen) == calls  # the backchannel never reached the model
    assert not run.of(ReplyCancelled)
    (fin,) = run.of(ReplyFinished)
    visible = ANSWER_1[len("<1> "):]
    assert fin.text == visible and audio_of(run, r1.reply_id) == voice.samples(visible)  # nothing lost
    paused = [e.t for e in run.of(PlaybackPaused)]
    resumed = [e.t for e in run.of(PlaybackResumed)]
    assert len(paused) == len(resumed) >= 1
    assert resumed[0] - paused[0] < len(mm) / RATE + 0.35  # silent for about the backchannel itself
    assert [t.role for t in session.history] == ["user", "assistant"]


@pytest.mark.parametrize("speculate", [True, False], ids=["speculated", "not-speculated"])
def test_pause_then_more_is_answered_as_one_utterance(tiny, voices, voice, speculate):
    """The user stops, we start answering, the user goes on within continuation_s: the reply is withdrawn and the
    two pieces are answered together, with the item attached to the question; the history holds the merged
    question and the one answer."""
    q = voices["question"]
    half = len(q) // 2
    cut = half + int(np.argmin(np.abs(q[half : half + 3000])))
    seen: list = []
    session, clock = make(tiny, [ANSWER_LONG, ANSWER_2], synth=voice, gate=GateConfig(enabled=False), capture=seen,
                          **({} if speculate else {"speculative": False}))
    session.feed(Attach("note", ("The photo shows a red kite.",)))
    jobs = []
    start = session.engine.start
    session.engine.start = lambda cache, turns, donor=None, **kw: (
        jobs.append(start(cache, turns, donor, **kw)) or jobs[-1])
    run = Run(session, clock)
    run.play(np.concatenate([silence(0.3), q[:cut], silence(0.6)]), ticks=20)
    (r1,) = run.of(ReplyStarted)
    run.play(np.concatenate([q[cut:], silence(0.6)]), until_idle=True, ticks=20)
    check_reply_invariants(run)
    (cancel,) = run.of(ReplyCancelled)
    assert cancel.reply_id == r1.reply_id and cancel.reason == "continuation"
    (fin,) = run.of(ReplyFinished)
    assert fin.text == ANSWER_2[len("<1> "):]
    assert [t.role for t in session.history] == ["user", "assistant"]
    assert session.history[1].content == ANSWER_2
    (audio,) = [p for p in session.history[0].content if isinstance(p, Audio)]
    assert len(audio.source) > len(q)  # both pieces (and the pause between them)
    assert session.history[0].content[0] == "The photo shows a red kite."  # the question's item stays with it
    assert [t.role for t in seen[-1]] == ["user"]  # the merged question alone: no first piece, no withdrawn reply
    assert all(j.state_bias for j in jobs)  # a continued question is a first turn, not speech over a reply


def test_speech_rendered_on_its_own_thread_plays_the_same_audio(tiny, voices, voice):
    """A `SpeechWorker` in place of the inline TTS: the same phrases, the same samples, in order; the session only
    collects them (a driver waits in `tts.wait` when nothing else is to do)."""
    from vita.speech.tts import SpeechWorker

    played = {}
    for threaded in (False, True):
        session, clock = make(tiny, [ANSWER_1], synth=voice)
        if threaded:
            session.tts = SpeechWorker(voice, min_chars=8)
            session.playout.rate = session.tts.sample_rate
        run = Run(session, clock)
        run.play(np.concatenate([silence(0.3), voices["question"], silence(0.5)]))
        for _ in range(3000):
            if not session.busy:
                break
            if session.waiting_for_speech:
                session.tts.wait(1.0)
            run.play(silence(0.02))
        check_reply_invariants(run)
        played[threaded] = np.concatenate([e.pcm for e in run.of(AudioOut)])
        if threaded:
            session.tts.close()
    np.testing.assert_array_equal(played[True], played[False])


def test_every_spoken_answer_is_spoken_after_a_finished_reply(tiny, voices, voice):
    """A reply that finished leaves its speech closed; the next question's reply, rendered ahead while held back,
    is spoken all the same (it once finished silently: the remainder of its text never reached the synthesizer)."""
    session, clock = make(tiny, [ANSWER_2, ANSWER_2, ANSWER_2, ANSWER_2, ANSWER_2, ANSWER_2], synth=voice)
    run = Run(session, clock)
    for _ in range(2):
        run.play(np.concatenate([silence(0.3), voices["question"], silence(0.8)]), until_idle=True, ticks=20)
    check_reply_invariants(run)
    finished = run.of(ReplyFinished)
    assert len(finished) == 2
    for fin in finished:
        assert fin.text == ANSWER_2[len("<1> "):]
        assert audio_of(run, fin.reply_id) == voice.samples(fin.text)
