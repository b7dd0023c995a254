"""The vision projector's optional input standardisation and its exact fold into fc1."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vita.config import ProjectorConfig
from vita.models.projector import VisionProjector, fold_input_norm


def _normed(seed: int = 0) -> VisionProjector:
    torch.manual_seed(seed)
    proj = VisionProjector(ProjectorConfig(24, 16, input_norm=True))
    with torch.no_grad():
        proj.input_mean.copy_(torch.randn(24) * 3)
        proj.input_std.copy_(torch.rand(24) * 2 + 0.05)
    return proj


def test_input_norm_standardises_before_fc1() -> None:
    proj = _normed()
    x = torch.randn(2, 5, 24) * 4 + 1
    plain = VisionProjector(ProjectorConfig(24, 16))
    plain.load_state_dict({k: v for k, v in proj.state_dict().items() if not k.startswith("input_")})
    expected = plain((x - proj.input_mean) / proj.input_std)
    torch.testing.assert_close(proj(x), expected)
    assert not torch.allclose(proj(x), plain(x), atol=1e-3)  # the statistics do change the output
    assert {"input_mean", "input_std"} <= set(proj.state_dict())  # persistent: saved with the model
    assert "input_mean" not in dict(proj.named_parameters())  # fixed, never trained


def test_fold_gives_the_plain_official_mlp() -> None:
    proj = _normed(1)
    folded = fold_input_norm({"vision_projector." + k: v for k, v in proj.state_dict().items()})
    assert set(folded) == {f"vision_projector.fc{i}.{p}" for i in (1, 2) for p in ("weight", "bias")}
    plain = VisionProjector(dataclasses.replace(ProjectorConfig(24, 16), input_norm=False))
    plain.load_state_dict({k.removeprefix("vision_projector."): v for k, v in folded.items()})
    x = torch.randn(3, 7, 24) * 5 - 2
    torch.testing.assert_close(plain(x), proj(x), atol=1e-5, rtol=1e-5)


def test_plain_projector_has_no_statistics() -> None:
    assert set(VisionProjector(ProjectorConfig(8, 4)).state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight",
                                                                        "fc2.bias"}
    with pytest.raises(KeyError):
        fold_input_norm({"vision_projector.fc1.weight": torch.zeros(4, 8), "vision_projector.fc1.bias": torch.zeros(4)})
