"""vita.training.tagger_head: a softmax regression fitted the same way twice, and emoji renders of one split."""

from __future__ import annotations

import pytest
import torch

from vita.training.tagger_head import emoji_renders, fit_head


def test_fit_head_separates_and_is_deterministic() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 1280, generator=g) * 3
    y = torch.arange(100) % 5
    x = centres[y] + torch.randn(100, 1280, generator=g)
    w1, b1 = fit_head(x, y, 5)
    w2, b2 = fit_head(x, y, 5)
    assert torch.equal(w1, w2) and torch.equal(b1, b2)
    assert w1.shape == (5, 1280) and w1.dtype == torch.float32
    assert bool(((x @ w1.T + b1).argmax(-1) == y).all())
    heavier, _ = fit_head(x, y, 5, l2=1.0)
    assert heavier.norm() < w1.norm()  # the penalty is applied
    with pytest.raises(ValueError, match="do not match"):
        fit_head(x, y + 1, 5)  # a label out of range


def test_emoji_renders_are_seeded_and_split() -> None:
    try:
        a = list(emoji_renders(4, 0))
    except (FileNotFoundError, OSError) as exc:  # the emoji fonts (`make setup`)
        pytest.skip(str(exc))
    b = list(emoji_renders(4, 0))
    assert [(p.tobytes(), y, g) for p, y, g in a] == [(p.tobytes(), y, g) for p, y, g in b]
    held = list(emoji_renders(4, 0, held_out=True))
    assert [y for _, y, _ in held] != [y for _, y, _ in a] or [p.tobytes() for p, _, _ in held] != \
        [p.tobytes() for p, _, _ in a]
    assert all(g in ("colour", "line_seen", "line_unseen") for _, _, g in a + held)
