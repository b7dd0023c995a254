"""The model side of one `/v1/realtime` connection: its two role caches, prompts bounded to fit them, its voice.

    BoundedRoles   the duplex `roles.Engine` with role caches of the connection's own (the LLM's default cache is
                   the chat requests') and jobs whose prompt always fits (`BoundedJob`)
    fit_turns      the newest turns that fit a position budget (an upper estimate; never tokenizes audio)
    Voice          the shared synthesizer at 24 kHz, silent while the session's modalities are text only

Everything here runs on the model thread (`vita.server.worker`), as the duplex session's `tick()` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from vita.config import SAMPLE_RATE
from vita.duplex.roles import Engine as RoleEngine
from vita.duplex.roles import ReplyJob
from vita.errors import PromptError
from vita.media.prompt import SYSTEM_PROMPTS
from vita.processor import Audio, Image, Turn
from vita.server.realtime_events import OUTPUT_RATE


class BoundedJob(ReplyJob):
    """A reply job whose prompt always fits its cache: before embedding (on the model thread) the oldest exchanges
    are dropped until system + history + the new utterance leave room for a reply (an estimate from text tokens
    and audio lengths, never below the real count). An utterance that cannot fit even alone is a `PromptError`."""

    def _embed(self) -> None:
        size = self.cache.max_seq_len
        reserve = min(self.max_new_tokens, size // 4)
        self.turns = fit_turns(self.vita, self.turns, self.system, size - reserve)
        super()._embed()


class BoundedRoles(RoleEngine):
    """The duplex engine (role caches of their own, end-of-turn score, state bias) whose jobs trim the history by
    positions (`BoundedJob`)."""

    job = BoundedJob


def _turn_positions(vita: Any, turn: Turn) -> int:
    """An upper estimate of a turn's prompt positions: its text tokens, audio adapter frames and image tiles."""
    parts = [turn.content] if isinstance(turn.content, str) else turn.content
    n = 8  # role name, separators, end marker
    for p in parts:
        if isinstance(p, str):
            n += len(vita.tokenizer.encode(p, add_special_tokens=False))
        elif isinstance(p, Audio):
            samples = len(p.source) * SAMPLE_RATE / (p.sample_rate or SAMPLE_RATE)
            n += vita.processor.audio_tokens(math.ceil(samples / 160)) + 1  # 10 ms feature frames
        elif isinstance(p, Image):
            vision = vita.config.vision
            n += (vision.max_tiles + 1) * vision.tokens_per_tile if vision is not None else 0
    return n


def fit_turns(vita: Any, turns: list[Turn], system: str | None, budget: int) -> list[Turn]:
    """The newest turns (starting with a user turn) whose positions, with the system prompt's, fit `budget`."""
    used = len(vita.tokenizer.encode(system if system is not None else SYSTEM_PROMPTS["video"])) + 8
    sizes = [_turn_positions(vita, t) for t in turns]
    used += sizes[-1]
    if used > budget:
        raise PromptError(f"the instructions and this utterance need about {used} positions; the session has "
                          f"{budget} (a shorter utterance or shorter instructions fit)")
    start = len(turns) - 1
    while start > 0 and used + sizes[start - 1] <= budget:
        start -= 1
        used += sizes[start]
    while start < len(turns) - 1 and turns[start].role != "user":
        start += 1
    return turns[start:]


class Voice:
    """The shared synthesizer at 24 kHz, silent (no samples) while the session's modalities are text only."""

    out_rate = OUTPUT_RATE

    def __init__(self, synth: Callable[[str], np.ndarray] | None) -> None:
        self.synth, self.enabled = synth, synth is not None

    def __call__(self, text: str) -> np.ndarray:
        return self.synth(text) if self.enabled and self.synth is not None else np.zeros(0, np.float32)
