"""Two roles over one set of weights: a KV cache per role, and a reply job that advances one bounded unit at a time.

The LLM keeps its static cache inside its attention modules (`layer.attention.kv_cache`) and a causal mask [S, S]
(`llm.causal_mask`) sized to it. A `RoleCache` owns one `KVCache` per layer and a mask, and swaps them into the LLM
for the duration of a step (`with cache.bound(): ...`), then puts back what was there: no core module changes.
The RoPE tables are shared (grown once by `setup_caches`). The first role adopts the caches `setup_caches`
allocates (no third copy).

A role also remembers the input embeddings of the positions its cache holds (`rows` [n, D]). A new prompt is
compared row by row with them: the common prefix is kept and only the rest is prefilled (prefix caching; the K/V
equal a recomputation up to float rounding, chunked prefill vs one-by-one decode).
When the other role (the donor: typically the one speaking) holds a longer prefix of the prompt (system + history
+ the part of its answer that was heard), those K/V rows are copied into this role's cache instead of recomputed:
a causal model's K/V at a position depend only on the rows up to it.

`ReplyJob` is one reply on one role, advanced by `step()`:
    embed (processor + media encoders) -> prefill chunks of `prefill_chunk` positions -> one decode step per call
The state token (`<1>` `<2>` `<3>`) is read from the first generated tokens through `TextStream`. A `Script`
teacher-forces the first tokens (tests script `<2>` or a whole answer on random weights: every step still runs the
real model, only the chosen ids are replaced).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from vita.api import Vita
from vita.errors import PromptError
from vita.generation.generate import decode_one_token, prefill
from vita.generation.sampling import GREEDY, SamplingConfig
from vita.generation.text import TextStream
from vita.models.llm import LLM
from vita.nn.kv_cache import KVCache
from vita.processor import Turn
from vita.tokens import split_state


class RoleCache:
    """A per-layer KV cache set [1, H_kv, S, Dh] for one role, bound into the shared LLM around each step."""

    def __init__(self, llm: LLM, max_seq_len: int, *, adopt: bool = False) -> None:
        self.llm = llm
        self.max_seq_len = max_seq_len
        if llm.max_seq_len < max_seq_len or llm.causal_mask is None:
            llm.setup_caches(1, max_seq_len)  # also grows the RoPE tables to S
        mask = llm.causal_mask
        self.mask = mask if mask.shape[0] == max_seq_len else torch.ones(
            max_seq_len, max_seq_len, dtype=torch.bool, device=llm.device).tril()  # [S, S]
        current = [layer.attention.kv_cache for layer in llm.layers]
        free = all(c is not None and not getattr(c, "_role_owned", False) for c in current)
        if adopt and free and llm.max_seq_len == max_seq_len and llm.cache_batch_size == 1:
            self.caches = current  # the set `setup_caches` made: no third copy
        else:
            cfg = llm.config
            self.caches = [
                KVCache(1, cfg.num_kv_heads, max_seq_len, cfg.head_dim, dtype=llm.dtype, device=llm.device)
                for _ in llm.layers
            ]
        for cache in self.caches:
            cache._role_owned = True  # another RoleCache must not adopt it too
        self.rows = torch.zeros(0, llm.config.hidden_size, dtype=llm.dtype, device=llm.device)  # [n, D] cached

    @contextmanager
    def bound(self) -> Iterator[LLM]:
        """Swap this role's caches (and a causal mask [S, S] of their length) into the LLM; restore afterwards."""
        llm = self.llm
        previous = [layer.attention.kv_cache for layer in llm.layers], llm.causal_mask
        for layer, cache in zip(llm.layers, self.caches, strict=True):
            layer.attention.kv_cache = cache
        llm.causal_mask = self.mask
        try:
            yield llm
        finally:
            for layer, cache in zip(llm.layers, previous[0], strict=True):
                layer.attention.kv_cache = cache
            llm.causal_mask = previous[1]

    @property
    def length(self) -> int:
        return self.rows.shape[0]

    def common_prefix(self, embeds: torch.Tensor) -> int:
        """Number of leading rows of embeds [L, D] whose K/V this cache already holds."""
        n = min(self.length, embeds.shape[0])
        if n == 0:
            return 0
        same = (self.rows[:n] == embeds[:n]).all(dim=-1)  # [n]
        return n if bool(same.all()) else int((~same).nonzero()[0, 0])

    def copy_prefix(self, donor: RoleCache, n: int) -> None:
        """Take the first n cached positions (K/V of every layer, and their rows) from another role's cache."""
        for mine, theirs in zip(self.caches, donor.caches, strict=True):
            mine.k_cache[:, :, :n].copy_(theirs.k_cache[:, :, :n])
            mine.v_cache[:, :, :n].copy_(theirs.v_cache[:, :, :n])
        self.rows = donor.rows[:n].clone()

    def truncate(self, n: int) -> None:
        self.rows = self.rows[:n]

    def append(self, rows: torch.Tensor) -> None:
        self.rows = torch.cat([self.rows, rows.to(self.rows.dtype)])


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
    ) -> None:
        self.vita, self.cache, self.turns, self.donor = vita, cache, list(turns), donor
        self.max_new_tokens, self.sampling, self.prefill_chunk = max_new_tokens, sampling, prefill_chunk
        self.system, self.generator = system, generator
        self.forced = vita.tokenizer.encode(script.text, add_special_tokens=False) if script else []
        self.forced_complete = script.complete if script else False
        self.stream = TextStream(vita.tokenizer)
        self.phase: Phase = "embed"
        self.finish_reason: str | None = None  # "stop" | "length" | "cancelled"
        self.decode_steps = 0  # LLM decode forwards run (tests: nothing runs after a cancel)
        self.reused = 0  # prompt positions served from a cache (this role's, or copied from the donor's)
        self.copied = 0  # of which copied from the donor role's cache
        self._embeds: torch.Tensor | None = None  # [L, D]
        self._pos = 0  # next cache position to fill
        self._next: torch.Tensor | None = None  # [1] the chosen next id, not yet consumed

    # ---- observers ---------------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.phase == "done"

    @property
    def state_resolved(self) -> bool:
        return self.stream.state_resolved

    @property
    def state(self) -> str | None:
        return self.stream.state

    def _raw(self) -> str:
        """The decoded reply so far, state token included, cut at a stop string."""
        text = self.vita.tokenizer.decode(self.stream.ids)
        for stop in self.stream.stop_strings:
            text = text.split(stop, 1)[0]
        return text

    @property
    def visible_text(self) -> str:
        raw = self._raw()
        return split_state(raw)[1] if self.stream.state is not None else raw

    def raw_text(self, visible_chars: int | None = None) -> str:
        """The decoded reply (state token included) up to `visible_chars` characters of visible text."""
        raw = self._raw()
        if visible_chars is None:
            return raw.strip()
        head = len(raw) - len(split_state(raw)[1] if self.stream.state is not None else raw)  # "<1> "
        return raw[: head + visible_chars].rstrip()

    # ---- work ------------------------------------------------------------------------------------------------
    def cancel(self) -> None:
        if not self.done:
            self.phase, self.finish_reason = "done", "cancelled"

    @torch.inference_mode()
    def step(self) -> str:
        if self.phase == "embed":
            self._embed()
            return ""
        if self.phase == "prefill":
            self._prefill_chunk()
            return ""
        if self.phase == "decode":
            return self._decode()
        return ""

    def _embed(self) -> None:
        inputs = self.vita.processor(self.turns, system=self.system)
        model = self.vita.model
        embeds = model.embed(inputs.token_ids.to(model.device), inputs.pixel_values, inputs.fbanks)[0]  # [L, D]
        L, S = embeds.shape[0], self.cache.max_seq_len
        if L >= S:
            raise PromptError(f"prompt of {L} positions does not fit the role cache of {S}: trim the history")
        self.max_new_tokens = min(self.max_new_tokens, S - L)
        keep = self.cache.common_prefix(embeds)
        if self.donor is not None:  # the other role may hold more of this prompt (the history it just spoke)
            theirs = self.donor.common_prefix(embeds)
            if theirs > keep:
                self.cache.copy_prefix(self.donor, theirs)
                keep, self.copied = theirs, theirs
        keep = min(keep, L - 1)  # at least one position runs: it gives the logits
        self.copied = min(self.copied, keep)
        self.cache.truncate(keep)
        self._embeds, self._pos, self.reused = embeds, keep, keep
        self.phase = "prefill"

    def _prefill_chunk(self) -> None:
        assert self._embeds is not None
        a = self._pos
        b = min(a + self.prefill_chunk, self._embeds.shape[0])
        rows = self._embeds[a:b]  # [l, D]
        pos = torch.arange(a, b, device=rows.device)
        with self.cache.bound() as llm:
            if b < self._embeds.shape[0]:
                llm.hidden_states(input_embeds=rows[None], input_pos=pos)
            else:
                self._next, _ = prefill(llm, input_embeds=rows[None], input_pos=pos, sampling=self.sampling,
                                        generator=self.generator)
                self.phase = "decode"
        self.cache.append(rows)
        self._pos = b

    def _choose(self) -> int | None:
        """The id this step emits: forced while the script lasts; None ends a complete script."""
        i = len(self.stream.ids)
        if i < len(self.forced):
            return self.forced[i]
        if self.forced and self.forced_complete:
            return None
        assert self._next is not None
        return int(self._next.item())

    def _finish(self, reason: str) -> str:
        self.phase, self.finish_reason = "done", reason
        return self.stream.finish()

    def _decode(self) -> str:
        tok = self._choose()
        if tok is None or tok in self.vita.tokenizer.stop_ids:
            return self._finish("stop")
        delta = self.stream.push(tok)
        if self.stream.stopped:
            return delta + self._finish("stop")
        if len(self.stream.ids) >= self.max_new_tokens:
            return delta + self._finish("length")
        token = torch.tensor([[tok]], device=self.cache.rows.device)  # [1, 1]
        pos = torch.tensor([self._pos], device=token.device)
        with self.cache.bound() as llm:
            self._next, _ = decode_one_token(llm, token, pos, self.sampling, self.generator)
            self.cache.append(llm.embed(token)[0])
        self._pos += 1
        self.decode_steps += 1
        return delta


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
    """What the session needs of an engine: a cache per role and jobs on them (`Engine`)."""

    def new_cache(self, *, adopt: bool = False) -> RoleCache: ...
    def start(self, cache: RoleCache, turns: Sequence[Turn], donor: RoleCache | None = None) -> Job: ...


class Engine:
    """Builds reply jobs for the session's roles from one `Vita` (the shared weights)."""

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
    ) -> None:
        self.vita = vita
        self.max_seq_len = min(max_seq_len, vita.config.llm.max_position_embeddings)
        self.max_new_tokens, self.sampling, self.prefill_chunk = max_new_tokens, sampling, prefill_chunk
        self.forcing, self.system = forcing, system
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def new_cache(self, *, adopt: bool = False) -> RoleCache:
        return RoleCache(self.vita.model.llm, self.max_seq_len, adopt=adopt)

    def start(self, cache: RoleCache, turns: Sequence[Turn], donor: RoleCache | None = None) -> ReplyJob:
        """A job on `cache`; a prompt prefix that `donor` (the other role) holds is copied, not recomputed."""
        script = self.forcing(turns) if self.forcing is not None else None
        return ReplyJob(self.vita, cache, turns, max_new_tokens=self.max_new_tokens, sampling=self.sampling,
                        prefill_chunk=self.prefill_chunk, script=script, system=self.system,
                        generator=self.generator, donor=donor)

