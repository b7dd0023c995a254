"""The reply loop: prompt -> prefill -> decode steps -> token ids -> text deltas, one bounded unit per `step()`.

    cache = PromptCache(llm, 2048)                     # owned by the caller: a chat engine, a duplex role, Vita
    tokens = TokenLoop(llm, cache, embeds, max_new_tokens=64, stop_ids=tok.stop_ids, prefill_chunk=64)
    reply = TextLoop(tokens, tokenizer)                # the same loop read as visible text
    while not reply.done:
        delta = reply.step()                           # one prefill chunk, or one decode step; "" while prefilling
    reply.cancel()                                     # between steps: no forward runs after it, nothing comes out

Several loops over one model can decode side by side: `pending_step()` names the native forward a loop's next step
would run, the caller runs those of many loops in one call (`NativeStep.batch`) and `supply()`s each its logits; the
step then goes on as if it had run the forward itself (same bits: the batched kernel equals the batch-1 one).

Every caller runs this loop: `generate()` (ids; `vita bench decode`), `Vita.stream` / `vita generate`, the chat API
engine and both duplex roles. So every path decodes with the native whole-step kernel where the model allows it
(`vita.generation.native_step`; `native=False` keeps the module path, `compile=True` compiles that), and every
path keeps its K/V in a cache it owns: the model holds none, two caches share one set of weights.

A `PromptCache` is a `StaticCache` plus the input rows (embeddings [n, D]) of the positions it holds. A new prompt
is compared row by row with them; the common prefix is kept and only the rest is prefilled (prefix caching). A
`donor` (another cache over the same model, e.g. the duplex role that just spoke) that holds a longer prefix gives
its K/V rows by copy instead of recomputation. Greedy ids equal a cold prefill's up to float rounding (chunked
prefill vs one-by-one decode write the same K/V to ~1e-6).

Order of work inside `TokenLoop.step()`: a step runs one forward and then hands out the id that forward chose, so the
first id (the state token of a VITA reply) comes out of the step that ran the prompt's last chunk, not one decode
step later; with a `guess` (`Vita.token_loop` passes "<", the first id of every vita-mini state token) the prompt's
last chunk also runs the guessed id's row, so when the first id is the guess the second (the state's digit) comes out
of the next step without a forward. `forced` ids teacher-force the first ids (tests script `<2>` or an answer on
random weights; the forwards still run, only the chosen ids are replaced).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, NamedTuple

import torch

from vita.generation.native_step import NativeStep
from vita.generation.repeats import repeats_block
from vita.generation.sampling import GREEDY, SamplingConfig, sample
from vita.generation.steps import compiled_decode_one_token, decode_one_token
from vita.generation.text import TextStream
from vita.models.llm import LLM
from vita.nn.kv_cache import StaticCache
from vita.tokenizer import Tokenizer
from vita.tokens import split_state

Phase = Literal["prefill", "decode", "done"]
FinishReason = Literal["stop", "length", "cancelled"]


class PendingStep(NamedTuple):
    """A loop's next native decode forward (`TokenLoop.pending_step`): run `step(token, pos)` (or batch it), then
    `loop.supply(pos, logits)`."""

    loop: TokenLoop
    step: NativeStep
    token: int
    pos: int


def run_batched(pending: Sequence[PendingStep]) -> None:
    """Run the forwards of several loops' pending steps in one native call (`NativeStep.batch`) and supply each loop
    its logits; one alone, or steps the batched kernel cannot run together (quantized weights), run one by one."""
    if len(pending) > 1 and NativeStep.batch_unsupported([p.step for p in pending]) is None:
        logits = NativeStep.batch([p.step for p in pending], [p.token for p in pending], [p.pos for p in pending])
        for p, row in zip(pending, logits, strict=True):
            p.loop.supply(p.pos, row)
        return
    for p in pending:
        p.loop.supply(p.pos, p.step(p.token, p.pos))


class PromptCache:
    """A caller-owned KV cache over `llm` (batch 1, `max_seq_len` positions) that remembers its input rows."""

    def __init__(self, llm: LLM, max_seq_len: int, *, kv: StaticCache | None = None) -> None:
        """A new cache of `max_seq_len` positions, or (`kv`) one over an existing batch-1 `StaticCache`."""
        self.llm = llm
        self.kv: StaticCache = kv if kv is not None else llm.new_cache(max_seq_len)
        self._rows = torch.zeros(0, llm.config.hidden_size, dtype=llm.dtype, device=llm.device)  # [cap, D]
        self.length = 0  # positions whose K/V (and rows) are valid
        self._native: NativeStep | None = None

    @property
    def max_seq_len(self) -> int:
        return self.kv.max_seq_len

    @property
    def rows(self) -> torch.Tensor:
        """The input rows [n, D] of the cached positions."""
        return self._rows[: self.length]

    def native_step(self) -> NativeStep | None:
        """The native decode step over this cache (built once), or None where the model cannot use it."""
        if self._native is None and NativeStep.unsupported(self.llm) is None:
            self._native = NativeStep(self.llm, self.kv)
        return self._native

    def common_prefix(self, embeds: torch.Tensor) -> int:
        """Number of leading rows of embeds [L, D] whose K/V this cache already holds."""
        n = min(self.length, embeds.shape[0])
        if n == 0:
            return 0
        same = (self._rows[:n] == embeds[:n].to(self._rows.dtype)).all(dim=-1)  # [n]
        return n if bool(same.all()) else int((~same).nonzero()[0, 0])

    def copy_prefix(self, donor: PromptCache, n: int) -> None:
        """Take the first n cached positions (K/V of every layer, and their rows) from another cache."""
        self.kv.copy_prefix_(donor.kv, n)
        self.truncate(0)
        self.append(donor.rows[:n])

    def truncate(self, n: int) -> None:
        """Keep the first n cached positions (the rest is overwritten by the next prefill)."""
        self.length = min(self.length, n)

    def reset(self) -> None:
        """Forget every position (the K/V are not zeroed: positions beyond the length are never attended)."""
        self.truncate(0)

    def append(self, rows: torch.Tensor) -> None:
        """Record the input rows [l, D] of the next l positions (their K/V were just written)."""
        end = self.length + rows.shape[0]
        if end > self._rows.shape[0]:
            grown = torch.zeros(min(max(end, 2 * self._rows.shape[0], 64), self.max_seq_len), self._rows.shape[1],
                                dtype=self._rows.dtype, device=self._rows.device)
            grown[: self.length] = self._rows[: self.length]
            self._rows = grown
        self._rows[self.length : end] = rows.to(self._rows.dtype)
        self.length = end


def cache_with_room(cache: PromptCache | None, llm: LLM, needed: int, *, step: int = 256) -> PromptCache:
    """`cache` if it holds `needed` positions, else a new one (rounded up to `step`, at most the model's context)."""
    if cache is not None and cache.llm is llm and cache.max_seq_len >= needed:
        return cache
    limit = llm.config.max_position_embeddings
    return PromptCache(llm, max(min(-(-needed // step) * step, limit), needed))


class TokenLoop:
    """One reply's ids over a caller-owned `PromptCache`: `step()` runs one bounded unit and returns the id it chose.

    Args:
        llm: the model (its weights; the K/V live in `cache`).
        cache: where the K/V go; its common prefix with the prompt is reused, the rest overwritten.
        embeds: prompt input rows [L, D] or [1, L, D] (text with spliced media).
        max_new_tokens: upper bound on ids generated (a stop id counts); capped by the room left in the cache.
        sampling, generator: next-id selection (greedy by default).
        stop_ids: ids that end the reply (never handed out).
        prefill_chunk: prompt positions per step (None: the whole rest of the prompt in one step).
        native: decode with the native whole-step kernel where the model allows it.
        compile: decode through the inductor-compiled module step where the native one does not apply.
        forced: ids that replace the first chosen ids (teacher forcing); `forced_complete` ends the reply after them.
        donor: another cache of the same model whose longer prompt prefix is copied rather than recomputed.
        guess: the id the prompt almost surely continues with (a VITA reply's first id: "<" of every state token);
            its row runs with the prompt's last chunk, so when the first id chosen is `guess` the second comes out
            of the next step without a forward (one decode step saved); otherwise its position is dropped. The ids
            chosen are those of the loop without it (same logits up to float rounding, same sampling order).
        loop_window: a reply whose last `loop_window` ids repeat a block of at most a third of them (three or more
            times the same few ids in a row: "memory's memory's memory's ...") ends there ("stop", `looped`), where
            greedy decoding would run on to `max_new_tokens`; 0: never (the official models' parity). A `TextLoop`
            over it keeps the run's first block only (`vita.generation.repeats.loop_kept`).
        probe: a prompt position whose next-token logits are kept (`probe_logits` [1, V], float32): what the prompt
            would say after that position (the duplex end-of-turn score reads the user's last heard word). The
            prefill runs it even where a cache holds it (the cache keeps only the rows before it); one head row more.
        state_bias: (ids before it, id, bias): `bias` is added to `id`'s logit where the ids so far are exactly the
            ones before it (the "2" of "<2>" after "<": `VitaConfig.state_bias`, how readily a reply says not-query).
    """

    def __init__(
        self,
        llm: LLM,
        cache: PromptCache,
        embeds: torch.Tensor,
        *,
        max_new_tokens: int,
        sampling: SamplingConfig = GREEDY,
        generator: torch.Generator | None = None,
        stop_ids: Sequence[int] = (),
        prefill_chunk: int | None = None,
        native: bool = True,
        compile: bool = False,
        forced: Sequence[int] = (),
        forced_complete: bool = True,
        donor: PromptCache | None = None,
        guess: int | None = None,
        probe: int | None = None,
        loop_window: int = 0,
        state_bias: tuple[tuple[int, ...], int, float] | None = None,
    ) -> None:
        if cache.llm is not llm:
            raise ValueError("the cache belongs to another model")
        if embeds.dim() == 3:
            if embeds.shape[0] != 1:
                raise ValueError(f"the reply loop decodes batch 1, got batch {embeds.shape[0]}")
            embeds = embeds[0]
        L, S = embeds.shape[0], cache.max_seq_len
        if L == 0:
            raise ValueError("empty prompt")
        if L >= S:
            raise ValueError(f"prompt of {L} positions does not fit a cache of {S}")
        self.llm, self.cache, self.sampling, self.generator = llm, cache, sampling, generator
        self.max_new_tokens = min(max_new_tokens, S - L)
        self.stops = frozenset(int(i) for i in stop_ids)
        self.prefill_chunk = prefill_chunk
        self.forced, self.forced_complete = list(forced), forced_complete
        self.prompt_len = L
        self.token_ids: list[int] = []  # ids handed out (no stop id)
        self.stop_id: int | None = None
        self.finish_reason: FinishReason | None = None
        self.decode_steps = 0  # decode forwards run (tests: none after a cancel)
        if loop_window < 0:
            raise ValueError(f"loop_window must be >= 0, got {loop_window}")
        self.loop_window = loop_window
        self.looped = False  # ended by `loop_window`: its last ids were a block repeated
        self.state_bias = state_bias if state_bias is not None and state_bias[2] != 0 else None
        self.guess = guess if not forced and self.max_new_tokens > 1 else None
        self.guessed = False  # the first id was the guess: the second comes from the prefill's extra row
        self._ahead: torch.Tensor | None = None  # [1, V] logits of the position after the guess
        self.probe = probe if probe is not None and 0 <= probe < L else None
        self.probe_logits: torch.Tensor | None = None  # [1, V] float32, once the prefill ran `probe`
        self.phase: Phase = "prefill" if max_new_tokens > 0 else "done"
        if self.phase == "done":
            self.finish_reason = "length"
        self._native = cache.native_step() if native else None
        self._supplied: tuple[int, torch.Tensor] | None = None  # (position, logits) of a forward run by the caller
        self._step_fn = None
        if self._native is None:
            self._step_fn = compiled_decode_one_token() if compile else decode_one_token
        with torch.inference_mode():  # every write to a cache happens in inference mode (a cache made in it or not)
            self._embeds = embeds.to(llm.device, llm.dtype)
            keep = cache.common_prefix(self._embeds)
            self.copied = 0
            if donor is not None and donor is not cache:
                theirs = donor.common_prefix(self._embeds)
                if theirs > keep:
                    cache.copy_prefix(donor, theirs)
                    keep = self.copied = theirs
            keep = min(keep, L - 1)  # at least one position runs: it gives the logits
            if self.probe is not None:
                keep = min(keep, self.probe)  # the probed row runs here
            self.copied = min(self.copied, keep)
            cache.truncate(keep)
        self.reused = keep  # prompt positions served from a cache (this one's, or copied from the donor's)
        self._pos = keep  # next cache position to fill

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def pending_step(self) -> PendingStep | None:
        """The native decode forward the next `step()` runs (its step, token and position), for a caller that runs the
        forwards of several loops at once (`NativeStep.batch`) and hands each its logits (`supply`); None when the
        next step runs none of its own (prefilling, done, the guessed id's logits at hand, the module path) or its
        logits are supplied already."""
        if self.phase != "decode" or self._ahead is not None or self._native is None or self._supplied is not None:
            return None
        return PendingStep(self, self._native, self.token_ids[-1], self._pos)

    def supply(self, pos: int, logits: torch.Tensor) -> None:
        """The logits [1, V] (or [V]) of the forward `pending_step()` named, run by the caller (its K/V written): the
        step at `pos` uses them instead of running it."""
        self._supplied = (pos, logits.view(1, -1))

    def cancel(self, reason: FinishReason = "cancelled") -> None:
        """End the reply now: no forward runs after this and no id comes out."""
        if not self.done:
            self.phase, self.finish_reason = "done", reason

    def stop(self) -> None:
        """End the reply as finished ("stop"): the text reached a stop string (the last id may have been the last
        one allowed)."""
        self.phase, self.finish_reason = "done", "stop"

    @torch.inference_mode()
    def step(self) -> int | None:
        """One prefill chunk or one decode step; the id it chose (None while prefilling, at a stop, when done)."""
        if self.phase == "prefill":
            return self._prefill_chunk()
        if self.phase == "decode":
            return self._decode()
        return None

    def __iter__(self) -> Iterator[int]:
        while not self.done:
            tok = self.step()
            if tok is not None:
                yield tok

    def _prefill_chunk(self) -> int | None:
        a, L = self._pos, self.prompt_len
        b = L if self.prefill_chunk is None else min(a + self.prefill_chunk, L)
        rows = self._embeds[a:b]  # [l, D]
        guess = self.guess if b == L else None
        if guess is not None:
            rows = torch.cat([rows, self.llm.tok_embeddings.weight[guess][None].to(rows.dtype)])  # [l + 1, D]
        pos = torch.arange(a, a + rows.shape[0], device=rows.device)  # [l'] (l, or l + 1 with the guess)
        hidden = self.llm.hidden_states(input_embeds=rows[None], input_pos=pos, cache=self.cache.kv)  # [1, l', D]
        if self.probe is not None and a <= self.probe < b:
            self.probe_logits = self.llm.head(hidden[:, self.probe - a]).float()  # [1, V]
        self.cache.append(rows)
        self._pos = a + rows.shape[0]
        if b < L:
            return None
        self.phase = "decode"
        logits = self.llm.head(hidden[:, L - 1 - a])  # [1, V]
        tok = int(sample(self._biased(logits), self.sampling, self.generator).item())
        if guess is not None:
            if tok == guess and tok not in self.stops:
                self.guessed, self._ahead = True, self.llm.head(hidden[:, -1])
            else:  # another first id: the guess's position is forgotten
                self.cache.truncate(L)
                self._pos = L
        return self._emit(tok)

    def _decode(self) -> int | None:
        if self._ahead is not None:  # the guess's row ran with the prompt: its logits are here already
            logits, self._ahead = self._ahead, None
            return self._emit(int(sample(self._biased(logits), self.sampling, self.generator).item()))
        tok, pos = self.token_ids[-1], self._pos
        supplied, self._supplied = self._supplied, None
        if supplied is not None and supplied[0] == pos:
            logits = supplied[1]  # run by the caller, batched with other loops' steps
        elif self._native is not None:
            logits = self._native(tok, pos)  # [1, V]
        else:
            token = torch.tensor([[tok]], device=self.llm.device)  # [1, 1]
            assert self._step_fn is not None
            _, logits = self._step_fn(self.llm, token, torch.tensor([pos], device=token.device), GREEDY, None,
                                      cache=self.cache.kv)  # (its own pick unused: one draw per id, below)
        self.cache.append(self.llm.tok_embeddings.weight[tok][None])  # the input row of position pos
        self._pos += 1
        self.decode_steps += 1
        return self._emit(int(sample(self._biased(logits), self.sampling, self.generator).item()))

    def _biased(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` [1, V] with `state_bias` added where this step picks the state (the ids so far are its prefix)."""
        if (self.state_bias is None or len(self.token_ids) != len(self.state_bias[0])
                or tuple(self.token_ids) != self.state_bias[0]):  # the length first: no tuple per decode step
            return logits
        logits = logits.clone()
        logits[..., self.state_bias[1]] += self.state_bias[2]
        return logits

    def _emit(self, tok: int) -> int | None:
        i = len(self.token_ids)
        if i < len(self.forced):
            tok = self.forced[i]
        elif self.forced and self.forced_complete:
            self.cancel("stop")
            return None
        if tok in self.stops:
            self.stop_id = tok
            self.cancel("stop")
            return None
        self.token_ids.append(tok)
        if len(self.token_ids) >= self.max_new_tokens:
            self.cancel("length")
        elif self.loop_window and repeats_block(self.token_ids, self.loop_window):
            self.looped = True
            self.cancel("stop")
        return tok


class TextLoop:
    """A `TokenLoop` read as visible text: `step()` -> the text it made visible (state token apart, stops cut)."""

    def __init__(self, tokens: TokenLoop, tokenizer: Tokenizer, stop_strings: tuple[str, ...] = ("</s>",)) -> None:
        self.tokens, self.tokenizer = tokens, tokenizer
        self.stream = TextStream(tokenizer, stop_strings=stop_strings, loop_window=tokens.loop_window)
        self._finished = False

    # ---- observers ---------------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.tokens.done

    @property
    def phase(self) -> Phase:
        return self.tokens.phase

    @property
    def finish_reason(self) -> FinishReason | None:
        return self.tokens.finish_reason

    @property
    def state_resolved(self) -> bool:
        return self.stream.state_resolved

    @property
    def state(self) -> str | None:
        return self.stream.state

    @property
    def token_ids(self) -> list[int]:
        return self.stream.ids

    def _raw(self) -> str:
        """The decoded reply so far, state token included, cut at a stop string."""
        text = self.tokenizer.decode(self.stream.ids)
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

    # ---- work --------------------------------------------------------------------------------------------------
    def cancel(self) -> None:
        self.tokens.cancel()
        self._finished = True  # nothing held back comes out after a cancel

    def step(self) -> str:
        if self._finished:
            return ""
        tok = self.tokens.step()
        delta = self.stream.push(tok) if tok is not None else ""
        if self.stream.stopped:
            self.tokens.stop()
        if self.tokens.done:
            self._finished = True
            delta += self.stream.finish()
        return delta

    def __iter__(self) -> Iterator[str]:
        while not self._finished:
            delta = self.step()
            if delta:
                yield delta
