"""Trainable glob specs (last match wins, strict globs, per-group counts) and our LoRA."""

from __future__ import annotations

import pytest
import torch

from vita import presets
from vita.checkpoint.load import random_model
from vita.errors import TrainingError
from vita.training.lora import LORA_GLOBS, LoRALinear, add_lora, merged_state_dict
from vita.training.trainable import GROUPS, apply_trainable, count_parameters, format_counts


@pytest.fixture
def model():
    return random_model(presets.tiny_random(), seed=0)


def test_last_match_wins_and_unmatched_is_frozen(model):
    counts = apply_trainable(model, {"*": False, "llm.*": True, "llm.layers.*": False, "llm.layers.1.*": True})
    for name, p in model.named_parameters():
        expected = name.startswith("llm.layers.1.") or (name.startswith("llm.") and not name.startswith("llm.layers."))
        assert p.requires_grad == expected, name
    apply_trainable(model, {"vision_projector.*": True})  # no "*": everything else frozen
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"vision_projector"}
    assert list(counts) == [g for g in GROUPS if g != "video_projector"]  # tiny-random has no video projector


def test_a_video_projector_is_its_own_group():
    import dataclasses

    config = presets.tiny_random()
    config = dataclasses.replace(config, video_projector=dataclasses.replace(config.vision_projector))
    counts = apply_trainable(random_model(config, seed=0), {"video_projector.*": True})
    assert list(counts) == list(GROUPS)
    assert counts["video_projector"].trainable == counts["vision_projector"].frozen > 0
    assert counts["vision_projector"].trainable == 0


def test_counts_per_group(model):
    counts = apply_trainable(model, {"*": False, "audio_encoder.*": True, "audio_adapter.*": True})
    sizes: dict[str, int] = {}
    for name, p in model.named_parameters():
        sizes[name.split(".")[0]] = sizes.get(name.split(".")[0], 0) + p.numel()
    for group, c in counts.items():
        assert c.total == sizes[group]
        assert c.trainable == (sizes[group] if group.startswith("audio") else 0)
    table = format_counts(counts)
    assert "audio_encoder" in table and f"{sum(sizes.values()):,}" in table.splitlines()[-1]


def test_glob_matching_nothing_is_an_error(model):
    with pytest.raises(TrainingError, match="match no parameter of the model: vision_projecter"):
        apply_trainable(model, {"*": False, "vision_projecter.*": True})
    with pytest.raises(TrainingError, match="leaves no parameter trainable"):
        apply_trainable(model, {"*": False})


def test_lora_forward_equals_merged_weights(model):
    targets = ["llm.layers.*.attention.w[qv]", "llm.layers.*.attention.wo", "llm.layers.*.feed_forward.experts.0.w2"]
    wrapped = add_lora(model, targets, r=4, alpha=8.0)
    assert len(wrapped) == 2 * 4
    apply_trainable(model, {"*": False, "llm.norm.weight": True}, always=LORA_GLOBS)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"llm.norm.weight"} | {f"{w}.lora_{x}" for w in wrapped for x in "ab"}
    for m in model.modules():
        if isinstance(m, LoRALinear):
            torch.nn.init.normal_(m.lora_b, std=0.1)  # B starts at zero; make the adapter matter
    ids = torch.randint(0, 300, (1, 12))
    with torch.no_grad():
        base = random_model(presets.tiny_random(), seed=0)(ids)
        adapted = model(ids)  # wo and w2 are read as `.weight` by the model code: the adapter must apply there too
        assert not torch.allclose(adapted, base, atol=1e-3)
        merged = merged_state_dict(model, model.state_dict())
        assert not any("lora" in k or "parametrizations" in k for k in merged)
        plain = random_model(presets.tiny_random(), seed=1)
        plain.load_state_dict(merged, strict=True)
        assert torch.allclose(plain(ids), adapted, atol=1e-5)
        for name in wrapped:  # only wrapped weights differ from the base model
            assert not torch.equal(merged[f"{name}.weight"], random_model(presets.tiny_random()).state_dict()[
                f"{name}.weight"])
    assert count_parameters(plain)["llm"].total < count_parameters(model)["llm"].total


def test_lora_target_glob_matching_nothing(model):
    with pytest.raises(TrainingError, match="match no nn.Linear"):
        add_lora(model, ["llm.layers.*.attention.wz"], r=4, alpha=8.0)
    with pytest.raises(TrainingError, match="dropout: must be in"):
        add_lora(model, ["llm.layers.*.attention.wq"], r=4, alpha=8.0, dropout=1.0)
