"""Official VITA-1.5 layout: what the loader takes from where, the embedding resize, folder names, refusals,
conversion to our layout and back, the `vita-1.5` preset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import vita
from vita import presets
from vita.checkpoint.convert import convert
from vita.checkpoint.io import TensorReader
from vita.checkpoint.vita15 import config_from_vita15, read_vita15, vision_config_from_folder
from vita.checkpoint.whale import audio_config_from_train_yaml
from vita.errors import CheckpointError
from vita.models.vita import VitaModel

pytestmark = pytest.mark.reference

VISION_PREFIX, AUDIO_PREFIX = "model.vision_tower.vision_tower.", "model.audio_encoder."


@pytest.fixture(scope="module")
def case(ref15_root, ref15_index):
    """The richest full case (image + audio if the set has one) and its recorded outputs."""
    c = max(ref15_index["full_cases"], key=lambda c: c["num_image_placeholders"] + 10 * c["num_audio_placeholders"])
    return c, load_file(str(ref15_root / c["file"]))


def _last_logits(model, ref15_root, ref15_index, c) -> torch.Tensor:
    """Next-token logits of a case's prompt (recorded fbank: these tests are about loading, not FFT rounding)."""
    images = [ref15_root / ref15_index["images"][c["image_index"]]["file"]] if c["kind"] == "image" else ()
    video = [ref15_root / f for f in ref15_index["video"]["frame_files"]] if c["kind"] == "video" else None
    audio = ref15_root / ref15_index["audios"][c["audio_index"]]["file"] if c["audio_index"] is not None else None
    inputs = model.inputs(c["question"] or None, images=images, video=video, audio=audio)
    if audio is not None:
        inputs.fbanks = [load_file(str(ref15_root / "cases" / "audio.safetensors"))[f"audio{c['audio_index']}.fbank"]]
    with torch.no_grad():
        return model.model(inputs.token_ids, inputs.pixel_values, inputs.fbanks)[0, -1].float()


def _copy(ref15_root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "VITA-1.5"
    shutil.copytree(ref15_root / "checkpoint", dst)
    return dst


def test_embedding_resize_and_config(ref15_root, ref15_index, ref15_config):
    config, view, tokenizer = read_vita15(ref15_root / "checkpoint")
    check = ref15_index["load_check"]
    assert len(tokenizer) == check["config_vocab_size_after_load"] == config.llm.vocab_size
    assert view.shape("llm.tok_embeddings.weight")[0] == check["embedding_rows_after_official_load"]
    assert view.shape("llm.output.weight")[0] == check["lm_head_rows_after_official_load"]
    original = TensorReader.from_dir(ref15_root / "checkpoint")
    assert original.shape("model.embed_tokens.weight")[0] == check["embedding_rows_in_checkpoint"]
    n = config.llm.vocab_size
    assert torch.equal(view["llm.tok_embeddings.weight"], original["model.embed_tokens.weight"][:n])
    llm = config.llm
    assert (llm.family, llm.qkv_bias, llm.hidden_size, llm.num_layers) == (
        "qwen2", True, ref15_config["hidden_size"], ref15_config["num_hidden_layers"])
    assert (llm.rms_norm_eps, llm.rope_theta) == (ref15_config["rms_norm_eps"], ref15_config["rope_theta"])
    assert config.template == "qwen2p5_instruct" and config.max_length == ref15_config["tokenizer_model_max_length"]
    assert tokenizer.eos_id == check["generation_config"]["eos_token_id"] and tokenizer.bos_id is None


def test_towers_come_from_the_main_checkpoint(ref15_root, ref15_index, ref15_vision_dir, ref15_audio_dir, case,
                                              tmp_path):
    """As the official 1.5 loader: the InternViT folder weights and final.pt are overwritten by model.safetensors."""
    c, gold = case
    ckpt = _copy(ref15_root, tmp_path)
    folder = ckpt / ref15_vision_dir.name / "model.safetensors"
    save_file({k: v + 1 for k, v in load_file(str(folder)).items()}, str(folder))
    final = ckpt / ref15_audio_dir.name / "final.pt"
    torch.save({k: v + 1 for k, v in torch.load(final, weights_only=True).items()}, final)
    logits = _last_logits(vita.load(str(ckpt)), ref15_root, ref15_index, c)
    torch.testing.assert_close(logits, gold["logits_tail"][-1], atol=1e-4, rtol=0)


def test_folder_weights_and_final_pt_when_the_checkpoint_has_none(ref15_root, ref15_index, ref15_audio_dir, case,
                                                                  tmp_path):
    c, gold = case
    ckpt = _copy(ref15_root, tmp_path)
    tensors = load_file(str(ckpt / "model.safetensors"))
    save_file({k: v for k, v in tensors.items() if not k.startswith((VISION_PREFIX, AUDIO_PREFIX))},
              str(ckpt / "model.safetensors"))
    logits = _last_logits(vita.load(str(ckpt)), ref15_root, ref15_index, c)
    torch.testing.assert_close(logits, gold["logits_tail"][-1], atol=1e-4, rtol=0)
    (ckpt / ref15_audio_dir.name / "final.pt").unlink()
    with pytest.raises(CheckpointError, match="final.pt not found"):
        vita.load(str(ckpt))


def test_hub_id_folder_names_and_missing_folders(ref15_root, ref15_vision_dir, ref15_audio_dir, tmp_path):
    """The release names the folders by hub id ("OpenGVLab/InternViT-300M-448px"): found by their last part."""
    ckpt = _copy(ref15_root, tmp_path)
    raw = json.loads((ckpt / "config.json").read_text())
    raw["mm_vision_tower"] = f"OpenGVLab/{ref15_vision_dir.name}"
    raw["mm_audio_encoder"] = f"VITA-MLLM/{ref15_audio_dir.name}"
    (ckpt / "config.json").write_text(json.dumps(raw))
    assert vita.load(str(ckpt)).model.vision is not None
    shutil.rmtree(ckpt / ref15_vision_dir.name)
    with pytest.raises(CheckpointError, match=f"vision tower .* not found .*{ref15_vision_dir.name}"):
        vita.load(str(ckpt))
    assert vita.load(str(ckpt), vision_tower=str(ref15_vision_dir)).model.vision is not None


def test_hub_ids_found_in_the_local_hub_cache(ref15_root, ref15_vision_dir, ref15_audio_dir, tmp_path, monkeypatch):
    """Folders named by hub id and kept only in the Hugging Face cache (as `from_pretrained` leaves them)."""
    ckpt = _copy(ref15_root, tmp_path)
    cache = tmp_path / "hf-cache"
    for repo, folder in (("OpenGVLab/Tower-X", ref15_vision_dir), ("VITA-MLLM/AudioEnc-X", ref15_audio_dir)):
        shutil.move(ckpt / folder.name, cache / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123abcd")
    raw = json.loads((ckpt / "config.json").read_text())
    raw.update(mm_vision_tower="OpenGVLab/Tower-X", mm_audio_encoder="VITA-MLLM/AudioEnc-X")
    (ckpt / "config.json").write_text(json.dumps(raw))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert vita.load(str(ckpt)).model.audio_encoder is not None
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    with pytest.raises(CheckpointError, match="vision tower .* not found"):
        vita.load(str(ckpt))


@pytest.mark.parametrize("key, value, message", [
    ("audio_prompt_finetune", True, "audio_prompt_finetune"),
    ("audio_state_predictor_tuning", True, "state head"),
    ("mm_projector_type", "ldp", "mm_projector_type"),
    ("use_s2", True, "use_s2"),
])
def test_unsupported_configs_are_refused(ref15_root, tmp_path, key, value, message):
    ckpt = _copy(ref15_root, tmp_path)
    raw = json.loads((ckpt / "config.json").read_text())
    raw[key] = value
    (ckpt / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=message):
        vita.load(str(ckpt))


def test_unknown_tensor_is_named(ref15_root, tmp_path):
    ckpt = _copy(ref15_root, tmp_path)
    tensors = load_file(str(ckpt / "model.safetensors"))
    tensors["model.audio_prompt.weight"] = torch.zeros(2, 2)
    save_file(tensors, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match="model.audio_prompt.weight"):
        vita.load(str(ckpt))


def test_single_conv_adapter_whatever_the_widths(ref15_audio_dir, tmp_path):
    """1.5's adapter takes the single-conv branch even when the LLM is wider than 4 x the encoder (1.0 would not)."""
    tree = yaml.safe_load((ref15_audio_dir / "train.yaml").read_text())
    wide = 4 * tree["model_conf"]["enc_out_dim"] + 16
    tree["model_conf"]["llm_embed_dim"] = wide
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(CheckpointError, match="two-conv"):
        audio_config_from_train_yaml(path)
    _, adapter = audio_config_from_train_yaml(path, always_single_conv=True)
    assert adapter.output_size == wide and adapter.conv_size == 2 * tree["model_conf"]["enc_out_dim"]


def test_convert_to_ours_and_back(ref15_root, ref15_index, case, tmp_path):
    c, gold = case
    ours = convert(ref15_root / "checkpoint", tmp_path / "ours", to="vita")
    assert json.loads((ours / "config.json").read_text())["format"] == "vita"
    canonical = vita.load(str(ours))
    assert canonical.config.template == "qwen2p5_instruct"
    assert (ours / "vita_tts_ckpt" / "decoder" / "final.pt").is_file()  # the speech decoder travels along
    torch.testing.assert_close(_last_logits(canonical, ref15_root, ref15_index, c), gold["logits_tail"][-1],
                               atol=1e-4, rtol=0)

    back = convert(ours, tmp_path / "official", to="vita15")
    assert json.loads((back / "config.json").read_text())["model_type"] == "vita-Qwen2"
    assert (back / "vita_tts_ckpt" / "codec" / "final.pt").is_file()
    original = load_file(str(ref15_root / "checkpoint" / "model.safetensors"))
    exported = dict(TensorReader.from_dir(back))
    assert set(exported) == set(original)
    rows = ref15_index["load_check"]["embedding_rows_after_official_load"]
    for name, t in original.items():
        expected = t[:rows] if name in ("model.embed_tokens.weight", "lm_head.weight") else t  # the official resize
        assert torch.equal(exported[name], expected), name
    reloaded = vita.load(str(back))
    assert reloaded.tokenizer.stop_ids == vita.load(str(ref15_root / "checkpoint")).tokenizer.stop_ids
    torch.testing.assert_close(_last_logits(reloaded, ref15_root, ref15_index, c), gold["logits_tail"][-1],
                               atol=1e-4, rtol=0)
    with pytest.raises(CheckpointError, match="Mixtral"):
        convert(ours, tmp_path / "as10", to="vita1")


def test_bf16_load_runs(ref15_root, ref15_index, case):
    c, gold = case
    model = vita.load(str(ref15_root / "checkpoint"), dtype="bf16")
    assert model.model.llm.norm.weight.dtype == torch.bfloat16
    assert model.model.audio_encoder.cmvn.mean.dtype == torch.float32  # statistics stay exact
    logits = _last_logits(model, ref15_root, ref15_index, c)
    assert torch.isfinite(logits).all() and (logits - gold["logits_tail"][-1]).abs().max() < 0.5


def test_preset_has_the_release_shapes():
    config = presets.preset("vita-1.5")
    with torch.device("meta"):
        model = VitaModel(config)
    llm = sum(p.numel() for p in model.llm.parameters())
    assert llm == 7_615_616_512  # Qwen2.5-7B-Instruct (152064-row vocabulary, untied head)
    assert config.vision_projector.input_size == 4096 and config.vision_projector.output_size == 3584
    assert config.audio_adapter.output_size == 3584 and config.audio.num_layers == 24
    assert config.template == "qwen2p5_instruct" and config.llm.qkv_bias


def test_chunked_attention_runs_full_attention_with_a_warning(ref15_config, ref15_vision_dir, ref15_audio_dir,
                                                              tmp_path):
    folder = tmp_path / "audio-chunked"
    shutil.copytree(ref15_audio_dir, folder)
    tree = yaml.safe_load((folder / "train.yaml").read_text())
    tree["encoder_conf"]["para_conf"]["transformer"]["transformer-chunk_size"] = 4
    (folder / "train.yaml").write_text(yaml.safe_dump(tree))
    vision, vocab = vision_config_from_folder(ref15_vision_dir), ref15_config["vocab_size"]
    plain = config_from_vita15(ref15_config, vision, ref15_audio_dir, vocab, "config.json")
    with pytest.warns(UserWarning, match="chunked attention settings ignored, running full attention"):
        chunked = config_from_vita15(ref15_config, vision, folder, vocab, "config.json")
    assert chunked == plain
