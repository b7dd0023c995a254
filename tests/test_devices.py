"""`--device` / `--dtype` on every command that loads a model (`vita.devices`), run in-process on the CPU."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from vita import cli, devices
from vita.devices import DeviceError, default_dtype, resolve_device

# every leaf command of `vita`, by what it does with a model (a new command fails `test_every_command_is_classified`)
LOADS_A_MODEL = {  # argv that reaches the model load, given --device; none of them loads anything before the device
    "generate": ["generate", "--model", "tiny-random", "--prompt", "hi"],
    "eval": ["eval", "--manifest", "missing.jsonl", "--model", "tiny-random"],
    "chat": ["chat", "--model", "tiny-random"],
    "serve": ["serve", "--model", "tiny-random"],
    "train": ["train", "--recipe", "recipes/tiny/stage1_vision_align.yaml", "--output", "OUT"],
    "bench decode": ["bench", "decode", "--model", "tiny-random"],
    "bench duplex": ["bench", "duplex", "--model", "tiny-random"],
    "bench train": ["bench", "train"],
    "bench serve": ["bench", "serve", "--model", "tiny-random"],
}
# these read and write files only: the weights never run, so where they would run does not arise
FILES_ONLY = {"convert", "data negatives", "data mini", "vocab extend", "mini assemble", "mini pack",
              "download", "quantize"}  # the last two: issue 15 items 2 and 3, where present
FORWARDED = {"bench train", "bench serve"}  # their own parsers own the flags (`vita.cli.bench.train_main`, ...)


def leaf_commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(leaf_commands(sub, f"{prefix} {name}".strip()))
    return out or {prefix: parser}


def fake_cuda(monkeypatch, count: int, bf16: bool = True) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)


def test_every_command_is_classified():
    leaves = set(leaf_commands(cli.build_parser()))
    assert set(LOADS_A_MODEL) <= leaves
    assert leaves - set(LOADS_A_MODEL) - FILES_ONLY == set(), "a new command: does it load a model? (--device)"


@pytest.mark.parametrize("name", sorted(set(LOADS_A_MODEL) - FORWARDED))
def test_every_model_command_parses_device_and_dtype(name):
    argv = [a.replace("OUT", "out") for a in LOADS_A_MODEL[name]]
    args = cli.build_parser().parse_args([*argv, "--device", "cuda:1"])
    assert args.device == "cuda:1"
    assert hasattr(args, "dtype") == (name != "train")  # `vita train`: the recipe's model.dtype and precision
    if name not in ("train", "bench decode"):  # bench decode: its own bf16 default on every device
        assert args.dtype is None  # None = bf16 on CUDA, the command's own default on the CPU
        assert cli.build_parser().parse_args([*argv, "--dtype", "bf16"]).dtype == "bf16"


@pytest.mark.parametrize("name", sorted(LOADS_A_MODEL))
def test_cuda_fails_in_one_line_without_cuda(name, tmp_path, capsys, monkeypatch):
    fake_cuda(monkeypatch, 0)
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # noqa: SIM115 (chat reads stdin if it ever got there)
    argv = [a.replace("OUT", str(tmp_path / "run")) for a in LOADS_A_MODEL[name]]
    assert cli.main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --device cuda: CUDA is not available " + f"({devices._why_no_cuda()}); this machine has: cpu"
    assert not (tmp_path / "run").exists()  # failed before any work


def test_demo_fails_in_one_line_without_cuda(capsys, monkeypatch):
    from vita import demo

    fake_cuda(monkeypatch, 0)
    assert demo.main(["tiny-random", "--device", "cuda:0"]) == 2
    assert "vita.demo: error: --device cuda:0: CUDA is not available" in capsys.readouterr().err


def test_auto_is_cpu_here_and_cuda_where_present(monkeypatch):
    monkeypatch.delenv(devices.DEVICE_ENV, raising=False)
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        assert resolve_device(None) == torch.device("cpu")  # the CLI default without $VITA_DEVICE
    fake_cuda(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("CUDA") == torch.device("cuda", 0)  # an index, so it equals the model tensors' device
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setenv(devices.DEVICE_ENV, "cpu")
    assert resolve_device(None) == torch.device("cpu")


def test_missing_gpu_index_names_what_there_is(monkeypatch):
    fake_cuda(monkeypatch, 1)
    with pytest.raises(DeviceError) as err:
        resolve_device("cuda:7")
    assert str(err.value) == "--device cuda:7: there is no CUDA device 7 (1 found); this machine has: cpu, cuda:0"


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cuda:-1", "", "mps", "cpu:0:1", "cuda:"])
def test_bad_device_strings(bad, monkeypatch):
    fake_cuda(monkeypatch, 1)
    with pytest.raises(DeviceError, match="not a device; use cpu, cuda, cuda:N or auto") as err:
        resolve_device(bad)
    assert repr(bad) in str(err.value)


def test_dtype_defaults(monkeypatch):
    assert default_dtype(torch.device("cpu")) == "fp32"
    assert default_dtype(torch.device("cpu"), "bf16") == "bf16"
    fake_cuda(monkeypatch, 1)
    assert default_dtype(torch.device("cuda", 0)) == "bf16"
    assert devices.resolve("cuda", None) == (torch.device("cuda", 0), "bf16")
    assert devices.resolve("cuda", "fp32") == (torch.device("cuda", 0), "fp32")
    fake_cuda(monkeypatch, 1, bf16=False)
    assert default_dtype(torch.device("cuda", 0)) == "fp16"  # e.g. a T4 or V100


def test_cpu_dtype_is_bf16_only_for_the_embedded_model_on_native_bf16(monkeypatch):
    from vita.cli.args import device_from_args
    from vita.presets import ASSEMBLED

    monkeypatch.delenv(devices.CPU_DTYPE_ENV, raising=False)
    for native in (True, False):
        monkeypatch.setattr(devices, "native_bf16", lambda native=native: native)
        for name in ASSEMBLED:
            assert devices.cpu_dtype(name) == ("bf16" if native else "fp32")
        assert devices.cpu_dtype("tiny-random") == devices.cpu_dtype("runs/mini/vita-mini") == "fp32"
        args = argparse.Namespace(device="cpu", dtype=None, cpu_dtype="fp32", model="vita-mini")
        assert device_from_args(args) == (torch.device("cpu"), "bf16" if native else "fp32")
        args.dtype = "fp32"  # the flag wins
        assert device_from_args(args)[1] == "fp32"
    monkeypatch.setenv(devices.CPU_DTYPE_ENV, "fp32")  # the environment wins over the machine
    assert devices.cpu_dtype("vita-mini") == "fp32"
    monkeypatch.setenv(devices.CPU_DTYPE_ENV, "bf16")
    assert devices.cpu_dtype("tiny-random") == "bf16"
    monkeypatch.setenv(devices.CPU_DTYPE_ENV, "float8")
    with pytest.raises(devices.ConfigError, match="VITA_CPU_DTYPE='float8'"):
        devices.cpu_dtype("vita-mini")


def test_api_load_resolves_auto_and_keeps_cpu_default():
    import vita

    m = vita.load("tiny-random", device="auto")
    assert m.model.device == torch.device("cpu") and m.model.llm.dtype == torch.float32
    with pytest.raises(DeviceError):
        vita.load("tiny-random", device="cuda:0") if not torch.cuda.is_available() else vita.load("x", device="tpu")


def test_generate_end_to_end_on_cpu(capsys):
    import vita

    argv = ["generate", "--model", "tiny-random", "--prompt", "hello", "--max-new-tokens", "6", "--json"]
    assert cli.main([*argv, "--device", "cpu"]) == 0
    on_cpu = json.loads(capsys.readouterr().out)
    assert cli.main([*argv, "--device", "auto"]) == 0
    on_auto = json.loads(capsys.readouterr().out)
    expected = vita.load("tiny-random").generate("hello", max_new_tokens=6)
    assert on_cpu["token_ids"] == on_auto["token_ids"] == expected.token_ids
    assert len(on_cpu["token_ids"]) == 6
    assert cli.main([*argv, "--device", "cpu", "--dtype", "bf16"]) == 0  # the dtype reaches the load
    assert len(json.loads(capsys.readouterr().out)["token_ids"]) == 6


def test_training_launch_passes_the_device():
    from vita.training.distributed import init_world
    from vita.training.launch import train_command

    cmd = train_command("r.yaml", "out", ["a=1"], nproc=2, device="cpu")
    assert cmd[cmd.index("--device") + 1] == "cpu" and cmd[-1] == "a=1"
    assert "--device" not in train_command("r.yaml", "out")
    assert init_world(torch.device("cpu")).device == torch.device("cpu")
