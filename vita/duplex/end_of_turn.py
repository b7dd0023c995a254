"""Has the user finished? The LLM's own guess at what follows the last word it heard.

vita-mini's audio path hands the LLM one row per heard word, each that word's own input embedding (Whisper's words, or
the CTC read-out's: `vita.models.audio_adapter`), after blank rows. So the prompt's row of the last heard word is a
word the LLM reads like text, and its next-token distribution says whether the sentence goes on: after "What is the"
almost nothing but a noun, after "Why is the sky blue" a "?" or the end of the user's turn. The reply's prefill runs
that row anyway; one head row more gives the score (`TokenLoop(probe=...)`):

    score = P(next id in the end ids: tokens made only of ". ? !", and the tokenizer's stop ids)

Trailing punctuation rows (Whisper writes "How far away?" for a fragment too, so punctuation is no signal) are
skipped: the probe is the last heard row that is a word. Models whose audio rows are not token embeddings (the
official VITA's continuous adapter) get no probe and no score.

The session (`vita.duplex.turn_taking`) waits longer when the score is low: no early commit on the state token, and a
longer hangover for the segment (`SessionConfig.fragment_score`, `fragment_hold_ms`).
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

import torch

from vita.tokens import AUDIO_TOKEN_ID

__all__ = ["TurnEnd", "turn_end"]

END_CHARS = frozenset(".?!")
MARK_CHARS = frozenset(".?!,;:…-\"'")


class TurnEnd:
    """The probe position and the score of one model (`probe`, `score`); built once per `Vita`."""

    def __init__(self, vita) -> None:
        model, tok = vita.model, vita.tokenizer
        adapter = model.audio_adapter
        self.blank = getattr(adapter, "ctc_blank", None) if adapter is not None else None
        snapped = adapter is not None and bool(adapter.config.ctc_vocab) and adapter.config.ctc_snap
        self.enabled = self.blank is not None and snapped
        vocab = model.llm.config.vocab_size
        ends, marks = set(tok.stop_ids), []
        if self.enabled:
            for i in range(vocab):
                text = tok.decode([i]).strip()
                if text and set(text) <= MARK_CHARS:
                    marks.append(i)
                    if set(text) <= END_CHARS:
                        ends.add(i)
        self.end_ids = torch.tensor(sorted(i for i in ends if 0 <= i < vocab), dtype=torch.long)  # [E]
        self.mark_rows = model.llm.tok_embeddings.weight[torch.tensor(marks, dtype=torch.long)].detach()  # [M, D]

    def probe(self, token_ids: torch.Tensor, embeds: torch.Tensor) -> int | None:
        """The prompt position of the newest clip's last heard word (token_ids [L] or [1, L], embeds [L, D]), or
        None (no clip, no word heard, or rows that are not token embeddings)."""
        if not self.enabled:
            return None
        ids = token_ids.reshape(-1)
        where = (ids == AUDIO_TOKEN_ID).nonzero()[:, 0]
        if len(where) == 0:
            return None
        blank, marks = self.blank.to(embeds.dtype), self.mark_rows.to(embeds.device, embeds.dtype)
        j = int(where[-1])
        while j >= 0 and int(ids[j]) == AUDIO_TOKEN_ID:
            row = embeds[j]
            if torch.equal(row, blank):
                return None  # the blank rows before the words: nothing heard but marks
            if not bool((marks == row).all(-1).any()):
                return j
            j -= 1
        return None

    def score(self, logits: torch.Tensor) -> float:
        """P(the user's turn ends after the probed word) from its next-token logits [1, V] or [V]."""
        p = torch.softmax(logits.reshape(-1).float(), -1)
        return float(p[self.end_ids.to(p.device)].sum())


_BUILT: WeakKeyDictionary = WeakKeyDictionary()


def turn_end(vita) -> TurnEnd:
    """The `TurnEnd` of a loaded `Vita` (built on first use: it reads the whole vocabulary once)."""
    if vita not in _BUILT:
        _BUILT[vita] = TurnEnd(vita)
    return _BUILT[vita]
