"""`vita train`: the one training loop. Every stage is a recipe (`recipes/*/*.yaml`); nothing else differs.

    vita train --recipe recipes/tiny/stage1_vision_align.yaml --output runs/s1 [key=value ...]
    python -m torch.distributed.run --nproc_per_node 2 -m vita.cli.train --recipe R --output DIR [key=value ...]

Per optimizer step, on every rank:
    accum micro-batches [micro, L] from this rank's data shard -> embed (media spliced) -> LLM -> hidden [micro, L, D]
    loss_i = CE_sum(head(hidden[:, :-1]), labels[:, 1:]) * world / N   N = supervised tokens of the GLOBAL step
    (the head runs only at supervised positions: [n_i, V] logits, not [micro, L, V])
    backward each (DDP/FSDP average over ranks) -> clip -> AdamW -> cosine LR
so the loss and gradients equal those of one process running the whole global batch at once.

Output directory:
    DIR/recipe.yaml           the resolved recipe (overrides applied)
    DIR/metrics.jsonl         one line per step (`vita.training.metrics`)
    DIR/checkpoints/step_N/   resumable state (`vita.training.checkpointing`); the same command resumes from the
                              newest one, and the final weights are bit-equal to an uninterrupted run's
    DIR/final/                the trained model in our canonical layout (`vita.load(DIR / "final")`)
    DIR/loss.png              the loss curve
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from vita.errors import TrainingError
from vita.models.vita import VitaModel
from vita.tokens import IGNORE_INDEX
from vita.training import checkpointing as ckpt
from vita.training import distributed as dist_utils
from vita.training.distributed import World
from vita.training.metrics import MetricsLog, ProgressBar, plot_loss, read_metrics
from vita.training.recipe import Recipe, load_recipe

if TYPE_CHECKING:
    from vita.processor import Processor
    from vita.training.data import DataConfig
    from vita.training.stream import DataStream


def touch(out: torch.Tensor, params) -> torch.Tensor:
    """`out` + 0 * one element of each trainable parameter: exactly `out`, and every parameter gets a (zero) gradient.

    Every trainable tensor then gets a gradient on every rank at every step, used or not (no image in a
    micro-batch, an MoE expert no token was routed to): DDP and FSDP run the same collectives on every rank, and
    one process, DDP and FSDP apply the same AdamW update (zero gradient, not a skipped parameter).
    """
    terms = [p.reshape(-1)[:1] for p in params if p.requires_grad]
    return out + torch.cat(terms).sum() * 0.0 if terms else out


class LossModule(nn.Module):
    """The model and its next-token loss as ONE module, so DDP / FSDP hooks see a single forward."""

    def __init__(self, model: VitaModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, token_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None,
                pixel_values: torch.Tensor | None, fbanks: list[torch.Tensor],
                segment_ids: torch.Tensor | None = None, video_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Summed cross-entropy over the supervised tokens of the micro-batch (a scalar, float32); `video_rows`: which
        of pixel_values are video frames (`VitaModel.encode_images`)."""
        embeds = self.model.embed(token_ids, pixel_values, fbanks, video_rows=video_rows)  # [B, L, D]
        extra = {"segment_ids": segment_ids} if segment_ids is not None else {}
        hidden = self.model.llm.hidden_states(input_embeds=embeds, attention_mask=attention_mask, **extra)  # [B, L, D]
        # the head only where a label follows: answers are short, and [B, L, V] logits dominate a step otherwise
        targets = labels[:, 1:].flatten()  # [B*(L-1)]
        keep = (targets != IGNORE_INDEX).nonzero().squeeze(1)  # [N]
        logits = self.model.llm.head(hidden[:, :-1].flatten(0, 1).index_select(0, keep))  # [N, V]
        ce = F.cross_entropy(logits.float(), targets.index_select(0, keep), reduction="sum")
        # parameters outside the LLM blocks (unsharded here under FSDP: they form the root group)
        return touch(ce, (p for n, p in self.model.named_parameters() if not n.startswith("llm.layers.")))


def wrap_blocks(model: VitaModel, *, checkpointing: bool) -> None:
    """Per LLM block: activation checkpointing (optional) and `touch` of its parameters (MoE experts)."""
    for block in model.llm.layers:
        inner = block.forward

        def forward(self: nn.Module, *args, _inner=inner, **kwargs) -> torch.Tensor:
            if checkpointing:
                out = activation_checkpoint(_inner, *args, use_reentrant=False, **kwargs)
            else:
                out = _inner(*args, **kwargs)
            return touch(out, self.parameters())  # [B, L, D]

        block.forward = types.MethodType(forward, block)


@dataclass
class Setup:
    recipe: Recipe
    model: VitaModel
    module: nn.Module  # LossModule, possibly DDP-wrapped / FSDP-sharded
    tokenizer: object
    trainable: list[str]  # names (in VitaModel) of the trained tensors


def build(recipe: Recipe, world: World, log) -> Setup:
    from vita.checkpoint.load import load_model
    from vita.training.lora import LORA_GLOBS, add_lora
    from vita.training.trainable import apply_trainable, format_counts

    torch.manual_seed(recipe.seed)  # identical on every rank: LoRA factors must start equal everywhere
    model, tokenizer = load_model(recipe.model.init, dtype=recipe.model.dtype, device=world.device)
    if model.transcriber is not None:  # the LLM learns to read Whisper's words where inference will give them
        from vita.checkpoint.assemble import whisper_vocabulary

        model.transcriber.bind_tokenizer(tokenizer)
        model.transcriber.bind_whisper_text(whisper_vocabulary())  # and the two ears vote, as at inference
    if recipe.lora is not None:
        wrapped = add_lora(model, recipe.lora.targets, r=recipe.lora.r, alpha=recipe.lora.alpha,
                           dropout=recipe.lora.dropout)
        log(f"LoRA r={recipe.lora.r} alpha={recipe.lora.alpha} on {len(wrapped)} linear layers")
    counts = apply_trainable(model, recipe.trainable, always=LORA_GLOBS if recipe.lora else ())
    log("parameters per group:\n" + format_counts(counts))
    model.train()
    if recipe.encoder_cache_gb > 0:  # frozen towers run once per distinct tile / clip (bit-identical results)
        from vita.models.encoder_cache import EncoderCache

        model.encoder_cache = EncoderCache(int(recipe.encoder_cache_gb * (1 << 30)), disk=recipe.encoder_cache_dir)
    wrap_blocks(model, checkpointing=recipe.gradient_checkpointing)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    # FSDP units: the LLM blocks (they run on every rank for every batch); the encoders, which a batch without
    # that modality skips, stay in the root group so every rank issues the same collectives
    module = dist_utils.wrap(LossModule(model), world, recipe.distributed, list(model.llm.layers))
    return Setup(recipe, model, module, tokenizer, trainable)


def _pad_id(tokenizer) -> int:
    for token in ("<pad>", "<unk>"):
        i = tokenizer.token_to_id(token)
        if i is not None:
            return i
    return tokenizer.eos_id if tokenizer.eos_id is not None else 0


def _to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device, non_blocking=True)


def _sync_context(module: nn.Module, sync: bool):
    """No gradient all-reduce on the micro-batches before the last one of a step (DDP; FSDP syncs each)."""
    if not sync and hasattr(module, "no_sync"):
        return module.no_sync()
    return contextlib.nullcontext()


def train(recipe_path: str | Path, output: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
          quiet: bool = False, device: torch.device | None = None) -> Path:
    """Run (or resume) a recipe into `output`; returns `output / "final"`.

    Args:
        recipe_path: the stage's YAML recipe.
        output: run directory; rerunning with the same one resumes from its newest checkpoint.
        overrides: `dotted.key=value` changes to the recipe.
        quiet: no progress bar or log lines (metrics are still written).
        device: where to train (`vita.devices`); None: CUDA if present, else the CPU. Under torchrun a CUDA device
            means cuda:LOCAL_RANK on every rank.
    """
    world = dist_utils.init_world(device)
    try:
        return _run(load_recipe(recipe_path, list(overrides)), Path(output), world, quiet=quiet)
    finally:
        dist_utils.close_world(world)


def _run(recipe: Recipe, out: Path, world: World, *, quiet: bool) -> Path:
    from vita.training.stream import DataStream

    def log(msg: str) -> None:
        if world.is_main and not quiet:
            print(msg, file=sys.stderr, flush=True)

    resolved, data_cfg = _prepare_output(recipe, out, world)
    mode = f"{world.world_size} ranks, {recipe.distributed}" if world.distributed else "one process"
    log(f"recipe {recipe.name or '(unnamed)'}: {mode}, "
        f"device {world.device}, precision {recipe.precision}")
    s, processor, loop = _setup(recipe, data_cfg, world, log)
    progress = _resume(s, loop, out, world, log)
    final = out / "final"
    if progress.step >= loop.total and final.is_dir():
        log(f"{out}: already trained ({loop.total} steps); final weights in {final}")
        return final

    stream = DataStream(data_cfg, processor, rank=world.rank, world_size=world.world_size, pad_id=_pad_id(
        s.tokenizer), epoch=progress.epochs[world.rank], position=progress.positions[world.rank])
    _train_steps(s, loop, progress, stream, world, out, resolved, quiet=quiet, log=log)
    _save_final(s, world, out)
    if world.is_main:
        plot_loss(read_metrics(out / "metrics.jsonl"), out / "loss.png", title=f"{recipe.name or 'training'} loss")
    dist_utils.barrier(world)
    log(f"done: {loop.total} steps; final weights in {final}")
    return final


def _prepare_output(recipe: Recipe, out: Path, world: World) -> tuple[dict, DataConfig]:
    """The output folder, its saved recipe and the generated data (main rank); the concrete data (every rank)."""
    from vita.training.stream import concrete_data, write_data

    if out.exists() and not out.is_dir():
        raise TrainingError(f"{out}: output exists and is not a directory")
    resolved = recipe.to_dict()
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.clean_partial(out)
        saved = out / "recipe.yaml"
        if saved.is_file() and ckpt.latest_checkpoint(out) is not None:
            _check_same_recipe(yaml.safe_load(saved.read_text()), resolved, saved)
        saved.write_text(yaml.safe_dump(resolved, sort_keys=False))
        write_data(recipe.data, out)
    dist_utils.barrier(world)
    return resolved, concrete_data(recipe.data, out)


@dataclass
class Loop:
    """What an optimizer step needs besides the model: the batch geometry, the step count, AdamW and its schedule."""

    micro: int  # samples per micro-batch
    accum: int  # micro-batches per rank per step
    total: int  # optimizer steps of the run
    params: list[nn.Parameter]  # the trained ones (as the wrapped module holds them)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


def _setup(recipe: Recipe, data_cfg: DataConfig, world: World, log) -> tuple[Setup, Processor, Loop]:
    """The model (wrapped for the world), its processor, the number of steps, the optimizer and the LR schedule."""
    from vita.processor import Processor
    from vita.training.optim import build_optimizer, build_scheduler
    from vita.training.stream import count_samples

    s = build(recipe, world, log)
    processor = Processor(s.tokenizer, s.model.config)
    accum = recipe.batch.accumulation(world.world_size)
    micro = recipe.batch.micro_batch_size
    if recipe.schedule.total_steps is not None:
        total = recipe.schedule.total_steps
    else:
        n = dist_utils.all_min(world, count_samples(data_cfg, processor, rank=world.rank,
                                                    world_size=world.world_size))
        total = max(1, int(n * recipe.schedule.epochs // (micro * accum)))
    params = [p for p in s.module.parameters() if p.requires_grad]
    names = {id(p): n for n, p in s.model.named_parameters()}  # the same tensors as the wrapped module's
    optimizer = build_optimizer(params, recipe.optim, names)
    scheduler = build_scheduler(optimizer, recipe.schedule, total)
    return s, processor, Loop(micro, accum, total, params, optimizer, scheduler)


def _resume(s: Setup, loop: Loop, out: Path, world: World, log) -> ckpt.Progress:
    """Restore the newest checkpoint in `out` (weights, optimizer, schedule, this rank's RNG) and its progress;
    without one, seed this rank's randomness and start at step 0."""
    latest = ckpt.latest_checkpoint(out)
    if latest is None:
        torch.manual_seed(s.recipe.seed + world.rank)  # per-rank randomness (e.g. LoRA dropout)
        return ckpt.Progress(epochs=[0] * world.world_size, positions=[0] * world.world_size)
    restored = ckpt.load_checkpoint(latest)
    if restored.meta.get("world_size") != world.world_size:
        raise TrainingError(f"{latest}: written by {restored.meta.get('world_size')} ranks; resume with the "
                            f"same number (got {world.world_size}) or use a new --output")
    state = {f"model.{k}": v.to(world.device) for k, v in restored.model_state.items()}
    try:
        dist_utils.load_full_state(s.module, loop.optimizer, state, restored.optim_state)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise TrainingError(f"{latest}: checkpoint does not fit this model and recipe ({exc})") from None
    loop.scheduler.load_state_dict(restored.scheduler_state)
    ckpt.set_rng_state(restored.rng_states[world.rank])
    log(f"resumed from {latest} (step {restored.progress.step}/{loop.total})")
    return restored.progress


def _train_steps(s: Setup, loop: Loop, progress: ckpt.Progress, stream: DataStream, world: World, out: Path,
                 resolved: dict, *, quiet: bool, log) -> None:
    """Optimizer steps from `progress.step` to `loop.total`: metrics, progress bar and checkpoints on the way."""
    recipe = s.recipe
    metrics = MetricsLog(out / "metrics.jsonl", resume_step=progress.step) if world.is_main else None
    bar = ProgressBar(loop.total, progress.step, enabled=world.is_main and not quiet)
    log(f"training {loop.total} steps: {loop.micro} x {loop.accum} micro-batches x {world.world_size} ranks per step")
    autocast = torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=recipe.precision == "bf16")
    samples = loop.micro * loop.accum * world.world_size  # per step, all ranks
    t_start = time.perf_counter()
    while progress.step < loop.total:
        t0 = time.perf_counter()
        r = _step(s, loop, stream, world, autocast)
        progress.step += 1
        progress.tokens_seen += int(r.n_sup)
        progress.samples_seen += samples
        progress.epochs[world.rank], progress.positions[world.rank] = stream.epoch, stream.position
        dt = time.perf_counter() - t0
        if metrics is not None:
            metrics.write({"step": progress.step, "loss": r.loss, "lr": r.lr, "grad_norm": r.grad_norm,
                           "tokens": int(r.n_sup), "tokens_seen": progress.tokens_seen,
                           "samples": samples, "samples_per_s": samples / dt, "tokens_per_s": r.n_tok / dt,
                           "epoch": stream.epoch, "time": time.perf_counter() - t_start})
        bar.update(progress.step, r.loss, r.n_tok / dt)
        every = recipe.checkpoint.every
        if progress.step == loop.total or (every and progress.step % every == 0):
            _save(s, loop, progress, stream, world, out, resolved)
    bar.close()


@dataclass
class StepResult:
    loss: float  # mean CE per supervised token of the global step
    grad_norm: float
    lr: float  # the rate this step used
    n_sup: float  # supervised tokens of the global step
    n_tok: float  # non-padding tokens of the global step


def _step(s: Setup, loop: Loop, stream: DataStream, world: World, autocast) -> StepResult:
    """One optimizer step: `accum` micro-batches forward and backward (gradients of the global mean), clip, AdamW."""
    batches = [stream.next_batch(loop.micro) for _ in range(loop.accum)]
    local = [sum(b.num_tokens for b in batches), sum(int(b.attention_mask.sum()) for b in batches)]
    n_sup, n_tok = dist_utils.all_sum(world, [float(v) for v in local])
    scale = world.world_size / max(n_sup, 1.0)
    ce_sum = 0.0
    for i, b in enumerate(batches):
        mask = None if bool(b.attention_mask.all()) else _to(b.attention_mask, world.device)
        with _sync_context(s.module, i == loop.accum - 1):  # forward and backward inside (DDP no_sync)
            with autocast:
                ce = s.module(_to(b.token_ids, world.device), _to(b.labels, world.device), mask,
                              _to(b.pixel_values, world.device), [f.to(world.device) for f in b.fbanks],
                              _to(b.segment_ids, world.device), _to(b.video_rows, world.device))
            (ce * scale).backward()
        ce_sum += float(ce.detach())
    loss = dist_utils.all_sum(world, [ce_sum])[0] / max(n_sup, 1.0)
    grad_norm = _clip(loop.params, s.recipe.optim.grad_clip)
    lr = loop.scheduler.get_last_lr()[0]
    loop.optimizer.step()
    loop.scheduler.step()
    loop.optimizer.zero_grad(set_to_none=True)
    return StepResult(loss, grad_norm, lr, n_sup, n_tok)


def _clip(params: list[nn.Parameter], max_norm: float) -> float:
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP
        norm = norm.full_tensor()
    return float(norm)


def _trainable_state(s: Setup) -> dict[str, torch.Tensor]:
    full = dist_utils.full_model_state(s.module)  # collective under FSDP
    keep = set(s.trainable)
    return {k[len("model."):]: v for k, v in full.items() if k[len("model."):] in keep}


def _save(s: Setup, loop: Loop, progress: ckpt.Progress, stream: DataStream, world: World, out: Path,
          resolved: dict) -> None:
    """A resumable checkpoint (every rank takes part: the state is gathered; the main rank writes it)."""
    model_state = _trainable_state(s)
    optim_state = dist_utils.full_optimizer_state(s.module, loop.optimizer)
    rngs = dist_utils.gather_objects(world, ckpt.rng_state())
    where = dist_utils.gather_objects(world, (stream.epoch, stream.position))
    progress.epochs, progress.positions = [e for e, _ in where], [p for _, p in where]
    if world.is_main:
        meta = {"world_size": world.world_size, "recipe": resolved}
        ckpt.save_checkpoint(out, progress, model_state, optim_state, loop.scheduler.state_dict(), rngs, meta,
                             s.recipe.checkpoint.keep_last)
    dist_utils.barrier(world)


def _save_final(s: Setup, world: World, out: Path) -> None:
    from vita.checkpoint.convert import save_canonical
    from vita.training.lora import merged_state_dict

    full = dist_utils.full_model_state(s.module)
    if not world.is_main:
        return
    state = merged_state_dict(s.model, {k[len("model."):]: v for k, v in full.items()})
    tmp = out / ".tmp-final"
    shutil.rmtree(tmp, ignore_errors=True)
    save_canonical(s.model.config, state, s.tokenizer, tmp)
    if (out / "final").exists():
        shutil.rmtree(out / "final")
    os.replace(tmp, out / "final")


def _check_same_recipe(old: dict, new: dict, where: Path) -> None:
    """A resumed run must use the recipe it started with (only the `checkpoint` section may change)."""
    def flat(d: dict, prefix: str = "") -> dict:
        items = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            items.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
        return items

    a, b = flat(old), flat(new)
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)
                  and not k.startswith("checkpoint.") and not k.startswith("encoder_cache_"))  # none changes the result
    if diff:
        raise TrainingError(f"{where}: this output directory was trained with a different recipe "
                            f"(differs in {', '.join(diff[:5])}); use the same recipe to resume, or a new --output")
