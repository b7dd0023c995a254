"""Which parameters a stage trains: a `{glob: bool}` spec over parameter names, applied in one place.

    spec = {"*": False, "vision_projector.*": True}    # fnmatch globs, tried in order; the LAST match wins
    counts = apply_trainable(model, spec)             # sets requires_grad on every parameter
    print(format_counts(counts))                      # per top-level group: trainable / frozen parameter counts

A parameter matched by no glob is frozen (a recipe that forgets a group trains less, never more). A glob that
matches no parameter is an error: it is almost always a typo, and a typo would silently freeze what it meant.
Groups are the top-level modules of `VitaModel`: llm, vision, vision_projector, video_projector (only in a model
with one), audio_encoder, audio_adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from torch import nn

from vita.errors import TrainingError

GROUPS = ("llm", "vision", "vision_projector", "video_projector", "audio_encoder", "audio_adapter")


@dataclass
class GroupCount:
    trainable: int = 0  # number of parameter elements with requires_grad
    frozen: int = 0

    @property
    def total(self) -> int:
        return self.trainable + self.frozen


def resolve_trainable(names: list[str], spec: dict[str, bool], *, source: str = "trainable") -> dict[str, bool]:
    """name -> trainable for every parameter name; raises on a glob that matches nothing."""
    unused = [glob for glob in spec if not any(fnmatchcase(n, glob) for n in names)]
    if unused:
        raise TrainingError(f"{source}: glob(s) match no parameter of the model: {', '.join(unused)}")
    out = {}
    for name in names:
        flag = False
        for glob, value in spec.items():
            if fnmatchcase(name, glob):
                flag = value
        out[name] = flag
    return out


def apply_trainable(model: nn.Module, spec: dict[str, bool], *, always: tuple[str, ...] = (),
                    source: str = "trainable") -> dict[str, GroupCount]:
    """Set requires_grad from `spec`; parameters matching a glob of `always` (e.g. LoRA factors) stay trainable."""
    params = dict(model.named_parameters())
    flags = resolve_trainable(list(params), spec, source=source)
    for name, p in params.items():
        p.requires_grad_(flags[name] or any(fnmatchcase(name, g) for g in always))
    counts = count_parameters(model)
    if not any(c.trainable for c in counts.values()):
        raise TrainingError(f"{source}: the spec leaves no parameter trainable")
    return counts


def count_parameters(model: nn.Module) -> dict[str, GroupCount]:
    """Per top-level module: trainable and frozen element counts (groups absent from the model are omitted)."""
    counts: dict[str, GroupCount] = {}
    for name, p in model.named_parameters():
        group = name.split(".", 1)[0]
        c = counts.setdefault(group, GroupCount())
        if p.requires_grad:
            c.trainable += p.numel()
        else:
            c.frozen += p.numel()
    order = {g: i for i, g in enumerate(GROUPS)}
    return dict(sorted(counts.items(), key=lambda kv: order.get(kv[0], len(order))))


def format_counts(counts: dict[str, GroupCount]) -> str:
    """A small table: group, trainable, frozen, total."""
    rows = [f"{'group':<18}{'trainable':>14}{'frozen':>14}{'total':>14}"]
    for group, c in counts.items():
        rows.append(f"{group:<18}{c.trainable:>14,}{c.frozen:>14,}{c.total:>14,}")
    t = GroupCount(sum(c.trainable for c in counts.values()), sum(c.frozen for c in counts.values()))
    rows.append(f"{'all':<18}{t.trainable:>14,}{t.frozen:>14,}{t.total:>14,}")
    return "\n".join(rows)
