"""The duplex session: a pure state machine over typed events (no sockets, threads or sleeps), on a given clock.

    feed(InEvent) -> events     cheap: echo gate, VAD, pause/resume, playback release; queries (TextIn, Ask),
                                conversation items (Attach, Detach) and control (Commit, Clear, Cancel, DropTurn,
                                Configure) are input events too
    tick() -> events            ONE bounded unit of model/TTS work, then playback release

Two roles share the weights; each owns a KV cache (`roles.RoleCache`). The speaking role decodes the current
reply; the other one listens. Flow (reference/duplex-design.md):
  * VAD onset while a reply is active -> pause playback at once (PlaybackPaused); generation may go on.
  * VAD end -> the listening role prefills history + the utterance (+ the latest camera frame) and reads the
    state token, then, for an answer state, decodes up to the first visible text (StateDecided):
      `<2>` (or nothing to say: an answer state followed by a stop) -> dropped; after `resume_delay_s` more
      silence playback resumes where it paused, nothing lost.
      otherwise -> the active reply is cancelled in the same tick (ReplyCancelled with the text actually heard; the
      history keeps only that), its unplayed audio and text are dropped, and the listener's reply starts: its
      decode steps stream TextDelta -> clause TTS -> AudioOut, paced by the clock.
  * A reply ends with exactly one terminal event: ReplyFinished (all of it played) or ReplyCancelled.
  * Items (`Attach`, `Detach`) wait for the next user turn, typed or spoken, which takes them all, once
    (`vita.duplex.items`); a turn speculated on without them is discarded when one comes. The utterances
    themselves (items, camera frame, audio, ids) are built by `vita.duplex.utterances`.
Turn-taking beyond a fixed VAD hangover (speculation, the state token as turn signal, backchannels, pauses) and
the scheduler are the policy of `vita.duplex.turn_taking`. The mic passes an echo front end (`vita.speech.echo`) fed
with our own playback, so our voice leaking back does not pause or interrupt us. Stage timestamps (for `vita bench
duplex`): `stages` is a `vita.duplex.stages.StageLog`.
"""

from __future__ import annotations

from vita.config import SAMPLE_RATE
from vita.duplex.events import (
    Ask,
    Attach,
    AudioIn,
    AudioOut,
    Backchannel,
    Cancel,
    Clear,
    Clock,
    Commit,
    Configure,
    Detach,
    DropTurn,
    InEvent,
    OutEvent,
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
from vita.duplex.items import joined
from vita.duplex.playout import Playout
from vita.duplex.roles import ReplyEngine
from vita.duplex.stages import StageLog
from vita.duplex.turn_taking import (
    Listen,
    Reply,
    SessionConfig,
    Utterance,
    answered,
    decided,
    ends_early,
    fragment,
    is_backchannel,
    is_pause,
    pending_step,
    pick,
    prompt,
    starving,
    trimmed,
)
from vita.duplex.utterances import Utterances, continued
from vita.generation.loop import PendingStep
from vita.media.audio import resample
from vita.processor import Image, Turn
from vita.speech.echo import MicFrontEnd
from vita.speech.tts import StreamingTTS
from vita.speech.vad import (
    SpeechDiscarded,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    StreamingVAD,
    VADConfig,
)


class Session:
    def __init__(self, engine: ReplyEngine, tts: StreamingTTS, *, clock: Clock, config: SessionConfig | None = None,
                 vad: StreamingVAD | None = None) -> None:
        self.engine, self.tts, self.clock = engine, tts, clock
        self.config = config or SessionConfig()
        self.vad = vad or StreamingVAD(self.config.vad)
        self.frontend = MicFrontEnd(self.config.gate)
        self.caches = [engine.new_cache(), engine.new_cache()]  # role 0, role 1: one set of weights
        self.history: list[Turn] = []
        self.playout = Playout(tts.sample_rate, lead_s=self.config.lead_s, min_chunk_s=self.config.min_chunk_s)
        self.reply: Reply | None = None  # the speaking role's reply
        self.listening: Listen | None = None  # the listening role's undecided utterance
        self._turns = Utterances(clock, camera_window_s=self.config.camera_window_s)  # what the next user turn holds
        self._last_role = 0
        self._resume_at: float | None = None  # playback resumes then, if the user stays silent
        self._mic_t0 = float("inf")  # clock time of the first mic sample (aligns the echo reference)
        self._over_reply: int | None = None  # the reply that was active when the user's current segment started
        self._continues: Reply | None = None  # a reply the current segment may turn out to continue (a pause)
        self._last_reply_id = 0
        self.stages = StageLog()  # utterance id -> stage -> clock time (`vita.duplex.stages.STAGES`)

    def _stamp(self, utterance_id: int, stage: str) -> None:
        self.stages.stamp(utterance_id, stage, self.clock.now())

    # ---- observers ---------------------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """listening | user_speaking | thinking | speaking | paused (derived, for display and tests)."""
        if self.vad.in_speech:
            return "user_speaking"
        if self.listening is not None:
            return "thinking"
        if self.reply is not None:
            return "paused" if self.playout.paused else "speaking"
        return "listening"

    @property
    def busy(self) -> bool:
        """True while there is model, TTS or playback work left (a driver ticks until False)."""
        return self.listening is not None or self.reply is not None

    @property
    def has_work(self) -> bool:
        """True when `tick()` would do a unit of work now (a driver may sleep or feed audio otherwise)."""
        return self._pick() is not None

    @property
    def next_unit(self) -> str | None:
        """The unit `tick()` would run now: "listen" (deciding or speculating on a turn), "speak", "tts" or None."""
        return self._pick()

    def pending_step(self) -> PendingStep | None:
        """The native decode forward the next `tick()` runs, or None: a driver batches several sessions' ones."""
        return pending_step(self._pick(), self.reply, self.listening)

    @property
    def turn_pending(self) -> bool:
        """The user waits on us: a turn is being decided or speculated on, or its reply has no phrase cut yet."""
        r = self.reply
        return self.listening is not None or (r is not None and not r.job.done and not self.tts.started
                                              and self.playout.queued == 0)

    @property
    def starving(self) -> bool:
        """`turn_taking.starving`: a driver sharing one model between sessions decodes for this reply soon."""
        return starving(self.reply, self.playout, self.config, self._pick())

    @property
    def speculating(self) -> bool:
        """A turn is being prepared ahead of its end (invisible to the transport until the commit)."""
        return self.listening is not None and self.listening.speculative

    @property
    def waiting_for_speech(self) -> bool:
        """The reply's speech renders off this thread (`SpeechWorker`), nothing else to do: a driver may wait."""
        return self.reply is not None and self.tts.pending and not self.tts.ready and not self.has_work

    @property
    def user_speaking(self) -> bool:
        """The VAD holds an open speech segment (what a `Commit` would close)."""
        return self.vad.in_speech

    @property
    def responding(self) -> bool:
        """A reply is active or a committed turn is being decided: what a `Cancel` stops (not a speculation)."""
        return self.reply is not None or (self.listening is not None and not self.listening.speculative)

    @property
    def deciding(self) -> bool:
        """A turn (committed or speculated on) not `turn_taking.decided` yet: no state token, or no answer text."""
        return self.listening is not None and not decided(self.listening.job)

    @property
    def pending_items(self) -> tuple[str, ...]:
        """The ids of the items (`Attach`) waiting for the next user turn."""
        return self._turns.items.ids

    @property
    def vad_config(self) -> VADConfig:
        """The VAD settings in force (`Configure` replaces them)."""
        return self.vad.config

    # ---- input -------------------------------------------------------------------------------------------------
    def feed(self, event: InEvent) -> list[OutEvent]:
        """Apply one input event (`vita.duplex.events`): returns the events it caused, playback due now included."""
        events: list[OutEvent] = []
        if isinstance(event, AudioIn):
            # the clock time of mic sample 0: feeding late (a backlog) only makes the estimate larger, so keep the min
            seen = self.frontend.received + len(event.pcm)
            self._mic_t0 = min(self._mic_t0, self.clock.now() - seen / SAMPLE_RATE)
            # a speculated piece that sounds unfinished keeps the segment open longer (`turn_taking.fragment`)
            self.vad.hold(self.config.fragment_hold_ms if fragment(self.listening, self.config) else 0.0)
            for ev in self.vad.step(self.frontend.step(event.pcm)):
                self._on_vad(ev, events)
            self._commit_early(events)
        elif isinstance(event, VideoFrame):
            self._turns.see(event.image, event.t)
        elif isinstance(event, (TextIn, Ask)):
            utt = self._turns.typed([event.text] if isinstance(event, TextIn) else list(event.parts))
            if utt is not None:  # (an empty Ask with nothing pending asks nothing)
                self._stamp(utt.id, "vad_end")
                self._listen(utt, events)
        elif isinstance(event, Attach):
            self._turns.items.attach(event.item_id, event.parts)
            self._drop_speculation()  # prepared without it: redone at the next pause or at the end of speech
        elif isinstance(event, Detach):
            self._turns.items.detach(event.item_id)
        elif isinstance(event, Commit):
            for ev in self.vad.flush():
                self._on_vad(ev, events)
        elif isinstance(event, Clear):
            self.vad.discard()
            self._drop_speculation()
            self._continues = None
            self._maybe_resume(events)
        elif isinstance(event, Cancel):
            if self.reply is not None:
                self._cancel_reply(events)
            else:
                self._drop_turn()
        elif isinstance(event, DropTurn):
            self._drop_turn()
        elif isinstance(event, Configure):
            self.vad.config = event.vad
            self.engine.system = event.system
        else:
            raise TypeError(f"unknown input event {type(event).__name__}")
        self._release(events)
        self._trim_history()
        return events

    def _trim_history(self) -> None:
        """A long session stays bounded and its prompts keep their prefix (`turn_taking.trimmed`)."""
        self.history[:] = trimmed(self.history, self.config)

    def _drop_turn(self) -> None:
        if self.listening is not None:
            if self.listening.rendering:
                self.tts.cancel()
            self.listening.job.cancel()
            self.listening = None

    def _on_vad(self, ev, events: list[OutEvent]) -> None:
        now, r, cfg = self.clock.now(), self.reply, self.config
        if isinstance(ev, SpeechStarted):
            events.append(UserSpeechStarted(now))
            self._resume_at = None
            self._over_reply = r.id if r is not None else None
            self._continues = None
            if r is not None:
                if is_pause(r, now, len(self.playout.heard_text().split()), cfg):
                    self._continues = r
                if not self.playout.paused:
                    self.playout.pause(now)
                    events.append(PlaybackPaused(now, r.id))
        elif isinstance(ev, SpeechPaused):
            if self._backchannel(ev.speech_s):
                pass  # a short sound over our reply: nothing to prepare (`_commit_early` ends it soon)
            elif cfg.speculative and (self.listening is None or self.listening.speculative):
                self._drop_speculation()
                question = self._question()
                self._listen(self._turns.spoken(continued(ev.audio, question), after=question), events,
                             speculative=True)
        elif isinstance(ev, SpeechResumed):
            self._drop_speculation()  # the user goes on: what was prepared is discarded without a trace
            if r is not None and not self.playout.paused and self._over_reply == r.id:
                self.playout.pause(now)
                events.append(PlaybackPaused(now, r.id))
        elif isinstance(ev, SpeechDiscarded):
            self._drop_speculation()
            self._maybe_resume(events)
        elif isinstance(ev, SpeechEnded):
            self._end_of_turn(ev, events)

    def _end_of_turn(self, ev: SpeechEnded, events: list[OutEvent]) -> None:
        """The VAD (or `_commit_early`) closed a segment: a backchannel, or an utterance to commit or to start."""
        now, r = self.clock.now(), self.reply
        if self._backchannel(ev.speech_s):
            self._drop_speculation()
            assert r is not None
            events.append(Backchannel(now, r.id, ev.speech_s))
            if self.playout.paused and self._can_resume():
                self.playout.resume(now)
                events.append(PlaybackResumed(now, r.id))
            return
        question = self._question()
        audio = continued(ev.audio, question)
        if self._continues is not None and self._continues is r:  # the user had paused: one utterance
            self._cancel_reply(events, reason="continuation")
        self._continues = None
        lst = self.listening
        if lst is not None and lst.speculative and self._turns.stale(lst.utterance):
            self._drop_speculation()  # a camera frame or an item came after the snapshot: it belongs to this turn
            lst = None
        if lst is not None and lst.speculative:
            # commit: no speech came back since the snapshot (that drops it), so the held-back work is this
            # utterance's; its audio is the snapshot's (the end pad may be a few ms shorter)
            lst.speculative = False
            utt = lst.utterance
            assert utt.audio is not None
            self._turns.items.take(utt.items)
            events.append(UserSpeechEnded(now, utt.id, len(utt.audio) / SAMPLE_RATE, utt.items))
            self._stamp(utt.id, "vad_end")
            if decided(lst.job):
                self._decide(events)
            return
        self._drop_speculation()
        utt = self._turns.spoken(audio, after=question)  # a continued question's items come with its audio
        self._turns.items.take(utt.items)
        events.append(UserSpeechEnded(now, utt.id, len(audio) / SAMPLE_RATE, utt.items))
        self._stamp(utt.id, "vad_end")
        self._listen(utt, events)

    def _backchannel(self, speech_s: float) -> bool:
        return is_backchannel(self.reply, self._over_reply, self._continues, speech_s, self.config)

    def _question(self) -> Utterance | None:
        """The question of the reply this segment continues (the user had paused), else None."""
        r = self._continues
        return r.utterance if r is not None and r is self.reply else None

    def _drop_speculation(self) -> None:
        lst = self.listening
        if lst is not None and lst.speculative:
            if lst.rendering:
                self.tts.cancel()  # its speech was being rendered ahead: none of it is ever played
            lst.job.cancel()
            self.listening = None
            self.stages.pop(lst.utterance.id, None)

    def _commit_early(self, events: list[OutEvent]) -> None:
        """End the segment before the VAD's min_silence_ms: a backchannel after `backchannel_end_ms` of silence
        (playback goes on), or a turn whose held-back reply says "answer" after `commit_silence_ms`."""
        lst, cfg, vad = self.listening, self.config, self.vad
        if vad.in_speech and self._backchannel(vad.speech_s) and vad.silence_ms >= cfg.backchannel_end_ms:
            for ev in vad.end_now():
                self._on_vad(ev, events)
            return
        if ends_early(lst, vad, self._backchannel(vad.speech_s), cfg):
            for ev in vad.end_now():
                self._on_vad(ev, events)

    def _listen(self, utt: Utterance, events: list[OutEvent], *, speculative: bool = False) -> None:
        lst = self.listening
        if lst is not None:  # still deciding on the previous piece: hear both as one utterance
            lst.job.cancel()
            utt = joined(lst.utterance, utt, committed=not lst.speculative)  # a committed piece's items stay
        role = 1 - self.reply.role if self.reply is not None else self._last_role
        r = self.reply  # speech that started over this reply, not the rest of its paused question: no state bias
        over = r is not None and self._over_reply == r.id and self._continues is not r
        job = self.engine.start(self.caches[role], self._prompt(utt), donor=self.caches[1 - role], over_reply=over)
        self.listening = Listen(role, job, utt, speculative=speculative)

    def _prompt(self, utt: Utterance) -> list[Turn]:
        r = self.reply
        continuing = r is not None and self._continues is r
        heard = self.playout.heard_text() if r is not None and not continuing else ""
        spoken = Turn("assistant", r.job.raw_text(len(heard))) if r is not None and heard.strip() else None
        return prompt(self.history, utt, self.config.history_turns, withdrawn=continuing, heard=spoken)

    # ---- work --------------------------------------------------------------------------------------------------
    def _pick(self) -> str | None:
        return pick(self.reply, self.listening, self.playout, self.tts, self.config)

    def tick(self) -> list[OutEvent]:
        events: list[OutEvent] = []
        unit = self._pick()
        if unit == "listen":
            assert self.listening is not None
            lst = self.listening
            job = lst.job
            delta = job.step()
            self.stages.stamp_step(lst.utterance.id, job, delta, self.clock.now())
            lst.held += delta
            if delta and lst.speculative and (lst.rendering or (self.reply is None and lst.held == delta)):
                if not lst.rendering:  # nothing else speaks: a clean synthesizer for this reply (a finished
                    self.tts.reset()  # reply left it closed; `_decide` resets it likewise when nothing was rendered)
                self.tts.push(delta)  # render the first phrase ahead (a SpeechWorker does it now, off this thread)
                lst.rendering = True
            if not lst.speculative and decided(job):
                self._decide(events)
            elif lst.speculative and job.state_resolved:
                self._commit_early(events)
        elif unit == "speak":
            assert self.reply is not None
            self._text(self.reply.job.step(), events)
        elif unit == "tts":
            chunk = self.tts.synthesize_next()
            if chunk is not None:
                self.playout.add(chunk)
                if len(chunk.pcm) and self.reply is not None:
                    self._stamp(self.reply.utterance.id, "first_tts")
        self._release(events)
        self._trim_history()
        return events

    def release(self) -> list[OutEvent]:
        """The playback due now and nothing else (for a driver whose unit of work waits on a shared model)."""
        events: list[OutEvent] = []
        self._release(events)
        return events

    def _decide(self, events: list[OutEvent]) -> None:
        lst, now = self.listening, self.clock.now()
        assert lst is not None
        self.listening = None
        job = lst.job
        answers = answered(job)
        events.append(StateDecided(now, lst.utterance.id, job.state, lst.role, answers))
        if not answers:
            job.cancel()
            self._maybe_resume(events)
            return
        if self.reply is not None:
            self._cancel_reply(events)
        self.history.append(Turn("user", [p for p in lst.utterance.parts if not isinstance(p, Image)]))
        self._last_reply_id += 1
        self.reply = Reply(self._last_reply_id, lst.role, job, lst.utterance, t_started=now)
        self._last_role = lst.role
        if not lst.rendering:
            self.tts.cancel()
        self.playout.reset(now)
        events.append(ReplyStarted(now, self.reply.id, lst.utterance.id, lst.role))
        if self.vad.in_speech:  # the user already talks again: start silent
            self.playout.pause(now)
            events.append(PlaybackPaused(now, self.reply.id))
        self._text(lst.held, events, speak=not lst.rendering)

    def _text(self, delta: str, events: list[OutEvent], *, speak: bool = True) -> None:
        r = self.reply
        assert r is not None
        if delta:
            if not r.text:
                self._stamp(r.utterance.id, "first_text")
            r.text += delta
            events.append(TextDelta(self.clock.now(), r.id, delta))
            if speak:  # (held text rendered ahead is in the TTS already)
                self.tts.push(delta)
        if r.job.done and not r.text_closed:
            self.tts.end_of_text()
            r.text_closed = True

    def _cancel_reply(self, events: list[OutEvent], reason: str = "barge-in") -> None:
        r, now = self.reply, self.clock.now()
        assert r is not None
        r.job.cancel()
        self.tts.cancel()
        heard = self.playout.heard_text()
        self.playout.reset(now)
        if reason == "continuation":  # the user had paused: neither the reply nor the first piece alone stays
            if self.history and self.history[-1].role == "user":
                self.history.pop()
        elif heard.strip():
            self.history.append(Turn("assistant", r.job.raw_text(len(heard))))
        events.append(ReplyCancelled(now, r.id, heard.strip(), reason))
        self.reply = None

    def _can_resume(self) -> bool:
        return self.reply is not None and self.playout.paused and not self.vad.in_speech and self.listening is None

    def _maybe_resume(self, events: list[OutEvent]) -> None:
        """Nothing to answer: resume after `resume_delay_s` of continued silence (checked in `_release`)."""
        if self._can_resume():
            self._resume_at = self.clock.now() + self.config.resume_delay_s
            self._release(events)

    def _release(self, events: list[OutEvent]) -> None:
        r, now = self.reply, self.clock.now()
        if r is None:
            return
        if self._resume_at is not None and now >= self._resume_at:
            self._resume_at = None
            if self._can_resume():
                self.playout.resume(now)
                events.append(PlaybackResumed(now, r.id))
        pcm = self.playout.release(now)
        if len(pcm):
            events.append(AudioOut(now, r.id, pcm, self.playout.rate))
            self._stamp(r.utterance.id, "first_audio")
            at = int((now - self._mic_t0) * SAMPLE_RATE) if self._mic_t0 < float("inf") else None
            self.frontend.play(resample(pcm, self.playout.rate, SAMPLE_RATE), at=at)  # the mic records it from now on
        if r.text_closed and not self.tts.pending and self.playout.buffered == 0:
            self.history.append(Turn("assistant", r.job.raw_text()))
            events.append(ReplyFinished(now, r.id, r.text.strip()))
            self.reply = None
