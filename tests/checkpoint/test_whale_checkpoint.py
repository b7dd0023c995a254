"""Official whale files: key map coverage, train.yaml parsing and refusals, global_cmvn, final.pt loading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from vita.checkpoint.keymap import check_state_dict, map_keys
from vita.checkpoint.whale import (
    AUDIO_KEYMAP,
    OFFICIAL_AUDIO_PREFIX,
    audio_config_from_train_yaml,
    audio_keymap,
    audio_state_shapes,
    load_final_pt,
    load_global_cmvn,
)
from vita.config import AudioAdapterConfig, AudioConfig
from vita.errors import CheckpointError
from vita.models.audio_adapter import AudioAdapter
from vita.models.whale import WhaleEncoder


@pytest.fixture(scope="module")
def audio_dir(ref_audio_dir: Path) -> Path:
    return ref_audio_dir


@pytest.fixture(scope="module")
def llm_width(ref_config: dict) -> int:
    """The LLM width of the fixture's main config (what the adapter projects to)."""
    return int(ref_config["hidden_size"])


@pytest.fixture(scope="module")
def official_audio(ref_root: Path) -> dict[str, torch.Tensor]:
    """The fixture's audio tensors under their official names, without the `model.audio_encoder.` prefix."""
    weights = load_file(ref_root / "checkpoint" / "model.safetensors")
    n = len(OFFICIAL_AUDIO_PREFIX)
    return {k[n:]: v for k, v in weights.items() if k.startswith(OFFICIAL_AUDIO_PREFIX)}


@pytest.fixture(scope="module")
def shapes(audio_dir: Path, llm_width: int) -> dict[str, torch.Size]:
    return audio_state_shapes(*audio_config_from_train_yaml(audio_dir / "train.yaml", llm_hidden_size=llm_width))


def _yaml_variant(tmp_path: Path, audio_dir: Path, edit) -> Path:
    tree = yaml.safe_load((audio_dir / "train.yaml").read_text())
    edit(tree)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


# ------------------------------------------------------------------------------------------------------ train.yaml


@pytest.mark.reference
def test_train_yaml_to_configs(audio_dir, ref_index, llm_width):
    assert (audio_dir / "train.yaml").read_text() == ref_index["configs"]["audio_train_yaml"]
    tree = yaml.safe_load((audio_dir / "train.yaml").read_text())  # expected values, read independently
    tfm = tree["encoder_conf"]["para_conf"]["transformer"]
    fbank_conf, rate = tree["dataset_conf"]["fbank_conf"], tree["dataset_conf"]["resample_conf"]["resample_rate"]
    hidden, model_conf = tfm["transformer-attention-dim"], tree["model_conf"]
    audio, adapter = audio_config_from_train_yaml(audio_dir / "train.yaml", llm_hidden_size=llm_width)
    assert (audio.input_dim, audio.hidden_size, audio.num_heads) == (
        tree["input_dim"], hidden, tfm["transformer-attention-heads"])
    assert (audio.intermediate_size, audio.num_layers, audio.layer_norm_eps) == (
        tfm["transformer-linear-units"], tfm["transformer-num-blocks"], 1e-5)  # torch's LayerNorm default
    fb = audio.fbank
    assert (fb.sample_rate, fb.num_mel_bins, fb.frame_length, fb.frame_shift, fb.dither) == (
        rate, fbank_conf["num_mel_bins"], rate * fbank_conf["frame_length"] // 1000,
        rate * fbank_conf["frame_shift"] // 1000, fbank_conf["dither"])
    assert adapter == AudioAdapterConfig(input_size=hidden, output_size=llm_width, conv_size=2 * hidden,
                                         kernel_size=model_conf["kernel_size"], norm_eps=1e-3)
    # without the main config, the width comes from the YAML's llm_embed_dim
    assert audio_config_from_train_yaml(audio_dir / "train.yaml")[1].output_size == model_conf["llm_embed_dim"]


UNSUPPORTED = {
    "mamba layers": (
        lambda t: t["encoder_conf"]["overview_conf"].update({"encoder-layer-config": "subsampling-mamba"}),
        "encoder-layer-config",
    ),
    "dynamic chunks": (
        lambda t: t["encoder_conf"]["para_conf"]["transformer"].update({"transformer-dynamic-chunks": True}),
        "full attention",
    ),
    "dynamic chunks by default": (
        lambda t: t["encoder_conf"]["para_conf"]["transformer"].pop("transformer-dynamic-chunks"),
        "full attention",
    ),
    "static chunk": (
        lambda t: t["encoder_conf"]["para_conf"]["transformer"].update({"transformer-chunk_size": 16}),
        "chunk_size 16",
    ),
    "absolute positions": (
        lambda t: t["encoder_conf"]["para_conf"]["transformer"].update({"transformer-pos-enc-class": "abs-enc"}),
        "abs-enc",
    ),
    "cnn adapter": (lambda t: t["model_conf"].update({"adpter_type": "cnn"}), "adpter_type 'cnn'"),
    "two-conv adapter": (
        lambda t: t["model_conf"].update({"llm_embed_dim": 4 * t["model_conf"]["enc_out_dim"] + 1}), "two-conv"
    ),
    "odd widths": (
        lambda t: t["encoder_conf"]["para_conf"]["subsampling"].update(
            {"subsampling-output-dim": t["encoder_conf"]["para_conf"]["subsampling"]["subsampling-output-dim"] // 2}
        ),
        "subsampling-output-dim",
    ),
    "missing key": (
        lambda t: t["encoder_conf"]["para_conf"]["transformer"].pop("transformer-num-blocks"),
        "num-blocks",
    ),
}


@pytest.mark.reference
@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_train_yaml_is_refused(tmp_path, audio_dir, case):
    edit, message = UNSUPPORTED[case]
    path = _yaml_variant(tmp_path, audio_dir, edit)
    with pytest.raises(CheckpointError, match=message) as info:
        audio_config_from_train_yaml(path)
    assert str(path) in str(info.value)


@pytest.mark.reference
def test_force_full_attention_and_llm_width_check(tmp_path, audio_dir, llm_width):
    path = _yaml_variant(
        tmp_path,
        audio_dir,
        lambda t: t["encoder_conf"]["para_conf"]["transformer"].update({"transformer-chunk_size": 4}),
    )
    audio, _ = audio_config_from_train_yaml(path, force_full_attention=True)
    tree = yaml.safe_load((audio_dir / "train.yaml").read_text())
    assert audio.num_layers == tree["encoder_conf"]["para_conf"]["transformer"]["transformer-num-blocks"]
    with pytest.raises(CheckpointError, match=f"llm_embed_dim {llm_width} != LLM hidden size {llm_width + 8}"):
        audio_config_from_train_yaml(audio_dir / "train.yaml", llm_hidden_size=llm_width + 8)
    with pytest.raises(CheckpointError, match="not found"):
        audio_config_from_train_yaml(tmp_path / "missing.yaml")


# ------------------------------------------------------------------------------------------------- key map, cmvn


@pytest.mark.reference
def test_keymap_covers_the_checkpoint_exactly(ref_root, audio_dir, official_audio, shapes):
    mapped = map_keys(official_audio, AUDIO_KEYMAP)
    check_state_dict(mapped, shapes)  # no missing, unexpected or mis-shaped tensor
    weights = load_file(ref_root / "checkpoint" / "model.safetensors")
    prefixed = map_keys(
        {k: v for k, v in weights.items() if k.startswith(OFFICIAL_AUDIO_PREFIX)}, audio_keymap(OFFICIAL_AUDIO_PREFIX)
    )
    assert prefixed.keys() == mapped.keys()
    # The mapped state loads strictly into the modules the VitaModel holds as `audio_encoder` / `audio_adapter`.
    audio, adapter = audio_config_from_train_yaml(audio_dir / "train.yaml")
    parent = torch.nn.Module()
    parent.audio_encoder, parent.audio_adapter = WhaleEncoder(audio), AudioAdapter(adapter)
    parent.load_state_dict(mapped, strict=True)


def test_state_shapes_at_release_size():
    shapes = audio_state_shapes(AudioConfig(), AudioAdapterConfig(input_size=1024, output_size=4096))
    assert shapes["audio_encoder.subsampling.proj.weight"] == (1024, 1024 * 19)
    assert shapes["audio_encoder.blocks.23.attn.pos_bias_u"] == (16, 64)
    assert shapes["audio_adapter.conv.weight"] == (2048, 1024, 5)
    assert shapes["audio_adapter.proj.weight"] == (4096, 2048)
    encoder = sum(torch.Size(s).numel() for name, s in shapes.items() if name.startswith("audio_encoder."))
    total = sum(torch.Size(s).numel() for s in shapes.values())
    assert round(encoder / 2**20) == 341  # the parameter count the official code prints ("341M")
    assert total * 4 == pytest.approx(1_507_822_566, rel=1e-3)  # size in bytes of the released fp32 final.pt


@pytest.mark.reference
def test_global_cmvn_equals_checkpoint_buffers(audio_dir, official_audio):
    mean, istd = load_global_cmvn(audio_dir / "global_cmvn")
    assert mean.dtype == istd.dtype == torch.float32
    assert torch.equal(mean, official_audio["encoder.global_cmvn.mean"])
    assert torch.equal(istd, official_audio["encoder.global_cmvn.istd"])


def test_global_cmvn_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_global_cmvn(tmp_path / "nope")
    bad = tmp_path / "global_cmvn"
    bad.write_text('{"mean_stat": [1.0, 2.0]}')
    with pytest.raises(CheckpointError, match=str(bad)):
        load_global_cmvn(bad)


# ------------------------------------------------------------------------------------------------------- final.pt


@pytest.mark.reference
def test_final_pt_round_trip(tmp_path, official_audio, shapes):
    path = tmp_path / "final.pt"
    torch.save(official_audio, path)
    state = load_final_pt(path, shapes)
    expected = map_keys(official_audio, AUDIO_KEYMAP)
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in state)
    torch.save({"model": official_audio}, path)  # nested one level down, as some trainers save it
    assert load_final_pt(path, shapes).keys() == expected.keys()


@pytest.mark.reference
def test_final_pt_problems_are_named(tmp_path, official_audio, shapes):
    path = tmp_path / "final.pt"
    name = sorted(k for k in official_audio if k.endswith("feed_forward.w_1.weight"))[-1]  # whatever the depth

    def attempt(state: dict[str, torch.Tensor], match: str, expected=shapes) -> None:
        torch.save(state, path)
        with pytest.raises(CheckpointError, match=match) as info:
            load_final_pt(path, expected)
        assert str(path) in str(info.value)

    attempt({**official_audio, "encoder.enc.1.extra.weight": torch.zeros(3)}, "encoder.enc.1.extra.weight")
    attempt({**official_audio, "encoder.enc.1.extra.weight": torch.zeros(3)}, "unknown.*extra", expected=None)
    attempt({k: v for k, v in official_audio.items() if k != name}, f"missing tensor '{re.escape(name)}'")
    attempt({**official_audio, name: torch.zeros(3, 5)}, rf"'{re.escape(name)}' has shape \(3, 5\)")
    path.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_final_pt(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_final_pt(tmp_path / "absent.pt")
