import pytest
import torch

from vita.errors import PromptError
from vita.models.fusion import splice
from vita.tokens import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID


def test_splice_writes_rows_in_order_and_keeps_text():
    ids = torch.tensor([[1, IMAGE_TOKEN_ID, IMAGE_TOKEN_ID, 2, AUDIO_TOKEN_ID, 3]])
    text = torch.randn(1, 6, 4)
    img = torch.randn(2, 4)
    aud = torch.randn(1, 4)
    out = splice(text, ids, {IMAGE_TOKEN_ID: img, AUDIO_TOKEN_ID: aud})
    assert torch.equal(out[0, 1:3], img)
    assert torch.equal(out[0, 4], aud[0])
    assert torch.equal(out[0, [0, 3, 5]], text[0, [0, 3, 5]])


def test_splice_count_mismatch_and_unfilled_placeholders():
    ids = torch.tensor([[1, IMAGE_TOKEN_ID, IMAGE_TOKEN_ID]])
    with pytest.raises(PromptError, match="2 positions"):
        splice(torch.randn(1, 3, 4), ids, {IMAGE_TOKEN_ID: torch.randn(3, 4)})
    with pytest.raises(PromptError, match="no features"):
        splice(torch.randn(1, 3, 4), ids, {})
