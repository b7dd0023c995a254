"""Process group, device and model wrapping for `torchrun` launches (DDP or FSDP2), and full state dicts.

    torchrun --nproc_per_node N -m vita.cli.train ...        # RANK / WORLD_SIZE / LOCAL_RANK from the environment
    plain `python -m vita.cli.train ...`                     # one process, no process group

gloo on CPU, NCCL on GPU. DDP replicates the model and all-reduces (averages) gradients; FSDP2 (`fully_shard`) shards
parameters, gradients and optimizer state per LLM block (the rest is the root group), and reduce-scatters
(averages) gradients. Either
way the loss is pre-scaled by world size / global supervised tokens, so the average equals one big batch's gradient.

State dicts are full (unsharded, on CPU, plain parameter names) whatever the wrapping, so checkpoints do not depend
on the sharding: `torch.distributed.checkpoint.state_dict` with `full_state_dict=True` under a process group, plain
`state_dict()` (optimizer state re-keyed by parameter name, the same format) in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from vita.errors import TrainingError


@dataclass
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def init_world(device: torch.device | None = None) -> World:
    """Read the torchrun environment; start the process group when launched by torchrun.

    `device` (`vita.devices.resolve_device`): None is CUDA if present, else the CPU. Under torchrun a CUDA device
    means `cuda:LOCAL_RANK` (NCCL) and the CPU means gloo."""
    use_cuda = torch.cuda.is_available() if device is None else device.type == "cuda"
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        if device is not None and device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)
        return World(device=device if device is not None else torch.device("cuda" if use_cuda else "cpu"))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise TrainingError(f"LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} CUDA "
                                "device(s): launch at most that many ranks per node, or pass --device cpu")
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
    return World(rank, world_size, local_rank, device)


def close_world(world: World) -> None:
    if world.distributed:
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def all_sum(world: World, values: list[float]) -> list[float]:
    """Sum a few numbers over ranks (float64 on the training device)."""
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(t)
    return t.tolist()


def all_min(world: World, value: int) -> int:
    if not world.distributed:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=world.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def gather_objects(world: World, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank (small things only: RNG states, data positions)."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.world_size
    dist.all_gather_object(out, obj)
    return out


def wrap(module: nn.Module, world: World, strategy: str, shard_units: list[nn.Module]) -> nn.Module:
    """DDP or FSDP2 around `module` (a no-op in a single process). `shard_units` become FSDP groups."""
    if not world.distributed:
        return module
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(world.device.type, (world.world_size,))
        for unit in shard_units:
            fully_shard(unit, mesh=mesh)
        fully_shard(module, mesh=mesh)
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [world.local_rank] if world.device.type == "cuda" else None
    # every trainable parameter is used at every step (`vita.training.train.touch`): no unused-parameter search
    return DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "no_sync") and hasattr(module, "module") else module


def full_model_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded CPU tensors with plain names (collective under FSDP: call on every rank)."""
    module = unwrap(module)
    if not (dist.is_available() and dist.is_initialized()):  # one process: no need for the DCP machinery
        return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """{"state": {param name: {...}}, "param_groups": [{..., "params": [names]}]}, unsharded, on CPU."""
    module = unwrap(module)
    if not (dist.is_available() and dist.is_initialized()):
        names = _param_names(module, optimizer)
        raw = optimizer.state_dict()
        state = {names[i]: {k: v.detach().to("cpu", copy=True) if torch.is_tensor(v) else v for k, v in st.items()}
                 for i, st in raw["state"].items()}
        groups = [{**g, "params": [names[i] for i in g["params"]]} for g in raw["param_groups"]]
        return {"state": state, "param_groups": groups}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(module, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(module: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict[str, torch.Tensor],
                    optim_state: dict[str, Any]) -> None:
    """Load full (unsharded) states on every rank (model_state may be partial: the trained tensors only)."""
    module = unwrap(module)
    if not (dist.is_available() and dist.is_initialized()):
        missing = set(model_state) - set(module.state_dict())
        if missing:
            raise KeyError(f"unknown tensors in checkpoint: {sorted(missing)[:3]}")
        module.load_state_dict(model_state, strict=False)
        index = {name: i for i, name in _param_names(module, optimizer).items()}
        state = {index[name]: st for name, st in optim_state["state"].items()}
        groups = [{**g, "params": [index[n] for n in g["params"]]} for g in optim_state["param_groups"]]
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(module, model_state, options=options)
    set_optimizer_state_dict(module, optimizer, optim_state, options=options)


def _param_names(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[int, str]:
    """Optimizer state index -> parameter name (indices count params over the groups in order)."""
    by_id = {id(p): n for n, p in module.named_parameters()}
    flat = [p for g in optimizer.param_groups for p in g["params"]]
    return {i: by_id[id(p)] for i, p in enumerate(flat)}
