"""Typed events in and out of a duplex `Session`, and the clock it reads (tests pass a `FakeClock`).

In (transport -> session):   media:      AudioIn (mic pcm), VideoFrame (camera)
                             queries:    TextIn (typed text), Ask (text and images)
                             items:      Attach (a conversation item that joins the next user turn, typed or
                                         spoken), Detach (take a pending one back)
                             control:    Commit (close the open utterance), Clear (drop it), Cancel (stop the
                                         reply or the turn being decided), DropTurn (its job failed), Configure
                                         (VAD settings, system prompt)
Out (session -> transport):  user side:  UserSpeechStarted, UserSpeechEnded
                             decisions:  StateDecided
                             replies:    ReplyStarted, TextDelta, AudioOut, then exactly ONE of
                                         ReplyFinished | ReplyCancelled
                             playback:   PlaybackPaused, PlaybackResumed
                             turn-taking: Backchannel (short user speech over our reply: it goes on)
Times `t` are clock seconds (`Clock.now()`). Every reply event carries its `reply_id`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from vita.config import SAMPLE_RATE

if TYPE_CHECKING:
    from vita.processor import Part
    from vita.speech.vad import VADConfig


class Clock(Protocol):
    def now(self) -> float: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()


@dataclass
class FakeClock:
    """A clock tests move by hand."""

    t: float = 0.0

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


# ---- in ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioIn:
    pcm: np.ndarray  # [N] mic samples, float32 in [-1, 1] (or int16), 16 kHz mono


@dataclass(frozen=True)
class VideoFrame:
    image: np.ndarray  # [H, W, 3] uint8 RGB
    t: float | None = None  # capture time (clock seconds); None: now


@dataclass(frozen=True)
class TextIn:
    text: str  # a typed query (answered like a spoken one; the model's state is `<3>`)


@dataclass(frozen=True)
class Ask:
    parts: tuple[Part, ...]  # a typed query with optional images (`str` and `Image` parts), answered like TextIn;
    # the pending items (`Attach`) go first (empty `parts`: the pending items alone are the query)


@dataclass(frozen=True)
class Attach:
    """A conversation item (text and images) that joins the next user turn: the next `TextIn` / `Ask`, or the next
    spoken utterance (committed by the VAD or a `Commit`). A turn being speculated on when it comes is redone."""

    item_id: str
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Detach:
    """Take back a pending item (no-op once a turn has taken it)."""

    item_id: str


@dataclass(frozen=True)
class Commit:
    """The mic stream ended (or the client commits): close the open utterance now."""


@dataclass(frozen=True)
class Clear:
    """Drop the open (uncommitted) utterance and whatever was prepared for it, without a trace."""


@dataclass(frozen=True)
class Cancel:
    """Stop the speaking reply (the history keeps what was heard) or, failing that, the turn being decided; a
    cancelled reply ends with its ReplyCancelled."""


@dataclass(frozen=True)
class DropTurn:
    """Drop the turn being decided or speculated on (its job failed: the transport reports why)."""


@dataclass(frozen=True)
class Configure:
    vad: VADConfig  # from the next audio on (an open segment keeps its audio)
    system: str | None  # the system prompt of the next turns (None: the default one)


InEvent = AudioIn | VideoFrame | TextIn | Ask | Attach | Detach | Commit | Clear | Cancel | DropTurn | Configure


# ---- out --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserSpeechStarted:
    t: float


@dataclass(frozen=True)
class UserSpeechEnded:
    t: float
    utterance_id: int
    duration: float  # seconds of audio handed to the model
    items: tuple[str, ...] = ()  # the pending items (`Attach`) that joined this utterance: they are used now


@dataclass(frozen=True)
class StateDecided:
    t: float
    utterance_id: int
    state: str | None  # "<1>" / "<3>" answer, "<2>" not for us (dropped), None: the model gave no state token
    role: int
    answered: bool  # True: a reply starts for it


@dataclass(frozen=True)
class ReplyStarted:
    t: float
    reply_id: int
    utterance_id: int
    role: int


@dataclass(frozen=True)
class TextDelta:
    t: float
    reply_id: int
    text: str


@dataclass(frozen=True)
class AudioOut:
    t: float
    reply_id: int
    pcm: np.ndarray = field(repr=False)  # [N] float32 at sample_rate: play now
    sample_rate: int = SAMPLE_RATE


@dataclass(frozen=True)
class ReplyFinished:
    t: float
    reply_id: int
    text: str  # the whole visible answer (all of it was played)


@dataclass(frozen=True)
class ReplyCancelled:
    t: float
    reply_id: int
    heard: str  # the visible text actually played before the cancel (what the history keeps)
    reason: str = "barge-in"  # or "continuation": the user had only paused; the reply is withdrawn (history
    # keeps neither it nor the first piece alone: both pieces are answered as one utterance)


@dataclass(frozen=True)
class PlaybackPaused:
    t: float
    reply_id: int


@dataclass(frozen=True)
class PlaybackResumed:
    t: float
    reply_id: int


@dataclass(frozen=True)
class Backchannel:
    t: float
    reply_id: int  # the reply that went on
    speech_s: float  # how long the user spoke ("mm-hm", "yeah")


OutEvent = (
    UserSpeechStarted | UserSpeechEnded | StateDecided | ReplyStarted | TextDelta | AudioOut | ReplyFinished
    | ReplyCancelled | PlaybackPaused | PlaybackResumed | Backchannel
)
TERMINAL = (ReplyFinished, ReplyCancelled)
