"""Whale encoder + audio adapter: stage-by-stage parity with the official code, padding and length behaviour."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vita.checkpoint.keymap import map_keys
from vita.checkpoint.whale import OFFICIAL_AUDIO_PREFIX, audio_config_from_train_yaml, audio_keymap
from vita.config import AudioAdapterConfig, AudioConfig
from vita.media.audio import load_audio
from vita.media.fbank import fbank, num_llm_tokens
from vita.models.audio_adapter import AudioAdapter
from vita.models.whale import WhaleEncoder, sinusoid_table, subsampled_length

TOL = 1e-4  # fixture README suggests ~1e-5 for features; SDPA reorders the softmax sums (measured <= 4e-6)

TINY = AudioConfig(hidden_size=32, num_heads=4, intermediate_size=64, num_layers=2)
TINY_ADAPTER = AudioAdapterConfig(input_size=32, output_size=48)


def _subtree(state: dict[str, torch.Tensor], owner: str) -> dict[str, torch.Tensor]:
    return {k[len(owner) + 1 :]: v for k, v in state.items() if k.startswith(owner + ".")}


@pytest.fixture(scope="module")
def official(ref_root: Path, ref_config: dict, ref_audio_dir: Path) -> tuple[WhaleEncoder, AudioAdapter]:
    """Encoder and adapter built from the fixture's train.yaml and loaded from its model.safetensors."""
    audio_cfg, adapter_cfg = audio_config_from_train_yaml(
        ref_audio_dir / "train.yaml", llm_hidden_size=ref_config["hidden_size"]
    )
    weights = load_file(ref_root / "checkpoint" / "model.safetensors")
    state = map_keys(
        {k: v for k, v in weights.items() if k.startswith(OFFICIAL_AUDIO_PREFIX)}, audio_keymap(OFFICIAL_AUDIO_PREFIX)
    )
    encoder, adapter = WhaleEncoder(audio_cfg).eval(), AudioAdapter(adapter_cfg).eval()
    encoder.load_state_dict(_subtree(state, "audio_encoder"), strict=True)
    adapter.load_state_dict(_subtree(state, "audio_adapter"), strict=True)
    return encoder, adapter


def _run_with_stages(encoder: WhaleEncoder, adapter: AudioAdapter, feats: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run one clip [T, 80] and capture every stage the fixture records (batch dim dropped)."""
    stages: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module, _inputs, output):
            if name == "pos_enc":
                stages["scaled_input"], stages["pos_emb"] = output[0][0], output[1]
            else:
                stages[name] = output[0]

        return hook

    named = {"cmvn_out": encoder.cmvn, "subsampling_out": encoder.subsampling, "input_layer_out": encoder.input_layer}
    named["pos_enc"] = encoder.pos_enc
    named.update({f"block{k}_out": block for k, block in enumerate(encoder.blocks)})
    handles = [module.register_forward_hook(keep(name)) for name, module in named.items()]
    try:
        with torch.no_grad():
            out, mask = encoder(feats[None], torch.tensor([float(feats.shape[0])]))  # float lengths, like the demo
            emb, emb_mask = adapter(out, mask)
    finally:
        for handle in handles:
            handle.remove()
    stages.update(encoder_out=out[0], adapter_out=emb[0], adapter_mask=emb_mask[0])
    return stages


@pytest.mark.reference
def test_every_stage_matches_official(ref_root, ref_index, official):
    golden = load_file(ref_root / "cases" / "audio.safetensors")
    encoder, adapter = official
    for i, clip in enumerate(ref_index["audios"]):
        # the recorded fbank: the encoder's parity, apart from FFT rounding (tests/media/test_fbank.py covers that)
        feats = golden[f"audio{i}.fbank"]
        assert feats.shape == fbank(load_audio(ref_root / clip["file"])).shape
        stages = _run_with_stages(encoder, adapter, feats)
        stage_names = sorted(k[len(f"audio{i}.") :] for k in golden if k.startswith(f"audio{i}."))
        assert set(stage_names) - {"fbank"} <= set(stages), "a recorded stage is not captured"
        assert stages["encoder_out"].shape[0] == clip["encoder_frames"]
        assert stages["adapter_out"].shape[0] == clip["adapter_frames"] == clip["llm_tokens_from_processor"]
        assert torch.equal(stages["adapter_mask"], golden[f"audio{i}.adapter_mask"])
        for name in stage_names:
            if name in ("fbank", "adapter_mask"):
                continue
            expected = golden[f"audio{i}.{name}"]
            assert stages[name].shape == expected.shape, name
            diff = (stages[name] - expected).abs().max().item()
            assert diff <= TOL, f"clip {i} stage {name}: max abs diff {diff}"


@pytest.mark.reference
def test_padded_batch_matches_official(ref_root, ref_index, official):
    golden = load_file(ref_root / "cases" / "audio.safetensors")
    encoder, adapter = official
    feats = [fbank(load_audio(ref_root / clip["file"])) for clip in ref_index["audios"]]
    lengths = torch.tensor([f.shape[0] for f in feats])
    assert torch.equal(lengths, golden["batch.lengths"])
    batch = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)  # [B, T_max, 80], zero padded
    with torch.no_grad():
        out, mask = encoder(batch, lengths)
        emb, emb_mask = adapter(out, mask)
    assert torch.equal(emb_mask, golden["batch.adapter_mask"])
    assert emb.shape == golden["batch.adapter_out"].shape and out.shape == golden["batch.encoder_out"].shape
    for b in range(len(feats)):
        valid, valid_emb = mask[b], emb_mask[b]
        assert (out[b, valid] - golden["batch.encoder_out"][b, valid]).abs().max() <= TOL
        assert (emb[b, valid_emb] - golden["batch.adapter_out"][b, valid_emb]).abs().max() <= TOL


# ------------------------------------------------------------------------------------------ fixture-free behaviour


@pytest.fixture()
def tiny() -> tuple[WhaleEncoder, AudioAdapter]:
    torch.manual_seed(0)
    encoder, adapter = WhaleEncoder(TINY).eval(), AudioAdapter(TINY_ADAPTER).eval()
    with torch.no_grad():  # make every parameter matter (the default init leaves u, v at 0 and norms at 1)
        for p in (*encoder.parameters(), *adapter.parameters()):
            p.add_(0.1 * torch.randn_like(p))
        encoder.cmvn.mean.fill_(10.0)
        encoder.cmvn.istd.fill_(0.3)
    return encoder, adapter


@pytest.mark.parametrize("frames", [7, 8, 9, 10, 11, 50, 128, 268, 400])
def test_output_lengths_match_token_count(tiny, frames):
    encoder, adapter = tiny
    with torch.no_grad():
        out, mask = encoder(torch.randn(1, frames, 80) * 3 + 10, torch.tensor([frames]))
        emb, emb_mask = adapter(out, mask)
    assert out.shape == (1, subsampled_length(frames), 32) and bool(mask.all())
    assert emb.shape == (1, num_llm_tokens(frames), 48) and bool(emb_mask.all())


def test_padding_never_leaks_into_valid_outputs(tiny):
    """A clip alone == the same clip in a batch next to a longer one, whatever garbage fills its padding."""
    encoder, adapter = tiny
    short, long = torch.randn(93, 80) * 3 + 10, torch.randn(160, 80) * 3 + 10
    batch = torch.randn(2, 160, 80) * 100  # garbage everywhere, then the real frames
    batch[0, :93], batch[1] = short, long
    with torch.no_grad():
        alone, alone_mask = encoder(short[None], torch.tensor([93]))
        alone_emb, _ = adapter(alone, alone_mask)
        out, mask = encoder(batch, torch.tensor([93, 160]))
        emb, emb_mask = adapter(out, mask)
    n, m = subsampled_length(93), num_llm_tokens(93)
    assert mask[0].sum() == n and emb_mask[0].sum() == m and bool(mask[1].all())
    torch.testing.assert_close(out[0, :n], alone[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(emb[0, :m], alone_emb[0], rtol=0, atol=1e-5)


def test_attention_is_full_not_causal(tiny):
    """Changing the last frames changes the first encoder outputs (every frame sees every valid frame)."""
    encoder, _ = tiny
    x = torch.randn(1, 100, 80) * 3 + 10
    y = x.clone()
    y[:, -20:] += 5.0
    with torch.no_grad():
        a, _ = encoder(x, torch.tensor([100]))
        b, _ = encoder(y, torch.tensor([100]))
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-3


def test_sinusoid_table():
    table = sinusoid_table(7, 8)
    assert table[3, 0].item() == pytest.approx(math.sin(3.0), abs=1e-6)
    assert table[3, 1].item() == pytest.approx(math.cos(3.0), abs=1e-6)
    assert table[5, 6].item() == pytest.approx(math.sin(5.0 / 10000 ** (6 / 8)), abs=1e-6)
    assert table[5, 7].item() == pytest.approx(math.cos(5.0 / 10000 ** (6 / 8)), abs=1e-6)


def test_rejects_bad_input(tiny):
    encoder, _ = tiny
    with pytest.raises(ValueError, match="80"):
        encoder(torch.zeros(1, 20, 40), torch.tensor([20]))
    with pytest.raises(ValueError, match="7"):
        encoder(torch.zeros(1, 6, 80), torch.tensor([6]))
