"""Official VITA-1.0 layout: strict loading, sharded files, final.pt fallback, conversion both ways, dtypes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import vita
from vita.checkpoint.convert import convert
from vita.checkpoint.internvit import load_internvit_folder
from vita.checkpoint.io import TensorReader, write_tensors
from vita.checkpoint.vita1 import config_from_vita1, read_vita1
from vita.errors import CheckpointError

pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def case(ref_root, ref_index):
    """The richest full case (most media) with its recorded outputs."""
    c = max(ref_index["full_cases"], key=lambda c: c["num_image_placeholders"] + 10 * c["num_audio_placeholders"])
    return c, load_file(str(ref_root / c["file"]))


def _logits(model, ref_root, ref_index, c) -> torch.Tensor:
    images = [ref_root / ref_index["images"][c["image_index"]]["file"]] if c["kind"] == "image" else ()
    video = [ref_root / f for f in ref_index["video"]["frame_files"]] if c["kind"] == "video" else None
    audio = ref_root / ref_index["audios"][c["audio_index"]]["file"] if c["audio_index"] is not None else None
    inputs = model.inputs(c["question"] or None, images=images, video=video, audio=audio)
    if audio is not None:  # the recorded fbank: these tests are about loading, not FFT rounding (test_fbank.py)
        recorded = load_file(str(ref_root / "cases" / "audio.safetensors"))[f"audio{c['audio_index']}.fbank"]
        assert [f.shape for f in inputs.fbanks] == [recorded.shape]
        inputs.fbanks = [recorded]
    with torch.no_grad():
        return model.model(inputs.token_ids, inputs.pixel_values, inputs.fbanks)[0].float()


def _copy_checkpoint(ref_root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "VITA_ckpt"
    shutil.copytree(ref_root / "checkpoint", dst)
    return dst


def _shard_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """A shard size that splits this checkpoint into at least four files, whatever its size."""
    return sum(t.numel() * t.element_size() for t in tensors.values()) // 4


def test_sharded_checkpoint_loads_identically(ref_root, ref_index, case, tmp_path):
    c, gold = case
    ckpt = _copy_checkpoint(ref_root, tmp_path)
    tensors = load_file(str(ckpt / "model.safetensors"))
    (ckpt / "model.safetensors").unlink()
    files = write_tensors(ckpt, tensors, max_shard_bytes=_shard_bytes(tensors))
    assert len(files) > 2 and (ckpt / "model.safetensors.index.json").is_file()
    logits = _logits(vita.load(str(ckpt)), ref_root, ref_index, c)
    torch.testing.assert_close(logits, gold["logits"], atol=1e-4, rtol=0)


def test_missing_shard_is_named(ref_root, tmp_path):
    ckpt = _copy_checkpoint(ref_root, tmp_path)
    tensors = load_file(str(ckpt / "model.safetensors"))
    (ckpt / "model.safetensors").unlink()
    files = write_tensors(ckpt, tensors, max_shard_bytes=_shard_bytes(tensors))
    files[1].unlink()
    with pytest.raises(CheckpointError, match=files[1].name):
        vita.load(str(ckpt))


@pytest.mark.parametrize("problem", ["missing", "misshaped", "unknown"])
def test_bad_tensor_is_named(ref_root, ref_config, tmp_path, problem):
    ckpt = _copy_checkpoint(ref_root, tmp_path)
    tensors = load_file(str(ckpt / "model.safetensors"))
    last = ref_config["num_hidden_layers"] - 1
    name = f"model.layers.{last}.self_attn.k_proj.weight"
    if problem == "missing":
        del tensors[name]
        expect = f"missing tensor 'llm.layers.{last}.attention.wk.weight'"
    elif problem == "misshaped":
        tensors[name] = torch.zeros(3, 3)
        expect = f"llm.layers.{last}.attention.wk.weight' has shape \\(3, 3\\)"
    else:
        tensors["model.layers.0.self_attn.extra.weight"] = torch.zeros(2)
        expect = "model.layers.0.self_attn.extra.weight"
    save_file(tensors, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match=expect):
        vita.load(str(ckpt))


def test_truncated_safetensors_is_a_clear_error(ref_root, tmp_path):
    ckpt = _copy_checkpoint(ref_root, tmp_path)
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        vita.load(str(ckpt))


def test_missing_vision_folder_names_the_paths(ref_root, ref_vision_dir, tmp_path):
    ckpt = _copy_checkpoint(ref_root, tmp_path)
    shutil.rmtree(ckpt / ref_vision_dir.name)
    with pytest.raises(CheckpointError, match=f"vision tower .* not found .*{re.escape(ref_vision_dir.name)}"):
        vita.load(str(ckpt))
    # An explicit path fixes it.
    m = vita.load(str(ckpt), vision_tower=str(ref_vision_dir))
    assert m.model.vision is not None


def test_final_pt_used_when_checkpoint_has_no_audio(ref_root, ref_index, ref_audio_dir, case, tmp_path):
    c, gold = case
    ckpt = _copy_checkpoint(ref_root, tmp_path)
    tensors = load_file(str(ckpt / "model.safetensors"))
    prefix = "model.audio_encoder."
    audio = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    save_file({k: v for k, v in tensors.items() if not k.startswith(prefix)}, str(ckpt / "model.safetensors"))
    torch.save(audio, ckpt / ref_audio_dir.name / "final.pt")
    logits = _logits(vita.load(str(ckpt)), ref_root, ref_index, c)
    torch.testing.assert_close(logits, gold["logits"], atol=1e-4, rtol=0)


def test_convert_to_ours_and_back(ref_root, ref_index, case, tmp_path):
    c, gold = case
    ours = convert(ref_root / "checkpoint", tmp_path / "ours", to="vita")
    assert json.loads((ours / "config.json").read_text())["format"] == "vita"
    logits = _logits(vita.load(str(ours)), ref_root, ref_index, c)
    torch.testing.assert_close(logits, gold["logits"], atol=1e-4, rtol=0)

    back = convert(ours, tmp_path / "official", to="vita1")
    original = load_file(str(ref_root / "checkpoint" / "model.safetensors"))
    exported = dict(TensorReader.from_dir(back))
    assert set(exported) == set(original)
    for name, t in original.items():
        assert torch.equal(exported[name], t), name
    logits = _logits(vita.load(str(back)), ref_root, ref_index, c)
    torch.testing.assert_close(logits, gold["logits"], atol=1e-4, rtol=0)


def test_convert_refuses_to_overwrite(ref_root, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("user data")
    with pytest.raises(CheckpointError, match="not empty"):
        convert(ref_root / "checkpoint", tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "user data"


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_load_runs_every_path(ref_root, ref_index, case, dtype):
    c, gold = case
    model = vita.load(str(ref_root / "checkpoint"), dtype=dtype)
    expected = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    assert model.model.llm.norm.weight.dtype == expected
    assert model.model.audio_encoder.cmvn.mean.dtype == torch.float32  # statistics stay exact
    logits = _logits(model, ref_root, ref_index, c)
    assert torch.isfinite(logits).all()
    # Low precision changes digits, not the answer's first token on this case.
    assert (logits[-1] - gold["logits"][-1]).abs().max() < 0.5


def _chunked_audio_folder(audio_dir: Path, tmp_path: Path) -> Path:
    """A copy of `audio_dir` whose train.yaml asks for dynamic chunked attention."""
    folder = tmp_path / "audio-chunked"
    shutil.copytree(audio_dir, folder)
    tree = yaml.safe_load((folder / "train.yaml").read_text())
    tree["encoder_conf"]["para_conf"]["transformer"]["transformer-dynamic-chunks"] = True
    (folder / "train.yaml").write_text(yaml.safe_dump(tree))
    return folder


def test_chunked_attention_runs_full_attention_with_a_warning(ref_config, ref_vision_dir, ref_audio_dir, tmp_path):
    vision, _ = load_internvit_folder(ref_vision_dir)
    plain = config_from_vita1(ref_config, vision, ref_audio_dir, "config.json")
    with pytest.warns(UserWarning, match="chunked attention settings ignored, running full attention"):
        chunked = config_from_vita1(ref_config, vision, _chunked_audio_folder(ref_audio_dir, tmp_path), "config.json")
    assert chunked == plain


def test_embeddings_longer_than_the_tokenizer_are_cut_to_it(ref_root, tmp_path):
    """The official loader resizes the embeddings to len(tokenizer): extra rows are never read."""
    ckpt = _copy_checkpoint(ref_root, tmp_path)
    tensors = load_file(str(ckpt / "model.safetensors"))
    rows = tensors["model.embed_tokens.weight"].shape[0]
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        tensors[name] = torch.cat([tensors[name], torch.randn(8, tensors[name].shape[1])])  # [rows + 8, D]
    save_file(tensors, str(ckpt / "model.safetensors"))
    raw = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**raw, "vocab_size": rows + 8}))
    config, view, tokenizer = read_vita1(ckpt)
    assert config.llm.vocab_size == len(tokenizer) == rows
    for ours, theirs in (("llm.tok_embeddings.weight", "model.embed_tokens.weight"), ("llm.output.weight",
                                                                                      "lm_head.weight")):
        assert view.shape(ours) == (rows, tensors[theirs].shape[1])
        assert torch.equal(view[ours], tensors[theirs][:rows])
