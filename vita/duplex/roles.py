"""Two roles over one set of weights, each with a KV cache of its own, and a reply job that advances one bounded unit
at a time.

A `RoleCache` is a `vita.generation.loop.PromptCache`: a caller-owned `StaticCache` over the shared LLM plus the
input rows of the positions it holds. Nothing is swapped into the model's modules: every forward names its cache
(`LLM.forward(cache=...)`), so the two roles, chat requests and other sessions never see each other's K/V. A new
prompt reuses the common prefix of the role's own cache, or copies a longer one from the other role (the donor:
typically the one speaking, whose cache holds system + history + the part of its answer that was heard).

`ReplyJob` is one reply on one role, advanced by `step()`:
    embed (processor + media encoders) -> prefill chunks of `prefill_chunk` positions -> one decode step per call
through the one reply loop (`TokenLoop` + `TextLoop`), so the native decode step runs here too. Listening ahead
(`listen_ahead`, on by default): when the prompt's newest clip still needs Whisper's own decoder (vita-mini:
`vita.models.transcriber`, ~90 ms on one thread), that decoder runs on the model's helper thread
(`Vita.listen_ahead`) while the reply prefills and decodes on the CTC read-out's rows, showing nothing (no state,
no text); once the transcript is in (waited for after `LOOKAHEAD_WORDS` words) the prompt is embedded again from
the memo: the same rows -> what was decoded ahead comes out at once; other rows (Whisper's words won) -> the reply
starts again on them. Either way the reply is the one a plain embedding gives. The state token
(`<1>` `<2>` `<3>`) comes out of the step that ran the prompt's last chunk. A `Script` teacher-forces the first
tokens (tests script `<2>` or a whole answer on random weights: every step still runs the real model, only the
chosen ids are replaced).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from vita.api import Vita
from vita.duplex.end_of_turn import TurnEnd, turn_end
from vita.errors import PromptError
from vita.generation.loop import PendingStep, PromptCache, TextLoop
from vita.generation.sampling import GREEDY, SamplingConfig
from vita.generation.text import TextStream
from vita.processor import ModelInputs, Turn

LOOKAHEAD_WORDS = 4  # words decoded on the read-out's rows before the job waits for Whisper's transcript


class RoleCache(PromptCache):
    """One role's KV cache [1, H_kv, S, Dh] per layer over the shared LLM (a `PromptCache`)."""

    @property
    def caches(self):
        """The per-layer `KVCache`s (tests check that two roles share none)."""
        return self.kv.layers


@dataclass(frozen=True)
class Script:
    """Teacher-forced reply start: `text` (e.g. "<2>" or "<1> The answer.") replaces the first sampled ids."""

    text: str
    complete: bool = True  # the reply ends after the forced text; False: free generation continues


Forcing = Callable[[Sequence[Turn]], Script | None]  # prompt turns -> script for this reply (None: free)


class ScriptedReplies:
    """A `Forcing` that hands out scripts in order (None once they run out)."""

    def __init__(self, scripts: Sequence[Script | str]) -> None:
        self.scripts = [s if isinstance(s, Script) else Script(s) for s in scripts]
        self.calls = 0

    def __call__(self, turns: Sequence[Turn]) -> Script | None:
        self.calls += 1
        return self.scripts.pop(0) if self.scripts else None


Phase = Literal["embed", "prefill", "decode", "done"]


class ReplyJob:
    """One reply on one role: `step()` does one bounded unit of work and returns newly visible text."""

    def __init__(
        self,
        vita: Vita,
        cache: RoleCache,
        turns: Sequence[Turn],
        *,
        max_new_tokens: int = 128,
        sampling: SamplingConfig = GREEDY,
        prefill_chunk: int = 64,
        script: Script | None = None,
        system: str | None = None,
        generator: torch.Generator | None = None,
        donor: RoleCache | None = None,
        listen_ahead: bool = True,
        turn_end: TurnEnd | None = None,
        state_bias: bool = True,
    ) -> None:
        self.vita, self.cache, self.turns, self.donor = vita, cache, list(turns), donor
        # the model's not-query bias (`VitaConfig.state_bias`) applies unless the turn was spoken over a reply of ours:
        # it was calibrated on turns with nothing of ours playing, and interrupting questions are not among them
        self.state_bias = state_bias
        self.turn_end = turn_end  # scores whether the user's newest clip ends their turn (`end_of_turn`)
        self._scored: tuple[torch.Tensor, float] | None = None  # (the probe logits scored, their score)
        self.listen_ahead = listen_ahead
        self.max_new_tokens, self.sampling, self.prefill_chunk = max_new_tokens, sampling, prefill_chunk
        self.system, self.generator = system, generator
        self.forced = vita.tokenizer.encode(script.text, add_special_tokens=False) if script else []
        self.forced_complete = script.complete if script else False
        self.reply: TextLoop | None = None  # after the embed step
        self._cancelled = False
        self._heard: Future | None = None  # Whisper's transcript of the newest clip, still on its way
        self._inputs: ModelInputs | None = None
        self._embeds: torch.Tensor | None = None  # the prompt rows the reply runs on
        self._buffer = ""  # visible text decoded on the read-out's rows while the transcript is on its way

    # ---- observers ---------------------------------------------------------------------------------------------
    @property
    def phase(self) -> Phase:
        if self.reply is None:
            return "done" if self._cancelled else "embed"
        if self._heard is not None and self.reply.phase == "done" and not self._cancelled:
            return "decode"  # provisional: the reply may start again on Whisper's words
        return self.reply.phase

    @property
    def done(self) -> bool:
        return self.phase == "done"

    @property
    def finish_reason(self) -> str | None:
        if self.reply is None or self._heard is not None:
            return "cancelled" if self._cancelled else None
        return self.reply.finish_reason

    @property
    def stream(self) -> TextStream:
        assert self.reply is not None, "no reply before the embed step"
        return self.reply.stream

    @property
    def state_resolved(self) -> bool:
        return self.reply is not None and self._heard is None and self.reply.state_resolved

    @property
    def state(self) -> str | None:
        return self.reply.state if self.reply is not None and self._heard is None else None

    @property
    def end_of_turn(self) -> float | None:
        """P(the user's turn ends after the last word heard in the newest clip) (`vita.duplex.end_of_turn`); None
        before the prefill ran that word, while Whisper's transcript is still on its way, or without a probe."""
        if self.turn_end is None or self.reply is None or self._heard is not None:
            return None
        logits = self.reply.tokens.probe_logits
        if logits is None:
            return None
        if self._scored is None or self._scored[0] is not logits:  # once per prefill (the session asks often)
            self._scored = (logits, self.turn_end.score(logits))
        return self._scored[1]

    @property
    def prompt_len(self) -> int:
        """Positions of the prompt (0 before the embed step)."""
        return self.reply.tokens.prompt_len if self.reply is not None else 0

    @property
    def decode_steps(self) -> int:
        return self.reply.tokens.decode_steps if self.reply is not None else 0

    @property
    def reused(self) -> int:
        return self.reply.tokens.reused if self.reply is not None else 0

    @property
    def copied(self) -> int:
        return self.reply.tokens.copied if self.reply is not None else 0

    @property
    def visible_text(self) -> str:
        return self.reply.visible_text if self.reply is not None and self._heard is None else ""

    def raw_text(self, visible_chars: int | None = None) -> str:
        return self.reply.raw_text(visible_chars) if self.reply is not None and self._heard is None else ""

    def pending_step(self) -> PendingStep | None:
        """The native decode forward `step()` would run next (`TokenLoop.pending_step`), or None."""
        if self.reply is None or self._cancelled or self.reply.done:
            return None
        if self._heard is not None and (self._heard.done() or len(self._buffer.split()) > LOOKAHEAD_WORDS):
            return None  # the next step settles the transcript
        return self.reply.tokens.pending_step()

    # ---- work ------------------------------------------------------------------------------------------------
    def cancel(self) -> None:
        self._cancelled = True  # what was decoded ahead of a transcript still on its way stays hidden
        if self._heard is not None:
            self._heard.cancel()  # one still queued behind other sessions' never runs (a running one is memoised)
        if self.reply is not None:
            self.reply.cancel()

    def step(self) -> str:
        if self.phase == "embed":
            self._embed()
            return ""
        if self.reply is None or self._cancelled:
            return ""
        if self._heard is not None:  # decoding ahead on the read-out's rows, nothing shown yet
            if not self._heard.done() and not self.reply.done and len(self._buffer.split()) <= LOOKAHEAD_WORDS:
                self._buffer += self.reply.step()
                return ""
            return self._settle()
        return self.reply.step()

    @torch.inference_mode()
    def _embed(self) -> None:
        inputs = self.vita.processor(self.turns, system=self.system)
        self._heard = self.vita.listen_ahead(inputs) if self.listen_ahead else None
        self._inputs = inputs
        self._start(self.vita.embed(inputs, transcribe=self._heard is None)[0])  # [L, D]

    def _start(self, embeds: torch.Tensor) -> None:
        L, S = embeds.shape[0], self.cache.max_seq_len
        if L >= S:
            raise PromptError(f"prompt of {L} positions does not fit the role cache of {S}: trim the history")
        assert self._inputs is not None
        probe = self.turn_end.probe(self._inputs.token_ids, embeds) if self.turn_end is not None else None
        tokens = self.vita.token_loop(self.cache, embeds, max_new_tokens=self.max_new_tokens, sampling=self.sampling,
                                      generator=self.generator, prefill_chunk=self.prefill_chunk, forced=self.forced,
                                      forced_complete=self.forced_complete, donor=self.donor, probe=probe,
                                      typed=self._inputs.typed, after_exchange=self._inputs.after_exchange,
                                      **({} if self.state_bias else {"state_bias": None}))
        self._embeds = embeds
        self.reply = TextLoop(tokens, self.vita.tokenizer)

    @torch.inference_mode()
    def _settle(self) -> str:
        """The transcript is in (waited for once the read-out's reply is far enough ahead): the same rows -> what
        was decoded ahead stands and comes out now; other rows -> the reply starts again on them (the cache keeps
        the common prefix: only the clip's rows and what follows them run again)."""
        assert self._heard is not None and self._inputs is not None and self.reply is not None
        self._heard.result()  # the transcripts are memoised now (or its error is raised here)
        self._heard = None
        embeds = self.vita.embed(self._inputs)[0]  # no decoder runs: a memo lookup
        if torch.equal(embeds, self._embeds):
            ahead, self._buffer = self._buffer, ""
            return ahead
        self.reply.cancel()
        self._buffer = ""
        self._start(embeds)
        return ""


class Job(Protocol):
    """What the session needs of a reply job (`ReplyJob`; tests may substitute their own)."""

    done: bool
    state_resolved: bool
    state: str | None
    visible_text: str

    def step(self) -> str: ...
    def cancel(self) -> None: ...
    def raw_text(self, visible_chars: int | None = None) -> str: ...


class ReplyEngine(Protocol):
    """What the session needs of an engine: a cache per role and jobs on them (`Engine`), and the system prompt of
    the jobs it starts (`Configure` sets it)."""

    system: str | None

    def new_cache(self) -> RoleCache: ...
    def start(self, cache: RoleCache, turns: Sequence[Turn], donor: RoleCache | None = None, *,
              over_reply: bool = False) -> Job: ...


class Engine:
    """Builds reply jobs for the session's roles from one `Vita` (the shared weights)."""

    job: type[ReplyJob] = ReplyJob  # the class of the jobs `start` builds

    def __init__(
        self,
        vita: Vita,
        *,
        max_seq_len: int = 2048,
        max_new_tokens: int = 128,
        sampling: SamplingConfig = GREEDY,
        prefill_chunk: int = 64,
        forcing: Forcing | None = None,
        system: str | None = None,
        seed: int | None = None,
        end_of_turn: bool = True,
    ) -> None:
        self.vita = vita
        self.turn_end = turn_end(vita) if end_of_turn else None  # the listener's end-of-turn score
        self.max_seq_len = min(max_seq_len, vita.config.llm.max_position_embeddings)
        self.max_new_tokens, self.sampling, self.prefill_chunk = max_new_tokens, sampling, prefill_chunk
        self.forcing, self.system = forcing, system
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def new_cache(self) -> RoleCache:
        """A role's own cache (the model holds none: every role allocates its own)."""
        return RoleCache(self.vita.model.llm, self.max_seq_len)

    def start(self, cache: RoleCache, turns: Sequence[Turn], donor: RoleCache | None = None, *,
              over_reply: bool = False) -> ReplyJob:
        """A job on `cache`; a prompt prefix that `donor` (the other role) holds is copied, not recomputed.
        `over_reply`: the user's speech started while a reply of ours was active (no state bias, `ReplyJob`)."""
        script = self.forcing(turns) if self.forcing is not None else None
        return self.job(self.vita, cache, turns, max_new_tokens=self.max_new_tokens, sampling=self.sampling,
                        prefill_chunk=self.prefill_chunk, script=script, system=self.system,
                        generator=self.generator, donor=donor, turn_end=self.turn_end, state_bias=not over_reply)

