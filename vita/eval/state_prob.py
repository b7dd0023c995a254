"""How readily a model says "not for me": P(not-query state | prompt), and the bias that restores a calibration.

For each case of a manifest, the prompt (media, history, the user's turn) plus the ids every state token shares
before the one that decides `<2>` ("<" in SmolLM2's tokenizer) runs once; the softmax of the next-id logits at the
deciding id ("2") is the case's P(<2>). A soup of runs (`vita.training.soup`) can move that probability while the
runs agree on everything else; `bias_for` finds the logit bias b (`VitaConfig.state_bias`) at which the mean of
    p_b = p e^b / (p e^b + 1 - p)
over the cases equals a target (the runs' own mean on the same cases), by bisection: the model's decision put back
where its training had it, chosen on whatever cases the caller gives (training records: never the evaluation's).
`calibrate` does it for each kind of turn on its own: first turns (`VitaConfig.state_bias`) and turns after an
earlier exchange (`state_bias_after`), so that neither kind's share of the cases sets the other's bias.

    python -m vita.cli.tools state_bias --model SOUP --like RUN1 RUN2 ... --manifest CASES.jsonl [--write PARTS]
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from vita.errors import EvalError
from vita.eval.manifest import Case
from vita.eval.run import case_turns
from vita.processor import after_exchange

__all__ = ["bias_for", "biased_mean", "calibrate", "not_query_probs", "write_bias"]


@torch.inference_mode()
def not_query_probs(vita, cases: Sequence[Case], *, log: Callable[[str], None] | None = None) -> list[float]:
    """P(<2>) at the state decision for each case (any typed turn included: the model's own choice, not forced)."""
    if vita.state_decision is None:
        raise EvalError("this model's tokenizer has no id that decides the not-query state")
    before, decides = vita.state_decision
    llm = vita.model.llm
    out = []
    for k, case in enumerate(cases):
        inputs = vita.inputs(case.text, images=[str(p) for p in case.images],
                             video=None if case.video is None else str(case.video),
                             audio=None if case.audio is None else str(case.audio), history=case_turns(case))
        embeds = vita.embed(inputs)[0]  # [L, D]
        rows = torch.cat([embeds, *(llm.tok_embeddings.weight[i][None].to(embeds.dtype) for i in before)])
        loop = vita.token_loop(vita.new_cache(rows.shape[0] + 2), rows, max_new_tokens=1, probe=rows.shape[0] - 1,
                               guess=None, state_bias=None)  # the model's own probability: no bias, no guess
        while loop.probe_logits is None and not loop.done:
            loop.step()
        if loop.probe_logits is None:
            raise EvalError(f"case {case.id}: the prompt gave no logits")
        out.append(float(torch.softmax(loop.probe_logits[0].float(), -1)[decides]))
        if log is not None and (k + 1) % 50 == 0:
            log(f"{k + 1}/{len(cases)}")
    return out


def biased_mean(probs: Sequence[float], bias: float) -> float:
    """The mean of P(<2>) once `bias` is added to the deciding id's logit."""
    e = math.exp(bias)
    return sum(p * e / (p * e + 1 - p) for p in probs) / len(probs)


def bias_for(probs: Sequence[float], target: float, *, lo: float = -20.0, hi: float = 20.0, steps: int = 60) -> float:
    """The bias b with `biased_mean(probs, b) == target` (bisection; the mean rises with b)."""
    if not probs:
        raise EvalError("no cases to calibrate on")
    if not 0.0 < target < 1.0:
        raise EvalError(f"target mean probability {target} must lie strictly between 0 and 1")
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if biased_mean(probs, mid) < target else (lo, mid)
    return (lo + hi) / 2


def calibrate(model: str, like: Sequence[str], cases: Sequence[Case]) -> dict[str, Any]:
    """For each kind of turn among `cases`, "first" (no earlier exchange in the prompt) and "after" (one is:
    `vita.processor.after_exchange`), the bias at which `model`'s mean P(<2>) over the cases of that kind equals
    the mean of `like`'s (each model loaded once, in float32). A kind without cases gets None."""
    import vita

    after = [after_exchange(case_turns(c)) for c in cases]
    probs = {m: not_query_probs(vita.load(m, dtype="fp32"), cases) for m in [*like, model]}

    def kind(flag: bool) -> dict[str, Any] | None:
        pick = {m: [p for p, a in zip(ps, after, strict=True) if a == flag] for m, ps in probs.items()}
        if not pick[model]:
            return None
        means = {m: biased_mean(pick[m], 0.0) for m in like}
        target = sum(means.values()) / len(means)
        bias = bias_for(pick[model], target)
        return {"cases": len(pick[model]), "like": means, "target": target, "model": biased_mean(pick[model], 0.0),
                "bias": bias, "model_with_bias": biased_mean(pick[model], bias)}

    return {"first": kind(False), "after": kind(True)}


def write_bias(parts_dir: str | Path, bias: float, after: float | None = None) -> Path:
    """Set `state_bias` (and `state_bias_after`: None = the same) in a vita-mini parts folder's config (parts.json;
    the tensors and their sha256 unchanged)."""
    from vita.checkpoint.mini import read_parts
    from vita.config import VitaConfig

    read_parts(parts_dir, check_base=False)  # a parts folder, intact
    path = Path(parts_dir) / "parts.json"
    manifest = json.loads(path.read_text())
    manifest["config"]["state_bias"] = float(bias)
    manifest["config"]["state_bias_after"] = None if after is None else float(after)
    VitaConfig.from_dict(manifest["config"])  # still a valid config (a finite bias)
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path
