"""Stage 0 of vita-mini: pretrain the random vision tower on the captions, without the LLM.

    python -m vita.cli.tools tower_pretrain --init SKELETON --data DATA/train/vision_align.json --out DIR
                                             [--epochs 30] [--lr 1e-3] [--batch 32] [--seed 0]

No pretrained vision encoder ships offline, and teaching a random tower through the 135M LLM's backward pass costs
~1 s of CPU per image. Here the tower learns the captions' content directly: each image's target is the set of
caption words and adjacent word pairs ("red", "circle", "red circle", "top", ...; a bag that keeps colour-shape
binding), predicted from the tower's 16 pixel-shuffled tokens (per-token Linear(4C -> 32), flattened, so positions
survive, then Linear -> vocabulary) with binary cross-entropy. The head is thrown away; `DIR` is `--init` with the
tower replaced (canonical layout), the init of `recipes/mini/stage1_vision_align.yaml`. Videos are skipped (their
captions describe motion, not a frame). Deterministic for a seed (CPU).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vita.errors import TrainingError

TOKEN_DIM = 32  # per-token width of the probe head


def caption_labels(caption: str) -> list[str]:
    words = re.findall(r"[a-z0-9]+", caption.lower())
    words = [w for w in words if w not in ("a", "an", "the", "and", "at", "of", "is", "in")]
    return sorted(set(words) | {f"{a} {b}" for a, b in zip(words, words[1:], strict=False)})


def load_images(data: Path, processor) -> tuple[torch.Tensor, list[list[str]]]:
    """Pixel tiles [N, 3, S, S] and caption label sets of the image records of a VITA JSON file."""
    try:
        records = json.loads(data.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"{data}: cannot read the captions ({exc})") from None
    pixels, labels = [], []
    for r in records:
        if "image" not in r:
            continue
        tiles = processor.image_tiles(data.parent / r["image"])  # [1, 3, S, S]: one tile per image for vita-mini
        pixels.append(tiles[:1])
        labels.append(caption_labels(r["conversations"][-1]["value"]))
    if not pixels:
        raise TrainingError(f"{data}: no image records")
    return torch.cat(pixels), labels


class Probe(nn.Module):
    def __init__(self, tokens: int, width: int, vocab: int) -> None:
        super().__init__()
        self.token = nn.Linear(width, TOKEN_DIM)
        self.out = nn.Linear(tokens * TOKEN_DIM, vocab)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.token(feats)).flatten(1))  # [N, T, 4C] -> [N, T*32] -> [N, V]


def pretrain(init: str | Path, data: str | Path, out: str | Path, *, epochs: int = 30, lr: float = 1e-3,
             batch: int = 32, seed: int = 0, log=print) -> Path:
    from vita.checkpoint.convert import save_canonical
    from vita.checkpoint.load import load_model
    from vita.processor import Processor

    out = Path(out)
    if (out / "config.json").is_file():
        log(f"{out}: already pretrained")
        return out
    model, tokenizer = load_model(init)
    if model.vision is None:
        raise TrainingError(f"{init}: the model has no vision tower")
    pixels, labels = load_images(Path(data), Processor(tokenizer, model.config))
    vocab = sorted({w for ls in labels for w in ls})
    index = {w: i for i, w in enumerate(vocab)}
    target = torch.zeros(len(labels), len(vocab))
    for i, ls in enumerate(labels):
        target[i, [index[w] for w in ls]] = 1.0
    torch.manual_seed(seed)
    tower = model.vision.train()
    for p in tower.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        feats = tower(pixels[:1])  # [1, T, 4C]
    probe = Probe(feats.shape[1], feats.shape[2], len(vocab))
    params = [*tower.parameters(), *probe.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = epochs * ((len(labels) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    log(f"tower pretraining: {len(labels)} images, {len(vocab)} caption labels, {epochs} epochs, {steps} steps")
    for epoch in range(epochs):
        order = torch.randperm(len(labels), generator=gen)
        total, hits = 0.0, 0.0
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            logits = probe(tower(pixels[idx]))  # [B, V]
            loss = F.binary_cross_entropy_with_logits(logits, target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            hits += float(((logits > 0).float() == target[idx]).all(dim=1).sum())
        if epoch == 0 or (epoch + 1) % 5 == 0 or epoch + 1 == epochs:
            log(f"epoch {epoch + 1}/{epochs}: loss {total / len(labels):.4f}, exact label sets "
                f"{100 * hits / len(labels):.1f}% ({time.perf_counter() - t0:.0f} s)")
    tower.eval()
    state = {k: v.detach() for k, v in model.state_dict().items()}
    tmp = out.with_name(out.name + ".tmp")
    save_canonical(model.config, state, tokenizer, tmp)
    (tmp / "tower_pretrain.json").write_text(json.dumps(
        {"init": str(init), "data": str(data), "epochs": epochs, "lr": lr, "batch": batch, "seed": seed,
         "final_loss": total / len(labels), "exact_label_sets": hits / len(labels), "labels": vocab}, indent=1) + "\n")
    tmp.rename(out)
    return out
