"""LoRA: the activation-space adapter equals its merged weight, trains only its factors, and refuses fusion."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vita.errors import TrainingError
from vita.nn.fused import fuse_rows
from vita.training.lora import LoRALinear, add_lora, merged_state_dict


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.GELU(), nn.Linear(5, 4, bias=False))


def test_adapter_output_equals_merged_weight_and_only_factors_get_gradients():
    model = _model()
    assert add_lora(model, ["0", "2"], r=2, alpha=4.0) == ["0", "2"]
    for m in model.modules():
        if isinstance(m, LoRALinear):
            nn.init.normal_(m.lora_b)  # B = 0 at the start: make the adapter non-trivial
            m.weight.requires_grad_(False)
    x = torch.randn(3, 6)
    y = model(x)
    merged = merged_state_dict(model, dict(model.state_dict()))
    assert sorted(merged) == ["0.bias", "0.weight", "2.weight"]
    plain = _model()
    plain.load_state_dict(merged)
    torch.testing.assert_close(plain(x), y, atol=1e-6, rtol=1e-5)
    assert not torch.equal(plain[0].weight, _model()[0].weight)  # the adapter changed the function
    y.sum().backward()
    assert model[0].weight.grad is None and model[0].lora_a.grad is not None and model[2].lora_b.grad is not None


def test_dropout_only_in_training_and_errors():
    model = _model()
    add_lora(model, ["0"], r=2, alpha=2.0, dropout=0.5)
    nn.init.normal_(model[0].lora_b)
    x = torch.randn(8, 6)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))
    with pytest.raises(TrainingError, match="match no nn.Linear"):
        add_lora(_model(), ["nope.*"], r=2, alpha=2.0)
    with pytest.raises(TrainingError, match="already has an adapter"):
        add_lora(model, ["0"], r=2, alpha=2.0)
    with pytest.raises(TrainingError, match="dropout"):
        add_lora(_model(), ["0"], r=2, alpha=2.0, dropout=1.0)
    with pytest.raises(ValueError, match="merge the adapters first"):
        fuse_rows(model, "w", [model[0]])
