"""The audio adapter's CTC compression: one row per heard token, the clip keeps its row count."""

from __future__ import annotations

import torch

from vita.config import AudioAdapterConfig
from vita.models.audio_adapter import AudioAdapter


def _adapter(vocab: int, width: int = 8) -> tuple[AudioAdapter, torch.Tensor]:
    torch.manual_seed(0)
    adapter = AudioAdapter(AudioAdapterConfig(input_size=4, output_size=width, ctc_vocab=vocab))
    embeddings = torch.randn(vocab, width) * 3
    with torch.no_grad():
        adapter.ctc_blank.copy_(torch.zeros(width))
        adapter.ctc_vocab[: vocab - 2] = 1  # the last two ids are not scored
    return adapter, embeddings


def test_read_gives_the_nearest_scored_token_or_blank() -> None:
    adapter, emb = _adapter(12)
    rows = torch.stack([emb[3] + 0.1, torch.zeros(8) + 0.05, emb[7], emb[11]])  # id 11 is not scored
    ids = adapter.read(rows, emb)
    assert ids[:3].tolist() == [3, -1, 7]
    assert ids[3] != 11


def test_compress_keeps_one_mean_row_per_run_after_blank_padding() -> None:
    adapter, emb = _adapter(12)
    blank = adapter.ctc_blank.detach()
    a1, a2 = emb[2] + 0.2, emb[2] - 0.2  # one run of token 2 over two frames
    rows = torch.stack([blank, a1, a2, blank, emb[5], blank, emb[5], emb[9], blank])  # 5, blank, 5: two 5s said
    out = adapter.compress(rows, emb)
    assert out.shape == rows.shape
    assert adapter.read(out, emb).tolist() == [-1] * 5 + [2, 5, 5, 9]
    torch.testing.assert_close(out[5], (a1 + a2) / 2)
    torch.testing.assert_close(out[:5], blank.expand(5, -1))
    torch.testing.assert_close(out[6:], torch.stack([emb[5], emb[5], emb[9]]))


def test_compress_of_silence_is_all_blank_and_keeps_gradients() -> None:
    adapter, emb = _adapter(12)
    silent = (torch.zeros(6, 8) + 0.01).requires_grad_(True)
    out = adapter.compress(silent, emb)
    assert out.shape == (6, 8) and (adapter.read(out, emb) == -1).all()
    spoken = torch.stack([emb[1], emb[1], emb[4]]).requires_grad_(True)
    adapter.compress(spoken, emb).sum().backward()
    assert spoken.grad is not None and spoken.grad.abs().sum() > 0


def test_without_ctc_vocab_the_adapter_has_no_read_out_tensors() -> None:
    adapter = AudioAdapter(AudioAdapterConfig(input_size=4, output_size=8))
    assert not any(n.startswith("ctc_") for n in adapter.state_dict())


def test_snap_writes_the_heard_tokens_own_embeddings() -> None:
    torch.manual_seed(0)
    adapter = AudioAdapter(AudioAdapterConfig(input_size=4, output_size=8, ctc_vocab=12, ctc_snap=True))
    emb = torch.randn(12, 8) * 3
    with torch.no_grad():
        adapter.ctc_vocab[:] = 1
    rows = torch.stack([torch.zeros(8), emb[2] + 0.3, emb[2] - 0.1, torch.zeros(8), emb[7] + 0.2])
    out = adapter.compress(rows, emb)
    assert out.shape == rows.shape
    assert torch.equal(out[3:], torch.stack([emb[2], emb[7]])) and torch.equal(out[:3], torch.zeros(3, 8))


def test_the_scored_table_follows_changes_to_its_tensors() -> None:
    adapter, emb = _adapter(12)
    rows = torch.stack([emb[3], torch.zeros(8) + 0.05])
    assert adapter.read(rows, emb).tolist() == [3, -1]
    with torch.no_grad():
        adapter.ctc_vocab[3] = 0  # no longer scored: row 0 must go elsewhere
        emb[4] = torch.zeros(8) + 0.05  # token 4 moves onto row 1 (nearer than the blank)
        adapter.ctc_blank.fill_(10.0)
    ids = adapter.read(rows, emb).tolist()
    assert ids[0] != 3 and ids[1] == 4


def test_heard_and_ctc_score_prefer_what_the_rows_say() -> None:
    adapter, emb = _adapter(12)
    blank = adapter.ctc_blank.detach()
    rows = torch.stack([blank, emb[3], emb[3], blank, emb[7], blank, emb[5], blank])
    assert adapter.heard(rows, emb) == [3, 7, 5]
    said = adapter.ctc_score(rows, emb, [3, 7, 5], scale=0.5)
    assert said is not None and said <= 0
    for other in ([5, 7, 3], [3, 7], [3, 7, 5, 5], [2, 7, 5]):  # another order, a word missing or added, misheard
        assert adapter.ctc_score(rows, emb, other, scale=0.5) < said, other
    assert adapter.ctc_score(rows, emb, [3, 11, 7, 10, 5], scale=0.5) == said  # 10, 11 are not scored: left out
    assert adapter.ctc_score(rows, emb, [11], scale=0.5) is None
    assert adapter.ctc_score(rows, emb, [], scale=0.5) is None
    assert adapter.ctc_score(rows, emb, [3] * 5, scale=0.5) is None  # repeats need blanks between: 9 rows > 8
