"""Audio adapter: whale encoder states (25 Hz) -> LLM embeddings (12.5 Hz).

    x [B, T', H] (padded frames zeroed) -> right zero-pad k-1 frames -> Conv1d(H -> 2H, k, stride 2)
    -> LayerNorm(2H, eps 1e-3) over channels -> exact GELU -> Linear(2H -> D)

Output length T'' = ceil(T' / 2); the output mask keeps every second input mask entry.

CTC compression (`config.ctc_vocab` > 0, vita-mini): the rows were trained (`vita.training.embed_align`) to sit next to
the LLM's input embedding of the token being said, or next to a learned blank centre `ctc_blank` between tokens, over
the vocabulary entries marked in `ctc_vocab` (0/1 per LLM token id). `read` gives each row's nearest entry; `compress`
keeps one row per heard token (the mean of its run of frames; with `config.ctc_snap` the token's own input embedding,
so the LLM reads exactly the text the read-out hears) and fills the rest of the clip's T'' rows with the blank
centre, before the tokens: the LLM reads the words without repeats or gaps, and the clip keeps its T'' placeholders, so
the processor's counts stay what they are.

Shapes: B = batch, T' = encoder frames, T'' = adapter frames, H = encoder width, C = conv width (2H), D = LLM width.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vita.config import AudioAdapterConfig

__all__ = ["AudioAdapter", "ReadOut"]


class ReadOut:
    """What the CTC read-out makes of one clip's rows: each row's score against the blank centre and the scored entries
    (2 r.e - |e|^2: minus the squared distance up to the row's own constant), computed once.

    `frames` [T'']: each row's nearest entry (an LLM id, or -1 for the blank); `ids`: what it heard (runs collapsed,
    blanks dropped); `ctc(ids, scale)`: how likely it finds other LLM ids, the CTC log-likelihood per row with each
    row's distribution a softmax of -scale x its squared distances (the scorer `embed_align` trains, at a fixed
    scale). Ids it does not score (it can never say them: capitalised words, rare tokens) are left out; None where
    none is left or no alignment exists."""

    def __init__(self, entry_ids: torch.Tensor, score: torch.Tensor, vocab_size: int) -> None:
        self.entry_ids, self.score, self.vocab_size = entry_ids, score, vocab_size  # [V'], [T'', 1 + V']
        best = score.argmax(-1)  # [T'']
        self.frames = torch.where(best == 0, -1, entry_ids[(best - 1).clamp_min(0)])
        self.ids = [int(i) for i in torch.unique_consecutive(self.frames) if i >= 0]
        self._logp: dict[float, torch.Tensor] = {}
        self._slot: torch.Tensor | None = None  # [V]: each LLM id's column in `score`, -1 where it is not scored

    def ctc(self, ids: list[int], scale: float) -> float | None:
        device = self.entry_ids.device
        if self._slot is None:
            self._slot = torch.full((self.vocab_size,), -1, dtype=torch.long, device=device)
            self._slot[self.entry_ids] = torch.arange(1, len(self.entry_ids) + 1, device=device)
        slot = self._slot
        target = slot[torch.tensor(ids, dtype=torch.long, device=device)] if ids else slot[:0]  # [L]
        target = target[target > 0]  # [L'] the ids it can say
        if not len(target):
            return None
        if scale not in self._logp:
            self._logp[scale] = F.log_softmax(scale * self.score, -1)[:, None]  # [T'', 1, 1 + V']
        logp, rows = self._logp[scale], len(self.score)
        nll = F.ctc_loss(logp, target[None], torch.tensor([rows]), torch.tensor([len(target)]), blank=0,
                         reduction="sum")
        return -float(nll) / rows if torch.isfinite(nll) else None


class AudioAdapter(nn.Module):
    """Single strided convolution + LayerNorm + GELU + projection into the LLM embedding space."""

    def __init__(self, config: AudioAdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.conv = nn.Conv1d(config.input_size, config.conv_size, config.kernel_size, stride=config.stride)
        self.norm = nn.LayerNorm(config.conv_size, eps=config.norm_eps)
        self.proj = nn.Linear(config.conv_size, config.output_size)
        if config.ctc_vocab:
            self.ctc_blank = nn.Parameter(torch.zeros(config.output_size))  # [D]
            self.register_buffer("ctc_vocab", torch.zeros(config.ctc_vocab))  # [V] 1.0 = a scored entry

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T', H], mask [B, T'] (True = valid) -> (embeds [B, T'', D], mask [B, T''])."""
        # Padded encoder frames hold arbitrary values; zero them so they cannot leak into valid outputs.
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)  # [B, T', H]
        x = F.pad(x.transpose(1, 2), (0, self.config.kernel_size - 1))  # [B, H, T' + k - 1]
        x = self.conv(x).transpose(1, 2)  # [B, T'', C]
        x = F.gelu(self.norm(x))  # [B, T'', C]
        return self.proj(x), mask[:, :: self.config.stride]  # [B, T'', D], [B, T'']

    def read(self, rows: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """rows [T'', D], LLM input embeddings [V, D] -> the nearest entry per row [T'']: a token id, or -1 (blank).

        Nearest in squared distance (`embed_align`'s scorer, whose positive scale does not change the winner)."""
        return self.listen(rows, embeddings).frames

    def heard(self, rows: torch.Tensor, embeddings: torch.Tensor) -> list[int]:
        """rows [T'', D] of one clip -> the LLM ids the read-out hears (runs collapsed, blanks dropped)."""
        return self.listen(rows, embeddings).ids

    def ctc_score(self, rows: torch.Tensor, embeddings: torch.Tensor, ids: list[int], scale: float) -> float | None:
        """`ReadOut.ctc` of one clip's rows [T'', D] (`listen` once to score several transcripts)."""
        return self.listen(rows, embeddings).ctc(ids, scale)

    def listen(self, rows: torch.Tensor, embeddings: torch.Tensor) -> ReadOut:
        """rows [T'', D] of one clip -> its `ReadOut`: every row scored against the entries once."""
        ids_v, table, norms = self._table(embeddings)  # [V'], [1 + V', D], [1 + V']
        score = 2 * rows.detach().float() @ table.T - norms  # [T'', 1 + V'], fp32 in any dtype
        return ReadOut(ids_v, score, embeddings.shape[0])

    def _table(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scored ids [V'], blank + their embeddings in fp32 [1 + V', D], squared norms [1 + V']), kept until a
        tensor they come from changes (gathering 14k rows took ~35 ms of a 45 ms clip encode on vita-mini)."""
        key = tuple((t.data_ptr(), t._version) for t in (embeddings, self.ctc_blank, self.ctc_vocab))
        cached = getattr(self, "_cached_table", None)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                ids = self.ctc_vocab.nonzero()[:, 0]  # [V']
                table = torch.cat([self.ctc_blank[None].float(), embeddings[ids].float()])  # [1 + V', D]
                cached = (key, ids, table, table.square().sum(-1))
            self._cached_table = cached
        return cached[1], cached[2], cached[3]

    def compress(self, rows: torch.Tensor, embeddings: torch.Tensor, heard_ids: list[int] | None = None,
                 read_out: ReadOut | None = None) -> torch.Tensor:
        """rows [T'', D] of one clip -> [T'', D]: blank centre rows, then one row per heard token (module docstring).
        `heard_ids` (at most T'' LLM ids; `vita.models.transcriber`): the words heard, instead of the read-out's;
        `read_out`: these rows' `listen`, where the caller has it."""
        if heard_ids is not None:
            words = embeddings[torch.tensor(heard_ids[: rows.shape[0]], device=rows.device)].to(rows.dtype)  # [n, D]
            pad = self.ctc_blank.to(rows.dtype).expand(rows.shape[0] - len(words), -1)  # [T'' - n, D]
            return torch.cat([pad, words])
        ids = (read_out or self.listen(rows, embeddings)).frames  # [T'']
        runs, inverse = torch.unique_consecutive(ids, return_inverse=True)  # [R], [T'']
        heard = runs >= 0  # [R]
        if self.config.ctc_snap:  # the heard tokens' own input embeddings
            words = embeddings[runs[heard]].to(rows.dtype)  # [n, D]
        else:  # the mean of each token's run of frames
            sums = rows.new_zeros(len(runs), rows.shape[-1]).index_add_(0, inverse, rows)  # [R, D]
            counts = torch.bincount(inverse, minlength=len(runs)).to(rows.dtype)  # [R]
            words = (sums / counts[:, None])[heard]  # [n, D]
        pad = self.ctc_blank.to(rows.dtype).expand(rows.shape[0] - len(words), -1)  # [T'' - n, D]
        return torch.cat([pad, words])
