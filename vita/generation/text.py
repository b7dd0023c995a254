"""From token ids to what a user sees: incremental detokenization, the state token, stop strings.

`TextStream` is fed one id at a time and returns visible text deltas. It holds text back while it could still be
the start of a state token (`<1>` `<2>` `<3>`, or VITA-1.5's single characters), an incomplete UTF-8 sequence,
or the start of a stop string, so no markup ever reaches the screen or the TTS. With `loop_window` (the model's
`VitaConfig.loop_window`), a block said twice or more at the end is held back after its first saying until the run
breaks, and a reply that ends in a loop is cut back to the loop's first block when it finishes
(`vita.generation.repeats`): the deltas, `ids` and `visible_text` all say a looped block once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vita.generation.repeats import loop_kept, run_kept
from vita.tokenizer import Tokenizer
from vita.tokens import STATE_TOKENS, STATE_TOKENS_V15, split_state


@dataclass
class TextStream:
    tokenizer: Tokenizer
    stop_strings: tuple[str, ...] = ("</s>",)
    loop_window: int = 0  # > 0: cut a reply that ends in a loop back to the loop's first block (`finish`)
    ids: list[int] = field(default_factory=list)
    state: str | None = None
    state_resolved: bool = False
    stopped: bool = False
    _emitted: int = 0  # characters of visible text already returned
    _text: str = ""  # decoded text of all ids

    def push(self, token_id: int) -> str:
        """Add one generated id; return the newly visible text (possibly empty)."""
        if self.stopped:
            return ""
        self.ids.append(token_id)
        self._text = self.tokenizer.decode(self.ids)
        for stop in self.stop_strings:
            at = self._text.find(stop)
            if at >= 0:
                self._text = self._text[:at]
                self.stopped = True
        return self._advance(final=self.stopped)

    def finish(self) -> str:
        """No more ids: release everything still held back (a loop at the end cut back to its first block first)."""
        kept = loop_kept(self.ids, self.loop_window) if self.loop_window and not self.stopped else len(self.ids)
        if kept < len(self.ids):
            del self.ids[kept:]
            self._text = self.tokenizer.decode(self.ids)
            self._emitted = min(self._emitted, len(self._visible()))
        return self._advance(final=True)

    @property
    def visible_text(self) -> str:
        text = self._visible()
        return text.strip() if self.stopped else text

    def _visible(self) -> str:
        text = self._text
        if not self.state_resolved:
            return ""
        return split_state(text)[1] if self.state is not None else text

    def _shown_of_run(self, visible: str) -> int:
        """Characters of `visible` up to the first block of a repeated run at the end of the ids (`run_kept`)."""
        kept = run_kept(self.ids, self.loop_window)
        if kept == len(self.ids):
            return len(visible)
        head = self.tokenizer.decode(self.ids[:kept])
        shown = split_state(head)[1] if self.state is not None else head
        return len(shown) if visible.startswith(shown) else len(visible)

    def _advance(self, final: bool) -> str:
        if not self.state_resolved:
            head = self._text.lstrip()
            maybe_state = any(s.startswith(head) for s in STATE_TOKENS) or head == ""
            whole = any(head.startswith(s) for s in STATE_TOKENS)  # no state token is a prefix of another
            if final or whole or not maybe_state or head[:1] in STATE_TOKENS_V15:
                self.state, _ = split_state(self._text)
                self.state_resolved = True
            else:
                return ""
        visible = self._visible()
        end = len(visible)
        if not final:
            if visible.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the rest
                end = len(visible.rstrip("\ufffd"))
            for stop in self.stop_strings:  # a prefix of a stop string may be completed by the next token
                for k in range(min(len(stop) - 1, end), 0, -1):
                    if visible[:end].endswith(stop[:k]):
                        end -= k
                        break
            if self.loop_window:  # a block said again at the end: shown once, the rest when the run breaks
                end = min(end, self._shown_of_run(visible))
        if end <= self._emitted:
            return ""
        delta = visible[self._emitted : end]
        self._emitted = end
        return delta
