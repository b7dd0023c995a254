"""The training loop on CPU: every tiny stage trains only what it declares, exact resume after kill -9, outputs."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from vita.checkpoint.load import load_model
from vita.cli.train import main
from vita.errors import TrainingError
from vita.training.launch import train_command, train_env
from vita.training.recipe import load_recipe
from vita.training.train import LossModule, train
from vita.training.trainable import resolve_trainable

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny"
STAGES = sorted(p.stem for p in TINY.glob("*.yaml"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Bit-exact comparisons between runs need the same intra-op thread count everywhere."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    model, _ = load_model(path)
    return dict(model.state_dict())


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _fixed_batch_loss(model, out: Path, n: int = 4) -> float:
    """Mean loss of `model` on the first n training samples (the same samples for every model)."""
    from vita.processor import Processor
    from vita.training.stream import DataStream, concrete_data

    cfg = concrete_data(_recipe_data(out), out)
    processor = Processor(load_model("tiny-random")[1], model.config)
    stream = DataStream(cfg, processor, rank=0, world_size=1, pad_id=0)
    loss_module = LossModule(model)
    total, tokens = 0.0, 0
    with torch.no_grad():
        for _ in range(n):
            b = stream.next_batch(1)
            total += float(loss_module(b.token_ids, b.labels, None, b.pixel_values, b.fbanks))
            tokens += b.num_tokens
    return total / tokens


def _recipe_data(out: Path):
    import yaml

    from vita.training.recipe import recipe_from_dict

    return recipe_from_dict(yaml.safe_load((out / "recipe.yaml").read_text())).data


@pytest.mark.parametrize("stage", STAGES)
def test_tiny_stage_trains_only_declared_groups(stage: str, tmp_path: Path):
    out = tmp_path / stage
    final = train(TINY / f"{stage}.yaml", out, quiet=True)
    init = load_model("tiny-random")[0]
    declared = resolve_trainable([n for n, _ in init.named_parameters()], load_recipe(TINY / f"{stage}.yaml").trainable)
    recipe_trainable = {n for n, flag in declared.items() if flag}
    assert _checkpointed_names(out) == recipe_trainable  # a checkpoint holds exactly the trained tensors
    before = dict(init.state_dict())
    after = _weights(final)
    assert after.keys() == before.keys()
    for name, t in after.items():
        if name in recipe_trainable:
            assert not torch.equal(t, before[name]), f"{stage}: trainable {name} did not change"
        else:
            assert torch.equal(t, before[name]), f"{stage}: frozen {name} changed"
    losses = [r["loss"] for r in _metrics(out)]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    if any(n.startswith("llm.") for n in recipe_trainable):  # the LM itself learns: the curve falls
        assert losses[-1] < losses[0] - 0.1
    else:  # only a connector / encoder learns: compare on fixed samples
        model0, _ = load_model("tiny-random")
        model1, _ = load_model(final)
        assert _fixed_batch_loss(model1, out) < _fixed_batch_loss(model0, out)
    assert (out / "loss.png").stat().st_size > 1000
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step_000004", "step_000006"]


def _checkpointed_names(out: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(out / "checkpoints" / "step_000006" / "model.safetensors"), "pt") as f:
        return set(f.keys())


def test_metrics_and_rerun_is_a_no_op(tmp_path: Path, capsys):
    out = tmp_path / "run"
    base = ["schedule.total_steps=3", "checkpoint.every=0", "batch.micro_batch_size=1", "precision=bf16"]
    train(TINY / "stage4_continual_task.yaml", out, base, quiet=True)
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("loss", "lr", "tokens", "samples_per_s", "tokens_per_s", "grad_norm"):
        assert all(isinstance(r[key], (int, float)) for r in rows), key
    assert rows[0]["lr"] == 0.0 and rows[1]["lr"] > 0  # one warm-up step from 0, as the HF schedule
    import vita

    reply = vita.load(out / "final").generate("hi", max_new_tokens=2)  # the public API reads the result
    assert len(reply.token_ids) <= 2
    weights = _weights(out / "final")
    train(TINY / "stage4_continual_task.yaml", out, base)
    assert "already trained" in capsys.readouterr().err
    assert all(torch.equal(weights[k], v) for k, v in _weights(out / "final").items())
    with pytest.raises(TrainingError, match="different recipe .*optim.lr"):
        train(TINY / "stage4_continual_task.yaml", out, [*base, "optim.lr=1e-2"], quiet=True)


def test_kill9_then_resume_is_bit_exact(tmp_path: Path):
    recipe = TINY / "stage4_continual_task.yaml"  # LLM + projector; with accumulation and gradient checkpointing
    overrides = ["schedule.total_steps=9", "checkpoint.every=3", "checkpoint.keep_last=1", "batch.micro_batch_size=1",
                 "batch.grad_accum=2", "gradient_checkpointing=true"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_command(recipe, killed, overrides), env=train_env(threads=1),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (killed / "checkpoints" / "step_000003").is_dir():
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (killed / "final").exists()
    done = max(int(p.name[5:]) for p in (killed / "checkpoints").glob("step_*"))
    assert 3 <= done < 9
    train(recipe, killed, overrides, quiet=True)  # the same command: resumes
    reference = tmp_path / "reference"
    train(recipe, reference, overrides, quiet=True)
    a, b = _weights(killed / "final"), _weights(reference / "final")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    ra, rb = _metrics(killed), _metrics(reference)
    assert [r["step"] for r in ra] == list(range(1, 10))
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]


def test_stage_chain_and_lora(tmp_path: Path):
    s1 = train(TINY / "stage1_vision_align.yaml", tmp_path / "s1", ["schedule.total_steps=2"], quiet=True)
    s2 = train(TINY / "stage2_audio_align.yaml", tmp_path / "s2", [f"model.init={s1}", "schedule.total_steps=2"],
               quiet=True)
    w1, w2 = _weights(s1), _weights(s2)
    assert w1.keys() == w2.keys()
    params = {n for n, _ in load_model("tiny-random")[0].named_parameters()}
    for name in w1:  # stage 2 starts from stage 1: everything but the audio groups is carried over unchanged
        if name not in params:
            assert torch.equal(w1[name], w2[name]), name  # buffers (CMVN statistics) never train
            continue
        same = torch.equal(w1[name], w2[name])
        assert same != name.startswith(("audio_encoder.", "audio_adapter.")), name
    lora = ["lora={targets: ['llm.layers.*.attention.w[qv]', 'llm.layers.*.attention.wo'], r: 4, alpha: 8}",
            "trainable={'*': false}", "schedule.total_steps=3", "optim.lr=1e-2"]
    out = train(TINY / "stage0_llm_bilingual.yaml", tmp_path / "lora", lora, quiet=True)
    w = _weights(out)  # plain layout (merged), loadable without LoRA code
    init = dict(load_model("tiny-random")[0].state_dict())
    changed = {n for n in w if not torch.equal(w[n], init[n])}
    assert changed == {f"llm.layers.{i}.attention.{x}.weight" for i in range(2) for x in ("wq", "wv", "wo")}


@pytest.mark.parametrize(("argv", "message"), [
    (["--recipe", "missing.yaml"], "no such recipe file"),
    (["--recipe", str(TINY / "stage1_vision_align.yaml"), "optim.lrr=1"], "unknown key 'optim.lrr'"),
    (["--recipe", str(TINY / "stage1_vision_align.yaml"), "data.sources.0.path=/nonexistent/x.jsonl"],
     "/nonexistent/x.jsonl"),
    (["--recipe", str(TINY / "stage1_vision_align.yaml"), "model.init=/nonexistent/model"], "/nonexistent/model"),
])
def test_cli_errors_are_one_line(argv: list[str], message: str, tmp_path: Path, capsys):
    assert main([*argv, "--output", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_add_parser_registers_train(tmp_path: Path):
    import argparse

    from vita.cli.train import add_parser

    parser = argparse.ArgumentParser(prog="vita")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", "--recipe", str(TINY / "stage1_vision_align.yaml"), "--output",
                              str(tmp_path / "o"), "--quiet", "schedule.total_steps=1", "checkpoint.every=0"])
    assert args.func(args) == 0
    assert (tmp_path / "o" / "final" / "model.safetensors").is_file()


def test_epochs_schedule_counts_the_shard(tmp_path: Path):
    from vita.processor import Processor
    from vita.training.stream import concrete_data, count_samples

    out = tmp_path / "epochs"
    over = ["schedule.total_steps=null", "schedule.epochs=0.25", "batch.micro_batch_size=4", "checkpoint.every=0"]
    train(TINY / "stage1_vision_align.yaml", out, over, quiet=True)
    model, tokenizer = load_model("tiny-random")
    n = count_samples(concrete_data(_recipe_data(out), out), Processor(tokenizer, model.config), rank=0, world_size=1)
    assert n >= 16 and len(_metrics(out)) == int(n * 0.25 // 4)


def test_encoder_cache_gives_the_same_training(tmp_path: Path):
    """Frozen towers memoised (`encoder_cache_gb`): the same losses and weights as running them every time."""
    base = ["schedule.total_steps=3", "checkpoint.every=0", "batch.micro_batch_size=1", "gradient_checkpointing=false"]
    train(TINY / "stage3_multimodal_sft.yaml", tmp_path / "plain", base, quiet=True)
    train(TINY / "stage3_multimodal_sft.yaml", tmp_path / "cached", [*base, "encoder_cache_gb=1"], quiet=True)
    assert [r["loss"] for r in _metrics(tmp_path / "plain")] == [r["loss"] for r in _metrics(tmp_path / "cached")]
    a, b = _weights(tmp_path / "plain" / "final"), _weights(tmp_path / "cached" / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_encoder_results_kept_on_disk_give_the_same_training(tmp_path: Path):
    """`encoder_cache_dir`: a second run reads the first run's audio encodings and gets the same losses and weights."""
    base = ["schedule.total_steps=3", "checkpoint.every=0", "batch.micro_batch_size=1", "gradient_checkpointing=false",
            "encoder_cache_gb=1"]
    disk = f"encoder_cache_dir={tmp_path / 'enc'}"
    train(TINY / "stage3_multimodal_sft.yaml", tmp_path / "plain", base, quiet=True)
    train(TINY / "stage3_multimodal_sft.yaml", tmp_path / "write", [*base, disk], quiet=True)
    written = sorted((tmp_path / "enc").rglob("*.safetensors"))
    assert written
    stamps = [f.stat().st_mtime_ns for f in written]
    train(TINY / "stage3_multimodal_sft.yaml", tmp_path / "read", [*base, disk], quiet=True)
    assert [f.stat().st_mtime_ns for f in sorted((tmp_path / "enc").rglob("*.safetensors"))] == stamps  # only read
    losses = [[r["loss"] for r in _metrics(tmp_path / d)] for d in ("plain", "write", "read")]
    assert losses[0] == losses[1] == losses[2]
    a, c = _weights(tmp_path / "plain" / "final"), _weights(tmp_path / "read" / "final")
    assert all(torch.equal(a[k], c[k]) for k in a)
