"""One shared model answering chat requests: media + messages -> `ModelInputs`, then a reply as typed events.

`Engine.reply` runs the same loop as `Vita.stream` (`Vita.embed`, `Vita.token_loop` over a KV cache the
engine owns, `TextStream`) but reports the state token the moment it is known (`StateEvent`, before any text),
so a streamed answer can carry it in its first chunk. Events, in order: StateEvent, TextEvent*, (AudioEvent
interleaved when speech out is on), DoneEvent.
A `<2>` state (not a query: stay silent) ends the reply at once with no text and no audio.

Every method runs on the model thread (`vita.server.worker`); nothing here is thread-safe on its own. A reply in
flight holds a KV cache of its own (taken from a small pool, given back when it ends), so replies may interleave
on that thread: the worker runs a chat reply in slices between the realtime sessions' work. No thread state is
left set across a yield (inference mode is entered per forward, not around the generator).
`token_ids` is the one seam tests override to teacher-force a reply on random weights.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from vita.api import Vita
from vita.config import SAMPLE_RATE
from vita.generation.loop import PromptCache, cache_with_room
from vita.generation.sampling import SamplingConfig
from vita.generation.text import TextStream
from vita.processor import ModelInputs, Turn
from vita.server.errors import bad_request
from vita.tokens import STATE_NOT_QUERY


@dataclass(frozen=True)
class Params:
    max_new_tokens: int | None  # None: whatever context is left (capped by the server's limit)
    sampling: SamplingConfig
    stop_strings: tuple[str, ...] = ("</s>",)
    seed: int | None = None


@dataclass(frozen=True)
class StateEvent:
    state: str | None  # "<1>" | "<2>" | "<3>" | None (the model wrote none)


@dataclass(frozen=True)
class TextEvent:
    text: str


@dataclass(frozen=True)
class AudioEvent:
    pcm: np.ndarray  # [N] float32 at sample_rate
    transcript: str  # the clause this audio says
    sample_rate: int


@dataclass(frozen=True)
class DoneEvent:
    state: str | None
    text: str  # the whole visible answer, stripped (equals `Vita.generate(...).text`); "" for <2>
    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    completion_tokens: int


Event = StateEvent | TextEvent | AudioEvent | DoneEvent


class Engine:
    def __init__(self, vita: Vita, *, max_new_tokens: int = 2048) -> None:
        self.vita = vita
        self.max_new_tokens = max_new_tokens  # the server's cap, used when a request gives none
        self.context = min(vita.config.max_length, vita.model.llm.config.max_position_embeddings)
        self.free: list[PromptCache] = []  # chat replies' KV caches not in use (a reply in flight holds its own)

    @property
    def audio_rate(self) -> int:
        audio = self.vita.config.audio
        return audio.sample_rate if audio is not None else SAMPLE_RATE

    def check_text_length(self, chars: int) -> None:
        """Refuse, before tokenizing, `chars` characters of text that cannot fit the context: no token covers more
        than `max_token_chars` characters (x2 for normalizers that merge characters), so this is a floor."""
        floor = chars // (2 * self.vita.tokenizer.max_token_chars)
        if floor > self.context:
            raise bad_request(f"this model's context is {self.context} tokens; the messages have {chars} characters "
                              f"of text, at least {floor} tokens", "messages", code="context_length_exceeded")

    def count_text_tokens(self, turns: list[Turn], chunk: int = 8192) -> None:
        """Refuse text over the context while counting its tokens a chunk at a time: a long text is never tokenized
        whole (one call of ~1 M characters holds the GIL for most of a second). A chunk boundary can split a merge,
        adding at most one token per boundary, so those are taken off before comparing."""
        texts = [p for t in turns for p in ([t.content] if isinstance(t.content, str) else t.content)
                 if isinstance(p, str)]
        if sum(map(len, texts)) <= self.context:
            return
        n = cuts = 0
        for text in texts:
            for i in range(0, len(text), chunk):
                n += len(self.vita.tokenizer.encode(text[i:i + chunk], add_special_tokens=False))
                cuts += 1
                if n - cuts > self.context:
                    raise bad_request(f"this model's context is {self.context} tokens; the messages' text has more "
                                      f"than {n - cuts}", "messages", code="context_length_exceeded")

    def prepare(self, turns: list[Turn], params: Params) -> tuple[ModelInputs, Params]:
        """Turns -> model inputs, and the params with `max_new_tokens` resolved against the context left."""
        self.count_text_tokens(turns)
        inputs = self.vita.processor(turns)
        used = inputs.token_ids.shape[1]
        left = self.context - used
        wanted = params.max_new_tokens
        if left < 1 or (wanted is not None and wanted > left):
            raise bad_request(
                f"this model's context is {self.context} tokens; the prompt has {used} (media included) "
                f"and {wanted or 1} new token(s) were asked for", "messages", code="context_length_exceeded")
        resolved = wanted if wanted is not None else min(self.max_new_tokens, left)
        return inputs, Params(resolved, params.sampling, params.stop_strings, params.seed)

    def token_ids(self, inputs: ModelInputs, params: Params) -> Iterator[int]:
        """Generated ids, one at a time (a stop id ends it and is not yielded), as in `Vita.stream`."""
        with torch.inference_mode():
            embeds = self.vita.embed(inputs)  # [1, L, D]
        gen = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        max_new = params.max_new_tokens or 0
        cache = self._take(embeds.shape[1] + max_new + 1)
        try:
            cache.truncate(0)  # a cold prefill: the same bits as `Vita.generate`
            yield from self.vita.token_loop(cache, embeds, max_new_tokens=max_new, sampling=params.sampling,
                                            generator=gen, typed=inputs.typed,
                                            after_exchange=inputs.after_exchange)
        finally:
            if len(self.free) < 2:  # kept for the next replies (two: one in flight beside the one queued)
                self.free.append(cache)

    def _take(self, needed: int) -> PromptCache:
        """A free cache with room for `needed` positions, or a new one (a smaller free one is dropped first)."""
        cache = self.free.pop() if self.free else None
        if cache is not None and cache.max_seq_len < needed:
            cache = None  # freed before the next is allocated
        return cache_with_room(cache, self.vita.model.llm, needed)

    def reply(self, inputs: ModelInputs, params: Params, cancel: threading.Event, tts=None) -> Iterator[Event]:
        """Events of one reply. `tts`: a `vita.speech.tts.StreamingTTS` to speak the text clause by clause."""
        ids = self.token_ids(inputs, params)
        try:
            yield from self._decode(ids, inputs, params, cancel, tts)
        finally:
            close = getattr(ids, "close", None)
            if close is not None:
                close()

    def _decode(self, ids: Iterator[int], inputs: ModelInputs, params: Params, cancel: threading.Event,
                tts) -> Iterator[Event]:
        stream = TextStream(self.vita.tokenizer, stop_strings=params.stop_strings,
                            loop_window=self.vita.config.loop_window)
        announced = silent = False
        finish, n = "length", 0
        for token in ids:
            if cancel.is_set():
                finish = "cancelled"
                break
            n += 1
            delta = stream.push(token)
            if stream.state_resolved and not announced:
                announced = True
                yield StateEvent(stream.state)
                if stream.state == STATE_NOT_QUERY:
                    silent, finish = True, "stop"
                    break
            if delta:
                yield TextEvent(delta)
                yield from _speak(tts, delta)
            if stream.stopped:
                finish = "stop"
                break
        else:
            if n < (params.max_new_tokens or 0):
                finish = "stop"  # generation ended on a stop id
        if not silent:
            tail = stream.finish()
            if not announced:
                yield StateEvent(stream.state)
                silent = stream.state == STATE_NOT_QUERY
            if tail and not silent:
                yield TextEvent(tail)
                yield from _speak(tts, tail)
            if tts is not None and not silent and finish != "cancelled":
                for chunk in tts.flush():  # the rest of the text; waits for a SpeechWorker's thread
                    if chunk.pcm.size:
                        yield AudioEvent(chunk.pcm, chunk.text, chunk.sample_rate)
            elif tts is not None:
                tts.cancel()  # nothing more of a cancelled or silent reply is rendered
        text = "" if silent else stream.visible_text.strip()
        yield DoneEvent(stream.state, text, finish, int(inputs.token_ids.shape[1]), len(stream.ids))


def _speak(tts, delta: str) -> Iterator[AudioEvent]:
    """Push the text; hand out the phrases ready now (all of them for a `StreamingTTS`, which renders here; those
    finished so far for a `SpeechWorker`, which renders on its own thread while decoding goes on)."""
    if tts is None:
        return
    if delta:
        tts.push(delta)
    while (chunk := tts.synthesize_next()) is not None:
        if chunk.pcm.size:
            yield AudioEvent(chunk.pcm, chunk.text, chunk.sample_rate)
