"""Where a model runs: the `--device` and `--dtype` of every command that loads a model, resolved in one place.

    --device cpu | cuda | cuda:N | auto    (default: $VITA_DEVICE, else auto = the first CUDA device if there is
                                            one, else the CPU)
    --dtype  fp32 | bf16 | fp16            (default: bf16 on CUDA (fp16 on cards without bf16); on the CPU
                                            $VITA_CPU_DTYPE, else bf16 for the embedded model (vita-mini) where
                                            the CPU multiplies bf16 natively (AMX / AVX512-BF16), else fp32)

The flags themselves are added by `vita.cli.args.add_device_arguments` and read back with
`vita.cli.args.device_from_args`, which calls `resolve`.

A device that this machine does not have is a `DeviceError` that names the request and lists what there is
(`--device cuda: CUDA is not available (torch 2.13.0+cpu is a CPU-only build); this machine has: cpu`), which
the CLI prints as one line with exit status 2.

torch is imported on first use, so that building the CLI's parsers stays cheap.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from vita.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_ENV = "VITA_DEVICE"  # the default of --device when the flag is not given
CPU_DTYPE_ENV = "VITA_CPU_DTYPE"  # the default of --dtype on the CPU when the flag is not given
DTYPE_NAMES = ("fp32", "bf16", "fp16")


class DeviceError(ConfigError):
    """A requested device is malformed or not present on this machine."""


def available() -> list[str]:
    """The devices a model can be placed on here: `cpu`, then `cuda:0` .. `cuda:N-1`."""
    return ["cpu", *(f"cuda:{i}" for i in range(cuda_count()))]


def cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """`cpu`, `cuda`, `cuda:N` or `auto` (None: $VITA_DEVICE, else auto) -> a concrete `torch.device` with an index
    for CUDA (`cuda` is the current CUDA device), so that devices compare equal to those of the model's tensors."""
    import torch

    if spec is None:
        spec = os.environ.get(DEVICE_ENV) or "auto"
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = spec.strip().lower()
    if text == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if cuda_count() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    kind, colon, index = text.partition(":")
    if kind != "cuda" or (colon and not index.isdigit()):
        raise DeviceError(f"--device {spec!r}: not a device; use cpu, cuda, cuda:N or auto")
    count = cuda_count()
    if count == 0:
        raise DeviceError(f"--device {spec}: CUDA is not available ({_why_no_cuda()}); "
                          f"this machine has: {', '.join(available())}")
    if not index:
        return torch.device("cuda", torch.cuda.current_device())
    if int(index) >= count:
        raise DeviceError(f"--device {spec}: there is no CUDA device {int(index)} ({count} found); "
                          f"this machine has: {', '.join(available())}")
    return torch.device("cuda", int(index))


def _why_no_cuda() -> str:
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a build without CUDA"
    return f"torch {torch.__version__} has CUDA {torch.version.cuda} but finds no usable GPU or driver"


def default_dtype(device: torch.device, cpu_default: str = "fp32") -> str:
    """bf16 on CUDA (fp16 where the card has no bf16), else `cpu_default`."""
    import torch

    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return cpu_default


def native_bf16() -> bool:
    """The CPU multiplies bf16 in hardware (AMX-BF16 or AVX512-BF16): bf16 weights then beat fp32 on every step
    (vita-mini on a Sapphire Rapids core: prefill of 150 positions 121 ms vs 297, a decode step 25 ms vs 38)."""
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def cpu_dtype(model: str | None, command_default: str = "fp32") -> str:
    """The CPU dtype of a model loaded without --dtype: $VITA_CPU_DTYPE when set; else bf16 for the embedded
    model (the `vita.presets.ASSEMBLED` names; its eval figures measured in both dtypes: README) on a CPU with
    native bf16; else `command_default`. Model directories and the reference checkpoints stay fp32 (their parity
    is fp32)."""
    env = os.environ.get(CPU_DTYPE_ENV, "").strip().lower()
    if env:
        if env not in DTYPE_NAMES:
            raise ConfigError(f"${CPU_DTYPE_ENV}={env!r}: not a dtype; use one of {', '.join(DTYPE_NAMES)}")
        return env
    if model in ("vita-mini", "vita-mini-untrained") and native_bf16():  # = vita.presets.ASSEMBLED (test)
        return "bf16"
    return command_default


def resolve(device: str | torch.device | None, dtype: str | None, *, cpu_dtype: str = "fp32") -> tuple[
        torch.device, str]:
    """The (device, dtype name) a command runs with; `dtype` None means the device's default."""
    where = resolve_device(device)
    return where, dtype if dtype is not None else default_dtype(where, cpu_dtype)
