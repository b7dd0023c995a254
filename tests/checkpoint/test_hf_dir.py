"""A plain Hugging Face LLM directory loads as a text-only model with transformers' logits."""

from __future__ import annotations

import json

import pytest
import torch

import vita
from vita.checkpoint.convert import convert
from vita.errors import CheckpointError, PromptError
from vita.presets import byte_tokenizer

transformers = pytest.importorskip("transformers")


def _save_hf(tmp_path, family: str):
    common = dict(vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, rope_theta=10000.0)
    if family == "llama":
        cfg, cls = transformers.LlamaConfig(**common), transformers.LlamaForCausalLM
    elif family == "qwen2":
        cfg, cls = transformers.Qwen2Config(**common), transformers.Qwen2ForCausalLM
    else:
        cfg = transformers.MixtralConfig(**common, num_local_experts=4, num_experts_per_tok=2)
        cls = transformers.MixtralForCausalLM
    torch.manual_seed(0)
    model = cls(cfg).eval()
    path = tmp_path / family
    model.save_pretrained(path)
    byte_tokenizer().save(path)
    return model, path


@pytest.mark.parametrize("family", ["llama", "qwen2", "mixtral"])
def test_hf_dir_loads_text_only_with_equal_logits(tmp_path, family):
    ref, path = _save_hf(tmp_path, family)
    model = vita.load(str(path))
    assert model.model.vision is None and model.model.audio_encoder is None
    ids = torch.tensor([model.tokenizer.encode("Hello there, how are you?")])
    with torch.no_grad():
        expected = ref(ids).logits
        got = model.model(ids)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # And through our canonical layout.
    ours = convert(path, tmp_path / f"{family}-ours")
    with torch.no_grad():
        again = vita.load(str(ours)).model(ids)
    assert torch.equal(again, got)


def test_unsupported_hf_config_is_refused_by_name(tmp_path):
    _, path = _save_hf(tmp_path, "llama")
    cfg = json.loads((path / "config.json").read_text())
    cfg["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
    cfg.pop("rope_parameters", None)
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="rope"):
        vita.load(str(path))


def test_image_on_text_only_model_is_a_clear_error(tmp_path):
    _, path = _save_hf(tmp_path, "llama")
    model = vita.load(str(path))
    with pytest.raises(PromptError, match="no vision"):
        model.inputs("what is this?", images=["x.png"])
