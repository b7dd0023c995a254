"""A uniform soup of vita-mini parts: the average of several stage-3 runs that started from one model.

Runs that fine-tune one starting model on the same kind of data land in one basin; the average of their weights is
often better, and steadier, than any one of them (Wortsman et al. 2022, "Model soups"). vita-mini's parts hold the
LLM's change as LoRA factors, whose average is not the average of the changes, so the soup keeps each run's change
whole: for every adapted weight W + s B_i A_i (i = 1..k, one scale s), the soup's factors are A = [A_1; ...; A_k] and
B = [B_1 ... B_k] / k, so W + s B A = W + s mean_i(B_i A_i) exactly, at k times the rank. `rank=R` compresses each
change to rank R by a truncated SVD instead (and reports how much of it, in Frobenius norm, was kept). Every other
tensor (projector, adapter, tuned encoder blocks) is averaged. The parts must share config, LoRA scale, base packages
and tensor names; anything else is an error naming the folder.

`chain=True` stacks instead of averaging: for parts each trained from the previous one's merged model (a continuation,
e.g. recipes/mini/s41), B = [B_1 ... B_k] without the 1/k, so W + s B A = W + s sum_i B_i A_i, the changes one after
another; every other tensor is the last folder's (the continuation starts from the earlier ones' values).

    python -m vita.cli.tools soup --out OUT PARTS PARTS [PARTS ...] [--rank R] [--chain]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vita.checkpoint.io import write_tensors
from vita.checkpoint.materialize import resolve_dtype
from vita.checkpoint.mini import LORA_FACTOR, PARTS_FILE, PARTS_FORMAT, read_parts, sha256_file
from vita.errors import CheckpointError

__all__ = ["soup_parts"]


def _manifest(parts_dir: Path) -> dict[str, Any]:
    return json.loads((parts_dir / "parts.json").read_text())


def soup_parts(parts_dirs: list[str | Path], out_dir: str | Path, *, rank: int | None = None,
               check_base: bool = True, chain: bool = False) -> dict[str, Any]:
    """Write the soup of `parts_dirs` (or with `chain` their sum) to `out_dir`; return its manifest (with "soup" or
    "chain": the folders it was made of)."""
    dirs = [Path(d) for d in parts_dirs]
    if len(dirs) < 2:
        raise CheckpointError("a soup needs two or more parts folders")
    if rank is not None and rank < 1:
        raise CheckpointError(f"rank must be >= 1, got {rank}")
    read = [read_parts(d, check_base=check_base) for d in dirs]
    manifests = [_manifest(d) for d in dirs]
    config, first, scale = read[0]
    for d, (cfg, tensors, s), man in zip(dirs[1:], read[1:], manifests[1:], strict=True):
        if cfg != config:
            raise CheckpointError(f"{d}: its config differs from {dirs[0]}'s (a soup needs one architecture)")
        if s != scale:
            raise CheckpointError(f"{d}: LoRA scale {s} differs from {dirs[0]}'s {scale}")
        if man["base"] != manifests[0]["base"]:
            raise CheckpointError(f"{d}: trained on other base packages than {dirs[0]}")
        if set(tensors) != set(first):
            diff = sorted(set(tensors) ^ set(first))
            raise CheckpointError(f"{d}: its tensors differ from {dirs[0]}'s: {', '.join(diff[:5])}")
    k = len(read)
    dtype = resolve_dtype(manifests[0].get("dtype", "fp16"))
    out: dict[str, torch.Tensor] = {}
    kept_energy: list[float] = []
    adapted = sorted({m.group(1) for n in first if (m := LORA_FACTOR.match(n))})
    for name in sorted(n for n in first if not LORA_FACTOR.match(n)):
        out[name] = (read[-1][1][name].float() if chain
                     else torch.stack([t[name].float() for _, t, _ in read]).mean(0)).to(dtype)
    for weight in adapted:
        a = torch.cat([t[f"{weight}.lora_a"].float() for _, t, _ in read], dim=0)  # [k r, in]
        b = torch.cat([t[f"{weight}.lora_b"].float() for _, t, _ in read], dim=1) / (1 if chain else k)  # [out, k r]
        if rank is not None and rank < a.shape[0]:
            u, sv, vh = torch.linalg.svd(b @ a, full_matrices=False)
            kept_energy.append(float((sv[:rank] ** 2).sum() / (sv**2).sum().clamp_min(1e-30)))
            root = sv[:rank].sqrt()
            b, a = u[:, :rank] * root, root[:, None] * vh[:rank]
        out[f"{weight}.lora_a"], out[f"{weight}.lora_b"] = a.to(dtype).contiguous(), b.to(dtype).contiguous()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tensors(out_dir, out, metadata={"format": PARTS_FORMAT})
    made_of = [{"parts": str(d), "sha256": m["files"][PARTS_FILE], **m.get("run", {})}
               for d, m in zip(dirs, manifests, strict=True)]
    manifest = {**manifests[-1 if chain else 0], "files": {PARTS_FILE: sha256_file(out_dir / PARTS_FILE)},
                "run": {"chain" if chain else "soup": made_of,
                        "rank": rank, "min_energy_kept": min(kept_energy) if kept_energy else 1.0}}
    (out_dir / "parts.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
