"""A tagger head for vita-mini's emoji concepts: softmax regression on EfficientNet-Lite0's pooled features.

`vita.tagger` puts the most likely class of a classifier on the tower's pooled features into the prompt as words. The
packaged ImageNet classifier is confident on photos and silent on vita-mini's rendered emoji; this fits a head over
the 404 emoji concepts (`vita.datasets.mini.emoji.CONCEPTS`) on renders of the TRAINING split only (the data
builder's training backgrounds, sizes and styles, `emoji_item(rng, held_out=False)`, seeded), so the held-out
renders of `vita data mini`'s naming eval stay unseen:

    n renders -> the tagger's pooled features [n, 1280] (raw, as the tagger sees them at inference)
    -> full-batch L-BFGS on mean cross-entropy + l2/2 |W|^2 (deterministic) -> weight [404, 1280], bias [404]

Measured 2026-12-06 (a linear probe, sklearn, 3,000 renders): held-out colour renders named 78 %, line drawings of
concepts drawn so in training 35 %, of concepts never drawn so 6 %; the stage-3 LLM of `runs/s24` named the same
kinds of picture 55 / 12 / 4 %.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["emoji_renders", "fit_head", "fit_emoji_head"]


def fit_head(features: torch.Tensor, labels: torch.Tensor, n_classes: int, *, l2: float = 1e-3,
             steps: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax regression: (weight [K, D], bias [K]) minimising mean cross-entropy + l2/2 |weight|^2 (float64,
    full-batch L-BFGS: the same features give the same head)."""
    x, y = features.double(), labels.long()
    if x.ndim != 2 or y.shape != (x.shape[0],) or int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise ValueError(f"features {tuple(x.shape)} and labels {tuple(y.shape)} in [0, {n_classes}) do not match")
    w = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = torch.nn.functional.cross_entropy(x @ w.T + b, y) + 0.5 * l2 * (w * w).sum()
        value.backward()
        return value

    opt.step(loss)
    return w.detach().float(), b.detach().float()


def emoji_renders(n: int, seed: int, *, held_out: bool = False):
    """n emoji naming pictures of one split, seeded: yields (picture, concept index, eval subgroup)."""
    from vita.datasets.mini.emoji import CONCEPTS
    from vita.datasets.mini.emoji_images import emoji_item

    index = {c.name: i for i, c in enumerate(CONCEPTS)}
    rng = np.random.default_rng([seed, 1 if held_out else 0, 404])
    for _ in range(n):
        item = emoji_item(rng, held_out)
        yield item.image, index[item.answer], item.subgroup


def fit_emoji_head(out: str | Path, *, renders: int = 4000, check: int = 400, seed: int = 0,
                   image_size: int = 256, l2: float = 1e-3) -> dict:
    """Fit the emoji-concept head on `renders` training-split renders, write it to `out` (`vita.tagger.save_head`)
    and report its accuracy on `check` held-out renders (other backgrounds; never used to fit or choose)."""
    from vita.config import TaggerConfig
    from vita.datasets.mini.emoji import CONCEPTS
    from vita.tagger import ImageTagger, save_head

    t0 = time.perf_counter()
    tagger = ImageTagger(TaggerConfig(image_size=image_size))  # its tower and picture handling; the head is ours

    def featurize(pictures) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        rows, ys, groups = [], [], []
        for picture, y, group in pictures:
            rows.append(tagger.pooled(picture))
            ys.append(y)
            groups.append(group)
        return torch.stack(rows), torch.tensor(ys), groups

    x, y, _ = featurize(emoji_renders(renders, seed))
    weight, bias = fit_head(x, y, len(CONCEPTS), l2=l2)
    path = save_head(out, weight, bias, [c.name for c in CONCEPTS], image_size)
    report = {"head": str(path), "renders": renders, "seed": seed, "l2": l2, "classes": len(CONCEPTS),
              "train_accuracy": float(((x @ weight.T + bias).argmax(-1) == y).float().mean())}
    if check:
        xc, yc, groups = featurize(emoji_renders(check, seed, held_out=True))
        right = ((xc @ weight.T + bias).argmax(-1) == yc).tolist()
        for group in sorted(set(groups)):
            hits = [r for r, g in zip(right, groups, strict=True) if g == group]
            report[f"held_out/{group}"] = {"n": len(hits), "accuracy": sum(hits) / len(hits)}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report
