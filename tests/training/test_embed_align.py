"""vita.training.embed_align: the projector and the audio adapter pre-aligned onto the LLM's token embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from safetensors.torch import load_file

import vita
from vita.checkpoint.convert import save_canonical
from vita.checkpoint.load import load_model
from vita.cli.tools import embed_align as main
from vita.training.embed_align import (
    EmbeddingScorer,
    audio_error_rate,
    spoken_text,
    vision_recall,
)


def test_scorer_ranks_an_embedding_row_first_and_blank_at_column_zero() -> None:
    torch.manual_seed(0)
    emb = torch.randn(50, 8)
    vocab = [3, 7, 11, 20]
    scorer = EmbeddingScorer(emb, vocab, blank=True)
    scores = scorer(torch.stack([emb[7], emb[20], emb.mean(0)]))  # [3, 1 + 4]
    assert scores.shape == (3, 5)
    assert scores.argmax(-1).tolist() == [scorer.index[7], scorer.index[20], 0]  # the blank centre is the mean row
    assert scorer.index == {3: 1, 7: 2, 11: 3, 20: 4}
    assert EmbeddingScorer(emb, vocab, blank=False).index[3] == 0


def test_metrics_count_errors_and_hits() -> None:
    # greedy CTC: repeats collapse, blanks (0) drop: [5, 5, 0, 6, 0, 6] -> [5, 6, 6] vs target [5, 6]: one insertion
    assert audio_error_rate([(torch.tensor([5, 5, 0, 6, 0, 6]), torch.tensor([5, 6]))]) == pytest.approx(0.5)
    assert audio_error_rate([(torch.tensor([0, 5, 0, 6]), torch.tensor([5, 6]))]) == 0.0
    # caption tokens 4 and 9: only 4 is some token's nearest entry
    assert vision_recall([(torch.tensor([4, 4, 2]), torch.tensor([4, 9]))]) == pytest.approx(0.5)


def test_reply_text_drops_the_state_token() -> None:
    rec = {"conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "<3>Hello there."}]}
    assert spoken_text(rec, "r", "vision") == "Hello there."
    with pytest.raises(vita.errors.DataError, match="no assistant reply"):
        spoken_text({"conversations": [{"from": "human", "value": "x"}]}, "r", "vision")


def _data(root: Path, n: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    words = ["red", "blue", "green", "cat", "dog", "sun"]
    vis, aud = [], []
    for i in range(n):
        arr = np.full((48, 48, 3), (i * 40 % 255, 90, 200 - i * 10), np.uint8)
        Image.fromarray(arr).save(root / f"im{i}.png")
        caption = f"A {words[i % 6]} thing."
        vis.append({"image": f"im{i}.png", "conversations": [{"from": "human", "value": "<image>\n"},
                                                              {"from": "gpt", "value": caption}]})
        t = np.arange(16000 + 800 * i) / 16000
        sf.write(root / f"a{i}.wav", (0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t)
                                      + 0.01 * rng.standard_normal(t.shape)).astype(np.float32), 16000)
        said = f"<3>{words[i % 6]} {words[(i + 1) % 6]}"
        aud.append({"audio": f"a{i}.wav", "conversations": [{"from": "human", "value": "Transcribe.<audio>"},
                                                             {"from": "gpt", "value": said}]})
    (root / "vision.json").write_text(json.dumps(vis))
    (root / "audio.json").write_text(json.dumps(aud))
    return root / "vision.json", root / "audio.json"


@pytest.fixture(scope="module")
def aligned(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("ea")
    vision, audio = _data(root, 24)
    vm = vita.load("tiny-random")
    save_canonical(vm.model.config, vm.model.state_dict(), vm.tokenizer, root / "base")
    outs = []
    for name in ("a", "b"):
        args = ["--model", str(root / "base"), "--vision", str(vision), "--audio", str(audio),
                "--out", str(root / name), "--epochs", "6"]
        assert main(args) == 0
        outs.append(root / name)
    return root, outs


def test_alignment_learns_and_touches_only_the_two_parts(aligned) -> None:
    root, (out, _) = aligned
    summary = json.loads((out / "embed_align.json").read_text())
    for kind in ("audio", "vision"):
        epochs = summary[kind]["epochs"]
        assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] - 0.05, (kind, epochs)
        assert summary[kind]["held_out"] == 1 and summary[kind]["train"] == 23
    base, _ = load_model(root / "base")
    new, _ = load_model(out)
    before, after = base.state_dict(), new.state_dict()
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("vision_projector.", "audio_adapter.")) for k in changed)
    assert {k.split(".")[0] for k in changed} == {"vision_projector", "audio_adapter"}


def test_alignment_is_reproducible(aligned) -> None:
    _, (a, b) = aligned
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_cli_refuses_a_non_empty_output_and_missing_data(aligned, tmp_path, capsys) -> None:
    root, (out, _) = aligned
    assert main(["--model", str(root / "base"), "--vision", str(root / "vision.json"), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["--model", str(root / "base"), "--out", str(tmp_path / "x")]) == 2
    assert main(["--model", str(root / "base"), "--audio", str(tmp_path / "nope.json"),
                 "--out", str(tmp_path / "y")]) == 2
    assert "cannot read the training data" in capsys.readouterr().err


def test_encoder_blocks_tunes_only_the_top_block_its_norm_and_the_adapter(tmp_path, capsys) -> None:
    import dataclasses

    from vita.checkpoint.load import random_model
    from vita.config import AudioAdapterConfig, WhisperConfig

    _, audio = _data(tmp_path, 24)
    tok = vita.load("tiny-random").tokenizer
    whisper = WhisperConfig(hidden_size=32, num_heads=4, intermediate_size=64, num_layers=2, max_positions=200,
                            pad_to_window=False)
    base = vita.presets.tiny_random()
    config = dataclasses.replace(base, audio=whisper,
                                 audio_adapter=AudioAdapterConfig(32, base.llm.hidden_size, stride=4))
    save_canonical(config, random_model(config).state_dict(), tok, tmp_path / "base")
    args = ["--model", str(tmp_path / "base"), "--audio", str(audio), "--epochs", "2", "--encoder-blocks", "1",
            "--tune-epochs", "3", "--tune-lr", "1e-3"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "embed_align.json").read_text())
    tune = summary["audio_encoder"]
    assert tune["blocks"] == 1 and len(tune["epochs"]) == 3 and len(summary["audio"]["epochs"]) == 2
    assert tune["epochs"][-1]["train_loss"] < summary["audio"]["epochs"][0]["train_loss"]
    before = load_file(tmp_path / "base" / "model.safetensors")
    after = load_file(tmp_path / "out" / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {k.split(".")[0] for k in changed} == {"audio_adapter", "audio_encoder"}
    encoder = {k for k in changed if k.startswith("audio_encoder.")}
    assert encoder and all(k.startswith(("audio_encoder.blocks.1.", "audio_encoder.final_norm.")) for k in encoder)
    assert "audio_encoder.blocks.1.attn.q_proj.weight" in encoder
    # a VITA-1.0 (whale) encoder has no blocks to tune: a clear error, not a traceback
    root = tmp_path / "whale"
    root.mkdir()
    vm = vita.load("tiny-random")
    save_canonical(vm.model.config, vm.model.state_dict(), vm.tokenizer, root / "base")
    assert main(["--model", str(root / "base"), "--audio", str(audio), "--encoder-blocks", "1",
                 "--out", str(root / "out")]) == 2
    assert "needs a Whisper audio encoder" in capsys.readouterr().err


def test_ctc_head_is_saved_and_reads_the_clips_back(aligned, tmp_path, capsys, monkeypatch) -> None:
    """The aligned model's ctc_head reads its clips back through `ctc_wer`; a model without one is a clear error."""
    from vita.cli.tools import ctc_wer

    root, (out, _) = aligned
    head = load_file(out / "ctc_head.safetensors")
    summary = json.loads((out / "embed_align.json").read_text())
    assert head["vocab"].numel() == summary["audio"]["vocab"] and head["blank"].ndim == 1
    records = json.loads((root / "audio.json").read_text())
    manifest = root / "asr.jsonl"
    manifest.write_text("".join(json.dumps({"id": str(i), "audio": r["audio"], "group": "asr/clean",
                                            "transcript": r["conversations"][1]["value"][3:]}) + "\n"
                                for i, r in enumerate(records[:6])))
    assert ctc_wer(["--model", str(out), "--manifest", str(manifest)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cases"] == 6 and set(report["wer"]) == {"all", "asr/clean"}
    assert report["wer"]["all"] == report["wer"]["asr/clean"] >= 0 and len(report["examples"]) == 5
    # the read-out itself: each token's embedding on two frames (repeats collapse), the blank between equal tokens
    # ("ee" of "see") and at the edges
    from vita.training.ctc_readout import load_head, read_clip

    vm = vita.load(str(out), dtype="fp32")
    scorer = load_head(vm, out)
    ids = vm.tokenizer.encode("I see a dog", add_special_tokens=False)
    emb, blank = vm.model.llm.tok_embeddings.weight.detach().float(), scorer.blank.detach()
    frames = [blank]
    for i, t in enumerate(ids):
        frames += ([blank] if i and ids[i - 1] == t else []) + [emb[t], emb[t]]
    rows = torch.stack([*frames, blank])

    class Rows(torch.nn.Module):
        def forward(self, x, mask):
            return rows[None], torch.ones(1, len(rows), dtype=torch.bool)

    vm.model.audio_adapter = Rows()
    assert read_clip(vm, scorer, root / "a0.wav") == "I see a dog"
    monkeypatch.chdir(root.parent)  # a relative clip path (as manifests give them) is found too
    assert read_clip(vm, scorer, Path(root.name) / "a0.wav") == "I see a dog"
    assert ctc_wer(["--model", str(root / "base"), "--manifest", str(manifest)]) == 2
    assert "ctc_head.safetensors: missing" in capsys.readouterr().err


def test_ctc_compress_builds_the_read_out_into_the_model(aligned, tmp_path, capsys) -> None:
    """`ctc_compress`: same placeholders per clip, rows = the adapter's compression of the aligned model's rows;
    generation runs; a model without a head and a non-empty output are refused."""
    from vita.cli.tools import ctc_compress

    root, (out, _) = aligned
    dst = tmp_path / "ctc"
    assert ctc_compress(["--model", str(out), "--out", str(dst)]) == 0
    assert json.loads(capsys.readouterr().out)["vocab"] == load_file(out / "ctc_head.safetensors")["vocab"].numel()
    plain, comp = vita.load(str(out), dtype="fp32"), vita.load(str(dst), dtype="fp32")
    assert comp.model.config.audio_adapter.ctc_vocab == comp.model.config.llm.vocab_size
    inputs = comp.processor.simple("Transcribe.", audio=str(root / "a3.wav"))
    assert torch.equal(inputs.token_ids, plain.processor.simple("Transcribe.", audio=str(root / "a3.wav")).token_ids)
    with torch.no_grad():
        before = plain.model.encode_audio(inputs.fbanks)
        after = comp.model.encode_audio(inputs.fbanks)
        want = comp.model.audio_adapter.compress(before, comp.model.llm.tok_embeddings.weight)
    assert after.shape == before.shape and torch.equal(after, want)
    assert isinstance(comp.generate("Transcribe.", audio=str(root / "a3.wav"), max_new_tokens=3).text, str)
    assert ctc_compress(["--model", str(out), "--out", str(dst)]) == 2  # not empty
    assert ctc_compress(["--model", str(out), "--out", str(tmp_path / "snap"), "--snap"]) == 0
    assert json.loads(capsys.readouterr().out)["snap"] is True
    assert vita.load(str(tmp_path / "snap")).config.audio_adapter.ctc_snap
    assert ctc_compress(["--model", str(root / "base"), "--out", str(tmp_path / "x")]) == 2
    assert "ctc_head.safetensors: missing" in capsys.readouterr().err
