"""The duplex session's turn-taking policy: when a turn ends, what a short sound or a pause is, which unit runs next.

The session (`vita.duplex.session`) holds the state and acts; the functions here only decide, reading that state.
Turn-taking beyond a fixed VAD hangover (reference/duplex-design.md, issue 13):
  * Speculation: at the user's first short silence (the VAD's SpeechPaused, `VADConfig.pause_ms`) the listening
    role already encodes and prefills the utterance so far, reads the state token and decodes the first phrase,
    held back. Speech again (SpeechResumed) discards it without a trace (no event, nothing in the history; the
    role's cache keeps only rows a later prompt reuses exactly). The VAD's end of the segment commits it.
  * The model's state token is the turn signal: once the held-back reply's state says "answer" (`<1>`/`<3>`) and
    its first word is out, the turn ends after `commit_silence_ms` of silence instead of the VAD's
    `min_silence_ms`; `<2>` (not for us) waits for the full hangover and is dropped.
  * An answer state followed by nothing (`<1>` then a stop) is no answer: a turn is decided (`decided`) at `<2>`,
    at the reply's first visible text or at its end, never at the answer state alone, so a reply that would say
    nothing never cancels the one playing (`answered`).
  * Backchannels: user speech shorter than `backchannel_s` over our reply ("mm-hm", "yeah") pauses playback for its
    length only: after `backchannel_end_ms` of silence the segment ends, playback goes on, nothing lost, and it
    never reaches the model (Backchannel event). Longer speech is a barge-in as above.
  * Pauses: when the user speaks again within `continuation_s` of the start of our reply, before
    `continuation_words` words of it were heard, the user had only paused: the reply is withdrawn
    (ReplyCancelled reason "continuation", nothing of it in the history) and both pieces are answered as one.
The scheduler (`pick`) keeps at least `low_water_s` of reply audio queued, then serves the listener, then the
reply's TTS and decode up to `high_water_s` of queued audio. With `vita.speech.tts.SpeechWorker` the phrases are
rendered on their own thread and the "tts" unit only collects them; while the first phrase renders, the reply does not
decode (`first_phrase_alone`): the first audio is what the user waits for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from vita.duplex.playout import Playout
from vita.duplex.roles import Job
from vita.generation.loop import PendingStep
from vita.processor import Part, Turn
from vita.speech.echo import GateConfig
from vita.speech.tts import StreamingTTS
from vita.speech.vad import StreamingVAD, VADConfig
from vita.tokens import STATE_NOT_QUERY


@dataclass
class SessionConfig:
    history_turns: int = 6  # completed turns kept in the prompt (the official demo keeps one exchange) ...
    # ... and past that, cut back to the latest `history_keep` (from a user turn on) in one go: the prompt's prefix,
    # and so its KV cache, then stays the same for the next exchanges; a window sliding by one exchange changes the
    # prompt right after the system prompt every turn, and each turn prefilled its whole history again (8 realtime
    # sessions on 2 cores: 160 of 182 positions recomputed per turn, prefill 58 % of the model thread's time)
    history_keep: int = 3
    low_water_s: float = 0.5  # reply audio kept queued ahead of playback before listener work runs
    high_water_s: float = 2.0  # no decode / TTS for the reply while this much audio is queued (saves the CPU for
    # the listener, and wastes less work when a barge-in cancels the rest)
    resume_delay_s: float = 0.4  # after a dropped utterance, silence before playback resumes (the user may go on)
    lead_s: float = 0.0  # head start handed to the transport's jitter buffer at a reply's first audio
    min_chunk_s: float = 0.0  # after a reply's first audio, playback handed out in pieces of at least this much
    camera_window_s: float = 1.0  # a camera frame newer than this joins the utterance
    speculative: bool = True  # start the reply at the user's first short silence, held back until the commit
    speculative_words: int = 3  # words the held-back reply decodes ahead (the first phrase)
    commit_silence_ms: float = 250.0  # silence that ends the turn once the held-back state says "answer" (0: off)
    backchannel_s: float = 0.6  # user speech shorter than this over our reply never stops it ...
    backchannel_end_ms: float = 300.0  # ... it ends after this much silence (not the VAD's min_silence_ms)
    continuation_s: float = 2.5  # the user speaks again this soon after our reply started ...
    continuation_words: int = 3  # ... with fewer words of it heard: they had paused; answer both pieces as one
    # a held-back reply whose end-of-turn score (`vita.duplex.end_of_turn`) is below `fragment_score` heard a
    # fragment ("What is the"): no early commit, and the segment ends after `fragment_hold_ms` of silence. The value
    # holds 2 % of 150 complete spoken questions of vita-mini's training records (and 24 % of 150 spoken fragments of
    # sentences; "What is the" scores ~5e-5); the earlier 0.1 held 18 % of the questions ("Can you tell me a short
    # story?" scores 0.004) for 1.5 s (`runs/s37/eot_calib.py`, 2026-12-07)
    fragment_score: float = 0.00094
    fragment_hold_ms: float = 1500.0
    # while a reply's first phrase is being rendered (a `SpeechWorker`) and none of its audio is out, the reply does
    # not decode beside it: on a machine of few cores both would share them and the first audio would come later
    # (2 cores: p50 504 -> 479 ms); with more cores decoding beside it costs nothing
    first_phrase_alone: bool = field(default_factory=lambda: (os.cpu_count() or 1) <= 4)
    vad: VADConfig = field(default_factory=VADConfig)
    gate: GateConfig = field(default_factory=GateConfig)


@dataclass
class Utterance:
    id: int
    parts: list[Part]  # [*attached, Image (camera frame)?, Audio] or [*attached, text, Image*]
    audio: np.ndarray | None  # [N] float32 16 kHz (None for typed text)
    t_end: float
    attached: list[Part] = field(default_factory=list)  # the parts of the pending items it took (`Attach`) ...
    items: tuple[str, ...] = ()  # ... and their ids
    frame: np.ndarray | None = None  # the camera frame it holds


@dataclass
class Listen:
    """The listening role's undecided (or speculated on) utterance."""

    role: int
    job: Job
    utterance: Utterance
    speculative: bool = False  # started at a short silence, not committed yet
    held: str = ""  # visible text decoded ahead of the commit
    rendering: bool = False  # the held text went to the TTS ahead of the commit (nothing else was speaking)


@dataclass
class Reply:
    """The speaking role's reply."""

    id: int
    role: int
    job: Job
    utterance: Utterance
    text: str = ""  # visible text emitted so far
    text_closed: bool = False  # the TTS was told that no more text comes
    t_started: float = 0.0


def pick(reply: Reply | None, listening: Listen | None, playout: Playout, tts: StreamingTTS,
         config: SessionConfig) -> str | None:
    """The unit of work to run now: "tts", "speak", "listen" or None (nothing to do)."""
    speak = reply is not None and not reply.job.done
    ready = reply is not None and tts.ready
    if speak and config.first_phrase_alone and not ready and tts.pending and playout.queued == 0:
        speak = False  # the first phrase renders on the speech thread: it has the CPU to itself
    starving = reply is not None and not playout.paused and playout.buffered_s < config.low_water_s
    if starving and (ready or speak):
        return "tts" if ready else "speak"
    if listening is not None and not held(listening, config):
        return "listen"
    if reply is None or playout.buffered_s >= config.high_water_s:
        return None
    return "tts" if ready else "speak" if speak else None


def starving(reply: Reply | None, playout: Playout, config: SessionConfig, unit: str | None) -> bool:
    """The reply's speech is out, less than `low_water_s` of it is queued and its next unit (`unit`, from `pick`) is
    decoding more: unless that runs soon, the speaker runs dry mid-reply."""
    return (reply is not None and playout.queued > 0 and not playout.paused
            and playout.buffered_s < config.low_water_s and unit == "speak")


def pending_step(unit: str | None, reply: Reply | None, listening: Listen | None) -> PendingStep | None:
    """The native decode forward the unit `pick` chose runs (`TokenLoop.pending_step`), or None (no job, another
    unit, or a job without one: scripted test jobs)."""
    job = listening.job if unit == "listen" and listening else reply.job if unit == "speak" and reply else None
    pending = getattr(job, "pending_step", None)
    return pending() if pending is not None else None


def held(listening: Listen, config: SessionConfig) -> bool:
    """A speculative reply that has decoded its first phrase (or said `<2>`, or ended) waits for the commit."""
    job = listening.job
    if not listening.speculative or not job.state_resolved:
        return False
    # the first phrase is cut once the word after it has begun
    return job.done or job.state == STATE_NOT_QUERY or len(listening.held.split()) > config.speculative_words


def decided(job: Job) -> bool:
    """The listener's job says enough to act on: `<2>`, the first visible text of an answer, or the end of the job."""
    return job.done or (job.state_resolved and (job.state == STATE_NOT_QUERY or bool(job.visible_text.strip())))


def answered(job: Job) -> bool:
    """A decided job answers: its state is not `<2>` and it has visible text (an answer state alone is no answer)."""
    return job.state_resolved and job.state != STATE_NOT_QUERY and bool(job.visible_text.strip())


def is_backchannel(reply: Reply | None, over_reply: int | None, continues: Reply | None, speech_s: float,
                   config: SessionConfig) -> bool:
    """Speech that started over the still active reply (`over_reply`) and is shorter than `backchannel_s` (unless
    the reply has barely begun: then even a short piece continues the user's turn, `continues`)."""
    return (reply is not None and over_reply == reply.id and speech_s < config.backchannel_s
            and continues is not reply)


def is_pause(reply: Reply, now: float, heard_words: int, config: SessionConfig) -> bool:
    """Speech starting within `continuation_s` of a spoken question's reply, with fewer than `continuation_words`
    of it heard: the user had only paused (both pieces are one utterance)."""
    return (reply.utterance.audio is not None and now - reply.t_started < config.continuation_s
            and heard_words < config.continuation_words)


def ends_early(listening: Listen | None, vad: StreamingVAD, backchannel: bool, config: SessionConfig) -> bool:
    """The held-back reply answers (an answer state and its first visible text, `answered`) and `commit_silence_ms`
    of silence passed: the turn ends now rather than after the VAD's `min_silence_ms`."""
    lst = listening
    if lst is None or not lst.speculative or not config.commit_silence_ms or not vad.in_speech:
        return False
    return (answered(lst.job) and vad.silence_ms >= config.commit_silence_ms and not backchannel
            and not fragment(lst, config))


def fragment(listening: Listen | None, config: SessionConfig) -> bool:
    """The speculated piece sounds unfinished: its job's end-of-turn score is below `fragment_score`."""
    if listening is None or not listening.speculative or not config.fragment_score:
        return False
    score = getattr(listening.job, "end_of_turn", None)
    return score is not None and score < config.fragment_score


def trimmed(history: list[Turn], config: SessionConfig) -> list[Turn]:
    """The history to keep: all of it up to `history_turns` turns; past that the latest `history_keep`, from a user
    turn on (see `SessionConfig.history_keep`)."""
    if len(history) <= config.history_turns:
        return history
    kept = history[len(history) - min(config.history_keep, config.history_turns):]
    while kept and kept[0].role != "user":
        kept = kept[1:]
    return kept


def prompt(history: list[Turn], utt: Utterance, history_turns: int, *, withdrawn: bool,
           heard: Turn | None) -> list[Turn]:
    """The listener's prompt: the latest `history_turns` turns (from a user turn on), what was heard of the active
    reply (`heard`), the utterance. A reply `withdrawn` at a pause leaves out its question too: the utterance holds
    that first piece already."""
    if withdrawn and history and history[-1].role == "user":
        history = history[:-1]
    turns = list(history[-history_turns:])
    while turns and turns[0].role != "user":
        turns.pop(0)
    if heard is not None:
        turns.append(heard)
    return [*turns, Turn("user", utt.parts)]
