"""The LLM against transformers' Llama / Mixtral / Qwen2 on tiny random configs, and its KV cache against itself.

Weights go through the real key map (`vita.checkpoint.hf_llm`), so a naming or layout slip fails here.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from vita.checkpoint.hf_llm import llm_config_from_hf, llm_export_keymap, llm_keymap
from vita.checkpoint.keymap import map_keys
from vita.config import LLMConfig
from vita.errors import ConfigError
from vita.models.llm import LLM

transformers = pytest.importorskip("transformers")

FAMILIES = ["llama", "mixtral", "qwen2"]


def _hf_model(family: str, **extra):
    common = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512, rope_theta=50000.0, rms_norm_eps=1e-6)
    common.update(extra)
    if family == "llama":
        cfg, cls = transformers.LlamaConfig(**common), transformers.LlamaForCausalLM
    elif family == "qwen2":
        cfg, cls = transformers.Qwen2Config(**common), transformers.Qwen2ForCausalLM
    else:
        cfg = transformers.MixtralConfig(**common, num_local_experts=4, num_experts_per_tok=2)
        cls = transformers.MixtralForCausalLM
    torch.manual_seed(0)
    model = cls(cfg).eval()
    if family == "qwen2":  # HF initialises biases to zero; random ones make the bias path count
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
    return model


def _disk_state(hf, folder) -> dict[str, torch.Tensor]:
    """The tensors as `save_pretrained` writes them (transformers 5 fuses Mixtral experts only in memory)."""
    hf.save_pretrained(folder)
    state: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        state.update(load_file(f))
    return state


def _ours_from_hf(hf, folder) -> LLM:
    cfg = llm_config_from_hf(hf.config.to_dict())
    ours = LLM(cfg).eval()
    state = {k: v for k, v in _disk_state(hf, folder).items()
             if not (cfg.tie_word_embeddings and k == "lm_head.weight")}
    ours.load_state_dict(map_keys(state, llm_keymap(cfg, prefix=""), source="hf"), strict=True)
    return ours


@pytest.fixture(scope="module", params=FAMILIES)
def pair(request, tmp_path_factory):
    hf = _hf_model(request.param)
    return request.param, hf, _ours_from_hf(hf, tmp_path_factory.mktemp(request.param))


def _ids(n: int = 23, batch: int = 2, vocab: int = 300) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, n), generator=torch.Generator().manual_seed(1))


def test_config_translation_picks_up_the_family_switches(pair):
    family, _, ours = pair
    assert ours.config.family == family
    assert ours.config.qkv_bias == (family == "qwen2")
    assert ours.config.num_experts == (4 if family == "mixtral" else 0)
    assert ours.config.rope_theta == 50000.0


def test_logits_match_transformers(pair):
    _, hf, ours = pair
    ids = _ids()
    with torch.no_grad():
        expected = hf(ids).logits
        got = ours(ids)
    assert got.shape == expected.shape == (2, 23, 300)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_input_embeds_path_equals_token_path(pair):
    _, _, ours = pair
    ids = _ids()
    with torch.no_grad():
        assert torch.equal(ours(input_embeds=ours.embed(ids)), ours(ids))


def test_cached_prefill_and_decode_equal_uncached(pair):
    """Prefill a prefix in two chunks, then decode one token at a time: every logit row equals the uncached one."""
    _, _, ours = pair
    ids = _ids(batch=1)
    L = ids.shape[1]
    with torch.no_grad():
        full = ours(ids)  # [1, L, V]
        ours.setup_caches(1, 64)
        try:
            rows = [ours(ids[:, :7], input_pos=torch.arange(7)), ours(ids[:, 7:12], input_pos=torch.arange(7, 12))]
            rows += [ours(ids[:, p : p + 1], input_pos=torch.tensor([p])) for p in range(12, L)]
        finally:
            ours.drop_caches()
    torch.testing.assert_close(torch.cat(rows, dim=1), full, atol=1e-5, rtol=0)


def test_stale_cache_entries_never_leak(pair):
    """A reused cache holding another sequence's keys gives the same logits as a fresh one."""
    _, _, ours = pair
    a, b = _ids(batch=1), _ids(batch=1, n=30).flip(1)
    with torch.no_grad():
        ours.setup_caches(1, 64)
        try:
            ours(b, input_pos=torch.arange(b.shape[1]))  # fills positions 0..29 with b
            got = ours(a, input_pos=torch.arange(a.shape[1]))
        finally:
            ours.drop_caches()
        torch.testing.assert_close(got, ours(a), atol=1e-5, rtol=0)


def test_right_padding_mask_keeps_real_positions_exact(pair):
    _, _, ours = pair
    ids = _ids(n=15)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    with torch.no_grad():
        batch = ours(ids, attention_mask=mask)
        alone = ours(ids[1:, :9])
    torch.testing.assert_close(batch[1, :9], alone[0], atol=1e-5, rtol=0)
    assert torch.isfinite(batch).all()


def test_fused_weights_give_the_same_logits_and_state_dict(pair, tmp_path):
    family, hf, _ = pair
    ours = _ours_from_hf(hf, tmp_path)
    ids = _ids()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with torch.no_grad():
        ref = ours(ids)
        ours.fuse_()
        got = ours(ids)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    after = ours.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_export_keymap_round_trips_to_transformers(pair, tmp_path):
    _, hf, ours = pair
    state = map_keys(ours.state_dict(), llm_export_keymap(ours.config, prefix=""), source="ours")
    hf_state = _disk_state(hf, tmp_path)
    assert state.keys() == hf_state.keys()
    assert all(torch.equal(state[k], hf_state[k]) for k in state)


def test_bf16_logits_stay_close_to_fp32(tmp_path):
    hf = _hf_model("llama")
    ours = _ours_from_hf(hf, tmp_path)
    ids = _ids()
    with torch.no_grad():
        ref = ours(ids)
        got = ours.to(torch.bfloat16)(ids).float()
    assert (got - ref).abs().max() < 0.1 * ref.abs().max()
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9


def test_tied_embeddings_use_one_matrix(tmp_path):
    hf = _hf_model("llama", tie_word_embeddings=True)
    ours = _ours_from_hf(hf, tmp_path)
    assert ours.output is None
    assert "output.weight" not in ours.state_dict()
    with torch.no_grad():
        torch.testing.assert_close(ours(_ids()), hf(_ids()).logits, atol=1e-4, rtol=0)


def test_cache_longer_than_the_context_is_refused():
    llm = LLM(LLMConfig(vocab_size=10, hidden_size=8, intermediate_size=16, num_layers=1, num_heads=2,
                        num_kv_heads=1, max_position_embeddings=32))
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        llm.setup_caches(1, 33)


def test_input_pos_without_cache_is_a_clear_error():
    llm = LLM(LLMConfig(vocab_size=10, hidden_size=8, intermediate_size=16, num_layers=1, num_heads=2,
                        num_kv_heads=1))
    with pytest.raises(ValueError, match="setup_caches"):
        llm(torch.zeros(1, 1, dtype=torch.long), input_pos=torch.tensor([0]))
